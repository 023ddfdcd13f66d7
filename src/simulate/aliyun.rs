//! Aliyun SMS (dysmsapi 2017-05-25): `SendSms` and `QuerySendDetails` over RPC, signature v1
//! checked like the real service; SmsReport pushes after a delay. Numbers ending in `4444`
//! are accepted but their report says the handset did not receive the message.

use super::{FaultHit, Shared, request_id};
use crate::providers::signing::{aliyun_rpc_signature, constant_time_eq};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Detail {
    pub phone: String,
    pub out_id: String,
    pub template_code: String,
    pub send_date: String,
    pub reported_at: i64,
    pub delivered: bool,
    pub sent_at: i64,
}

fn answer(status: u16, code: &str, message: &str) -> (u16, Value) {
    (
        status,
        json!({"Code": code, "Message": message, "RequestId": request_id()}),
    )
}

fn fault_answer(hit: FaultHit) -> (u16, Value) {
    match hit {
        FaultHit::Status(503) => answer(
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        ),
        FaultHit::Status(429) => answer(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        ),
        FaultHit::Status(s) => answer(
            s,
            "InternalError",
            "The request processing has failed due to some unknown error.",
        ),
        FaultHit::Code(c) => {
            let status = if c.starts_with("isv.") || c.starts_with("isp.") {
                200
            } else {
                400
            };
            answer(status, &c, "simulated fault")
        }
    }
}

fn china_time(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000 + 8 * 3600)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

pub(super) fn fmt_time(ms: i64) -> String {
    let t = china_time(ms);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Mainland numbers: 11 digits starting with 1, optionally after `86`/`+86`/`0086`;
/// international: 8 to 15 digits.
fn valid_phone(p: &str) -> bool {
    let d = p.trim_start_matches('+');
    let d = d.strip_prefix("0086").unwrap_or(d);
    d.len() >= 8 && d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
}

/// dyvmsapi actions (the voice service shares the RPC checks).
const VOICE_ACTIONS: [&str; 3] = ["SingleCallByTts", "SingleCallByVoice", "IvrCall"];

pub async fn rpc(
    State(sim): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let mut params: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    params.extend(url::form_urlencoded::parse(&body).into_owned());
    let request = json!(
        params
            .iter()
            .filter(|(k, _)| k != "Signature")
            .cloned()
            .collect::<HashMap<_, _>>()
    );
    let (status, resp) = handle(&sim, method.as_str(), &params).await;
    let accepted = resp["Code"] == "OK";
    let voice = params
        .iter()
        .any(|(k, v)| k == "Action" && VOICE_ACTIONS.contains(&v.as_str()));
    let name = if voice { "aliyun_vms" } else { "aliyun" };
    sim.record(name, accepted, request, status, resp.clone());
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        Json(resp),
    )
        .into_response()
}

async fn handle(sim: &Shared, method: &str, params: &[(String, String)]) -> (u16, Value) {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    for k in [
        "AccessKeyId",
        "Action",
        "SignatureMethod",
        "SignatureNonce",
        "SignatureVersion",
        "Timestamp",
        "Version",
        "Signature",
    ] {
        if get(k).is_none_or(str::is_empty) {
            return answer(
                400,
                "MissingParameter",
                &format!(
                    "The input parameter \"{k}\" that is mandatory for processing this request is not supplied."
                ),
            );
        }
    }
    if get("AccessKeyId") != Some(sim.args.aliyun_access_key_id.as_str()) {
        return answer(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        );
    }
    let expected = aliyun_rpc_signature(method, params, &sim.args.aliyun_access_key_secret);
    if !constant_time_eq(
        expected.as_bytes(),
        get("Signature").unwrap_or("").as_bytes(),
    ) {
        return answer(
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        );
    }
    let ts = get("Timestamp").and_then(|t| crate::core::types::parse_rfc3339(t).ok());
    let now = crate::core::types::now_millis();
    if ts.is_none_or(|t| (now - t).abs() > 15 * 60 * 1000) {
        return answer(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        );
    }
    if !sim.fresh_nonce(get("SignatureNonce").unwrap_or("")) {
        return answer(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        );
    }
    if get("Version") != Some("2017-05-25") {
        return answer(
            400,
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        );
    }
    let action = get("Action").unwrap_or("");
    let voice = VOICE_ACTIONS.contains(&action);
    if let Some(hit) = sim.fault(if voice { "aliyun_vms" } else { "aliyun" }).await {
        return fault_answer(hit);
    }
    match get("Action") {
        Some(a) if voice => super::aliyun_vms::call(sim, a, get),
        Some("SendSms") => send_sms(sim, get, now),
        Some("QuerySendDetails") => query(sim, get, now),
        _ => answer(
            400,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        ),
    }
}

