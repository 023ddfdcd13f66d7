//! Aliyun SMS `SendSms` (API 2017-05-25), RPC signature v1. `OutId` is the delivery id;
//! `TemplateCode` comes from the template's `provider_templates`; the outcome is classified
//! on `Code`, not on the HTTP status.

use super::common::{Base, check_keys, error, lookup, opt_string, required_cred};
use super::signing::{aliyun_encode, aliyun_rpc_signature};
use super::{Provider, Receipt, SendError, classify_transport};
use crate::config::{ProviderConfig, Secret};
use crate::core::types::{Channel, ErrorClass as C, new_id};
use crate::store::Claimed;
use crate::templates::Templates;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// SendSms `Code` → class (PROVIDERS.md §1.6).
pub const ERRORS: &[(&str, C)] = &[
    ("isp.SYSTEM_ERROR", C::Transient),
    ("Throttling", C::Transient),
    ("Throttling.User", C::Transient),
    ("Throttling.Api", C::Transient),
    ("ServiceUnavailable", C::Transient),
    ("InternalError", C::Transient),
    ("SignatureNonceUsed", C::Transient),
    ("InvalidTimeStamp.Expired", C::Provider),
    ("SignatureDoesNotMatch", C::Provider),
    ("IncompleteSignature", C::Provider),
    ("InvalidAccessKeyId.NotFound", C::Provider),
    ("isp.RAM_PERMISSION_DENY", C::Provider),
    ("isv.ACCOUNT_NOT_EXISTS", C::Provider),
    ("isv.ACCOUNT_ABNORMAL", C::Provider),
    ("isv.PRODUCT_UN_SUBSCRIPT", C::Provider),
    ("isv.PRODUCT_UNSUBSCRIBE", C::Provider),
    ("isv.BUSINESS_LIMIT_CONTROL", C::Recipient),
    ("isv.DAY_LIMIT_CONTROL", C::Provider),
    ("isv.MONTH_LIMIT_CONTROL", C::Provider),
    ("isv.AMOUNT_NOT_ENOUGH", C::Provider),
    ("isv.OUT_OF_SERVICE", C::Provider),
    ("isv.MOBILE_NUMBER_ILLEGAL", C::Recipient),
    ("isv.MOBILE_COUNT_OVER_LIMIT", C::Rejected),
    ("isv.TEMPLATE_MISSING_PARAMETERS", C::Rejected),
    ("isv.INVALID_PARAMETERS", C::Rejected),
    ("isv.INVALID_JSON_PARAM", C::Rejected),
    ("isv.PARAM_LENGTH_LIMIT", C::Rejected),
    ("isv.PARAM_NOT_SUPPORT_URL", C::Rejected),
    ("isv.SMS_SIGNATURE_ILLEGAL", C::Provider),
    ("isv.SMS_TEMPLATE_ILLEGAL", C::Provider),
    ("isv.SMS_SIGN_ILLEGAL", C::Provider),
    ("isv.SIGN_STATE_ILLEGAL", C::Provider),
    ("isv.SMS_SIGNATURE_SCENE_ILLEGAL", C::Provider),
    ("isv.SMS_CONTENT_ILLEGAL", C::Rejected),
    ("isv.BLACK_KEY_CONTROL_LIMIT", C::Rejected),
    ("isv.EXTEND_CODE_ERROR", C::Provider),
    ("isv.DOMESTIC_NUMBER_NOT_SUPPORTED", C::Provider),
    ("isv.DENY_IP_RANGE", C::Provider),
];

/// The class of a `Code`; unknown codes fall back on the HTTP status.
pub fn classify(code: &str, http_status: u16) -> C {
    lookup(ERRORS, code).unwrap_or(if http_status >= 500 {
        C::Transient
    } else {
        C::Rejected
    })
}

pub struct AliyunProvider {
    pub(crate) rpc: Rpc,
    sign_name: String,
    templates: Arc<Templates>,
}

/// A signed Aliyun POP RPC client (SMS and voice share it: only `Action` and the host differ).
pub struct Rpc {
    pub base: Base,
    key_id: Secret,
    key_secret: Secret,
    region: String,
    http: reqwest::Client,
}

impl AliyunProvider {
    pub fn from_config(
        cfg: &ProviderConfig,
        http: reqwest::Client,
        templates: Arc<Templates>,
    ) -> Result<Self, String> {
        check_keys(
            cfg,
            &["access_key_id", "access_key_secret", "receipt_token"],
            &["sign_name", "region", "receipts"],
        )?;
        Ok(AliyunProvider {
            rpc: Rpc::from_config(cfg, "https://dysmsapi.aliyuncs.com", http)?,
            sign_name: opt_string(cfg, "sign_name")?
                .ok_or_else(|| format!("providers `{}`: options.sign_name is required", cfg.id))?,
            templates,
        })
    }

    /// One SMS API call (`SendSms`, `QuerySendDetails`).
    pub async fn call(
        &self,
        action: &str,
        params: Vec<(String, String)>,
    ) -> Result<(u16, Value), SendError> {
        self.rpc.call(action, params).await
    }
}

impl Rpc {
    pub fn from_config(
        cfg: &ProviderConfig,
        default_endpoint: &str,
        http: reqwest::Client,
    ) -> Result<Rpc, String> {
        Ok(Rpc {
            base: Base::new(cfg, default_endpoint)?,
            key_id: required_cred(cfg, "access_key_id")?,
            key_secret: required_cred(cfg, "access_key_secret")?,
            region: opt_string(cfg, "region")?.unwrap_or_else(|| "cn-hangzhou".into()),
            http,
        })
    }

