//! Aliyun Voice Messaging (`kind = "aliyun_vms"`, channel `voice`, dyvmsapi 2017-05-25):
//! `SingleCallByTts` with the template's approved `TtsCode` and its parameters, signed like
//! SMS (the same RPC client). A message asking for a keypress (`metadata.voice_keypress`)
//! becomes an `IvrCall` when the provider has a number of its own and an acknowledgement
//! prompt. Receipts (VoiceReport pushes) mark the delivery; the callee's flow control
//! (1/min, 5/h, 20/day by default) is kept by Herald so that Aliyun never has to refuse.

use super::aliyun::{Rpc, template_param};
use super::common::{check_keys, lookup, opt_string};
use super::{Provider, Receipt, SendError};
use crate::config::{ProviderConfig, Rate};
use crate::core::types::{Channel, ErrorClass as C};
use crate::store::Claimed;
use crate::templates::Templates;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// dyvmsapi `Code` → class; gateway codes fall back on the SMS table.
pub const ERRORS: &[(&str, C)] = &[
    ("isv.BUSINESS_LIMIT_CONTROL", C::Transient),
    ("isv.MOBILE_NUMBER_ILLEGAL", C::Recipient),
    ("isv.COMPLAINT_REJECT", C::Recipient),
    ("isv.VOICE_CALL_FAIL", C::Transient),
    ("isv.TTS_TEMPLATE_ILLEGAL", C::Provider),
    ("isv.TEMPLATE_ILLEGAL", C::Provider),
    ("isv.DISPLAY_NUMBER_ILLEGAL", C::Provider),
    ("isv.TEMPLATE_MISSING_PARAMETERS", C::Rejected),
    ("isv.TEMPLATE_PARAMS_ILLEGAL", C::Rejected),
    ("isv.BLACK_KEY_CONTROL_LIMIT", C::Rejected),
    ("isv.PARAM_NOT_SUPPORT_URL", C::Rejected),
    ("isv.PARAM_LENGTH_LIMIT", C::Rejected),
    ("isv.INVALID_PARAMETERS", C::Rejected),
    ("isv.OUT_OF_SERVICE", C::Provider),
    ("isv.AMOUNT_NOT_ENOUGH", C::Provider),
    ("isv.ACCOUNT_ABNORMAL", C::Provider),
    ("isv.PRODUCT_UN_SUBSCRIPT", C::Provider),
    ("isv.PRODUCT_UNSUBSCRIBE", C::Provider),
    ("isp.RAM_PERMISSION_DENY", C::Provider),
    ("isp.SYSTEM_ERROR", C::Transient),
    ("isp.GATEWAY_ERROR", C::Transient),
];

pub fn classify(code: &str, http_status: u16) -> C {
    lookup(ERRORS, code).unwrap_or_else(|| super::aliyun::classify(code, http_status))
}

/// What a final VoiceReport `status_code` means for the delivery: `Ok(())` answered by a
/// person (the whole message heard, hung up early, or no key pressed in time), else the
/// class and code of the failure. `None` for progress reports (ringing, answered, ended)
/// and key presses (300000), which settle nothing.
pub fn report_outcome(status_code: &str) -> Option<Result<(), (C, &'static str)>> {
    Some(match status_code {
        "200000" | "200001" | "200008" => Ok(()),
        "200002" => Err((C::Transient, "call_busy")),
        "200003" => Err((C::Transient, "call_no_answer")),
        "200004" => Err((C::Recipient, "call_invalid_number")),
        "200005" => Err((C::Transient, "call_unreachable")),
        "200006" => Err((C::Provider, "call_bad_audio")),
        "200007" => Err((C::Transient, "call_out_of_area")),
        "200010" => Err((C::Transient, "call_powered_off")),
        "200011" => Err((C::Recipient, "call_suspended")),
        "200118" | "200119" | "200121" => Err((C::Transient, "call_throttled")),
        "200100" | "200101" | "200102" | "200201" | "300000" => return None,
        _ => Err((C::Transient, "call_failed")),
    })
}

/// Aliyun's per-callee flow control (PUSH.md §4.1): what Herald keeps by default.
pub fn default_callee_limits() -> Vec<Rate> {
    ["1/min", "5/h", "20/day"]
        .iter()
        .filter_map(|r| Rate::parse(r).ok())
        .collect()
}

/// `OutId` is at most 15 bytes: the delivery id's last 15 characters (its random part).
pub fn out_id(delivery_id: &str) -> String {
    let skip = delivery_id.len().saturating_sub(15);
    delivery_id.get(skip..).unwrap_or(delivery_id).to_string()
}

