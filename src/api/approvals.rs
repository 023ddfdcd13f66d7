//! `/v1/approvals`: critical switches waiting for a second person. Approving executes the
//! request once (the store's decision is a conditional write: of two approvers at once, one
//! wins); rejecting (or the requester withdrawing) ends it. Acts done alone (break-glass)
//! are listed with `review: "needed"` until another approver reviews them.

use super::actions::{Action, run_approved};
use super::{AppState, Caller};
use crate::core::approval::{Decider, Refusal, may_approve, may_reject, shown_status};
use crate::core::types::{Role, now_millis};
use crate::error::ApiError;
use crate::store::ApprovalRecord;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

pub const STATUSES: [&str; 6] = [
    "pending", "approved", "executed", "failed", "rejected", "expired",
];

/// A request as readers see it: its status with expiry applied, and whether it needs a
/// review.
pub fn view(a: &ApprovalRecord, now: i64) -> Value {
    let mut v = json!(a);
    v["status"] = json!(shown_status(&a.status, a.expires_at, now));
    v["review"] = json!(match (a.break_glass, &a.reviewed_by) {
        (false, _) => "none",
        (true, None) => "needed",
        (true, Some(_)) => "done",
    });
    v
}

fn refused(r: Refusal) -> ApiError {
    match r {
        Refusal::NotPending(_) | Refusal::Expired => {
            ApiError::new(StatusCode::CONFLICT, "conflict", r.message())
        }
        _ => ApiError::forbidden(r.message()),
    }
}

async fn find(state: &AppState, id: &str) -> Result<ApprovalRecord, ApiError> {
    state.store.console.approval(id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "approval `{}`",
            id.chars().take(64).collect::<String>()
        ))
    })
}

pub async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let limit = super::page_limit(q.get("limit").map(String::as_str))?;
    let status = q.get("status").cloned();
    if let Some(s) = &status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::field(
            "status",
            format!("must be one of {}", STATUSES.join(", ")),
        ));
    }
    let after = q.get("after").filter(|s| !s.is_empty()).cloned();
    let now = now_millis();
    // `expired` is `pending` past its time in storage; `pending` leaves those out.
    let stored = match status.as_deref() {
        Some("expired") => Some("pending".to_string()),
        s => s.map(str::to_string),
    };
    let items: Vec<ApprovalRecord> = state
        .store
        .console
        .approvals(stored, limit, after)
        .await?
        .into_iter()
        .collect();
    let cursor = items.last().map(|a| a.id.clone());
    let full = items.len() == limit;
    let data: Vec<Value> = items
        .iter()
        .map(|a| view(a, now))
        .filter(|v| status.as_deref().is_none_or(|s| v["status"] == s))
        .collect();
    Ok(Json(json!({
        "data": data,
        "next_after": if full { cursor } else { None },
    }))
    .into_response())
}

pub async fn get(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let a = find(&state, &id).await?;
    Ok(Json(view(&a, now_millis())).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Decision {
    #[serde(default)]
    note: Option<String>,
    /// For reject: why (the same as `note`).
    #[serde(default)]
    reason: Option<String>,
}

async fn decision(state: &AppState, body: Body) -> Result<Option<String>, ApiError> {
    let v = super::body::read_json_or_empty(body, state.cfg.server.max_body.0).await?;
    let d: Decision =
        crate::core::validate::decode_as(v).map_err(|e| ApiError::validation(vec![e]))?;
    let note = d.note.or(d.reason).map(|n| n.trim().to_string());
    if let Some(n) = &note
        && n.chars().count() > 500
    {
        return Err(ApiError::field("note", "at most 500 characters"));
    }
    Ok(note.filter(|n| !n.is_empty()))
}

pub async fn approve(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let note = decision(&state, body).await?;
    let a = find(&state, &id).await?;
    let action = Action::from_stored(&a.action, &a.params).ok_or_else(ApiError::internal)?;
    let now = now_millis();
    let d = Decider {
        id: &who.id,
        approver: who.approver,
        role: who.role,
    };
    may_approve(&a.status, a.expires_at, now, &a.requester, action.role(), d).map_err(refused)?;
    let console = &state.store.console;
    if !console
        .decide_approval(&id, "approved", &who.name, note, now)
        .await?
    {
        return Err(refused(Refusal::NotPending("decided".into())));
    }
    tracing::info!(approval = %id, action = %a.action, approver = %who.name, "approval approved; executing");
    let result = run_approved(&state, &a, &action, &who.name).await;
    let after = find(&state, &id).await?;
    match result {
        Ok(_) => Ok(Json(view(&after, now_millis())).into_response()),
        Err(e) => Err(e),
    }
}

pub async fn reject(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let note = decision(&state, body).await?;
    let a = find(&state, &id).await?;
    let now = now_millis();
    let d = Decider {
        id: &who.id,
        approver: who.approver,
        role: who.role,
    };
    may_reject(&a.status, a.expires_at, now, &a.requester, d).map_err(refused)?;
    if !state
        .store
        .console
        .decide_approval(&id, "rejected", &who.name, note, now)
        .await?
    {
        return Err(refused(Refusal::NotPending("decided".into())));
    }
    Ok(Json(view(&find(&state, &id).await?, now_millis())).into_response())
}

/// Another approver looks at an act done alone.
pub async fn review(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let a = find(&state, &id).await?;
    if !who.approver {
        return Err(refused(Refusal::NotApprover));
    }
    if a.requester == who.id {
        return Err(ApiError::forbidden(
            "an act done alone is reviewed by another person",
        ));
    }
    if !state
        .store
        .console
        .review_approval(&id, &who.name, now_millis())
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "nothing to review: not an act done alone, or reviewed already",
        ));
    }
    Ok(Json(view(&find(&state, &id).await?, now_millis())).into_response())
}
