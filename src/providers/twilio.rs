//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{sid}/Messages.json` with
//! Basic auth and the rendered text; `StatusCallback` points at Herald's receipt route.

use super::common::{Base, check_keys, error, lookup, opt_string, required_cred};
use super::{Provider, Receipt, SendError, classify_transport};
use crate::config::{ProviderConfig, Secret};
use crate::core::types::{Channel, ErrorClass as C};
use crate::store::Claimed;
use async_trait::async_trait;
use serde_json::Value;

/// Twilio error codes → class (PROVIDERS.md §2.4); also used for status-callback `ErrorCode`.
pub const ERRORS: &[(&str, C)] = &[
    ("20003", C::Provider),
    ("20429", C::Transient),
    ("21211", C::Recipient),
    ("21408", C::Provider),
    ("21606", C::Provider),
    ("21608", C::Provider),
    ("21610", C::Recipient),
    ("21612", C::Recipient),
    ("21614", C::Recipient),
    ("21635", C::Recipient),
    ("21617", C::Rejected),
    ("30001", C::Transient),
    ("30002", C::Provider),
    ("30003", C::Transient),
    ("30004", C::Recipient),
    ("30005", C::Recipient),
    ("30006", C::Recipient),
    ("30007", C::Rejected),
    ("30008", C::Transient),
    ("30410", C::Transient),
];

pub fn classify(code: &str, http_status: u16) -> C {
    lookup(ERRORS, code).unwrap_or(match http_status {
        401 | 403 => C::Provider,
        429 | 500..=599 => C::Transient,
        _ => C::Rejected,
    })
}

pub struct TwilioProvider {
    base: Base,
    account_sid: String,
    auth_token: Secret,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    status_callback: Option<String>,
    http: reqwest::Client,
}

impl TwilioProvider {
    pub fn from_config(
        cfg: &ProviderConfig,
        http: reqwest::Client,
        public_url: Option<&str>,
    ) -> Result<Self, String> {
        check_keys(
            cfg,
            &["account_sid", "auth_token"],
            &["from", "messaging_service_sid"],
        )?;
        let from = opt_string(cfg, "from")?;
        let messaging_service_sid = opt_string(cfg, "messaging_service_sid")?;
        if from.is_some() == messaging_service_sid.is_some() {
            return Err(format!(
                "providers `{}`: give exactly one of options.from or options.messaging_service_sid",
                cfg.id
            ));
        }
        Ok(TwilioProvider {
            base: Base::new(cfg, "https://api.twilio.com")?,
            account_sid: required_cred(cfg, "account_sid")?.expose().to_string(),
            auth_token: required_cred(cfg, "auth_token")?,
            from,
            messaging_service_sid,
            status_callback: callback_url(public_url, &cfg.id),
            http,
        })
    }
}

#[async_trait]
impl Provider for TwilioProvider {
    crate::provider_basics!("twilio", Channel::Sms);

    fn cannot_carry(&self, m: &Claimed) -> Option<String> {
        text_of(m, NO_SMS_TEXT)
            .err()
            .map(|e| e.detail().to_string())
    }

    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        // The router does not call it for such a message; the message's fault if it did.
        let body = text_of(m, NO_SMS_TEXT)?;
        let mut form = vec![("To", m.to.clone()), ("Body", body)];
        match (&self.from, &self.messaging_service_sid) {
            (Some(f), _) => form.push(("From", f.clone())),
            (None, Some(s)) => form.push(("MessagingServiceSid", s.clone())),
            (None, None) => {}
        }
        if let Some(cb) = &self.status_callback {
            form.push(("StatusCallback", cb.clone()));
        }
        let call = Call {
            http: &self.http,
            base: &self.base,
            account_sid: &self.account_sid,
            auth_token: &self.auth_token,
        };
        call.create("Messages.json", &form).await
    }
}

const NO_SMS_TEXT: &str = "Twilio sends text: the message has no text for SMS";

/// The message's text, or a rejection saying `why` there is none.
pub(super) fn text_of(m: &Claimed, why: &str) -> Result<String, SendError> {
    m.content
        .text
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SendError::Rejected {
            code: "no_text".into(),
            detail: why.into(),
        })
}

/// Where Twilio posts status callbacks for provider `id`.
pub(super) fn callback_url(public_url: Option<&str>, id: &str) -> Option<String> {
    public_url.map(|u| format!("{}/v1/receipts/twilio/{id}", u.trim_end_matches('/')))
}

/// One request to an account's REST resource (`Messages.json`, `Calls.json`): Basic auth,
/// form body; the created resource's `sid`, or the error classed by Twilio's code.
pub(super) struct Call<'a> {
    pub http: &'a reqwest::Client,
    pub base: &'a Base,
    pub account_sid: &'a str,
    pub auth_token: &'a Secret,
}

impl Call<'_> {
    pub async fn create(
        &self,
        resource: &str,
        form: &[(&str, String)],
    ) -> Result<Receipt, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/{resource}",
            self.base.endpoint, self.account_sid
        );
        let resp = self
            .http
            .post(url)
            .basic_auth(self.account_sid, Some(self.auth_token.expose()))
            .form(form)
            .timeout(self.base.timeout)
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = resp.status().as_u16();
        let retry_after = super::retry_after(resp.headers());
        let json: Value = resp.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(Receipt {
                provider_message_id: json["sid"].as_str().map(String::from),
            });
        }
        let code = json["code"]
            .as_u64()
            .map(|c| c.to_string())
            .unwrap_or_else(|| format!("http_{status}"));
        let detail = format!("HTTP {status}: {}", json["message"].as_str().unwrap_or(""));
        Err(error(classify(&code, status), code, detail, retry_after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classed_as_documented() {
        assert_eq!(classify("21211", 400), C::Recipient);
        assert_eq!(classify("20003", 401), C::Provider);
        assert_eq!(classify("20429", 429), C::Transient);
        assert_eq!(classify("21617", 400), C::Rejected);
        assert_eq!(classify("http_503", 503), C::Transient);
        assert_eq!(classify("99999", 400), C::Rejected);
    }
}
