//! `POST /v1/incidents/{id}/escalate` (page the next step now), `POST …/snooze` (hold the
//! escalation for a stated time) and `GET /v1/incidents/stats` (MTTA/MTTR percentiles).

use super::incidents::{gone, reason_of};
use super::{AppState, Caller};
use crate::core::incident::Status;
use crate::core::oncall::stats::summarize;
use crate::core::types::{Role, now_millis, parse_rfc3339, rfc3339};
use crate::error::ApiError;
use crate::store::{Acted, AuditEntry, EscState, EscalationMove, IncidentAction};
use crate::worker::answer::{Via, answer};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;

/// The longest snooze: a week.
const MAX_SNOOZE_SECONDS: i64 = 604_800;

fn no_policy(number: i64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "no_escalation",
        format!("incident #{number} has no escalation policy: its route pages people directly"),
    )
}

fn over(number: i64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "incident_state",
        format!("incident #{number} is resolved"),
    )
}

async fn audit(
    state: &AppState,
    actor: &str,
    action: &str,
    id: &str,
    after: serde_json::Value,
    reason: String,
) -> Result<(), ApiError> {
    state
        .store
        .operations
        .audit(AuditEntry {
            id: 0,
            at: now_millis(),
            actor: actor.into(),
            action: action.into(),
            target: id.into(),
            before: None,
            after: Some(after),
            reason: (!reason.is_empty()).then_some(reason),
        })
        .await?;
    Ok(())
}

pub async fn escalate(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    let v = super::body::read_json_or_empty(body, state.cfg.server.max_body.0).await?;
    let reason = reason_of(&v)?;
    let Some(view) = state.store.incidents.get_incident(&id).await? else {
        return Err(gone(&id));
    };
    let i = view.incident;
    if i.status == Status::Resolved {
        return Err(over(i.number));
    }
    let Some(row) = state.store.escalations.get_escalation(&i.id).await? else {
        return Err(no_policy(i.number));
    };
    let now = now_millis();
    if i.status == Status::Acknowledged {
        let why = format!("escalated by {}", who.name);
        state
            .store
            .escalations
            .retrigger_incident(&i.id, &who.name, &why, now)
            .await?;
    }
    // Pending or held: the next step fires now. Run out (the row's step is the one fired
    // last): that step again, in a new round.
    let fired_already = row.fired_step == Some(row.step) && row.fired_pass == Some(row.pass);
    let to = match row.state {
        EscState::Done => EscalationMove::Wait { due: now },
        _ if fired_already => EscalationMove::Wait { due: now },
        _ => EscalationMove::Next {
            step: row.step,
            pass: row.pass,
            round: row.round,
            due: now,
        },
    };
    state
        .store
        .escalations
        .set_escalation(&i.id, to, false, now)
        .await?;
    state.escalator_wake.notify_one();
    audit(
        &state,
        &who.name,
        "incident.escalate",
        &i.id,
        json!({"step": row.step + 1}),
        reason,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"incident": i.id, "escalating": true})),
    )
        .into_response())
}

pub async fn snooze(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    let v = super::body::read_json_or_empty(body, state.cfg.server.max_body.0).await?;
    let reason = reason_of(&v)?;
    let seconds = v
        .get("duration_seconds")
        .and_then(|d| d.as_i64())
        .filter(|d| (60..=MAX_SNOOZE_SECONDS).contains(d))
        .ok_or_else(|| {
            ApiError::field(
                "duration_seconds",
                format!("must be a whole number of seconds from 60 to {MAX_SNOOZE_SECONDS}"),
            )
        })?;
    let Some(view) = state.store.incidents.get_incident(&id).await? else {
        return Err(gone(&id));
    };
    let i = view.incident;
    if i.status == Status::Resolved {
        return Err(over(i.number));
    }
    if state
        .store
        .escalations
        .get_escalation(&i.id)
        .await?
        .is_none()
    {
        return Err(no_policy(i.number));
    }
    if i.status == Status::Triggered {
        let said = format!("snoozed for {seconds} s");
        match answer(
            &state,
            &i.id,
            IncidentAction::Acknowledge,
            &who.name,
            Via::Api,
            &said,
        )
        .await?
        {
            Acted::Done(_) | Acted::NotNow(_) => {}
            Acted::NotFound => return Err(gone(&id)),
        }
    }
    let now = now_millis();
    let until = now + seconds * 1000;
    state
        .store
        .escalations
        .set_escalation(&i.id, EscalationMove::Wait { due: until }, false, now)
        .await?;
    audit(
        &state,
        &who.name,
        "incident.snooze",
        &i.id,
        json!({"until": rfc3339(until)}),
        reason,
    )
    .await?;
    Ok(Json(json!({"incident": i.id, "snoozed_until": rfc3339(until)})).into_response())
}

pub async fn stats(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let now = now_millis();
    let when = |k: &str, default: i64| match q.get(k).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => parse_rfc3339(s).map_err(|m| ApiError::field(k, m)),
    };
    let until = when("until", now + 1)?;
    let since = when("since", until - 30 * 86_400_000)?;
    if since >= until {
        return Err(ApiError::field("since", "must be before until"));
    }
    let times = state.store.escalations.incident_times(since, until).await?;
    let mut out = json!(summarize(&times));
    out["since"] = json!(rfc3339(since));
    out["until"] = json!(rfc3339(until));
    Ok(Json(out).into_response())
}
