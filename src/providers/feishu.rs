//! Feishu / Lark custom bot: text, signed in the JSON body (`timestamp` in seconds, `sign`)
//! when the bot has a secret — keyed by "timestamp\nsecret" over an empty message, unlike
//! DingTalk. 5 messages a second and 100 a minute per bot.

use super::common::{Base, check_keys, post_json, robot_outcome};
use super::signing::feishu_sign;
use super::{Provider, Receipt, SendError};
use crate::config::{ProviderConfig, Rate, Secret};
use crate::core::types::{Channel, ErrorClass as C};
use crate::store::Claimed;
use async_trait::async_trait;
use serde_json::{Value, json};
use std::time::Duration;

/// `code` → class (PROVIDERS.md §4.2).
pub const ERRORS: &[(&str, C)] = &[
    ("19021", C::Provider),
    ("19022", C::Provider),
    ("19024", C::Provider),
    ("9499", C::Rejected),
    ("11232", C::Transient),
];

pub fn default_limits() -> Vec<Rate> {
    vec![
        Rate {
            count: 5,
            per: Duration::from_secs(1),
        },
        Rate {
            count: 100,
            per: Duration::from_secs(60),
        },
    ]
}

pub struct FeishuProvider {
    base: Base,
    url: url::Url,
    secret: Option<Secret>,
    http: reqwest::Client,
}

impl FeishuProvider {
    pub fn from_config(cfg: &ProviderConfig, http: reqwest::Client) -> Result<Self, String> {
        check_keys(cfg, &["secret"], &["url"])?;
        Ok(FeishuProvider {
            base: Base::new(cfg, "https://open.feishu.cn")?,
            url: Base::robot_url(cfg)?,
            secret: cfg.credentials.get("secret").cloned(),
            http,
        })
    }
}

pub fn body(m: &Claimed, secret: Option<&str>, now_s: i64) -> Value {
    let text = m
        .content
        .text
        .clone()
        .or_else(|| m.content.markdown.clone())
        .unwrap_or_default();
    let mut b = json!({"msg_type": "text", "content": {"text": text}});
    if let Some(s) = secret {
        b["timestamp"] = json!(now_s.to_string());
        b["sign"] = json!(feishu_sign(s, now_s));
    }
    b
}

#[async_trait]
impl Provider for FeishuProvider {
    crate::provider_basics!("feishu", Channel::Chat);

    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        let now_s = crate::core::types::now_millis() / 1000;
        let b = body(m, self.secret.as_ref().map(Secret::expose), now_s);
        let a = post_json(&self.http, self.url.clone(), &b, self.base.timeout).await?;
        robot_outcome(&a, "code", "msg", ERRORS, None)?;
        Ok(Receipt::default())
    }
}
