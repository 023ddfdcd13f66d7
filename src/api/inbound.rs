//! `POST /v1/inbound/{provider}`: replies people send to pages. Twilio posts each inbound
//! SMS as a form (X-Twilio-Signature checked as for receipts) and takes TwiML back — the
//! answer goes in it; Aliyun pushes SmsUp batches as a JSON array (the receipt token in
//! the URL checked) answered `{"code":0}`, and Herald's answers go out as ordinary SMS.

use super::AppState;
use crate::error::ApiError;
use crate::providers::registry::ReceiptAuth;
use crate::providers::signing::constant_time_eq;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A TwiML answer: the reply's answer as a `<Message>`, or none.
fn twiml_text(answer: Option<&str>) -> String {
    match answer {
        Some(a) => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message><Body>{}</Body></Message></Response>",
            super::ack_links::esc(a)
        ),
        None => "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>".into(),
    }
}

fn twiml(answer: Option<&str>) -> Response {
    let body = twiml_text(answer);
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

pub async fn inbound(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    match state.providers.receipt_auth(&provider) {
        Some(ReceiptAuth::Twilio { .. }) => twilio(&state, &provider, &uri, &headers, &body).await,
        Some(ReceiptAuth::Aliyun { token }) => {
            // SmsUp pushes carry no signature: the token in the URL is all that proves them,
            // so a provider without one takes no replies.
            let Some(t) = token else {
                return Err(ApiError::unauthorized(
                    "replies to this provider need its `receipt_token` in the configuration and in the SmsUp URL",
                ));
            };
            {
                let given = uri
                    .query()
                    .and_then(|q| {
                        url::form_urlencoded::parse(q.as_bytes())
                            .find(|(k, _)| k == "token")
                            .map(|(_, v)| v.into_owned())
                    })
                    .unwrap_or_default();
                if !constant_time_eq(given.as_bytes(), t.expose().as_bytes()) {
                    return Err(ApiError::unauthorized("the receipt token does not match"));
                }
            }
            aliyun(&state, &provider, &body).await
        }
        _ => Err(ApiError::not_found(format!(
            "inbound endpoint for provider `{}`",
            provider.chars().take(64).collect::<String>()
        ))),
    }
}

async fn twilio(
    state: &AppState,
    provider: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let params = super::receipts::twilio_params(state, provider, uri, headers, body)?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (Some(from), Some(sid)) = (get("From"), get("MessageSid").or_else(|| get("SmsSid"))) else {
        return Err(ApiError::field(
            "From",
            "an inbound SMS needs From and MessageSid",
        ));
    };
    let text = get("Body").unwrap_or_default();
    let answer = crate::worker::replies::sms(state, &from, &text, &format!("twilio:{sid}")).await?;
    Ok(twiml(answer.as_deref()))
}

/// One SmsUp entry: the phone in E.164 (Aliyun sends the national number of a mainland
/// phone, without `+86`), the text, and the id that deduplicates pushes.
fn smsup_entry(r: &Value, i: usize) -> Result<(String, String, String), ApiError> {
    let field = |k: &str| format!("[{i}].{k}");
    let phone = r["phone_number"]
        .as_str()
        .filter(|p| !p.is_empty() && p.len() <= 20)
        .ok_or_else(|| ApiError::field(&field("phone_number"), "must be the sender's number"))?;
    let content = r["content"]
        .as_str()
        .ok_or_else(|| ApiError::field(&field("content"), "must be the reply's text"))?;
    let seq = match &r["sequence_id"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ApiError::field(
                &field("sequence_id"),
                "must be the push's id",
            ));
        }
    };
    let e164 = if phone.starts_with('+') {
        phone.to_string()
    } else if let Some(rest) = phone.strip_prefix("86").filter(|r| r.len() == 11) {
        format!("+86{rest}")
    } else {
        format!("+86{phone}")
    };
    Ok((e164, content.to_string(), seq))
}

async fn aliyun(state: &AppState, provider: &str, body: &[u8]) -> Result<Response, ApiError> {
    let items: Vec<Value> = match super::body::parse_json(body)? {
        Value::Array(a) => a,
        _ => return Err(ApiError::field("body", "an SmsUp push is a JSON array")),
    };
    let entries = items
        .iter()
        .enumerate()
        .map(|(i, r)| smsup_entry(r, i))
        .collect::<Result<Vec<_>, _>>()?;
    for (phone, text, seq) in entries {
        let once = format!("aliyun:{provider}:{seq}");
        if let Some(a) = crate::worker::replies::sms(state, &phone, &text, &once).await? {
            answer_by_sms(state, &phone, &a, &once).await;
        }
    }
    Ok(Json(json!({"code": 0, "msg": "接收成功"})).into_response())
}

/// Sends an answer to a reply as an ordinary SMS (Aliyun has no inline answer), once per
/// reply (its idempotency key).
async fn answer_by_sms(state: &AppState, phone: &str, text: &str, once: &str) {
    let body = json!({"to": {"phone": phone}, "channels": ["sms"], "priority": "high",
                      "content": {"text": text}, "metadata": {"category": "incident"}});
    let owed = vec![(phone.to_string(), body, format!("answer:{once}"))];
    if let Err(e) = crate::worker::pager::accept(state, "reply", owed, &Default::default()).await {
        tracing::warn!(error = %e, "an answer to a reply was not queued");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smsup_numbers_become_e164_and_ids_may_be_numbers_or_strings() {
        let e = smsup_entry(
            &json!({"phone_number": "13800138000", "content": "3a", "sequence_id": 123}),
            0,
        )
        .unwrap();
        assert_eq!(e, ("+8613800138000".into(), "3a".into(), "123".into()));
        let e = smsup_entry(
            &json!({"phone_number": "8613800138000", "content": "a", "sequence_id": "x9"}),
            0,
        )
        .unwrap();
        assert_eq!(e.0, "+8613800138000");
        assert_eq!(e.2, "x9");
        assert!(smsup_entry(&json!({"content": "a", "sequence_id": 1}), 2).is_err());
    }

    #[test]
    fn twiml_answers_are_escaped() {
        let r = twiml_text(Some("<a & b>"));
        assert!(
            r.ends_with("<Message><Body>&lt;a &amp; b&gt;</Body></Message></Response>"),
            "{r}"
        );
        assert!(twiml_text(None).ends_with("<Response></Response>"));
    }
}
