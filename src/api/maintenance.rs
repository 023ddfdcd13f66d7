//! `/v1/maintenance-windows`: while one is on, alerts matching all its matchers open
//! incidents marked suppressed, which page no one. Created and deleted by operators, audited.

use super::{AppState, Caller};
use crate::core::alerts::matchers::Matcher;
use crate::core::types::{Role, new_id, now_millis, parse_rfc3339};
use crate::error::ApiError;
use crate::store::{AuditEntry, MaintenanceWindow};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let data = state
        .store
        .incidents
        .maintenance_windows(now_millis())
        .await?;
    Ok(Json(json!({ "data": data })).into_response())
}

pub async fn create(
    State(state): State<AppState>,
    Caller(who): Caller,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    let v = super::body::read_json(body, state.cfg.server.max_body.0).await?;
    let mut errs = Vec::new();
    let mut field = |f: &str, m: String| errs.push(crate::core::validate::FieldError::new(f, m));
    if let Some(o) = v.as_object() {
        for k in o.keys() {
            if !["matchers", "starts_at", "ends_at", "reason"].contains(&k.as_str()) {
                field(k, "is not a field of a maintenance window".into());
            }
        }
    } else {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    let mut matchers = Vec::new();
    match v.get("matchers").and_then(Value::as_array) {
        Some(a) if !a.is_empty() && a.len() <= 20 => {
            for (i, m) in a.iter().enumerate() {
                match m.as_str().map(Matcher::parse) {
                    Some(Ok(_)) => matchers.push(m.as_str().unwrap_or_default().to_string()),
                    Some(Err(e)) => field(&format!("matchers[{i}]"), e),
                    None => field(&format!("matchers[{i}]"), "must be a string".into()),
                }
            }
        }
        _ => field(
            "matchers",
            "must be 1 to 20 matchers (Alertmanager's syntax)".into(),
        ),
    }
    let now = now_millis();
    let time = |name: &str| match v.get(name) {
        None => None,
        Some(Value::String(t)) => Some(parse_rfc3339(t)),
        Some(_) => Some(Err("must be an RFC 3339 timestamp (a string)".to_string())),
    };
    let starts_at = match time("starts_at") {
        None => now,
        Some(Ok(t)) => t,
        Some(Err(m)) => {
            field("starts_at", m);
            now
        }
    };
    let ends_at = match time("ends_at") {
        Some(Ok(t)) if t <= starts_at => {
            field("ends_at", "must be after starts_at".into());
            0
        }
        Some(Ok(t)) if t <= now => {
            field("ends_at", "must be in the future".into());
            0
        }
        Some(Ok(t)) => t,
        Some(Err(m)) => {
            field("ends_at", m);
            0
        }
        None => {
            field("ends_at", "is required".into());
            0
        }
    };
    let reason = match v.get("reason").and_then(Value::as_str) {
        Some(r)
            if !r.trim_matches(super::body::schema_space).is_empty()
                && r.chars().count() <= 500 =>
        {
            r.to_string()
        }
        _ => {
            field("reason", "say why, in 1 to 500 characters".into());
            String::new()
        }
    };
    if !errs.is_empty() {
        return Err(ApiError::validation(errs));
    }
    let w = MaintenanceWindow {
        id: new_id("mw"),
        matchers,
        starts_at,
        ends_at,
        reason: reason.clone(),
        actor: who.name.clone(),
        created_at: now,
    };
    state.store.incidents.put_maintenance(w.clone()).await?;
    state
        .store
        .operations
        .audit(AuditEntry {
            id: 0,
            at: now,
            actor: who.name.clone(),
            action: "maintenance.create".into(),
            target: w.id.clone(),
            before: None,
            after: Some(json!(w)),
            reason: Some(reason),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!(w))).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    if !state.store.incidents.delete_maintenance(&id).await? {
        return Err(ApiError::not_found(format!(
            "maintenance window `{}`",
            id.chars().take(64).collect::<String>()
        )));
    }
    state
        .store
        .operations
        .audit(AuditEntry {
            id: 0,
            at: now_millis(),
            actor: who.name.clone(),
            action: "maintenance.delete".into(),
            target: id,
            before: None,
            after: None,
            reason: None,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