    /// The signed form body of one call (every common parameter added, then `Signature`).
    pub fn body(
        &self,
        action: &str,
        mut params: Vec<(String, String)>,
        nonce: &str,
        timestamp: &str,
    ) -> String {
        for (k, v) in [
            ("AccessKeyId", self.key_id.expose()),
            ("Action", action),
            ("Format", "JSON"),
            ("RegionId", self.region.as_str()),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", nonce),
            ("SignatureVersion", "1.0"),
            ("Timestamp", timestamp),
            ("Version", "2017-05-25"),
        ] {
            params.push((k.to_string(), v.to_string()));
        }
        let sig = aliyun_rpc_signature("POST", &params, self.key_secret.expose());
        params.push(("Signature".into(), sig));
        params
            .iter()
            .map(|(k, v)| format!("{}={}", aliyun_encode(k), aliyun_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Signs and sends one RPC call; returns the JSON body with its HTTP status.
    pub async fn call(
        &self,
        action: &str,
        params: Vec<(String, String)>,
    ) -> Result<(u16, Value), SendError> {
        let ts = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .unwrap_or_default();
        let body = self.body(action, params, &new_id("n"), &ts);
        let resp = self
            .http
            .post(format!("{}/", self.base.endpoint))
            .header("content-type", "application/x-www-form-urlencoded")
            .timeout(self.base.timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = resp.status().as_u16();
        let retry_after = super::retry_after(resp.headers());
        let text = resp.text().await.map_err(|e| classify_transport(&e))?;
        let json: Value = serde_json::from_str(&text).map_err(|_| SendError::Transient {
            code: format!("http_{status}"),
            detail: format!(
                "HTTP {status}: not a JSON answer: {}",
                text.chars().take(120).collect::<String>()
            ),
            retry_after,
        })?;
        Ok((status, json))
    }
}

/// Template parameters as Aliyun wants them: a JSON object of string values.
pub fn template_param(params: Option<&Map<String, Value>>) -> String {
    let mut out = Map::new();
    for (k, v) in params.into_iter().flatten() {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        out.insert(k.clone(), Value::String(s));
    }
    Value::Object(out).to_string()
}

/// Aliyun wants mainland numbers without `+86` is fine either way; international numbers
/// go without the `+`.
pub fn phone_for_aliyun(e164: &str) -> String {
    e164.strip_prefix('+').unwrap_or(e164).to_string()
}

#[async_trait]
impl Provider for AliyunProvider {
    crate::provider_basics!("aliyun", Channel::Sms, rpc.base);

    fn cannot_carry(&self, m: &Claimed) -> Option<String> {
        m.template
            .as_deref()
            .and_then(|t| self.templates.provider_template(t, &self.rpc.base.id))
            .is_none()
            .then(|| format!("Aliyun sends approved templates only: the message's template has no provider_templates entry for `{}`", self.rpc.base.id))
    }

    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        let code = m
            .template
            .as_deref()
            .and_then(|t| self.templates.provider_template(t, &self.rpc.base.id))
            .ok_or_else(|| SendError::Rejected {
                code: "no_template_code".into(),
                detail: format!("Aliyun sends approved templates only: the message's template has no provider_templates entry for `{}`", self.rpc.base.id),
            })?;
        let params = vec![
            ("PhoneNumbers".to_string(), phone_for_aliyun(&m.to)),
            ("SignName".into(), self.sign_name.clone()),
            ("TemplateCode".into(), code.to_string()),
            ("TemplateParam".into(), template_param(m.params.as_ref())),
            ("OutId".into(), m.lease.delivery_id.clone()),
        ];
        let (status, json) = self.call("SendSms", params).await?;
        outcome(status, &json, "BizId", classify, &[])
    }
}

/// An RPC answer made a result: `Code` `OK` is sent (the id in `id_field`); anything else
/// fails, whatever the HTTP status, classed by `classify`, retried no sooner than `waits`
/// says for its code (throttling: a second).
pub fn outcome(
    status: u16,
    json: &Value,
    id_field: &str,
    classify: fn(&str, u16) -> C,
    waits: &[(&str, Duration)],
) -> Result<Receipt, SendError> {
    let code = json["Code"].as_str().unwrap_or("");
    if code == "OK" {
        return Ok(Receipt {
            provider_message_id: json[id_field].as_str().map(String::from),
        });
    }
    let detail = format!("{code}: {}", json["Message"].as_str().unwrap_or(""));
    let code = if code.is_empty() {
        format!("http_{status}")
    } else {
        code.to_string()
    };
    let retry_after = lookup(waits, &code).or_else(|| {
        code.starts_with("Throttling")
            .then_some(Duration::from_secs(1))
    });
    Err(error(classify(&code, status), code, detail, retry_after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes_are_classed_as_documented() {
        assert_eq!(classify("isv.MOBILE_NUMBER_ILLEGAL", 200), C::Recipient);
        assert_eq!(classify("isp.SYSTEM_ERROR", 200), C::Transient);
        assert_eq!(classify("SignatureDoesNotMatch", 400), C::Provider);
        assert_eq!(classify("isv.SMS_CONTENT_ILLEGAL", 200), C::Rejected);
        assert_eq!(classify("SomethingNew", 503), C::Transient);
        assert_eq!(classify("SomethingNew", 400), C::Rejected);
    }

    #[test]
    fn template_params_are_strings() {
        let p = json!({"code": 123456, "name": "Ann", "ok": true});
        let s = template_param(p.as_object());
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, json!({"code": "123456", "name": "Ann", "ok": "true"}));
        assert_eq!(phone_for_aliyun("+8613800138000"), "8613800138000");
    }
}
