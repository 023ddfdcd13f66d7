//! Slack incoming webhook: `{"text": …}` (mrkdwn); success is `200 ok`; errors are plain
//! strings by status. About one message a second per webhook; 429 carries `Retry-After`.

use super::common::{Base, check_keys, error, post_json};
use super::{Provider, Receipt, SendError};
use crate::config::{ProviderConfig, Rate};
use crate::core::types::{Channel, ErrorClass as C};
use crate::store::Claimed;
use async_trait::async_trait;
use serde_json::json;
use std::time::Duration;

pub fn default_limits() -> Vec<Rate> {
    vec![Rate {
        count: 1,
        per: Duration::from_secs(1),
    }]
}

/// Status → class (PROVIDERS.md §4.4).
pub fn classify(status: u16) -> C {
    match status {
        429 | 500..=599 => C::Transient,
        403 | 404 | 410 => C::Provider,
        _ => C::Rejected,
    }
}

pub struct SlackProvider {
    base: Base,
    url: url::Url,
    http: reqwest::Client,
}

impl SlackProvider {
    pub fn from_config(cfg: &ProviderConfig, http: reqwest::Client) -> Result<Self, String> {
        check_keys(cfg, &[], &["url"])?;
        Ok(SlackProvider {
            base: Base::new(cfg, "https://hooks.slack.com")?,
            url: Base::robot_url(cfg)?,
            http,
        })
    }
}

#[async_trait]
impl Provider for SlackProvider {
    crate::provider_basics!("slack", Channel::Chat);

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
            &json!({"text": text, "mrkdwn": true}),
            self.base.timeout,
        )
        .await?;
        if (200..300).contains(&a.status) {
            return Ok(Receipt::default());
        }
        let code = a.text.trim().chars().take(64).collect::<String>();
        let code = if code.is_empty() {
            format!("http_{}", a.status)
        } else {
            code
        };
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
