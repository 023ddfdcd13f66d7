//! The `webpush` provider (channel `push`): each of the contact's browser subscriptions gets
//! the message encrypted for it (RFC 8291) with a VAPID token (RFC 8292, one per push-service
//! origin, reused while it lasts) in an RFC 8030 request. A subscription the push service
//! says is gone (404, 410) is removed from the contact (audited as `system`).

use super::ece;
use super::vapid::{JwtCache, VapidKey};
use crate::config::{ProviderConfig, Secret};
use crate::core::contact::WebPushSubscription;
use crate::core::ssrf::HostPolicy;
use crate::core::types::{Channel, Priority, now_millis};
use crate::providers::push::{self, Notification};
use crate::providers::{Provider, Receipt, SendError, classify_transport, retry_after};
use crate::store::{Claimed, Contacts};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Push services browsers use: the hosts a subscription endpoint may name by default (the
/// endpoint comes from a browser, through an API client: it is not trusted).
pub const PUSH_SERVICES: &[&str] = &[
    "fcm.googleapis.com",
    "updates.push.services.mozilla.com",
    "*.push.services.mozilla.com",
    "web.push.apple.com",
    "*.notify.windows.com",
];

pub struct WebPushProvider {
    id: String,
    priority: u32,
    weight: u32,
    key: VapidKey,
    subject: String,
    jwts: JwtCache,
    http: reqwest::Client,
    timeout: Option<Duration>,
    policy: HostPolicy,
    contacts: Option<Arc<dyn Contacts>>,
}

/// A VAPID subject push services take: `https://…`, or `mailto:` an address with a real
/// domain (Apple refuses `mailto:x@localhost` and spaces).
fn valid_subject(s: &str) -> bool {
    if s.starts_with("https://") {
        return url::Url::parse(s).is_ok();
    }
    match s.strip_prefix("mailto:") {
        Some(addr) => {
            crate::core::addresses::valid_email(addr).is_ok()
                && addr.rsplit_once('@').is_some_and(|(_, d)| d.contains('.'))
        }
        None => false,
    }
}

impl WebPushProvider {
    pub fn from_config(
        cfg: &ProviderConfig,
        idle: usize,
        contacts: Option<Arc<dyn Contacts>>,
    ) -> Result<Self, String> {
        let id = &cfg.id;
        for k in cfg.credentials.keys() {
            if k != "vapid_private_key" {
                return Err(format!(
                    "providers `{id}`: unknown credential `{k}` (webpush takes `vapid_private_key`)"
                ));
            }
        }
        for k in cfg.options.keys() {
            if k != "subject" && k != "allowed_hosts" {
                return Err(format!(
                    "providers `{id}`: unknown option `{k}` (webpush takes `subject`, `allowed_hosts`)"
                ));
            }
        }
        let key = cfg
            .credentials
            .get("vapid_private_key")
            .map(Secret::expose)
            .ok_or_else(|| {
                format!("providers `{id}`: credentials.vapid_private_key is required (`herald push keygen` makes one)")
            })
            .and_then(|k| {
                VapidKey::from_private_b64(k)
                    .map_err(|m| format!("providers `{id}`: credentials.vapid_private_key {m}"))
            })?;
        let subject = cfg
            .options
            .get("subject")
            .and_then(|v| v.as_str())
            .filter(|s| valid_subject(s))
            .ok_or_else(|| {
                format!("providers `{id}`: options.subject must be `mailto:` a real address or an `https://` URL (push services refuse others)")
            })?
            .to_string();
        let hosts: Vec<String> = match cfg.options.get("allowed_hosts") {
            None => PUSH_SERVICES.iter().map(|s| s.to_string()).collect(),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    format!("providers `{id}`: options.allowed_hosts must be a list of host names")
                })?,
            Some(_) => {
                return Err(format!(
                    "providers `{id}`: options.allowed_hosts must be a list of host names"
                ));
            }
        };
        let timeout = cfg.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(10));
        let policy = HostPolicy::new(&hosts);
        let http = crate::providers::webhook::client(&policy, timeout, idle)
            .map_err(|e| format!("providers `{id}`: HTTP client: {e}"))?;
        Ok(WebPushProvider {
            id: id.clone(),
            priority: cfg.priority,
            weight: cfg.weight,
            key,
            subject,
            jwts: JwtCache::default(),
            http,
            timeout: cfg.timeout.map(|d| d.0),
            policy,
            contacts,
        })
    }

    /// The browsers' `applicationServerKey`.
    pub fn public_key(&self) -> String {
        self.key.public_b64()
    }

    /// What the service worker receives: JSON, cut to fit one record (the tag to 32
    /// characters, the title to 120, then the body as far as needed); `None` when even an
    /// empty body does not fit.
    fn payload(m: &Claimed) -> Option<Vec<u8>> {
        let n = Notification::of(m);
        let doc = |body: &str| {
            serde_json::to_vec(&json!({
                "title": n.title, "body": body, "id": m.message_id, "priority": m.priority, "tag": n.tag,
            }))
            .unwrap_or_default()
        };
        let full = doc(&n.body);
        if full.len() <= ece::MAX_PLAINTEXT {
            return Some(full);
        }
        // Halve what is kept until it fits (bounded: at most ~12 rounds for 4 KiB).
        let mut keep = n.body.chars().count();
        while keep > 0 {
            keep /= 2;
            let cut: String = n.body.chars().take(keep).collect();
            let bytes = doc(&(cut + "…"));
            if bytes.len() <= ece::MAX_PLAINTEXT {
                return Some(bytes);
            }
        }
        let empty = doc("");
        (empty.len() <= ece::MAX_PLAINTEXT).then_some(empty)
    }

    /// Refuses an endpoint whose host is an IP literal the policy does not allow: reqwest
    /// never asks the guarded resolver about those.
    fn check_literal(&self, endpoint: &str) -> Result<(), SendError> {
        let Ok(u) = url::Url::parse(endpoint) else {
            return Ok(()); // refused when sent
        };
        let ip: Option<std::net::IpAddr> = match u.host() {
            Some(url::Host::Ipv4(ip)) => Some(ip.into()),
            Some(url::Host::Ipv6(ip)) => Some(ip.into()),
            _ => None,
        };
        match ip {
            Some(ip) => {
                self.policy
                    .check_ip(&ip.to_string(), ip)
                    .map_err(|e| SendError::Recipient {
                        code: "ssrf_blocked".into(),
                        detail: format!("push endpoint refused: {e} (options.allowed_hosts)"),
                    })
            }
            None => Ok(()),
        }
    }

    async fn push_one(
        &self,
        sub: &WebPushSubscription,
        m: &Claimed,
        plain: &[u8],
    ) -> Result<Option<String>, SendError> {
        let rejected = |code: &str, detail: String| SendError::Rejected {
            code: code.into(),
            detail,
        };
        self.check_literal(&sub.endpoint)?;
        let origin = crate::core::fair::origin(&sub.endpoint).ok_or_else(|| {
            rejected(
                "bad_push_endpoint",
                "the subscription's endpoint is not an http(s) URL".into(),
            )
        })?;
        let ua = URL_SAFE_NO_PAD.decode(&sub.keys.p256dh).unwrap_or_default();
        let auth = URL_SAFE_NO_PAD.decode(&sub.keys.auth).unwrap_or_default();
        let body = ece::encrypt(plain, &ua, &auth).map_err(|e| SendError::Recipient {
            code: "bad_push_subscription".into(),
            detail: e.to_string(),
        })?;
        let jwt = self.jwts.get(
            &self.key,
            &origin,
            &self.subject,
            now_millis() / 1000,
            || {},
        );
        let ttl = ((m.expires_at - now_millis()) / 1000).max(0);
        let urgency = match m.priority {
            Priority::Critical | Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        };
        let mut req = self
            .http
            .post(&sub.endpoint)
            .header("ttl", ttl.to_string())
            .header("urgency", urgency)
            .header("content-encoding", "aes128gcm")
            .header("content-type", "application/octet-stream")
            .header("authorization", self.key.authorization(&jwt));
        if let Some(topic) = m.metadata.get("collapse_key").and_then(|v| v.as_str())
            && !topic.is_empty()
            && topic.len() <= 32
            && topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            req = req.header("topic", topic);
        }
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let location = headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let text: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let detail = format!("HTTP {status}: {text}");
        match status {
            200..=299 => Ok(location),
            404 | 410 => Err(SendError::Recipient {
                code: "push_subscription_gone".into(),
                detail,
            }),
            413 => Err(rejected("push_payload_too_large", detail)),
            // Refused for this subscription (made with another VAPID key, or malformed at the
            // push service): the subscription's fault, not the provider's, so the circuit for
            // every other contact's pushes stays closed.
            400 | 401 | 403 => Err(SendError::Recipient {
                code: format!("push_{status}"),
                detail,
            }),
            _ => Err(SendError::Transient {
                code: if status == 429 {
                    "rate_limited".into()
                } else {
                    format!("http_{status}")
                },
                detail,
                retry_after: retry_after(&headers),
            }),
        }
    }
}

