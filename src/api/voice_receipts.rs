//! What calls report besides their end: Aliyun voice reports (VoiceCallReport progress and
//! key presses, the final VoiceReport), Twilio `<Gather>` key presses and answering
//! machines. A key press becomes a delivery note and a [`Keypress`] event; a final report
//! settles the delivery like any receipt.

use super::AppState;
use crate::core::keypress::{Keypress, digits};
use crate::core::types::now_millis;
use crate::error::ApiError;
use crate::providers::aliyun_vms::report_outcome;
use crate::store::{AttemptError, DeliveryReason, ReceiptReport};
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Notes a key press on the delivery of call `pmid` and tells the subscribers.
async fn keypress(
    state: &AppState,
    provider: &str,
    pmid: &str,
    keys: &str,
) -> Result<(), ApiError> {
    let Some(keys) = digits(keys) else {
        return Ok(());
    };
    let at = now_millis();
    let note = DeliveryReason {
        code: "keypress".into(),
        detail: format!("pressed {keys}"),
    };
    let found = state
        .store
        .receipts
        .note_delivery(provider, pmid, note, at)
        .await?;
    if let Some((delivery_id, message_id)) = found {
        tracing::info!(
            provider,
            delivery_id,
            digits = keys,
            "key pressed during a call"
        );
        let _ = state.keypresses.send(Keypress {
            provider: provider.to_string(),
            delivery_id,
            message_id,
            digits: keys,
            at,
        });
    }
    Ok(())
}

/// Records that an answering machine (not a person) took a Twilio call.
pub(super) async fn answered_by(
    state: &AppState,
    provider: &str,
    sid: &str,
    by: &str,
) -> Result<(), ApiError> {
    if !(by.starts_with("machine") || by == "fax") {
        return Ok(());
    }
    let note = DeliveryReason {
        code: "answered_by_machine".into(),
        detail: format!(
            "Twilio AnsweredBy={}",
            by.chars().take(40).collect::<String>()
        ),
    };
    state
        .store
        .receipts
        .note_delivery(provider, sid, note, now_millis())
        .await?;
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// An Aliyun voice report batch: key presses noted, final reports applied (repeats and
/// reports out of order are harmless: each (call, status) is applied once).
pub(super) async fn aliyun_voice(
    state: &AppState,
    provider: &str,
    reports: &[Value],
) -> Result<(), ApiError> {
    for (i, r) in reports.iter().enumerate() {
        let (call_id, status) = (text(&r["call_id"]), text(&r["status_code"]));
        if call_id.is_empty() || status.is_empty() {
            return Err(ApiError::field(
                &format!("[{i}]"),
                "a voice report needs `call_id` and `status_code`",
            ));
        }
        let dtmf = text(&r["dtmf"]);
        if !dtmf.is_empty() {
            keypress(state, provider, &call_id, &dtmf).await?;
        }
        let Some(outcome) = report_outcome(&status) else {
            continue; // ringing, answered, a key: nothing settles
        };
        let error = outcome.err().map(|(class, code)| AttemptError {
            class,
            code: code.into(),
            detail: format!(
                "Aliyun voice status {status}: {}",
                text(&r["status_msg"]).chars().take(120).collect::<String>()
            ),
        });
        let out = state
            .store
            .receipts
            .apply_receipt(ReceiptReport {
                provider: provider.to_string(),
                delivery_id: None,
                provider_message_id: Some(call_id.clone()),
                dedupe_key: format!("{call_id}:{status}"),
                delivered: error.is_none(),
                error,
                at: now_millis(),
            })
            .await?;
        state.metrics.observe_receipt(provider, &out);
    }
    tracing::info!(provider, reports = reports.len(), "aliyun voice reports");
    Ok(())
}

/// `POST /v1/receipts/twilio/{provider}/keypress`: the `<Gather>` action of a call that
/// asked for a key, signed like status callbacks. Answers TwiML that ends the call.
pub async fn twilio_keypress(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = super::receipts::twilio_params(&state, &provider, &uri, &headers, &body)?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(sid) = get("CallSid") else {
        return Err(ApiError::field("CallSid", "is required"));
    };
    let keys = get("Digits").unwrap_or_default();
    keypress(&state, &provider, &sid, &keys).await?;
    let said = if digits(&keys).is_some() {
        "Thank you. Your answer was recorded."
    } else {
        "No key was pressed. Goodbye."
    };
    Ok((
        [("content-type", "text/xml")],
        format!("<Response><Say>{said}</Say></Response>"),
    )
        .into_response())
}
