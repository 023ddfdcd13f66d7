//! Apple Push Notification service (`kind = "apns"`, channel `push`): token-based auth (an
//! ES256 provider token from the team's `.p8` key, reused for 50 minutes and never re-minted
//! more often than Apple allows), HTTP/2 over TLS only, the request headers of Apple's
//! documentation, and its reasons mapped to classes. `Unregistered`/`ExpiredToken` (410) and
//! `BadDeviceToken`/`DeviceTokenNotForTopic` take the device token off the contact.

use super::common::{Base, check_keys, opt_string, required_cred};
use super::jwt::SigningKey;
use super::push::{self, Notification};
use super::{Provider, Receipt, SendError, classify_transport, retry_after};
use crate::config::ProviderConfig;
use crate::core::contact::ApnsToken;
use crate::core::types::{Channel, ErrorClass, Priority, now_millis};
use crate::store::{Claimed, Contacts};
use async_trait::async_trait;
use serde_json::{Value, json};
use sha2::Digest;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A provider token is replaced after this long (Apple: refresh no less than once an hour).
pub const TOKEN_LIFETIME_SECS: i64 = 50 * 60;
/// Apple refuses a new token sooner than this after the previous one
/// (TooManyProviderTokenUpdates).
pub const MIN_TOKEN_AGE_SECS: i64 = 20 * 60;
const MAX_PAYLOAD: usize = 4096;

/// The provider token in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    pub token: String,
    pub iat: i64,
    /// Made because APNs called the previous one expired.
    pub after_refusal: bool,
}

/// What to do for the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenStep {
    Reuse,
    /// Sign a new token with this `iat`.
    Mint {
        iat: i64,
        after_refusal: bool,
    },
    /// APNs keeps calling fresh tokens expired (a clock off by an hour?): minting again now
    /// would only earn TooManyProviderTokenUpdates.
    GiveUp,
}

/// The provider-token rule, pure: mint when there is none or it is 50 minutes old; when APNs
/// called `refused` expired, mint again unless another request already did, or the current
/// token itself came from such a refusal less than 20 minutes ago. A new `iat` is always
/// later than the previous one.
pub fn token_step(now: i64, current: Option<&Minted>, refused: Option<&str>) -> TokenStep {
    let Some(cur) = current else {
        return TokenStep::Mint {
            iat: now,
            after_refusal: false,
        };
    };
    let next = now.max(cur.iat + 1);
    match refused {
        Some(t) if t == cur.token => {
            if cur.after_refusal && now - cur.iat < MIN_TOKEN_AGE_SECS {
                TokenStep::GiveUp
            } else {
                TokenStep::Mint {
                    iat: next,
                    after_refusal: true,
                }
            }
        }
        _ if now - cur.iat >= TOKEN_LIFETIME_SECS => TokenStep::Mint {
            iat: next,
            after_refusal: false,
        },
        _ => TokenStep::Reuse,
    }
}

