//! Firebase Cloud Messaging HTTP v1 (`kind = "fcm"`, channel `push`): a service account's
//! OAuth 2.0 JWT-bearer grant (RS256, RFC 7523) at the `token_uri` of its JSON file, the
//! access token kept until five minutes before it expires (one refresh, shared by every
//! send), then one `messages:send` per registration token of the contact. An expired access
//! token (401 without an FCM error code) is refreshed once; UNREGISTERED and
//! SENDER_ID_MISMATCH take the token off the contact.

use super::common::{Base, check_keys, required_cred};
use super::jwt::SigningKey;
use super::push::{self, Notification};
use super::{Provider, Receipt, SendError, classify_transport, retry_after};
use crate::config::ProviderConfig;
use crate::core::types::{Channel, ErrorClass, Priority, now_millis};
use crate::store::{Claimed, Contacts};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// An access token is replaced this long before Google says it expires.
const RENEW_BEFORE_MS: i64 = 5 * 60 * 1000;

/// The parts of a service-account JSON file Herald uses.
#[derive(Debug, serde::Deserialize)]
pub struct ServiceAccount {
    #[serde(rename = "type")]
    pub kind: String,
    pub project_id: String,
    pub private_key_id: String,
    pub private_key: String,
    pub client_email: String,
    pub token_uri: String,
}

impl ServiceAccount {
    /// From the file's text, or from a path to it.
    pub fn read(text_or_path: &str) -> Result<ServiceAccount, String> {
        let text = if text_or_path.trim_start().starts_with('{') {
            text_or_path.to_string()
        } else {
            std::fs::read_to_string(text_or_path.trim())
                .map_err(|e| format!("cannot read the file `{}`: {e}", text_or_path.trim()))?
        };
        let sa: ServiceAccount = serde_json::from_str(&text)
            .map_err(|e| format!("is not a service-account JSON file: {e}"))?;
        if sa.kind != "service_account" {
            return Err(format!("has type `{}`, not `service_account`", sa.kind));
        }
        let u = url::Url::parse(&sa.token_uri).map_err(|e| format!("token_uri: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err("token_uri must be an http(s) URL".into());
        }
        Ok(sa)
    }
}

pub struct FcmProvider {
    base: Base,
    account: ServiceAccount,
    key: SigningKey,
    validate_only: bool,
    http: reqwest::Client,
    /// The access token and when it stops being used (Unix ms).
    token: tokio::sync::Mutex<Option<(String, i64)>>,
    contacts: Option<Arc<dyn Contacts>>,
}

/// What one `messages:send` came to.
enum Sent {
    Ok(Option<String>),
    /// The access token was refused: refresh once.
    Unauthenticated,
    Err(SendError),
}

/// FCM's error code (in `details`), else the canonical status.
fn error_code(body: &Value) -> (Option<String>, String) {
    let fcm = body["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| {
            d["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with("google.firebase.fcm.v1.FcmError"))
        })
        .and_then(|d| d["errorCode"].as_str())
        .map(String::from);
    let status = body["error"]["status"].as_str().unwrap_or("").to_string();
    (fcm, status)
}

/// The class of an FCM answer by HTTP status first, then error code (PUSH.md §2.3).
/// `None` for a 401 that only asks for a fresh access token.
pub fn classify(status: u16, body: &Value) -> Option<(ErrorClass, String)> {
    let (fcm, canonical) = error_code(body);
    let code = fcm.clone().unwrap_or_else(|| {
        if canonical.is_empty() {
            format!("http_{status}")
        } else {
            canonical.clone()
        }
    });
    let message = body["error"]["message"].as_str().unwrap_or("");
    let class = match (status, fcm.as_deref()) {
        (401, Some("THIRD_PARTY_AUTH_ERROR")) => ErrorClass::Provider,
        (401, _) => return None,
        (404, _) | (403, Some("SENDER_ID_MISMATCH")) => ErrorClass::Recipient,
        (400, _) if message.to_ascii_lowercase().contains("registration token") => {
            ErrorClass::Recipient
        }
        (400, _) | (413, _) => ErrorClass::Rejected,
        (403, _) => ErrorClass::Provider,
        (408 | 429, _) | (500..=599, _) => ErrorClass::Transient,
        _ => ErrorClass::Rejected,
    };
    Some((class, code.to_ascii_lowercase()))
}

impl FcmProvider {
    pub fn from_config(
        cfg: &ProviderConfig,
        http: reqwest::Client,
        contacts: Option<Arc<dyn Contacts>>,
    ) -> Result<Self, String> {
        check_keys(cfg, &["service_account_json"], &["validate_only"])?;
        let id = &cfg.id;
        let account = ServiceAccount::read(required_cred(cfg, "service_account_json")?.expose())
            .map_err(|m| format!("providers `{id}`: credentials.service_account_json {m}"))?;
        let key = SigningKey::rs256_pem(&account.private_key).map_err(|m| {
            format!("providers `{id}`: credentials.service_account_json: private_key {m}")
        })?;
        let validate_only = match cfg.options.get("validate_only") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => {
                return Err(format!(
                    "providers `{id}`: options.validate_only must be true or false"
                ));
            }
        };
        Ok(FcmProvider {
            base: Base::new(cfg, "https://fcm.googleapis.com")?,
            account,
            key,
            validate_only,
            http,
            token: tokio::sync::Mutex::new(None),
            contacts,
        })
    }

