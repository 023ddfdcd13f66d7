//! Providers: one module per kind behind one small trait. A provider only builds its request
//! and classifies the outcome; retries, routing and bookkeeping live in `worker/`.

pub mod aliyun;
pub mod aliyun_vms;
pub mod apns;
pub mod common;
pub mod dingtalk;
pub mod endpoints;
pub mod fcm;
pub mod feishu;
pub mod inbox;
pub mod jwt;
pub mod limiter;
pub mod push;
pub mod registry;
pub mod signing;
pub mod slack;
pub mod smtp;
pub mod teams;
pub mod twilio;
pub mod twilio_voice;
pub mod webhook;
pub mod webpush;
pub mod wecom;

pub use registry::Registry;

use crate::core::types::{Channel, ErrorClass};
use crate::store::Claimed;
use async_trait::async_trait;
use std::time::Duration;

/// A provider accepted the message.
#[derive(Debug, Clone, Default)]
pub struct Receipt {
    pub provider_message_id: Option<String>,
}

/// Why a provider call failed, in SPEC's four classes, with a stable `code`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    #[error("transient: {code}: {detail}")]
    Transient {
        code: String,
        detail: String,
        retry_after: Option<Duration>,
    },
    #[error("recipient: {code}: {detail}")]
    Recipient { code: String, detail: String },
    #[error("provider: {code}: {detail}")]
    Provider { code: String, detail: String },
    #[error("rejected: {code}: {detail}")]
    Rejected { code: String, detail: String },
}

impl SendError {
    pub fn class(&self) -> ErrorClass {
        match self {
            SendError::Transient { .. } => ErrorClass::Transient,
            SendError::Recipient { .. } => ErrorClass::Recipient,
            SendError::Provider { .. } => ErrorClass::Provider,
            SendError::Rejected { .. } => ErrorClass::Rejected,
        }
    }
    pub fn code(&self) -> &str {
        match self {
            SendError::Transient { code, .. }
            | SendError::Recipient { code, .. }
            | SendError::Provider { code, .. }
            | SendError::Rejected { code, .. } => code,
        }
    }
    pub fn detail(&self) -> &str {
        match self {
            SendError::Transient { detail, .. }
            | SendError::Recipient { detail, .. }
            | SendError::Provider { detail, .. }
            | SendError::Rejected { detail, .. } => detail,
        }
    }
    /// Whether this failure says something about the provider's health (for its circuit).
    /// A transient refusal of one recipient (SMTP 450/451/452: greylisting, a full
    /// mailbox) does not.
    pub fn provider_fault(&self) -> bool {
        match self {
            SendError::Transient { code, .. } => !["smtp_450", "smtp_451", "smtp_452"]
                .iter()
                .any(|p| code.starts_with(p)),
            SendError::Provider { .. } => true,
            SendError::Recipient { .. } | SendError::Rejected { .. } => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// The configured id (`aliyun-main`); built-in providers use their kind.
    fn id(&self) -> &str;
    /// The kind (`webhook`), for logs.
    fn kind(&self) -> &'static str;
    fn channel(&self) -> Channel;
    /// Lower is tried first.
    fn priority(&self) -> u32 {
        1
    }
    /// Share among providers of equal priority.
    fn weight(&self) -> u32 {
        100
    }
    /// For a provider whose target comes from the message (a webhook URL), the endpoint a
    /// delivery to `to` goes to: health, circuit and concurrency are then kept per endpoint,
    /// so one bad receiver slows only itself. `None` for providers that are one service.
    fn endpoint(&self, _to: &str) -> Option<String> {
        None
    }
    /// Why this provider cannot carry `m` at all (an Aliyun message with no template code,
    /// a Twilio one with no text), if it cannot: the router passes it by without calling
    /// it, so such a message never touches the provider's health.
    fn cannot_carry(&self, _m: &Claimed) -> Option<String> {
        None
    }
    /// Limits per recipient the provider's service enforces itself (Aliyun VMS per callee):
    /// Herald keeps under them, so that the service never has to refuse.
    fn recipient_limits(&self) -> &[crate::config::Rate] {
        &[]
    }
    /// Whether [`Provider::endpoint`] keeps health per endpoint for this provider.
    fn per_endpoint(&self) -> bool {
        false
    }
    async fn send(&self, msg: &Claimed) -> Result<Receipt, SendError>;
}

/// The classification every HTTP provider shares: 2xx sent; 408, 429 and 5xx transient
/// (with `Retry-After`); 3xx and other 4xx rejected.
pub fn classify_http(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body_hint: &str,
) -> Result<(), SendError> {
    let code = status.as_u16();
    let detail = if body_hint.is_empty() {
        format!("HTTP {code}")
    } else {
        format!(
            "HTTP {code}: {}",
            body_hint.chars().take(200).collect::<String>()
        )
    };
    match code {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(SendError::Transient {
            code: match code {
                429 => "rate_limited".into(),
                408 => "timeout".into(),
                503 => "provider_unavailable".into(),
                _ => format!("http_{code}"),
            },
            detail,
            retry_after: retry_after(headers),
        }),
        _ => Err(SendError::Rejected {
            code: format!("http_{code}"),
            detail,
        }),
    }
}

/// Reads `Retry-After` as seconds or an HTTP date; capped at one day.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let when = httpdate_parse(v)?;
            when.duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        }
    };
    Some(d.min(Duration::from_secs(86_400)))
}

fn httpdate_parse(s: &str) -> Option<std::time::SystemTime> {
    let f = time::format_description::well_known::Rfc2822;
    let t = time::OffsetDateTime::parse(&s.replace("GMT", "+0000"), &f).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(t.unix_timestamp().max(0) as u64))
}

/// Classifies a transport error (no HTTP status).
pub fn classify_transport(e: &reqwest::Error) -> SendError {
    // The whole chain: the guard's refusal sits several errors deep.
    let mut root = String::new();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        root = s.to_string();
        if root.contains("ssrf:") {
            break;
        }
        cur = s.source();
    }
    if root.contains("ssrf:") {
        return SendError::Rejected {
            code: "ssrf_blocked".into(),
            detail: root,
        };
    }
    let code = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection_failed"
    } else {
        "transport_error"
    };
    // Never `e.to_string()`: it carries the URL, and robot URLs carry their access tokens.
    SendError::Transient {
        code: code.into(),
        detail: if root.is_empty() {
            code.replace('_', " ")
        } else {
            root
        },
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn http_statuses_map_to_classes() {
        let h = HeaderMap::new();
        assert!(classify_http(reqwest::StatusCode::OK, &h, "").is_ok());
        assert!(classify_http(reqwest::StatusCode::NO_CONTENT, &h, "").is_ok());
        for (code, class) in [
            (408, ErrorClass::Transient),
            (429, ErrorClass::Transient),
            (500, ErrorClass::Transient),
            (503, ErrorClass::Transient),
            (400, ErrorClass::Rejected),
            (404, ErrorClass::Rejected),
            (301, ErrorClass::Rejected),
        ] {
            let s = reqwest::StatusCode::from_u16(code).unwrap();
            assert_eq!(
                classify_http(s, &h, "").unwrap_err().class(),
                class,
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        let e = classify_http(
            reqwest::StatusCode::TOO_MANY_REQUESTS,
            &{
                let mut h = HeaderMap::new();
                h.insert("retry-after", HeaderValue::from_static("3"));
                h
            },
            "",
        );
        assert_eq!(e.unwrap_err().retry_after(), Some(Duration::from_secs(3)));
    }
}
