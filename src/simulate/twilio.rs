//! Twilio Messages API: Basic auth, form parameters, Twilio's test numbers
//! (+15005550001 invalid, +15005550009 not mobile, +15005550004 unsubscribed), `201` with a
//! Message resource, then signed status callbacks (`sent`, then `delivered`, or
//! `undelivered` 30003 for numbers ending in 4444).

use super::{FaultHit, Shared};
use crate::core::validate::valid_phone;
use crate::providers::signing::{constant_time_eq, twilio_signature};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

fn error(status: u16, code: u32, message: &str) -> (u16, Value) {
    (
        status,
        json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status}),
    )
}

fn fault_answer(hit: FaultHit) -> (u16, Value) {
    match hit {
        FaultHit::Status(429) => error(429, 20429, "Too Many Requests"),
        FaultHit::Status(s) if s >= 500 => error(s, 20500, "Service unavailable"),
        FaultHit::Status(s) => error(s, 20001, "Simulated error"),
        FaultHit::Code(c) => {
            let code: u32 = c.parse().unwrap_or(20001);
            let status = match code {
                20003 => 401,
                20429 => 429,
                _ => 400,
            };
            error(status, code, "simulated fault")
        }
    }
}

fn authorized(sim: &Shared, headers: &HeaderMap, path_sid: &str) -> bool {
    let Some(b64) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let Ok(raw) = String::from_utf8(raw) else {
        return false;
    };
    let Some((user, pass)) = raw.split_once(':') else {
        return false;
    };
    user == sim.args.twilio_account_sid
        && path_sid == user
        && constant_time_eq(pass.as_bytes(), sim.args.twilio_auth_token.as_bytes())
}

pub async fn create(
    State(sim): State<Shared>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&sim, &sid, &headers, &body, create_message).await
}

/// Calls.json: see [`place_call`].
pub async fn calls(
    State(sim): State<Shared>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&sim, &sid, &headers, &body, place_call).await
}

/// What creates a resource from the request's form fields: (status, body).
type Maker = fn(&Shared, &str, &dyn Fn(&str) -> Option<String>) -> (u16, Value);

/// Basic auth and faults as Twilio's REST API, then `make` creates the resource; recorded.
async fn answer(
    sim: &Shared,
    sid: &str,
    headers: &HeaderMap,
    body: &[u8],
    make: Maker,
) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (status, resp) = if !authorized(sim, headers, sid) {
        error(401, 20003, "Authenticate")
    } else if let Some(hit) = sim.fault("twilio").await {
        fault_answer(hit)
    } else {
        make(sim, sid, &get)
    };
    let mut request: serde_json::Map<String, Value> =
        form.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    request.insert("AccountSid".into(), json!(sid));
    sim.record(
        "twilio",
        status == 201,
        Value::Object(request),
        status,
        resp.clone(),
    );
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        Json(resp),
    )
        .into_response()
}

