//! WeCom group robot: text or markdown; the `key` in the URL is the credential. 20 messages
//! a minute per robot.

use super::common::{Base, check_keys, post_json, robot_outcome};
use super::{Provider, Receipt, SendError};
use crate::config::{ProviderConfig, Rate};
use crate::core::types::{Channel, ErrorClass as C};
use crate::store::Claimed;
use async_trait::async_trait;
use serde_json::{Value, json};
use std::time::Duration;

/// `errcode` → class (PROVIDERS.md §4.3); other non-zero codes are final.
pub const ERRORS: &[(&str, C)] = &[
    ("45009", C::Transient),
    ("93000", C::Provider),
    ("40008", C::Rejected),
    ("44004", C::Rejected),
];

pub fn default_limits() -> Vec<Rate> {
    vec![Rate {
        count: 20,
        per: Duration::from_secs(60),
    }]
}

pub struct WecomProvider {
    base: Base,
    url: url::Url,
    http: reqwest::Client,
}

impl WecomProvider {
    pub fn from_config(cfg: &ProviderConfig, http: reqwest::Client) -> Result<Self, String> {
        check_keys(cfg, &[], &["url"])?;
        Ok(WecomProvider {
            base: Base::new(cfg, "https://qyapi.weixin.qq.com")?,
            url: Base::robot_url(cfg)?,
            http,
        })
    }
}

pub fn body(m: &Claimed) -> Value {
    match &m.content.markdown {
        Some(md) => json!({"msgtype": "markdown", "markdown": {"content": md}}),
        None => {
            json!({"msgtype": "text", "text": {"content": m.content.text.clone().unwrap_or_default()}})
        }
    }
}

#[async_trait]
impl Provider for WecomProvider {
    crate::provider_basics!("wecom", Channel::Chat);

    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        let a = post_json(&self.http, self.url.clone(), &body(m), self.base.timeout).await?;
        robot_outcome(&a, "errcode", "errmsg", ERRORS, Some("45009"))?;
        Ok(Receipt::default())
    }
}
