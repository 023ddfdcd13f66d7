//! Operator control: provider health and manual switches, and the gateway's mode. Every
//! switch needs its role and a reason, and lands in the audit log with actor and before/after.

use super::actions::{Action, submit};
use super::body::read_typed;
use super::{AppState, Caller};
use crate::core::types::{Role, now_millis};
use crate::error::ApiError;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

pub const MODES: [&str; 3] = ["normal", "core_only", "read_only"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    reason: String,
    /// When a disable ends by itself: an RFC 3339 time …
    #[serde(default)]
    until: Option<String>,
    /// … or a duration from now (`30m`, `2h`).
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    break_glass: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: String,
    reason: String,
    #[serde(default)]
    break_glass: Option<String>,
}

/// When a switch ends, from `until` or `for`; it must be ahead, within 30 days.
fn switch_end(b: &SwitchBody, disabled: bool, now: i64) -> Result<Option<i64>, ApiError> {
    let at = match (&b.until, &b.for_) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field("until", "give `until` or `for`, not both"));
        }
        (Some(u), None) => {
            let t = time::OffsetDateTime::parse(u, &time::format_description::well_known::Rfc3339)
                .map_err(|_| ApiError::field("until", "must be an RFC 3339 time"))?;
            Some(((t.unix_timestamp_nanos() / 1_000_000) as i64, "until"))
        }
        (None, Some(f)) => {
            let d = humantime::parse_duration(f)
                .map_err(|_| ApiError::field("for", "must be a duration such as 30m or 2h"))?;
            Some((
                now.saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
                "for",
            ))
        }
        (None, None) => None,
    };
    match at {
        None => Ok(None),
        Some((_, field)) if !disabled => {
            Err(ApiError::field(field, "only a disable ends by itself"))
        }
        Some((t, field)) if t <= now || t > now + 30 * 24 * 3600 * 1000 => Err(ApiError::field(
            field,
            "must end between now and 30 days from now",
        )),
        Some((t, _)) => Ok(Some(t)),
    }
}

pub(super) fn check_reason(r: &str) -> Result<String, ApiError> {
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
    let b: SwitchBody = read_typed(body, state.cfg.server.max_body.0).await?;
    let reason = check_reason(&b.reason)?;
    let until = switch_end(&b, disabled, now_millis())?;
    let action = Action::ProviderSwitch {
        provider: id,
        disabled,
        until,
    };
    submit(&state, &who, action, reason, b.break_glass).await
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
    submit(
        &state,
        &who,
        Action::ModeSet { mode: b.mode },
        reason,
        b.break_glass,
    )
    .await
}

pub async fn nodes(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let nodes = state.store.cluster.nodes().await?;
    Ok(Json(json!({ "this_node": state.node_id, "data": nodes })).into_response())
}