fn send_sms<'a>(sim: &Shared, get: impl Fn(&str) -> Option<&'a str>, now: i64) -> (u16, Value) {
    let phones = get("PhoneNumbers").unwrap_or("");
    if phones.is_empty() {
        return answer(
            400,
            "MissingPhoneNumbers",
            "PhoneNumbers is mandatory for this action.",
        );
    }
    let list: Vec<&str> = phones.split(',').collect();
    if list.len() > 1000 {
        return answer(
            200,
            "isv.MOBILE_COUNT_OVER_LIMIT",
            "The number of mobile numbers exceeds the limit.",
        );
    }
    if list.iter().any(|p| !valid_phone(p)) {
        return answer(200, "isv.MOBILE_NUMBER_ILLEGAL", "Illegal mobile number.");
    }
    if get("SignName").is_none_or(str::is_empty) {
        return answer(
            200,
            "isv.SMS_SIGNATURE_ILLEGAL",
            "The signature is illegal.",
        );
    }
    let template = get("TemplateCode").unwrap_or("");
    if !template.starts_with("SMS_") {
        return answer(
            200,
            "isv.SMS_TEMPLATE_ILLEGAL",
            "The template does not exist or is not approved.",
        );
    }
    if let Some(p) = get("TemplateParam") {
        let ok = serde_json::from_str::<Value>(p)
            .ok()
            .and_then(|v| v.as_object().map(|o| o.values().all(Value::is_string)))
            .unwrap_or(false);
        if !ok {
            return answer(
                200,
                "isv.INVALID_JSON_PARAM",
                "The JSON parameter is illegal: values must be strings.",
            );
        }
    }
    let biz_id = format!(
        "{}^0",
        (now as u64) * 1000 + (rand::random::<u16>() as u64 % 1000)
    );
    let out_id = get("OutId").unwrap_or("").to_string();
    let delay = sim.args.report_delay;
    let mut reports = Vec::new();
    for phone in &list {
        let delivered = !phone.ends_with("4444");
        let detail = Detail {
            phone: phone.to_string(),
            out_id: out_id.clone(),
            template_code: template.to_string(),
            send_date: fmt_time(now),
            reported_at: now + delay.as_millis() as i64,
            delivered,
            sent_at: now,
        };
        if let Ok(mut d) = sim.aliyun_details.lock() {
            d.insert(format!("{biz_id}:{phone}"), detail);
        }
        reports.push(json!({
            "phone_number": phone, "send_time": fmt_time(now), "report_time": fmt_time(now + delay.as_millis() as i64),
            "success": delivered, "err_code": if delivered { "DELIVERED" } else { "MK:0001" },
            "err_msg": if delivered { "用户接收成功" } else { "handset unreachable" },
            "sms_size": "1", "biz_id": biz_id, "out_id": out_id,
        }));
    }
    if let Some(url) = sim.args.aliyun_report_url.clone() {
        let http = sim.http.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // Like the real service: re-push when the receiver does not answer 200 {"code":0}.
            for wait in [0u64, 1, 5, 10] {
                tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                if let Ok(r) = http.post(&url).json(&reports).send().await
                    && r.status().is_success()
                    && r.json::<Value>().await.is_ok_and(|v| v["code"].is_number())
                {
                    return;
                }
            }
        });
    }
    (
        200,
        json!({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id()}),
    )
}

fn query<'a>(sim: &Shared, get: impl Fn(&str) -> Option<&'a str>, now: i64) -> (u16, Value) {
    let phone = get("PhoneNumber").unwrap_or("");
    let date = get("SendDate").unwrap_or("");
    if phone.is_empty() || date.len() != 8 {
        return answer(
            400,
            "isv.INVALID_PARAMETERS",
            "PhoneNumber and SendDate (yyyyMMdd) are required.",
        );
    }
    let biz = get("BizId");
    let list: Vec<Value> = sim
        .aliyun_details
        .lock()
        .map(|d| {
            d.iter()
                .filter(|(k, v)| v.phone == phone && biz.is_none_or(|b| k.starts_with(&format!("{b}:"))))
                .filter(|(_, v)| {
                    let t = china_time(v.sent_at);
                    format!("{:04}{:02}{:02}", t.year(), t.month() as u8, t.day()) == date
                })
                .map(|(_, v)| {
                    let reported = now >= v.reported_at;
                    json!({
                        "PhoneNum": v.phone, "OutId": v.out_id, "TemplateCode": v.template_code,
                        "SendDate": v.send_date, "ReceiveDate": if reported { fmt_time(v.reported_at) } else { String::new() },
                        "SendStatus": if !reported { 1 } else if v.delivered { 3 } else { 2 },
                        "ErrCode": if !reported { "" } else if v.delivered { "DELIVERED" } else { "MK:0001" },
                        "Content": "",
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    (
        200,
        json!({"Code": "OK", "Message": "OK", "RequestId": request_id(), "TotalCount": list.len().to_string(),
                 "SmsSendDetailDTOs": {"SmsSendDetailDTO": list}}),
    )
}
