//! Delivery receipts pushed by providers: Twilio status callbacks (X-Twilio-Signature
//! checked against the account's auth token) and Aliyun SmsReport batches (answered
//! `{"code":0}`, deduplicated). Open routes: the provider's signature or token is the auth.

use super::AppState;
use crate::core::types::{ErrorClass, now_millis};
use crate::error::ApiError;
use crate::providers::registry::ReceiptAuth;
use crate::providers::signing::{constant_time_eq, twilio_verify};
use crate::store::{AttemptError, ReceiptOutcome, ReceiptReport};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

fn unknown(provider: &str) -> ApiError {
    ApiError::not_found(format!(
        "receipt endpoint for provider `{}`",
        provider.chars().take(64).collect::<String>()
    ))
}

/// What a Twilio status callback says: `(sid, status, delivered, error)`, or `None` while
/// the message or call is not final. SMS (`MessageSid`, `MessageStatus`): delivered or read,
/// else undelivered/failed by `ErrorCode`. Calls (`CallSid`, `CallStatus`): completed is
/// delivered; busy, no answer and canceled are transient; failed (not placed) is recipient.
type Reading = (String, String, bool, Option<AttemptError>);

fn reading(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Reading>, ApiError> {
    if let (Some(sid), Some(status)) = (get("CallSid"), get("CallStatus")) {
        let class = match status.as_str() {
            "completed" => return Ok(Some((sid, status, true, None))),
            "busy" | "no-answer" | "canceled" => ErrorClass::Transient,
            "failed" => ErrorClass::Recipient,
            _ => return Ok(None),
        };
        let error = AttemptError {
            class,
            code: format!("call_{}", status.replace('-', "_")),
            detail: format!("Twilio call status {status}"),
        };
        return Ok(Some((sid, status, false, Some(error))));
    }
    let (Some(sid), Some(status)) = (get("MessageSid"), get("MessageStatus")) else {
        return Err(ApiError::field(
            "MessageSid",
            "MessageSid and MessageStatus (or CallSid and CallStatus) are required",
        ));
    };
    let delivered = match status.as_str() {
        "delivered" | "read" => true,
        "undelivered" | "failed" => false,
        _ => return Ok(None),
    };
    let error = (!delivered).then(|| {
        let code = get("ErrorCode").unwrap_or_default();
        AttemptError {
            class: crate::store::rules::receipt_class(crate::providers::twilio::classify(
                &code, 200,
            )),
            detail: format!("Twilio status {status}, error {code}"),
            code: if code.is_empty() {
                status.clone()
            } else {
                code
            },
        }
    });
    Ok(Some((sid, status, delivered, error)))
}

/// A Twilio callback's form fields, once its `X-Twilio-Signature` checks out against the
/// provider's auth token and the URL Twilio called.
pub(super) fn twilio_params(
    state: &AppState,
    provider: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, ApiError> {
    let Some(ReceiptAuth::Twilio { auth_token }) = state.providers.receipt_auth(provider) else {
        return Err(unknown(provider));
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let base = state.cfg.server.public_url.clone().unwrap_or_else(|| {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    });
    let url = format!("{}{}", base.trim_end_matches('/'), uri);
    let sig = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if sig.is_empty() || !twilio_verify(&url, &params, auth_token.expose(), sig) {
        return Err(ApiError::unauthorized("X-Twilio-Signature does not match"));
    }
    Ok(params)
}

pub async fn twilio(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = twilio_params(&state, &provider, &uri, &headers, &body)?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some((sid, status, delivered, error)) = reading(&get)? else {
        return Ok(StatusCode::OK.into_response()); // queued, sent, ringing…: nothing final yet
    };
    if let Some(by) = get("AnsweredBy") {
        tracing::info!(provider, sid, answered_by = %crate::log_escape::escape_line(&by), "twilio call answered");
        super::voice_receipts::answered_by(&state, &provider, &sid, &by).await?;
    }
    let outcome = state
        .store
        .receipts
        .apply_receipt(ReceiptReport {
            provider: provider.clone(),
            delivery_id: None,
            provider_message_id: Some(sid.clone()),
            dedupe_key: format!("{sid}:{status}"),
            delivered,
            error,
            at: now_millis(),
        })
        .await?;
    state.metrics.observe_receipt(&provider, &outcome);
    tracing::info!(provider, sid, status, outcome = ?outcome, "twilio receipt");
    Ok(StatusCode::OK.into_response())
}

pub async fn aliyun(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(ReceiptAuth::Aliyun { token }) = state.providers.receipt_auth(&provider) else {
        return Err(unknown(&provider));
    };
    if let Some(t) = token {
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
    let reports: Vec<Value> = match super::body::parse_json(&body)? {
        Value::Array(a) => a,
        _ => return Err(ApiError::field("body", "an SmsReport push is a JSON array")),
    };
    // Voice reports (VoiceReport, VoiceCallReport) name the call.
    if reports.first().is_some_and(|r| r.get("call_id").is_some()) {
        super::voice_receipts::aliyun_voice(&state, &provider, &reports).await?;
        return Ok(Json(json!({"code": 0, "msg": "接收成功"})).into_response());
    }
    let mut applied = 0;
    for (i, r) in reports.iter().enumerate() {
        let (Some(success), Some(biz_id)) = (r["success"].as_bool(), r["biz_id"].as_str()) else {
            return Err(ApiError::field(
                &format!("[{i}]"),
                "needs `success` and `biz_id`",
            ));
        };
        let phone = r["phone_number"].as_str().unwrap_or("");
        let err_code = r["err_code"].as_str().unwrap_or("").to_string();
        let outcome = state
            .store
            .receipts
            .apply_receipt(ReceiptReport {
                provider: provider.clone(),
                delivery_id: r["out_id"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(String::from),
                provider_message_id: Some(biz_id.to_string()),
                dedupe_key: format!("{biz_id}:{phone}"),
                delivered: success,
                error: (!success).then(|| AttemptError {
                    class: ErrorClass::Recipient,
                    detail: format!("{err_code}: {}", r["err_msg"].as_str().unwrap_or("")),
                    code: err_code.clone(),
                }),
                at: now_millis(),
            })
            .await?;
        state.metrics.observe_receipt(&provider, &outcome);
        if matches!(outcome, ReceiptOutcome::Applied { .. }) {
            applied += 1;
        }
    }
    tracing::info!(
        provider,
        reports = reports.len(),
        applied,
        "aliyun receipts"
    );
    Ok(Json(json!({"code": 0, "msg": "ok"})).into_response())
}