/// A mainland number as VMS wants it: the national 11 digits.
fn called_number(e164: &str) -> String {
    e164.strip_prefix("+86")
        .or_else(|| e164.strip_prefix('+'))
        .unwrap_or(e164)
        .to_string()
}

pub struct AliyunVmsProvider {
    rpc: Rpc,
    show_number: Option<String>,
    play_times: u8,
    ack_code: Option<String>,
    callee_limits: Vec<Rate>,
    templates: Arc<Templates>,
}

impl AliyunVmsProvider {
    pub fn from_config(
        cfg: &ProviderConfig,
        http: reqwest::Client,
        templates: Arc<Templates>,
    ) -> Result<Self, String> {
        check_keys(
            cfg,
            &["access_key_id", "access_key_secret", "receipt_token"],
            &[
                "called_show_number",
                "region",
                "play_times",
                "ivr_ack_code",
                "callee_limits",
            ],
        )?;
        let id = &cfg.id;
        let play_times = match cfg.options.get("play_times") {
            None => 2,
            Some(toml::Value::Integer(n)) if (1..=3).contains(n) => *n as u8,
            Some(_) => {
                return Err(format!(
                    "providers `{id}`: options.play_times must be 1, 2 or 3"
                ));
            }
        };
        let callee_limits = match cfg.options.get("callee_limits") {
            None => default_callee_limits(),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or("not a string".to_string())
                        .and_then(Rate::parse)
                })
                .collect::<Result<_, _>>()
                .map_err(|e| format!("providers `{id}`: options.callee_limits: {e}"))?,
            Some(_) => {
                return Err(format!(
                    "providers `{id}`: options.callee_limits must be a list of rates (\"1/min\")"
                ));
            }
        };
        Ok(AliyunVmsProvider {
            rpc: Rpc::from_config(cfg, "https://dyvmsapi.aliyuncs.com", http)?,
            show_number: opt_string(cfg, "called_show_number")?.filter(|s| !s.is_empty()),
            play_times,
            ack_code: opt_string(cfg, "ivr_ack_code")?.filter(|s| !s.is_empty()),
            callee_limits,
            templates,
        })
    }

    fn tts_code<'a>(&'a self, m: &Claimed) -> Option<&'a str> {
        m.template
            .as_deref()
            .and_then(|t| self.templates.provider_template(t, &self.rpc.base.id))
    }

    /// The action and its parameters for `m` (an IvrCall when a key is wanted and the
    /// provider can run one).
    pub fn request(&self, m: &Claimed, tts: &str) -> (&'static str, Vec<(String, String)>) {
        let mut p = vec![
            ("CalledNumber".to_string(), called_number(&m.to)),
            ("OutId".into(), out_id(&m.lease.delivery_id)),
            ("PlayTimes".into(), self.play_times.to_string()),
        ];
        let params = template_param(m.params.as_ref());
        if let (true, Some(show), Some(ack)) = (
            crate::core::keypress::wanted(&m.metadata),
            &self.show_number,
            &self.ack_code,
        ) {
            p.extend([
                ("CalledShowNumber".into(), show.clone()),
                ("StartCode".into(), tts.to_string()),
                ("StartTtsParams".into(), params),
                // The keys a page's call announces: 4 acknowledges, 6 resolves (both
                // answered with the acknowledgement prompt).
                ("MenuKeyMap.1.Key".into(), "4".into()),
                ("MenuKeyMap.1.Code".into(), ack.clone()),
                ("MenuKeyMap.2.Key".into(), "6".into()),
                ("MenuKeyMap.2.Code".into(), ack.clone()),
                ("ByeCode".into(), ack.clone()),
                ("Timeout".into(), "10000".into()),
            ]);
            return ("IvrCall", p);
        }
        p.extend([
            ("TtsCode".into(), tts.to_string()),
            ("TtsParam".into(), params),
        ]);
        if let Some(show) = &self.show_number {
            p.push(("CalledShowNumber".into(), show.clone()));
        }
        ("SingleCallByTts", p)
    }
}

const NO_TTS: &str = "Aliyun calls say approved TTS templates only: the message's template has no voice provider_templates entry for this provider";

#[async_trait]
impl Provider for AliyunVmsProvider {
    crate::provider_basics!("aliyun_vms", Channel::Voice, rpc.base);
    fn recipient_limits(&self) -> &[Rate] {
        &self.callee_limits
    }