/// The class of an APNs answer by status and reason (PUSH.md §3.3).
pub fn classify(status: u16, reason: &str) -> ErrorClass {
    use ErrorClass::*;
    match (status, reason) {
        (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => Recipient,
        (400, "IdleTimeout") => Transient,
        (403, "ExpiredProviderToken") => Transient,
        (403, _) => Provider,
        (410, _) => Recipient,
        (429 | 500..=599, _) => Transient,
        _ => Rejected,
    }
}

/// A canonical lowercase UUID derived from the delivery id (`apns-id`): the same delivery
/// retried keeps its id.
pub fn apns_id(delivery: &str) -> String {
    let h = hex::encode(&sha2::Sha256::digest(delivery.as_bytes())[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub struct ApnsProvider {
    base: Base,
    sandbox: String,
    key: SigningKey,
    key_id: String,
    team_id: String,
    topic: String,
    http: reqwest::Client,
    token: Mutex<Option<Minted>>,
    contacts: Option<Arc<dyn Contacts>>,
}

fn ten_chars(cfg: &ProviderConfig, name: &str) -> Result<String, String> {
    let v = required_cred(cfg, name)?.expose().trim().to_string();
    if v.len() != 10 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "providers `{}`: credentials.{name} must be Apple's 10-character id",
            cfg.id
        ));
    }
    Ok(v)
}

impl ApnsProvider {
    pub fn from_config(
        cfg: &ProviderConfig,
        idle: usize,
        contacts: Option<Arc<dyn Contacts>>,
    ) -> Result<Self, String> {
        check_keys(
            cfg,
            &["key_p8", "key_id", "team_id"],
            &["topic", "sandbox_endpoint", "ca_file"],
        )?;
        let id = &cfg.id;
        let p8 = required_cred(cfg, "key_p8")?.expose().to_string();
        let pem = if p8.contains("-----BEGIN") {
            p8
        } else {
            std::fs::read_to_string(p8.trim()).map_err(|e| {
                format!(
                    "providers `{id}`: credentials.key_p8: cannot read `{}`: {e}",
                    p8.trim()
                )
            })?
        };
        let key = SigningKey::es256_pem(&pem)
            .map_err(|m| format!("providers `{id}`: credentials.key_p8 {m}"))?;
        let topic = opt_string(cfg, "topic")?
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                format!("providers `{id}`: options.topic (the app's bundle id) is required")
            })?;
        let sandbox = opt_string(cfg, "sandbox_endpoint")?
            .unwrap_or_else(|| "https://api.sandbox.push.apple.com".into());
        url::Url::parse(&sandbox)
            .map_err(|e| format!("providers `{id}`: options.sandbox_endpoint: {e}"))?;
        crate::tls::init();
        // HTTP/2 only, as APNs requires: ALPN offers `h2` alone, no HTTP/1.1 fallback.
        let mut b = reqwest::Client::builder()
            .http2_prior_knowledge()
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(idle.clamp(1, 16))
            .http2_keep_alive_interval(Duration::from_secs(60))
            .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = opt_string(cfg, "ca_file")? {
            let pem = std::fs::read(&path)
                .map_err(|e| format!("providers `{id}`: options.ca_file `{path}`: {e}"))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("providers `{id}`: options.ca_file `{path}`: {e}"))?;
            b = b.tls_certs_only(certs);
        }
        let http = b
            .build()
            .map_err(|e| format!("providers `{id}`: HTTP client: {e}"))?;
        Ok(ApnsProvider {
            base: Base::new(cfg, "https://api.push.apple.com")?,
            sandbox: sandbox.trim_end_matches('/').to_string(),
            key,
            key_id: ten_chars(cfg, "key_id")?,
            team_id: ten_chars(cfg, "team_id")?,
            topic,
            http,
            token: Mutex::new(None),
            contacts,
        })
    }

    /// The provider token for the next request (`refused`: the one APNs just called expired).
    fn provider_token(&self, refused: Option<&str>) -> Result<String, SendError> {
        let mut cur = match self.token.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match token_step(now_millis() / 1000, cur.as_ref(), refused) {
            TokenStep::Reuse => Ok(cur.as_ref().map(|m| m.token.clone()).unwrap_or_default()),
            TokenStep::GiveUp => Err(SendError::Provider {
                code: "apns_expiredprovidertoken".into(),
                detail: "APNs calls fresh provider tokens expired: is this host's clock right?"
                    .into(),
            }),
            TokenStep::Mint { iat, after_refusal } => {
                let token = self
                    .key
                    .sign(
                        json!({"kid": self.key_id}),
                        &json!({"iss": self.team_id, "iat": iat}),
                    )
                    .map_err(|m| SendError::Provider {
                        code: "apns_signing_failed".into(),
                        detail: m,
                    })?;
                *cur = Some(Minted {
                    token: token.clone(),
                    iat,
                    after_refusal,
                });
                Ok(token)
            }
        }
    }

    /// The payload: the notification, cut to fit 4 KiB (body halved until it does).
    fn payload(m: &Claimed, n: &Notification) -> Vec<u8> {
        let doc = |body: &str| {
            let mut aps = json!({"alert": {"title": n.title, "body": body}, "sound": "default", "thread-id": n.tag});
            if m.priority == Priority::Critical {
                aps["interruption-level"] = json!("time-sensitive");
            }
            serde_json::to_vec(
                &json!({"aps": aps, "message_id": m.message_id, "priority": m.priority}),
            )
            .unwrap_or_default()
        };
        let mut keep = n.body.chars().count();
        let mut bytes = doc(&n.body);
        while bytes.len() > MAX_PAYLOAD && keep > 0 {
            keep /= 2;
            let cut: String = n.body.chars().take(keep).collect();
            bytes = doc(&(cut + "…"));
        }
        bytes
    }

    async fn send_one(
        &self,
        m: &Claimed,
        device: &ApnsToken,
        jwt: &str,
        body: &[u8],
        collapse: Option<&str>,
    ) -> Result<(Option<String>, u16, String, Option<Duration>), SendError> {
        let base = if device.environment == "sandbox" {
            &self.sandbox
        } else {
            &self.base.endpoint
        };
        let urgent = matches!(m.priority, Priority::Critical | Priority::High);
        let mut req = self
            .http
            .post(format!("{base}/3/device/{}", device.token))
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", if urgent { "10" } else { "5" })
            .header("apns-expiration", (m.expires_at / 1000).max(0).to_string())
            .header("apns-id", apns_id(&m.lease.delivery_id))
            .header("content-type", "application/json")
            .timeout(self.base.timeout);
        if let Some(k) = collapse {
            req = req.header("apns-collapse-id", k);
        }
        let resp = req.body(body.to_vec()).send().await.map_err(|e| {
            let c = classify_transport(&e);
            // A certificate APNs' host does not present (or a wrong options.ca_file) is
            // configuration, not weather: it opens the circuit and alerts.
            if c.detail().to_ascii_lowercase().contains("certificate") {
                SendError::Provider {
                    code: "apns_tls_untrusted".into(),
                    detail: c.detail().to_string(),
                }
            } else {
                c
            }
        })?;
        let status = resp.status().as_u16();
        let id = resp
            .headers()
            .get("apns-id")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let wait = retry_after(resp.headers());
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        let reason = answer["reason"].as_str().unwrap_or("").to_string();
        Ok((id, status, reason, wait))
    }

    async fn push_device(
        &self,
        m: &Claimed,
        device: &ApnsToken,
        body: &[u8],
        collapse: Option<&str>,
    ) -> Result<Option<String>, SendError> {
        let mut jwt = self.provider_token(None)?;
        for round in 0..2 {
            let (id, status, reason, wait) = self.send_one(m, device, &jwt, body, collapse).await?;
            if status == 200 {
                return Ok(id);
            }
            if status == 403 && reason == "ExpiredProviderToken" && round == 0 {
                jwt = self.provider_token(Some(&jwt))?;
                continue;
            }
            let code = if reason.is_empty() {
                format!("apns_http_{status}")
            } else {
                format!("apns_{}", reason.to_ascii_lowercase())
            };
            let retry = match reason.as_str() {
                "TooManyProviderTokenUpdates" => Some(wait.unwrap_or(Duration::from_secs(60))),
                _ => wait,
            };
            return Err(super::common::error(
                classify(status, &reason),
                code,
                format!("HTTP {status}: {reason}"),
                retry,
            ));
        }
        Err(SendError::Provider {
            code: "apns_expiredprovidertoken".into(),
            detail: "APNs refused a freshly minted provider token".into(),
        })
    }
}

