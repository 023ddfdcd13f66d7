//! `POST /v1/heartbeats/{id}/ping` (sender) and `GET /v1/heartbeats` (viewer): dead man's
//! switches from `[[heartbeats]]`.

use super::{AppState, Caller};
use crate::core::types::{Role, now_millis, rfc3339};
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub async fn ping(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Role::Sender)?;
    if !state.heartbeats.iter().any(|h| h.cfg.id == id) {
        return Err(ApiError::not_found(format!(
            "heartbeat `{}`",
            id.chars().take(64).collect::<String>()
        )));
    }
    let now = now_millis();
    state.store.incidents.ping_heartbeat(&id, now).await?;
    Ok(Json(json!({"id": id, "last_ping": rfc3339(now)})).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let now = now_millis();
    let ids = state.heartbeats.iter().map(|h| h.cfg.id.clone()).collect();
    let pings = state.store.incidents.heartbeat_pings(ids, now).await?;
    let data: Vec<_> = state
        .heartbeats
        .iter()
        .map(|h| {
            let last = pings
                .iter()
                .find(|(i, _)| *i == h.cfg.id)
                .map(|(_, l)| *l)
                .unwrap_or(now);
            json!({
                "id": h.cfg.id, "route": h.cfg.route, "severity": h.severity,
                "interval_s": h.cfg.interval.0.as_secs(), "grace_s": h.cfg.grace.0.as_secs(),
                "last_ping": rfc3339(last),
                "status": if h.silent_since(last, now).is_some() { "silent" } else { "ok" },
            })
        })
        .collect();
    Ok(Json(json!({"data": data})).into_response())
}
