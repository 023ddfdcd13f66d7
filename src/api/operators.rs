//! Operator control: provider health and manual switches, and the gateway's mode. Every
//! switch needs its role and a reason, and lands in the audit log with actor and before/after.

use super::body::read_typed;
use super::{AppState, Caller};
use crate::core::types::{Role, now_millis};
use crate::error::ApiError;
use crate::store::ProviderSwitch;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

pub const MODES: [&str; 3] = ["normal", "core_only", "read_only"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: String,
    reason: String,
}

fn check_reason(r: &str) -> Result<String, ApiError> {
    let r = r.trim_matches(super::body::schema_space);
    if r.is_empty() || r.chars().count() > 500 {
        return Err(ApiError::field("reason", "say why, in 1 to 500 characters"));
    }
    Ok(r.to_string())
}

pub async fn providers(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    Ok(Json(json!({ "data": state.providers.views(now_millis()) })).into_response())
}

async fn switch(
    state: AppState,
    who: crate::api::auth::Principal,
    id: String,
    body: Body,
    disabled: bool,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    if state.providers.provider(&id).is_none() {
        return Err(ApiError::not_found(format!(
            "provider `{}`",
            id.chars().take(64).collect::<String>()
        )));
    }
    let b: Reason = read_typed(body, state.cfg.server.max_body.0).await?;
    let sw = ProviderSwitch {
        provider: id.clone(),
        disabled,
        reason: Some(check_reason(&b.reason)?),
        actor: who.name.clone(),
        at: now_millis(),
        until: None,
    };
    state.store.operations.set_provider_switch(sw).await?;
    state
        .providers
        .set_switches(state.store.operations.provider_switches().await?);
    let view = state
        .providers
        .views(now_millis())
        .into_iter()
        .find(|v| v.id == id);
    Ok(Json(json!(view)).into_response())
}

pub async fn disable(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    switch(state, who, id, body, true).await
}

pub async fn enable(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    switch(state, who, id, body, false).await
}

pub async fn get_mode(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let m = state
        .mode
        .read()
        .map(|m| m.clone())
        .map_err(|_| ApiError::internal())?;
    Ok(Json(json!(m)).into_response())
}

pub async fn set_mode(
    State(state): State<AppState>,
    Caller(who): Caller,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Admin)?;
    let b: ModeBody = read_typed(body, state.cfg.server.max_body.0).await?;
    if !MODES.contains(&b.mode.as_str()) {
        return Err(ApiError::field(
            "mode",
            format!("must be one of {}", MODES.join(", ")),
        ));
    }
    let reason = check_reason(&b.reason)?;
    let rec = state
        .store
        .operations
        .set_mode(&b.mode, &reason, &who.name, now_millis())
        .await?;
    tracing::warn!(mode = %rec.mode, actor = %rec.actor, reason = %reason, "mode switched");
    if let Ok(mut m) = state.mode.write() {
        *m = rec.clone();
    }
    Ok(Json(json!(rec)).into_response())
}

pub async fn nodes(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let nodes = state.store.cluster.nodes().await?;
    Ok(Json(json!({ "this_node": state.node_id, "data": nodes })).into_response())
}