/// Reasons that mean the device token is no longer good.
fn gone(code: &str) -> bool {
    matches!(
        code,
        "apns_unregistered"
            | "apns_expiredtoken"
            | "apns_baddevicetoken"
            | "apns_devicetokennotfortopic"
    )
}

#[async_trait]
impl Provider for ApnsProvider {
    crate::provider_basics!("apns", Channel::Push);

    fn cannot_carry(&self, m: &Claimed) -> Option<String> {
        match push::target(m) {
            Ok(t) if t.apns.is_empty() => {
                Some(format!("contact `{}` has no APNs device token", t.contact))
            }
            _ => None,
        }
    }

    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        let target = push::target(m)?;
        let n = Notification::of(m);
        let body = Self::payload(m, &n);
        let collapse = n.collapse_key.as_deref().filter(|k| k.len() <= 64);
        if body.len() > MAX_PAYLOAD {
            return Err(SendError::Rejected {
                code: "apns_payloadtoolarge".into(),
                detail: "the title alone does not fit an APNs payload".into(),
            });
        }
        let mut outcomes = push::Outcomes::default();
        let mut dropped = Vec::new();
        for device in &target.apns {
            let r = self.push_device(m, device, &body, collapse).await;
            if r.as_ref().is_err_and(|e| gone(e.code())) {
                dropped.push(device.token.clone());
            }
            outcomes.add(r);
        }
        if !dropped.is_empty() {
            push::forget(self.contacts.as_ref(), &target.contact, "apns", |c| {
                let before = c.push.apns.len();
                c.push.apns.retain(|t| !dropped.contains(&t.token));
                c.push.apns.len() != before
            })
            .await;
        }
        outcomes.finish(&format!(
            "contact `{}` had no APNs device token",
            target.contact
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minted(iat: i64, after_refusal: bool) -> Minted {
        Minted {
            token: format!("t{iat}"),
            iat,
            after_refusal,
        }
    }

    #[test]
    fn provider_tokens_follow_apples_refresh_rules() {
        let t0 = 1_800_000_000;
        assert_eq!(
            token_step(t0, None, None),
            TokenStep::Mint {
                iat: t0,
                after_refusal: false
            }
        );
        let cur = minted(t0, false);
        // Reused for 50 minutes, whatever the traffic.
        for dt in [0, 1, 60, 20 * 60, 49 * 60 + 59] {
            assert_eq!(
                token_step(t0 + dt, Some(&cur), None),
                TokenStep::Reuse,
                "{dt}"
            );
        }
        assert_eq!(
            token_step(t0 + 50 * 60, Some(&cur), None),
            TokenStep::Mint {
                iat: t0 + 3000,
                after_refusal: false
            }
        );
        // Called expired: minted again once, with a later iat even within the same second.
        assert_eq!(
            token_step(t0, Some(&cur), Some("t1800000000")),
            TokenStep::Mint {
                iat: t0 + 1,
                after_refusal: true
            }
        );
        // Another request already replaced the refused token: use the new one.
        assert_eq!(
            token_step(t0 + 5, Some(&minted(t0 + 1, true)), Some("t1800000000")),
            TokenStep::Reuse
        );
        // The replacement is called expired too, within 20 minutes: stop.
        let again = minted(t0 + 1, true);
        assert_eq!(
            token_step(t0 + 10, Some(&again), Some("t1800000001")),
            TokenStep::GiveUp
        );
        assert_eq!(
            token_step(t0 + 1 + 20 * 60, Some(&again), Some("t1800000001")),
            TokenStep::Mint {
                iat: t0 + 1 + 20 * 60,
                after_refusal: true
            }
        );
    }

    /// Every reason of PUSH.md §3.3.
    #[test]
    fn apns_reasons_get_their_classes() {
        use ErrorClass::*;
        for r in [
            "BadCollapseId",
            "BadExpirationDate",
            "BadMessageId",
            "BadPriority",
            "BadTopic",
            "DuplicateHeaders",
            "InvalidPushType",
            "MissingTopic",
            "PayloadEmpty",
            "TopicDisallowed",
            "MissingDeviceToken",
        ] {
            assert_eq!(classify(400, r), Rejected, "{r}");
        }
        assert_eq!(classify(400, "BadDeviceToken"), Recipient);
        assert_eq!(classify(400, "DeviceTokenNotForTopic"), Recipient);
        assert_eq!(classify(400, "IdleTimeout"), Transient);
        assert_eq!(classify(403, "ExpiredProviderToken"), Transient);
        for r in [
            "InvalidProviderToken",
            "MissingProviderToken",
            "BadCertificate",
            "BadCertificateEnvironment",
            "Forbidden",
            "UnrelatedKeyIdInToken",
            "BadEnvironmentKeyIdInToken",
            "BadEnvironmentKeyInToken",
        ] {
            assert_eq!(classify(403, r), Provider, "{r}");
        }
        assert_eq!(classify(404, "BadPath"), Rejected);
        assert_eq!(classify(405, "MethodNotAllowed"), Rejected);
        assert_eq!(classify(410, "Unregistered"), Recipient);
        assert_eq!(classify(410, "ExpiredToken"), Recipient);
        assert_eq!(classify(413, "PayloadTooLarge"), Rejected);
        assert_eq!(classify(429, "TooManyProviderTokenUpdates"), Transient);
        assert_eq!(classify(429, "TooManyRequests"), Transient);
        assert_eq!(classify(500, "InternalServerError"), Transient);
        assert_eq!(classify(503, "ServiceUnavailable"), Transient);
        assert_eq!(classify(503, "Shutdown"), Transient);
        assert!(
            gone("apns_unregistered")
                && gone("apns_baddevicetoken")
                && !gone("apns_toomanyrequests")
        );
    }

    #[test]
    fn apns_ids_are_canonical_uuids_stable_per_delivery() {
        let a = apns_id("dlv_01J00000000000000000000000");
        assert_eq!(a, apns_id("dlv_01J00000000000000000000000"));
        assert_ne!(a, apns_id("dlv_01J00000000000000000000001"));
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert!(
            a.bytes()
                .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
}