#[async_trait]
impl Provider for WebPushProvider {
    fn id(&self) -> &str {
        &self.id
    }
    fn kind(&self) -> &'static str {
        "webpush"
    }
    fn channel(&self) -> Channel {
        Channel::Push
    }
    fn priority(&self) -> u32 {
        self.priority
    }
    fn weight(&self) -> u32 {
        self.weight
    }

    fn cannot_carry(&self, m: &Claimed) -> Option<String> {
        match push::target(m) {
            Ok(t) if t.webpush.is_empty() => Some(format!(
                "contact `{}` has no Web Push subscription",
                t.contact
            )),
            _ => None,
        }
    }

    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        let target = push::target(m)?;
        let Some(plain) = Self::payload(m) else {
            return Err(SendError::Rejected {
                code: "push_payload_too_large".into(),
                detail: "the title and tag alone do not fit a push message".into(),
            });
        };
        let mut outcomes = push::Outcomes::default();
        let mut gone = Vec::new();
        for sub in &target.webpush {
            let r = self.push_one(sub, m, &plain).await;
            if r.as_ref()
                .is_err_and(|e| e.code() == "push_subscription_gone")
            {
                gone.push(sub.endpoint.clone());
            }
            outcomes.add(r);
        }
        if !gone.is_empty() {
            push::forget(self.contacts.as_ref(), &target.contact, "webpush", |c| {
                let before = c.push.webpush.len();
                c.push.webpush.retain(|s| !gone.contains(&s.endpoint));
                c.push.webpush.len() != before
            })
            .await;
        }
        outcomes.finish(&format!(
            "contact `{}` had no Web Push subscription",
            target.contact
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::valid_subject;

    #[test]
    fn subjects_push_services_take() {
        assert!(valid_subject("mailto:ops@example.com"));
        assert!(valid_subject("https://herald.example.com/contact"));
        assert!(!valid_subject("mailto:ops@localhost"));
        assert!(!valid_subject("mailto: <ops@example.com>"));
        assert!(!valid_subject("ops@example.com"));
        assert!(!valid_subject("http://herald.example.com"));
    }
}
