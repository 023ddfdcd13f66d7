//! Aliyun VMS (dyvmsapi 2017-05-25) behind the same RPC checks as SMS (signature, nonce,
//! timestamp, key): `SingleCallByTts`, `SingleCallByVoice` and `IvrCall`, their parameter
//! checks, the per-callee flow control (1/min, 5/h, 20/day), then the reports Aliyun pushes:
//! VoiceCallReport progress and a final VoiceReport. The callee's last digits script the
//! call: `0001` hung up early, `0002` busy, `0003` no answer, `0004` invalid number, `0008`
//! no key in time, `0006` presses the menu's first key (IvrCall); others hear the whole message.

use super::{Shared, request_id};
use serde_json::{Value, json};

fn answer(status: u16, code: &str, message: &str) -> (u16, Value) {
    (
        status,
        json!({"Code": code, "Message": message, "RequestId": request_id()}),
    )
}

/// A mainland mobile (11 digits from 1) or landline (0 and 10 to 11 digits) number.
fn valid_callee(n: &str) -> bool {
    let mobile = n.len() == 11 && n.starts_with('1');
    let landline = n.starts_with('0') && (11..=12).contains(&n.len());
    (mobile || landline) && n.bytes().all(|b| b.is_ascii_digit())
}

fn in_range(v: Option<&str>, lo: i64, hi: i64) -> bool {
    v.is_none_or(|s| s.parse::<i64>().is_ok_and(|n| (lo..=hi).contains(&n)))
}

/// Why template parameters are refused, if they are.
fn check_params(p: Option<&str>) -> Option<(&'static str, &'static str)> {
    let p = p?;
    let Some(obj) = serde_json::from_str::<Value>(p)
        .ok()
        .and_then(|v| v.as_object().cloned())
    else {
        return Some((
            "isv.TEMPLATE_PARAMS_ILLEGAL",
            "The template parameters are not a JSON object.",
        ));
    };
    let mut total = 0;
    for v in obj.values() {
        let Some(s) = v.as_str() else {
            return Some((
                "isv.TEMPLATE_PARAMS_ILLEGAL",
                "Template parameter values must be strings.",
            ));
        };
        let lower = s.to_ascii_lowercase();
        if lower.contains("http://") || lower.contains("https://") || lower.contains("www.") {
            return Some((
                "isv.PARAM_NOT_SUPPORT_URL",
                "Template parameters may not contain URLs.",
            ));
        }
        total += s.chars().count();
    }
    (total >= 250).then_some((
        "isv.PARAM_LENGTH_LIMIT",
        "Template parameters are too long.",
    ))
}

