//! DingTalk custom robot: text or markdown, signed (`timestamp` in ms and `sign` in the URL)
//! when the robot has a secret. 20 messages a minute per robot.

use super::common::{Base, check_keys, post_json, robot_outcome};
use super::signing::{aliyun_encode, dingtalk_sign};
use super::{Provider, Receipt, SendError};
use crate::config::{ProviderConfig, Rate, Secret};
use crate::core::types::{Channel, ErrorClass as C};
use crate::store::Claimed;
use async_trait::async_trait;
use serde_json::{Value, json};
use std::time::Duration;

/// `errcode` → class (PROVIDERS.md §4.1).
pub const ERRORS: &[(&str, C)] = &[
    ("310000", C::Provider),
    ("130101", C::Transient),
    ("400101", C::Provider),
    ("400102", C::Provider),
    ("410100", C::Transient),
    ("430101", C::Rejected),
    ("430102", C::Rejected),
    ("430103", C::Rejected),
    ("430104", C::Rejected),
];

pub fn default_limits() -> Vec<Rate> {
    vec![Rate {
        count: 20,
        per: Duration::from_secs(60),
    }]
}

pub struct DingtalkProvider {
    base: Base,
    url: url::Url,
    secret: Option<Secret>,
    http: reqwest::Client,
}

impl DingtalkProvider {
    pub fn from_config(cfg: &ProviderConfig, http: reqwest::Client) -> Result<Self, String> {
        check_keys(cfg, &["secret"], &["url"])?;
        Ok(DingtalkProvider {
            base: Base::new(cfg, "https://oapi.dingtalk.com")?,
            url: Base::robot_url(cfg)?,
            secret: cfg.credentials.get("secret").cloned(),
            http,
        })
    }
}

/// The robot's JSON body: markdown when the message has markdown, else text.
pub fn body(m: &Claimed) -> Value {
    match &m.content.markdown {
        Some(md) => {
            json!({"msgtype": "markdown", "markdown": {"title": m.content.subject.clone().unwrap_or_else(|| "Herald".into()), "text": md}})
        }
        None => {
            json!({"msgtype": "text", "text": {"content": m.content.text.clone().unwrap_or_default()}})
        }
    }
}

#[async_trait]
impl Provider for DingtalkProvider {
    crate::provider_basics!("dingtalk", Channel::Chat);

    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        let mut url = self.url.clone();
        if let Some(secret) = &self.secret {
            let ts = crate::core::types::now_millis();
            let sign = aliyun_encode(&dingtalk_sign(secret.expose(), ts));
            let q = format!("{}&timestamp={ts}&sign={sign}", url.query().unwrap_or(""));
            url.set_query(Some(q.trim_start_matches('&')));
        }
        let a = post_json(&self.http, url, &body(m), self.base.timeout).await?;
        robot_outcome(&a, "errcode", "errmsg", ERRORS, Some("130101"))?;
        Ok(Receipt::default())
    }
}
