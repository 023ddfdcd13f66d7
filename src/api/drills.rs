//! `POST /v1/drills/page`: a paging drill — an incident marked as a drill, escalated by the
//! chosen policy through the real path (the same escalator, messages and answers), its pages
//! saying they are drills, and left out of MTTA/MTTR. `herald drill run page` drives it.

use super::{AppState, Caller};
use crate::core::incident::{Occurrence, Severity};
use crate::core::types::{Role, new_id, now_millis};
use crate::error::ApiError;
use crate::store::{AlertBatch, DocKind, Ingested, NewIncident};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub async fn page(
    State(state): State<AppState>,
    Caller(who): Caller,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    let v = super::body::read_json(body, state.cfg.server.max_body.0).await?;
    let policy = match v.get("policy") {
        Some(Value::String(p)) if crate::core::addresses::valid_user(p).is_ok() => p.clone(),
        _ => return Err(ApiError::field("policy", "must name an escalation policy")),
    };
    let severity = match v.get("severity") {
        None | Some(Value::Null) => Severity::P1,
        Some(Value::String(s)) => Severity::parse(s)
            .ok_or_else(|| ApiError::field("severity", "must be P0, P1, P2 or P3"))?,
        Some(_) => return Err(ApiError::field("severity", "must be P0, P1, P2 or P3")),
    };
    if state
        .store
        .oncall
        .get_doc(DocKind::Policy, &policy)
        .await?
        .is_none()
    {
        return Err(ApiError::field(
            "policy",
            format!("no escalation policy `{policy}` exists"),
        ));
    }
    let now = now_millis();
    let id = new_id("inc");
    let key = format!("drill:{id}");
    let batch = AlertBatch {
        dedup_key: key.clone(),
        complete: false,
        occurrences: vec![Occurrence {
            fingerprint: key.clone(),
            starts_at: now,
            status: "firing".into(),
            ends_at: None,
            labels: json!({"alertname": "PagingDrill", "policy": policy}),
            annotations: json!({"summary": "paging drill: please acknowledge"}),
            generator_url: String::new(),
        }],
        open: NewIncident {
            id: id.clone(),
            source: "drill".into(),
            route: "drill".into(),
            service: "drill".into(),
            severity,
            title: format!("Paging drill ({policy}): please acknowledge"),
            details: json!({"drill": true, "requested_by": who.name}),
            suppressed: false,
            notify_resolved: false,
        },
        at: now,
    };
    let opened = state.store.incidents.ingest(vec![batch]).await?;
    if opened.first() != Some(&Ingested::Opened(id.clone())) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "drill_not_opened",
            "the drill incident could not be opened",
        ));
    }
    state
        .store
        .escalations
        .start_escalation(&id, &policy, now)
        .await?;
    state.escalator_wake.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(json!({"incident": id, "policy": policy, "severity": severity})),
    )
        .into_response())
}