/// A voice action, after the RPC checks.
pub fn call<'a>(sim: &Shared, action: &str, get: impl Fn(&str) -> Option<&'a str>) -> (u16, Value) {
    let callee = get("CalledNumber").unwrap_or("");
    if !valid_callee(callee) {
        return answer(400, "isv.MOBILE_NUMBER_ILLEGAL", "Illegal mobile number.");
    }
    let show = get("CalledShowNumber").filter(|s| !s.is_empty());
    if show.is_some_and(|s| !s.bytes().all(|b| b.is_ascii_digit())) {
        return answer(
            400,
            "isv.DISPLAY_NUMBER_ILLEGAL",
            "The display number is illegal.",
        );
    }
    let (code, params) = match action {
        "SingleCallByTts" => (get("TtsCode"), get("TtsParam")),
        "SingleCallByVoice" => (get("VoiceCode"), None),
        _ => (get("StartCode"), get("StartTtsParams")),
    };
    let code = code.unwrap_or("");
    let code_ok = match action {
        "SingleCallByVoice" => !code.is_empty(),
        _ => code.starts_with("TTS_"),
    };
    if !code_ok {
        return answer(
            400,
            "isv.TTS_TEMPLATE_ILLEGAL",
            "The template does not exist or is not approved.",
        );
    }
    // A dedicated-mode template (TTS_D…) is played from a number of one's own only.
    if code.starts_with("TTS_D") != show.is_some() {
        return answer(
            400,
            "isv.DISPLAY_NUMBER_ILLEGAL",
            "The template's mode does not match CalledShowNumber.",
        );
    }
    if let Some((c, m)) = check_params(params) {
        return answer(400, c, m);
    }
    let ranges = in_range(get("PlayTimes"), 1, 3)
        && in_range(get("Volume"), 0, 100)
        && in_range(get("Speed"), -500, 500)
        && get("OutId").is_none_or(|o| o.len() <= 15);
    if !ranges {
        return answer(
            400,
            "isv.INVALID_PARAMETERS",
            "PlayTimes, Volume, Speed or OutId is out of range.",
        );
    }
    if action == "IvrCall" {
        if show.is_none() {
            return answer(
                400,
                "isv.DISPLAY_NUMBER_ILLEGAL",
                "IvrCall needs CalledShowNumber.",
            );
        }
        let key = get("MenuKeyMap.1.Key").unwrap_or("");
        let menu_ok = key.len() == 1
            && key
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
            && get("MenuKeyMap.1.Code").is_some_and(|c| c.starts_with("TTS_"))
            && get("ByeCode").is_none_or(|c| c.starts_with("TTS_"));
        if !menu_ok {
            return answer(
                400,
                "isv.INVALID_PARAMETERS",
                "MenuKeyMap is malformed, or StartCode and ByeCode differ in type.",
            );
        }
    }
    let limits = [(1, 60_000), (5, 3_600_000), (20, 86_400_000)];
    if !sim.within_rate(&format!("vms:{callee}"), &limits) {
        return answer(
            400,
            "isv.BUSINESS_LIMIT_CONTROL",
            "The callee's call frequency is over the limit.",
        );
    }
    let call_id = format!(
        "{}^{}",
        crate::core::types::now_millis(),
        rand::random::<u32>()
    );
    let out_id = get("OutId").unwrap_or("").to_string();
    let presses = (action == "IvrCall" && callee.ends_with("0006"))
        .then(|| get("MenuKeyMap.1.Key").unwrap_or("1").to_string());
    if let Some(url) = sim.args.aliyun_voice_report_url.clone() {
        let (sim, call_id, callee) = (sim.clone(), call_id.clone(), callee.to_string());
        tokio::spawn(async move { report(sim, url, call_id, out_id, callee, presses).await });
    }
    (
        200,
        json!({"Code": "OK", "Message": "OK", "RequestId": request_id(), "CallId": call_id}),
    )
}

/// Pushes the call's reports as Aliyun does: progress, then the final VoiceReport; each
/// batch re-pushed (1, 5, 10 s here; minutes there) until answered 200 `{"code": <number>}`.
async fn report(
    sim: Shared,
    url: String,
    call_id: String,
    out_id: String,
    callee: String,
    presses: Option<String>,
) {
    let tail = &callee[callee.len().saturating_sub(4)..];
    let status = match tail {
        "0001" => "200001",
        "0002" => "200002",
        "0003" => "200003",
        "0004" => "200004",
        "0008" => "200008",
        _ => "200000",
    };
    let at = super::aliyun::fmt_time(crate::core::types::now_millis());
    let mut progress: Vec<Value> = ["200101", "200201", "200102"]
        .iter()
        .map(|s| json!({"call_id": call_id, "status_code": s, "status_time": at, "out_id": out_id}))
        .collect();
    if let Some(key) = &presses {
        progress.push(json!({"call_id": call_id, "status_code": "300000", "dtmf": key, "status_time": at, "out_id": out_id}));
    }
    progress.push(
        json!({"call_id": call_id, "status_code": "200100", "status_time": at, "out_id": out_id}),
    );
    let last = json!([{
        "call_id": call_id, "status_code": status, "status_msg": "simulated", "out_id": out_id,
        "dtmf": presses.clone().unwrap_or_default(), "duration": "12", "callee": callee,
        "caller": "", "originate_time": at, "end_time": at, "hangup_direction": "2",
        "voice_type": if presses.is_some() { "ivr" } else { "tts" }, "toll_type": "LOCAL",
    }]);
    tokio::time::sleep(sim.args.report_delay).await;
    for batch in [Value::Array(progress), last] {
        for wait in [0u64, 1, 5, 10] {
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
            if let Ok(r) = sim.http.post(&url).json(&batch).send().await
                && r.status().is_success()
                && r.json::<Value>().await.is_ok_and(|v| v["code"].is_number())
            {
                break;
            }
        }
    }
}
