//! A person answering a page from their phone: `POST /_sim/twilio/reply` sends Herald an
//! inbound SMS as Twilio does (form fields, `X-Twilio-Signature` over the URL and every
//! parameter), `POST /_sim/aliyun/reply` an SmsUp batch as Aliyun does (a JSON array with a
//! `sequence_id`, the national number without `+86`). Both answer with what Herald said.
//! Body: `{"url": "<herald inbound URL>", "from": "+15005550006", "body": "3a"}`.

use super::Shared;
use crate::providers::signing::twilio_signature;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

fn field<'a>(v: &'a Value, k: &str) -> Result<&'a str, Response> {
    v[k].as_str().ok_or_else(|| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("`{k}` is required")})),
        )
            .into_response()
    })
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
    let (url, from, body) = match (field(&v, "url"), field(&v, "from"), field(&v, "body")) {
        (Ok(u), Ok(f), Ok(b)) => (u, f, b),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
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
    let (url, from, body) = match (field(&v, "url"), field(&v, "from"), field(&v, "body")) {
        (Ok(u), Ok(f), Ok(b)) => (u, f, b),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
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