    fn cannot_carry(&self, m: &Claimed) -> Option<String> {
        self.tts_code(m).is_none().then(|| NO_TTS.to_string())
    }

    async fn send(&self, m: &Claimed) -> Result<Receipt, SendError> {
        let tts = self.tts_code(m).ok_or_else(|| SendError::Rejected {
            code: "no_template_code".into(),
            detail: NO_TTS.into(),
        })?;
        let (action, params) = self.request(m, tts);
        let (status, json) = self.rpc.call(action, params).await?;
        // Flow control: not again within the minute.
        super::aliyun::outcome(
            status,
            &json,
            "CallId",
            classify,
            &[("isv.BUSINESS_LIMIT_CONTROL", Duration::from_secs(60))],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vms_codes_and_reports_are_classed() {
        assert_eq!(classify("isv.BUSINESS_LIMIT_CONTROL", 200), C::Transient);
        assert_eq!(classify("isv.MOBILE_NUMBER_ILLEGAL", 400), C::Recipient);
        assert_eq!(classify("isv.TTS_TEMPLATE_ILLEGAL", 400), C::Provider);
        assert_eq!(classify("isp.SYSTEM_ERROR", 500), C::Transient);
        assert_eq!(
            classify("SignatureDoesNotMatch", 400),
            C::Provider,
            "gateway codes as for SMS"
        );
        assert_eq!(classify("isv.SOMETHING_NEW", 400), C::Rejected);
        for ok in ["200000", "200001", "200008"] {
            assert_eq!(report_outcome(ok), Some(Ok(())), "{ok}");
        }
        assert_eq!(
            report_outcome("200002"),
            Some(Err((C::Transient, "call_busy")))
        );
        assert_eq!(
            report_outcome("200003"),
            Some(Err((C::Transient, "call_no_answer")))
        );
        assert_eq!(
            report_outcome("200004"),
            Some(Err((C::Recipient, "call_invalid_number")))
        );
        assert_eq!(
            report_outcome("200011"),
            Some(Err((C::Recipient, "call_suspended")))
        );
        assert_eq!(
            report_outcome("999999"),
            Some(Err((C::Transient, "call_failed")))
        );
        for progress in ["200100", "200101", "200102", "200201", "300000"] {
            assert_eq!(report_outcome(progress), None, "{progress}");
        }
    }

    /// VMS requests are signed by the SMS signer (pinned to Aliyun's published vector in
    /// `signing::tests::aliyun_vector_a`), over the voice action's parameters.
    #[test]
    fn vms_calls_are_signed_like_sms() {
        let cfg: ProviderConfig = toml::from_str(
            r#"id = "aliyun-vms"
channel = "voice"
kind = "aliyun_vms"
credentials = { access_key_id = "testId", access_key_secret = "testSecret", receipt_token = "t" }"#,
        )
        .unwrap();
        crate::tls::init();
        let rpc = Rpc::from_config(
            &cfg,
            "https://dyvmsapi.aliyuncs.com",
            reqwest::Client::new(),
        )
        .unwrap();
        let body = rpc.body(
            "SingleCallByTts",
            vec![
                ("CalledNumber".into(), "15300000001".into()),
                ("TtsCode".into(), "TTS_100".into()),
                ("TtsParam".into(), r#"{"id":"inc-7"}"#.into()),
            ],
            "45e25e9b-0a6f-4070-8c85-2956eda1b466",
            "2017-07-12T02:42:19Z",
        );
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let sig = form
            .iter()
            .find(|(k, _)| k == "Signature")
            .unwrap()
            .1
            .clone();
        let rest: Vec<(String, String)> =
            form.into_iter().filter(|(k, _)| k != "Signature").collect();
        assert_eq!(
            sig,
            crate::providers::signing::aliyun_rpc_signature("POST", &rest, "testSecret")
        );
        // Recomputed outside Herald (Python hmac/sha1 over the same canonical query).
        assert_eq!(sig, "kfK4QBRD1ZpffyEeI+AZUVHjYKI=");
        assert!(rest.contains(&("Version".into(), "2017-05-25".into())));
        assert!(rest.contains(&("Action".into(), "SingleCallByTts".into())));
    }

    #[test]
    fn out_ids_fit_fifteen_bytes_and_numbers_are_national() {
        assert_eq!(out_id("dlv_01JABCDEFGHJKMNPQRSTVWXYZ0"), "JKMNPQRSTVWXYZ0");
        assert_eq!(out_id("short"), "short");
        assert_eq!(called_number("+8613800138000"), "13800138000");
        assert_eq!(default_callee_limits().len(), 3);
    }
}
