//! Microsoft Teams through a Workflows incoming webhook (the successor of Office 365
//! connectors): a `message` carrying one Adaptive Card (the subject as a bold heading, the
//! text or markdown as the body). Workflows answers `202 Accepted`; a removed or disabled
//! flow or a bad `sig` answers 401/403/404, throttling 429 with `Retry-After`.

use super::common::{Base, check_keys, error, post_json};
use super::{Provider, Receipt, SendError};
use crate::config::{ProviderConfig, Rate};
use crate::core::types::{Channel, ErrorClass as C};
use crate::store::Claimed;
use async_trait::async_trait;
use serde_json::{Value, json};
use std::time::Duration;

/// Workflows' HTTP trigger takes bursts, but Teams posts to one channel are throttled at a
/// few a second: stay at 4/s unless configured.
pub fn default_limits() -> Vec<Rate> {
    vec![Rate {
        count: 4,
        per: Duration::from_secs(1),
    }]
}

/// Status → class.
pub fn classify(status: u16) -> C {
    match status {
        408 | 429 | 500..=599 => C::Transient,
        401 | 403 | 404 | 410 => C::Provider,
        _ => C::Rejected,
    }
}

/// The Workflows message for a delivery: one Adaptive Card 1.4.
pub fn card(subject: Option<&str>, text: &str) -> Value {
    let mut body = Vec::new();
    if let Some(s) = subject.filter(|s| !s.is_empty()) {
        body.push(json!({"type": "TextBlock", "text": s, "weight": "Bolder", "size": "Medium", "wrap": true}));
    }
    body.push(json!({"type": "TextBlock", "text": text, "wrap": true}));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            }
        }]
    })
}

pub struct TeamsProvider {
    base: Base,
    url: url::Url,
    http: reqwest::Client,
}

impl TeamsProvider {
    pub fn from_config(cfg: &ProviderConfig, http: reqwest::Client) -> Result<Self, String> {
        check_keys(cfg, &[], &["url"])?;
        Ok(TeamsProvider {
            base: Base::new(cfg, "https://prod.westus.logic.azure.com")?,
            url: Base::robot_url(cfg)?,
            http,
        })
    }
}

#[async_trait]
impl Provider for TeamsProvider {
    crate::provider_basics!("teams", Channel::Chat);

    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        let text = m
            .content
            .markdown
            .clone()
            .or_else(|| m.content.text.clone())
            .unwrap_or_default();
        let a = post_json(
            &self.http,
            self.url.clone(),
            &card(m.content.subject.as_deref(), &text),
            self.base.timeout,
        )
        .await?;
        if (200..300).contains(&a.status) {
            return Ok(Receipt::default());
        }
        // Workflows errors are JSON: {"error": {"code": "…", "message": "…"}}.
        let v: Value = serde_json::from_str(&a.text).unwrap_or(Value::Null);
        let code = v["error"]["code"]
            .as_str()
            .map(|c| c.chars().take(64).collect::<String>())
            .unwrap_or_else(|| format!("http_{}", a.status));
        Err(error(
            classify(a.status),
            code,
            format!(
                "HTTP {}: {}",
                a.status,
                a.text.chars().take(200).collect::<String>()
            ),
            a.retry_after,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_has_the_subject_as_heading_and_the_text() {
        let c = card(Some("db01 down"), "disk **full**");
        let att = &c["attachments"][0];
        assert_eq!(
            att["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(att["content"]["type"], "AdaptiveCard");
        assert_eq!(att["content"]["body"][0]["text"], "db01 down");
        assert_eq!(att["content"]["body"][0]["weight"], "Bolder");
        assert_eq!(att["content"]["body"][1]["text"], "disk **full**");
        assert_eq!(
            card(None, "x")["attachments"][0]["content"]["body"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        assert_eq!(classify(429), C::Transient);
        assert_eq!(classify(404), C::Provider);
        assert_eq!(classify(400), C::Rejected);
    }
}