    /// The access token, fetched when none is kept or it is near its end (`stale` is the one
    /// just refused: replaced even if it looks fresh). One fetch at a time.
    async fn access_token(&self, stale: Option<&str>) -> Result<String, SendError> {
        let mut kept = self.token.lock().await;
        let now = now_millis();
        if let Some((t, until)) = kept.as_ref()
            && *until > now
            && Some(t.as_str()) != stale
        {
            return Ok(t.clone());
        }
        let secs = now / 1000;
        let assertion = self
            .key
            .sign(
                json!({"typ": "JWT", "kid": self.account.private_key_id}),
                &json!({
                    "iss": self.account.client_email, "scope": SCOPE,
                    "aud": self.account.token_uri, "iat": secs, "exp": secs + 3600,
                }),
            )
            .map_err(|m| SendError::Provider {
                code: "fcm_signing_failed".into(),
                detail: m,
            })?;
        let resp = self
            .http
            .post(&self.account.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .timeout(self.base.timeout)
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let detail = format!(
            "token endpoint HTTP {status}: {} {}",
            body["error"].as_str().unwrap_or(""),
            body["error_description"].as_str().unwrap_or("")
        );
        match status {
            200 => {}
            429 | 500..=599 => {
                return Err(SendError::Transient {
                    code: "fcm_token_unavailable".into(),
                    detail,
                    retry_after: retry_after(&headers),
                });
            }
            _ => {
                return Err(SendError::Provider {
                    code: "fcm_auth_failed".into(),
                    detail,
                });
            }
        }
        let (Some(token), Some(expires_in)) =
            (body["access_token"].as_str(), body["expires_in"].as_i64())
        else {
            return Err(SendError::Transient {
                code: "fcm_token_unavailable".into(),
                detail: "the token endpoint's answer has no access_token/expires_in".into(),
                retry_after: None,
            });
        };
        let until = now + (expires_in * 1000 - RENEW_BEFORE_MS).max(0);
        *kept = Some((token.to_string(), until));
        Ok(token.to_string())
    }

    /// The `messages:send` body for one registration token.
    pub fn body(&self, m: &Claimed, token: &str) -> Value {
        let n = Notification::of(m);
        let ttl = ((m.expires_at - now_millis()) / 1000).clamp(0, 2_419_200);
        let urgent = matches!(m.priority, Priority::Critical | Priority::High);
        let mut android =
            json!({"priority": if urgent {"HIGH"} else {"NORMAL"}, "ttl": format!("{ttl}s")});
        let mut apns_headers = json!({
            "apns-priority": if urgent {"10"} else {"5"},
            "apns-expiration": ((m.expires_at / 1000).max(0)).to_string(),
        });
        if let Some(k) = &n.collapse_key {
            android["collapse_key"] = json!(k);
            if k.len() <= 64 {
                apns_headers["apns-collapse-id"] = json!(k);
            }
        }
        let mut aps = json!({"sound": "default"});
        if m.priority == Priority::Critical {
            aps["interruption-level"] = json!("time-sensitive");
        }
        json!({
            "validate_only": self.validate_only,
            "message": {
                "token": token,
                "notification": {"title": n.title, "body": n.body},
                "data": {"message_id": m.message_id, "priority": m.priority.to_string(), "tag": n.tag},
                "android": android,
                "apns": {"headers": apns_headers, "payload": {"aps": aps}},
            }
        })
    }

    async fn send_one(&self, m: &Claimed, token: &str, access: &str) -> Sent {
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.base.endpoint, self.account.project_id
        );
        let resp = match self
            .http
            .post(url)
            .bearer_auth(access)
            .json(&self.body(m, token))
            .timeout(self.base.timeout)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Sent::Err(classify_transport(&e)),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Sent::Ok(body["name"].as_str().map(String::from));
        }
        let detail = format!(
            "HTTP {status}: {}",
            body["error"]["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| text.chars().take(200).collect())
        );
        match classify(status, &body) {
            None => Sent::Unauthenticated,
            Some((class, code)) => Sent::Err(super::common::error(
                class,
                format!("fcm_{code}"),
                detail,
                retry_after(&headers),
            )),
        }
    }
}

#[async_trait]
impl Provider for FcmProvider {
    crate::provider_basics!("fcm", Channel::Push);