fn create_message(sim: &Shared, sid: &str, get: &dyn Fn(&str) -> Option<String>) -> (u16, Value) {
    let Some(to) = get("To") else {
        return error(400, 21604, "A 'To' phone number is required.");
    };
    match to.as_str() {
        "+15005550001" => {
            return error(
                400,
                21211,
                &format!("The 'To' number {to} is not a valid phone number."),
            );
        }
        "+15005550009" => {
            return error(
                400,
                21614,
                &format!("'To' number {to} is not a valid mobile number"),
            );
        }
        "+15005550004" => return error(400, 21610, "Attempt to send to unsubscribed recipient"),
        _ => {}
    }
    if valid_phone(&to).is_err() {
        return error(
            400,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    let from = get("From");
    let service = get("MessagingServiceSid");
    if from.is_none() && service.is_none() {
        return error(400, 21603, "A 'From' phone number is required.");
    }
    let Some(body) = get("Body").filter(|b| !b.is_empty()) else {
        return error(400, 21602, "Message body is required.");
    };
    if body.chars().count() > 1600 {
        return error(
            400,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        );
    }
    let msid = format!("SM{}", hex::encode(rand::random::<[u8; 16]>()));
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    super::replies::maybe_auto_reply(sim, &to, &body);
    if let Some(cb) = get("StatusCallback") {
        let (sim, msid, to, from) = (
            sim.clone(),
            msid.clone(),
            to.clone(),
            from.clone().unwrap_or_default(),
        );
        tokio::spawn(async move { callbacks(sim, cb, msid, to, from).await });
    }
    (
        201,
        json!({
            "sid": msid, "account_sid": sid, "to": to, "from": from, "messaging_service_sid": service,
            "body": body, "status": if service.is_some() { "accepted" } else { "queued" },
            "num_segments": body.chars().count().div_ceil(160).to_string(), "num_media": "0",
            "direction": "outbound-api", "api_version": "2010-04-01", "price": null, "price_unit": "USD",
            "error_code": null, "error_message": null, "date_created": now, "date_updated": now, "date_sent": null,
            "uri": format!("/2010-04-01/Accounts/{sid}/Messages/{msid}.json"),
        }),
    )
}

/// Posts `sent` and then the final status to the callback URL, signed like Twilio does.
async fn callbacks(sim: Shared, url: String, msid: String, to: String, from: String) {
    tokio::time::sleep(sim.args.report_delay / 2).await;
    let fail = to.ends_with("4444");
    for status in ["sent", if fail { "undelivered" } else { "delivered" }] {
        let mut params = vec![
            ("MessageSid".to_string(), msid.clone()),
            ("SmsSid".into(), msid.clone()),
            ("SmsStatus".into(), status.to_string()),
            ("MessageStatus".into(), status.to_string()),
            ("AccountSid".into(), sim.args.twilio_account_sid.clone()),
            ("From".into(), from.clone()),
            ("To".into(), to.clone()),
            ("ApiVersion".into(), "2010-04-01".into()),
        ];
        if status == "undelivered" {
            params.push(("ErrorCode".into(), "30003".into()));
        }
        signed_post(&sim, &url, &params).await;
        tokio::time::sleep(sim.args.report_delay / 2).await;
    }
}

/// A call is placed (201, `CA…`) when `To`, `From` and `Twiml` (or `Url`) are right; its
/// end is reported to `StatusCallback`, signed. By the number's last four digits: `0002`
/// busy, `0003` no answer, `0004` failed, `0005` answered by a machine; else completed,
/// answered by a human.
fn place_call(sim: &Shared, sid: &str, get: &dyn Fn(&str) -> Option<String>) -> (u16, Value) {
    let Some(to) = get("To").filter(|t| valid_phone(t).is_ok() && t != "+15005550001") else {
        return error(400, 21211, "The 'To' number is not a valid phone number.");
    };
    let Some(from) = get("From") else {
        return error(400, 21603, "A 'From' phone number is required.");
    };
    match (get("Twiml"), get("Url")) {
        (None, None) => return error(400, 21205, "Url parameter is required."),
        (Some(t), _)
            if !(t.trim_start().starts_with("<Response>")
                && t.trim_end().ends_with("</Response>")) =>
        {
            return error(400, 12100, "Document parse failure");
        }
        _ => {}
    }
    let csid = format!("CA{}", hex::encode(rand::random::<[u8; 16]>()));
    // When the call gathers a key, a number ending 0006 presses 1, 0007 presses 4
    // (acknowledge a page), 0008 presses 6 (resolve); others press nothing.
    let key = match &to[to.len().saturating_sub(4)..] {
        "0006" => Some("1"),
        "0007" => Some("4"),
        "0008" => Some("6"),
        _ => None,
    };
    let gather = get("Twiml").and_then(|t| gather_action(&t)).zip(key);
    if let Some(cb) = get("StatusCallback") {
        let (sim, csid, to, from) = (sim.clone(), csid.clone(), to.clone(), from.clone());
        tokio::spawn(async move {
            if let Some((action, key)) = gather {
                tokio::time::sleep(sim.args.report_delay / 2).await;
                let params = vec![
                    ("CallSid".to_string(), csid.clone()),
                    ("Digits".into(), key.into()),
                    ("AccountSid".into(), sim.args.twilio_account_sid.clone()),
                    ("CallStatus".into(), "in-progress".into()),
                ];
                signed_post(&sim, &action, &params).await;
            }
            call_ended(sim, cb, csid, to, from).await
        });
    }
    (
        201,
        json!({"sid": csid, "account_sid": sid, "to": to, "from": from, "status": "queued",
               "direction": "outbound-api", "api_version": "2010-04-01",
               "uri": format!("/2010-04-01/Accounts/{sid}/Calls/{csid}.json")}),
    )
}

/// The `action` of a `<Gather>` in TwiML, unescaped.
fn gather_action(twiml: &str) -> Option<String> {
    let g = &twiml[twiml.find("<Gather")?..];
    let g = &g[..g.find('>')?];
    let a = &g[g.find("action=\"")? + 8..];
    let a = &a[..a.find('"')?];
    Some(
        a.replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

async fn call_ended(sim: Shared, url: String, csid: String, to: String, from: String) {
    tokio::time::sleep(sim.args.report_delay).await;
    let tail = &to[to.len().saturating_sub(4)..];
    let (status, answered_by) = match tail {
        "0002" => ("busy", None),
        "0003" => ("no-answer", None),
        "0004" => ("failed", None),
        "0005" => ("completed", Some("machine_start")),
        _ => ("completed", Some("human")),
    };
    let mut params = vec![
        ("CallSid".to_string(), csid),
        ("CallStatus".into(), status.to_string()),
        ("AccountSid".into(), sim.args.twilio_account_sid.clone()),
        ("From".into(), from),
        ("To".into(), to),
        ("Direction".into(), "outbound-api".into()),
        ("ApiVersion".into(), "2010-04-01".into()),
    ];
    if let Some(a) = answered_by {
        params.push(("AnsweredBy".into(), a.into()));
        params.push(("CallDuration".into(), "7".into()));
    }
    signed_post(&sim, &url, &params).await;
}

/// A status callback, signed with `X-Twilio-Signature` as Twilio signs them.
async fn signed_post(sim: &Shared, url: &str, params: &[(String, String)]) {
    let sig = twilio_signature(url, params, &sim.args.twilio_auth_token);
    let _ = sim
        .http
        .post(url)
        .header("X-Twilio-Signature", sig)
        .form(params)
        .send()
        .await;
}
