//! A configured provider (`[[providers]]`): its kind, credentials and options, printed with
//! secrets and robot tokens redacted.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Aliyun,
    Twilio,
    Smtp,
    Webhook,
    Slack,
    Dingtalk,
    Feishu,
    Wecom,
    Webpush,
    Teams,
    #[serde(rename = "twilio_voice")]
    TwilioVoice,
    Fcm,
    Apns,
    #[serde(rename = "aliyun_vms")]
    AliyunVms,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub id: String,
    pub channel: Channel,
    pub kind: ProviderKind,
    #[serde(default = "default_provider_priority")]
    pub priority: u32,
    #[serde(default = "default_provider_weight")]
    pub weight: u32,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Outbound limit; over it, work waits in the queue. Robots have their documented
    /// limit by default (DingTalk and WeCom 20/min, Feishu 5/s and 100/min, Slack 1/s).
    #[serde(default)]
    pub rate_limit: Option<Rate>,
    #[serde(default)]
    pub credentials: BTreeMap<String, Secret>,
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
}

/// Credentials are redacted by their type; a robot's `options.url` is its credential (an
/// access token in it), so only its host is shown.
impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: BTreeMap<&String, String> = self
            .options
            .iter()
            .map(|(k, v)| {
                let shown = match (k.as_str(), v) {
                    ("url", toml::Value::String(u)) => redact_robot_url(u),
                    _ => v.to_string(),
                };
                (k, shown)
            })
            .collect();
        f.debug_struct("ProviderConfig")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("kind", &self.kind)
            .field("priority", &self.priority)
            .field("weight", &self.weight)
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .field("timeout", &self.timeout)
            .field("rate_limit", &self.rate_limit)
            .field("credentials", &self.credentials)
            .field("options", &options)
            .finish()
    }
}

/// A robot URL shown without what makes it a credential: scheme and host only.
pub fn redact_robot_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(parsed) => format!(
            "{}://{}/[redacted]",
            parsed.scheme(),
            parsed.host_str().unwrap_or("")
        ),
        Err(_) => "[redacted]".to_string(),
    }
}

fn default_provider_priority() -> u32 {
    1
}
fn default_provider_weight() -> u32 {
    100
}
