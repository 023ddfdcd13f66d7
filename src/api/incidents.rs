//! `/v1/incidents`: list (status, severity, service, cursor), one with its occurrences,
//! messages and timeline, acknowledge and resolve (operator; audited, and on the timeline).

use super::{AppState, Caller, page_limit};
use crate::core::incident::{Severity, Status};
use crate::core::types::{Role, rfc3339};
use crate::error::ApiError;
use crate::store::{Acted, IncidentAction, IncidentFilter, IncidentView};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;

pub async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let status = match q.get("status").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::field("status", "must be triggered, acknowledged or resolved")
        })?),
    };
    let severity = match q.get("severity").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            Severity::parse(s)
                .ok_or_else(|| ApiError::field("severity", "must be P0, P1, P2 or P3"))?,
        ),
    };
    let before_number = match q.get("after").filter(|s| !s.is_empty()) {
        None => None,
        Some(a) => Some(a.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::field("after", "must be an incident number from next_after")
        })?),
    };
    let service = q.get("service").filter(|s| !s.is_empty()).cloned();
    if service.as_ref().is_some_and(|s| s.chars().count() > 200) {
        return Err(ApiError::field("service", "must be at most 200 characters"));
    }
    let limit = page_limit(q.get("limit").map(String::as_str))?;
    let items = state
        .store
        .incidents
        .list_incidents(IncidentFilter {
            status,
            severity,
            service,
            before_number,
            limit,
        })
        .await?;
    Ok(super::page(items, limit, |i| i.number.to_string()))
}

/// An incident as the API shows it (times in RFC 3339).
fn shown(v: IncidentView) -> Value {
    let mut out = json!(v.incident);
    out["occurrences"] = v
        .occurrences
        .iter()
        .map(|o| {
            json!({"fingerprint": o.fingerprint, "status": o.status,
                   "starts_at": (o.starts_at > 0).then(|| rfc3339(o.starts_at)),
                   "ends_at": o.ends_at.map(rfc3339),
                   "labels": o.labels, "annotations": o.annotations, "generator_url": o.generator_url})
        })
        .collect();
    out["messages"] = json!(v.messages);
    out["timeline"] = json!(v.timeline);
    out
}

pub async fn get_one(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let v = state
        .store
        .incidents
        .get_incident(&id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "incident `{}`",
                id.chars().take(64).collect::<String>()
            ))
        })?;
    let esc = state
        .store
        .escalations
        .get_escalation(&v.incident.id)
        .await?;
    let pages = state.store.escalations.pages_of(&v.incident.id).await?;
    let mut out = shown(v);
    out["escalation"] = json!(esc);
    out["pages"] = json!(pages);
    Ok(Json(out).into_response())
}

/// The optional `reason` of an action's body (at most 500 characters).
pub(super) fn reason_of(v: &Value) -> Result<String, ApiError> {
    match v.get("reason") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(r)) if r.chars().count() <= 500 => Ok(r.clone()),
        Some(_) => Err(ApiError::field(
            "reason",
            "must be a string of at most 500 characters",
        )),
    }
}

async fn act(
    state: AppState,
    who: super::auth::Principal,
    id: String,
    body: Body,
    action: IncidentAction,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    let v = super::body::read_json_or_empty(body, state.cfg.server.max_body.0).await?;
    let reason = reason_of(&v)?;
    match crate::worker::answer::answer(
        &state,
        &id,
        action,
        &who.name,
        crate::worker::answer::Via::Api,
        &reason,
    )
    .await?
    {
        Acted::Done(i) => Ok(Json(json!(i)).into_response()),
        Acted::NotNow(i) => Err(not_now(&i, action)),
        Acted::NotFound => Err(gone(&id)),
    }
}

pub(super) fn gone(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "incident `{}`",
        id.chars().take(64).collect::<String>()
    ))
}

fn not_now(i: &crate::store::IncidentRecord, action: IncidentAction) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "incident_state",
        format!(
            "incident #{} is {}: it cannot be {}",
            i.number,
            i.status.as_str(),
            if action == IncidentAction::Acknowledge {
                "acknowledged"
            } else {
                "resolved"
            }
        ),
    )
}

pub async fn acknowledge(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    act(state, who, id, body, IncidentAction::Acknowledge).await
}

pub async fn resolve(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    act(state, who, id, body, IncidentAction::Resolve).await
}
