//! Health, readiness, metrics, the audit log, and the answers for unknown routes.

use super::{AppState, Caller};
use crate::core::types::Role;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// A dispatcher whose loop has not gone round for this long is not running.
const WORKERS_STALE_MS: i64 = 10_000;

/// Whether storage answers a ping within 2 s (readiness and the `storage_up` gauge).
async fn storage_answers(state: &AppState) -> Result<(), String> {
    match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.store.operations.ping(),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2s".to_string()),
    }
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let storage = storage_answers(&state).await;
    let enabled = state.cfg.dispatch.enabled;
    let beat = state.workers_beat.load(Ordering::Relaxed);
    let workers =
        !enabled || (beat > 0 && crate::core::types::now_millis() - beat < WORKERS_STALE_MS);
    let ready = storage.is_ok() && workers;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {
            "storage": match &storage { Ok(()) => json!({"status": "ok"}), Err(e) => json!({"status": "down", "error": e}) },
            "mode": json!({"status": state.mode.read().map(|m| m.mode.clone()).unwrap_or_default()}),
            "spool": json!({"depth": state.spool.as_ref().map(|s| s.depth())}),
            "providers": json!(state.providers.views(crate::core::types::now_millis()).iter()
                .map(|v| (v.id.clone(), v.state)).collect::<std::collections::BTreeMap<_, _>>()),
            "workers": json!({"status": match (enabled, workers) {
                (false, _) => "disabled",
                (true, true) => "running",
                (true, false) => "stopped",
            }}),
        }
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !state.cfg.server.metrics_open {
        let h = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        state.auth.authenticate(h).await?.require(Role::Viewer)?;
    }
    state
        .metrics
        .observe_providers(&state.providers.views(crate::core::types::now_millis()));
    if let Ok(m) = state.mode.read() {
        state.metrics.observe_mode(&m.mode);
    }
    state
        .metrics
        .spool_depth
        .set(state.spool.as_ref().map(|s| s.depth() as i64).unwrap_or(0));
    let up = storage_answers(&state).await.is_ok();
    state.metrics.storage_up.set(up as i64);
    match state.store.operations.stats().await {
        Ok(s) => state.metrics.observe_stats(&s),
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read queue depth"),
    }
    let body = state.metrics.encode();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

pub async fn audit(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let limit = super::page_limit(q.get("limit").map(String::as_str))?;
    let after = match q.get("after").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<i64>()
                .map_err(|_| ApiError::field("after", "must be an audit entry id"))?,
        ),
        None => None,
    };
    let items = state.store.operations.audit_list(limit, after).await?;
    Ok(super::page(items, limit, |e| e.id))
}

/// Checks the audit log's hash chain (sealing what was just written first).
pub async fn audit_verify(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let ops = &state.store.operations;
    ops.audit_seal().await?;
    let chain = ops.audit_chain().await?;
    let v = crate::core::audit_chain::verify(&chain.anchor, chain.first_seq, &chain.links);
    Ok(Json(serde_json::json!({
        "ok": v.ok,
        "checked": v.checked,
        "unsealed": chain.unsealed,
        "first_seq": v.first_seq,
        "last_seq": v.last_seq,
        "head": v.head,
        "broken": v.broken,
    }))
    .into_response())
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// The applicationServerKey browsers subscribe with (open: a page needs it before anyone
/// signs in); `404` when no `webpush` provider is configured.
pub async fn vapid_public_key(State(state): State<AppState>) -> Result<Response, ApiError> {
    match &state.providers.vapid_public_key {
        Some(k) => Ok(axum::Json(serde_json::json!({ "key": k })).into_response()),
        None => Err(ApiError::not_found(
            "a webpush provider (and its VAPID key)",
        )),
    }
}

/// The OpenAPI 3 description of this API (written by hand beside the routes; a test checks
/// that every operation it lists exists).
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}
