//! A person answering a page from their phone: `POST /_sim/twilio/reply` sends Herald an
//! inbound SMS as Twilio does (form fields, `X-Twilio-Signature` over the URL and every
//! parameter), `POST /_sim/aliyun/reply` an SmsUp batch as Aliyun does (a JSON array with a
//! `sequence_id`, the national number without `+86`). Both answer with what Herald said.
//! Body: `{"url": "<herald inbound URL>", "from": "+15005550006", "body": "3a"}`.
//! `PUT /_sim/twilio/auto-reply {"url", "delay_ms", "action": "a"}` makes every phone the
//! Twilio simulator sends a page to (a text with `Reply N… to acknowledge`) answer `Na` by
//! itself after the delay, as a person on call would; `DELETE` stops it.

use super::Shared;
use crate::providers::signing::twilio_signature;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `url`, `from` and `body` of a reply request, or the answer naming what is missing.
fn fields(v: &Value) -> Result<(&str, &str, &str), Box<Response>> {
    let get = |k: &str| {
        v[k].as_str().ok_or_else(|| {
            Box::new(
                (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": format!("`{k}` is required")})),
                )
                    .into_response(),
            )
        })
    };
    Ok((get("url")?, get("from")?, get("body")?))
}

/// Only loopback receivers: the simulator never posts elsewhere.
fn local(url: &str) -> bool {
    ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
        .iter()
        .any(|p| url.starts_with(p))
}

async fn relay(r: reqwest::Result<reqwest::Response>) -> Response {
    match r {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            Json(json!({"status": status, "answer": text})).into_response()
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

pub async fn twilio(State(sim): State<Shared>, Json(v): Json<Value>) -> Response {
    let (url, from, body) = match fields(&v) {
        Ok(f) => f,
        Err(e) => return *e,
    };
    if !local(url) {
        return (StatusCode::BAD_REQUEST, "only loopback URLs").into_response();
    }
    let sid = format!("SM{}", hex::encode(rand::random::<[u8; 16]>()));
    let params: Vec<(String, String)> = vec![
        ("ToCountry".into(), "US".into()),
        ("SmsMessageSid".into(), sid.clone()),
        ("NumMedia".into(), "0".into()),
        ("SmsSid".into(), sid.clone()),
        ("SmsStatus".into(), "received".into()),
        ("Body".into(), body.into()),
        (
            "To".into(),
            v["to"].as_str().unwrap_or("+15005550006").into(),
        ),
        ("NumSegments".into(), "1".into()),
        ("MessageSid".into(), sid),
        ("AccountSid".into(), sim.args.twilio_account_sid.clone()),
        ("From".into(), from.into()),
        ("ApiVersion".into(), "2010-04-01".into()),
    ];
    let sig = twilio_signature(url, &params, &sim.args.twilio_auth_token);
    relay(
        sim.http
            .post(url)
            .header("X-Twilio-Signature", sig)
            .form(&params)
            .send()
            .await,
    )
    .await
}

pub async fn aliyun(State(sim): State<Shared>, Json(v): Json<Value>) -> Response {
    let (url, from, body) = match fields(&v) {
        Ok(f) => f,
        Err(e) => return *e,
    };
    if !local(url) {
        return (StatusCode::BAD_REQUEST, "only loopback URLs").into_response();
    }
    let national = from.strip_prefix("+86").unwrap_or(from);
    let seq = v["sequence_id"].clone();
    let seq = if seq.is_null() {
        json!(rand::random::<u32>())
    } else {
        seq
    };
    let now = time::OffsetDateTime::now_utc().to_offset(time::macros::offset!(+8));
    let send_time = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let batch = json!([{"phone_number": national, "content": body, "send_time": send_time,
                        "dest_code": "1234", "sequence_id": seq, "sign_name": "Herald"}]);
    relay(sim.http.post(url).json(&batch).send().await).await
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct AutoReply {
    pub url: String,
    #[serde(default = "half_second")]
    pub delay_ms: u64,
    /// `a` (acknowledge) or `r` (resolve).
    #[serde(default = "ack")]
    pub action: String,
}

fn half_second() -> u64 {
    500
}
fn ack() -> String {
    "a".into()
}

pub async fn set_auto_reply(State(sim): State<Shared>, Json(a): Json<AutoReply>) -> Response {
    if !local(&a.url) || !matches!(a.action.as_str(), "a" | "r") || a.delay_ms > 600_000 {
        return (
            StatusCode::BAD_REQUEST,
            "a loopback url, action a or r, delay_ms at most 600000",
        )
            .into_response();
    }
    *sim.auto_reply.lock().unwrap_or_else(|p| p.into_inner()) = Some(a);
    StatusCode::NO_CONTENT.into_response()
}

pub async fn clear_auto_reply(State(sim): State<Shared>) -> Response {
    *sim.auto_reply.lock().unwrap_or_else(|p| p.into_inner()) = None;
    StatusCode::NO_CONTENT.into_response()
}

/// The reply code a page's text asks for (`Reply 3a to acknowledge`).
fn code_of(body: &str) -> Option<String> {
    let at = body.find("Reply ")? + 6;
    let code: String = body[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    (!code.is_empty() && body[at + code.len()..].starts_with("a to acknowledge")).then_some(code)
}

/// When auto-reply is on and `body` is a page, answers it from `to` after the delay.
pub fn maybe_auto_reply(sim: &Shared, to: &str, body: &str) {
    let Some(a) = sim
        .auto_reply
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
    else {
        return;
    };
    let Some(code) = code_of(body) else {
        return;
    };
    let (sim, to) = (sim.clone(), to.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(a.delay_ms)).await;
        let v = json!({"url": a.url, "from": to, "body": format!("{code}{}", a.action)});
        let _ = twilio(State(sim), Json(v)).await;
    });
}

#[cfg(test)]
mod tests {
    use super::code_of;

    #[test]
    fn the_code_a_page_asks_for() {
        assert_eq!(
            code_of("[P1] #3 x\nReply 12a to acknowledge, 12r to resolve"),
            Some("12".into())
        );
        assert_eq!(code_of("Resolved: #3"), None);
        assert_eq!(code_of("Reply 1r to resolve"), None);
    }
}