    fn cannot_carry(&self, m: &Claimed) -> Option<String> {
        match push::target(m) {
            Ok(t) if t.fcm.is_empty() => Some(format!(
                "contact `{}` has no FCM registration token",
                t.contact
            )),
            _ => None,
        }
    }

    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        let target = push::target(m)?;
        let mut access = self.access_token(None).await?;
        let mut refreshed = false;
        let mut outcomes = push::Outcomes::default();
        let mut gone = Vec::new();
        for token in &target.fcm {
            let mut sent = self.send_one(m, token, &access).await;
            if matches!(sent, Sent::Unauthenticated) && !refreshed {
                refreshed = true;
                access = self.access_token(Some(&access)).await?;
                sent = self.send_one(m, token, &access).await;
            }
            let r = match sent {
                Sent::Ok(name) => Ok(name),
                Sent::Unauthenticated => Err(SendError::Provider {
                    code: "fcm_unauthenticated".into(),
                    detail: "FCM refused a freshly issued access token".into(),
                }),
                Sent::Err(e) => {
                    // Gone, another project's, or a token FCM calls malformed: no use keeping.
                    let bad_token = e.code() == "fcm_invalid_argument"
                        && matches!(e, SendError::Recipient { .. });
                    if bad_token
                        || matches!(e.code(), "fcm_unregistered" | "fcm_sender_id_mismatch")
                    {
                        gone.push(token.clone());
                    }
                    Err(e)
                }
            };
            outcomes.add(r);
        }
        if !gone.is_empty() {
            push::forget(self.contacts.as_ref(), &target.contact, "fcm", |c| {
                let before = c.push.fcm.len();
                c.push.fcm.retain(|t| !gone.contains(t));
                c.push.fcm.len() != before
            })
            .await;
        }
        outcomes.finish(&format!(
            "contact `{}` had no FCM registration token",
            target.contact
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, fcm: Option<&str>, canonical: &str, message: &str) -> Value {
        let details: Vec<Value> = fcm
            .map(|c| json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}))
            .into_iter()
            .collect();
        json!({"error": {"code": status, "message": message, "status": canonical, "details": details}})
    }

    /// Every row of PUSH.md §2.3.
    #[test]
    fn fcm_errors_get_their_classes() {
        use ErrorClass::*;
        for (status, fcm, canonical, message, class, code) in [
            (
                400,
                Some("INVALID_ARGUMENT"),
                "INVALID_ARGUMENT",
                "Invalid value at 'message.data[0].value'",
                Rejected,
                "invalid_argument",
            ),
            (
                400,
                Some("INVALID_ARGUMENT"),
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                Recipient,
                "invalid_argument",
            ),
            (
                401,
                Some("THIRD_PARTY_AUTH_ERROR"),
                "UNAUTHENTICATED",
                "Auth error from APNS or Web Push Service",
                Provider,
                "third_party_auth_error",
            ),
            (
                403,
                Some("SENDER_ID_MISMATCH"),
                "PERMISSION_DENIED",
                "SenderId mismatch",
                Recipient,
                "sender_id_mismatch",
            ),
            (
                404,
                Some("UNREGISTERED"),
                "NOT_FOUND",
                "Requested entity was not found.",
                Recipient,
                "unregistered",
            ),
            (
                429,
                Some("QUOTA_EXCEEDED"),
                "RESOURCE_EXHAUSTED",
                "Quota exceeded",
                Transient,
                "quota_exceeded",
            ),
            (
                429,
                None,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric",
                Transient,
                "resource_exhausted",
            ),
            (
                503,
                Some("UNAVAILABLE"),
                "UNAVAILABLE",
                "The service is currently unavailable.",
                Transient,
                "unavailable",
            ),
            (
                500,
                Some("INTERNAL"),
                "INTERNAL",
                "Internal error encountered.",
                Transient,
                "internal",
            ),
            (
                500,
                Some("UNSPECIFIED_ERROR"),
                "INTERNAL",
                "",
                Transient,
                "unspecified_error",
            ),
            (
                403,
                Some("UNSPECIFIED_ERROR"),
                "PERMISSION_DENIED",
                "",
                Provider,
                "unspecified_error",
            ),
        ] {
            assert_eq!(
                classify(status, &err(status, fcm, canonical, message)),
                Some((class, code.to_string())),
                "{status} {fcm:?}"
            );
        }
        assert_eq!(classify(401, &err(401, None, "UNAUTHENTICATED", "")), None);
        assert_eq!(
            classify(502, &Value::Null),
            Some((Transient, "http_502".into())),
            "an HTML 502 from a proxy"
        );
    }

    #[test]
    fn service_accounts_are_read_strictly() {
        assert!(
            ServiceAccount::read("{}")
                .unwrap_err()
                .contains("service-account")
        );
        let sa = json!({"type": "authorized_user", "project_id": "p", "private_key_id": "k",
            "private_key": "", "client_email": "a@b", "token_uri": "https://oauth2.googleapis.com/token"});
        assert!(
            ServiceAccount::read(&sa.to_string())
                .unwrap_err()
                .contains("authorized_user")
        );
        assert!(
            ServiceAccount::read("/nonexistent/sa.json")
                .unwrap_err()
                .contains("cannot read")
        );
    }
}
