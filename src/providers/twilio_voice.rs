//! Twilio Voice: `POST /2010-04-01/Accounts/{sid}/Calls.json` with TwiML that says the
//! message (`<Say>`), answering-machine detection on, and a status callback (signed with
//! `X-Twilio-Signature`, checked in `api::receipts`) that makes the delivery `delivered` when
//! the call completed, or fails it by its status (busy, no answer → transient; failed →
//! recipient). Errors when creating the call are classed like Twilio SMS errors.

use super::common::{Base, check_keys, opt_string, required_cred};
use super::twilio::{Call, text_of};

const NO_VOICE_TEXT: &str = "a call says text: the message has no text for voice";
use super::{Provider, Receipt, SendError};
use crate::config::{ProviderConfig, Secret};
use crate::core::types::Channel;
use crate::store::Claimed;
use async_trait::async_trait;

pub struct TwilioVoiceProvider {
    base: Base,
    account_sid: String,
    auth_token: Secret,
    from: String,
    language: String,
    status_callback: Option<String>,
    http: reqwest::Client,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The TwiML of a call saying `text` (XML-escaped) in `language`, twice, as pages do. With
/// `gather` (an action URL), the saying is inside a `<Gather>` of one key, posted there.
pub fn twiml(text: &str, language: &str, gather: Option<&str>) -> String {
    let esc = xml_escape(text);
    let lang = language.replace(['"', '<', '>', '&'], "");
    let say = format!(
        "<Say language=\"{lang}\">{esc}</Say><Pause length=\"1\"/><Say language=\"{lang}\">{esc}</Say>"
    );
    match gather {
        None => format!("<Response>{say}</Response>"),
        Some(action) => format!(
            "<Response><Gather numDigits=\"1\" timeout=\"10\" method=\"POST\" action=\"{}\">{say}</Gather><Say language=\"{lang}\">No key was pressed.</Say></Response>",
            xml_escape(action)
        ),
    }
}

impl TwilioVoiceProvider {
    pub fn from_config(
        cfg: &ProviderConfig,
        http: reqwest::Client,
        public_url: Option<&str>,
    ) -> Result<Self, String> {
        check_keys(cfg, &["account_sid", "auth_token"], &["from", "language"])?;
        let from = opt_string(cfg, "from")?
            .filter(|f| crate::core::addresses::valid_phone(f).is_ok())
            .ok_or_else(|| {
                format!(
                    "providers `{}`: options.from must be the E.164 number calls come from",
                    cfg.id
                )
            })?;
        Ok(TwilioVoiceProvider {
            base: Base::new(cfg, "https://api.twilio.com")?,
            account_sid: required_cred(cfg, "account_sid")?.expose().to_string(),
            auth_token: required_cred(cfg, "auth_token")?,
            from,
            language: opt_string(cfg, "language")?.unwrap_or_else(|| "en-US".into()),
            status_callback: super::twilio::callback_url(public_url, &cfg.id),
            http,
        })
    }
}

#[async_trait]
impl Provider for TwilioVoiceProvider {
    crate::provider_basics!("twilio_voice", Channel::Voice);

    fn cannot_carry(&self, m: &Claimed) -> Option<String> {
        text_of(m, NO_VOICE_TEXT)
            .err()
            .map(|e| e.detail().to_string())
    }

    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        let text = text_of(m, NO_VOICE_TEXT)?;
        // A key is collected only where Twilio can post it back (a public URL is set).
        let gather = self
            .status_callback
            .as_ref()
            .filter(|_| crate::core::keypress::wanted(&m.metadata))
            .map(|cb| format!("{cb}/keypress"));
        let mut form = vec![
            ("To", m.to.clone()),
            ("From", self.from.clone()),
            ("Twiml", twiml(&text, &self.language, gather.as_deref())),
            ("MachineDetection", "Enable".to_string()),
        ];
        if let Some(cb) = &self.status_callback {
            form.push(("StatusCallback", cb.clone()));
            form.push(("StatusCallbackEvent", "completed".to_string()));
        }
        Call {
            http: &self.http,
            base: &self.base,
            account_sid: &self.account_sid,
            auth_token: &self.auth_token,
        }
        .create("Calls.json", &form)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::twiml;

    #[test]
    fn twiml_says_the_text_escaped() {
        let g = twiml("page", "en-US", Some("https://h.example/k?a=1&b=2"));
        assert!(g.starts_with("<Response><Gather numDigits=\"1\""), "{g}");
        assert!(
            g.contains("action=\"https://h.example/k?a=1&amp;b=2\""),
            "{g}"
        );
        assert_eq!(
            twiml("db <01> & co", "en-US", None),
            "<Response><Say language=\"en-US\">db &lt;01&gt; &amp; co</Say><Pause length=\"1\"/><Say language=\"en-US\">db &lt;01&gt; &amp; co</Say></Response>"
        );
        assert!(twiml("x", "zh\"CN", None).contains("language=\"zhCN\""));
    }
}
