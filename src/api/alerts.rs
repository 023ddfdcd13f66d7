//! Alerts in: `POST /v1/alerts/alertmanager` (Alertmanager's webhook, version 4) and
//! `POST /v1/alerts/events` (PagerDuty Events API v2). Towards Alertmanager, which retries
//! 5xx only: `200` only after the incidents are committed; `503` + `Retry-After` when
//! storage cannot take them; `4xx` only for what no retry can fix (a bad key, a malformed
//! body), each counted in `herald_alert_payloads_refused`.

use super::{AppState, body::read_json};
use crate::core::alerts::routes::Route;
use crate::core::alerts::{am, batches, events};
use crate::core::types::{Role, new_id, now_millis};
use crate::error::ApiError;
use crate::metrics::{AlertLabels, SeverityLabels};
use crate::providers::signing::constant_time_eq;
use crate::store::{Acted, AlertBatch, IncidentAction, Ingested};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

fn refused(state: &AppState, source: &str, e: ApiError) -> ApiError {
    state
        .metrics
        .alerts_refused
        .get_or_create(&AlertLabels {
            source: source.into(),
            outcome: e.code.into(),
        })
        .inc();
    tracing::warn!(source, code = e.code, detail = %e.detail, "alert payload refused");
    e
}

/// Who may file the payload where: a `sender` key reaches every route, a route's own token
/// that route only.
async fn routes_allowed(state: &AppState, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) {
        let own = state.routes.iter().find(|r| {
            r.cfg
                .token
                .as_ref()
                .is_some_and(|t| constant_time_eq(t.expose().as_bytes(), token.as_bytes()))
        });
        if let Some(r) = own {
            return Ok(Some(r.cfg.id.clone()));
        }
    }
    let who = state.auth.authenticate(header).await?;
    who.require(Role::Sender)?;
    state.auth.admit(&who, now_millis()).await?;
    Ok(None)
}

/// Commits the batches and counts what they did; wakes the pager when pages are owed.
async fn commit(
    state: &AppState,
    source: &str,
    batches: Vec<AlertBatch>,
) -> Result<Vec<Ingested>, ApiError> {
    let severities: Vec<_> = batches.iter().map(|b| b.open.severity).collect();
    let n = batches.len();
    let done = state.store.incidents.ingest(batches).await?;
    let mut opened = false;
    for (i, d) in done.iter().enumerate() {
        let outcome = match d {
            Ingested::Opened(_) => {
                opened = true;
                if let Some(s) = severities.get(i) {
                    state
                        .metrics
                        .incidents_opened
                        .get_or_create(&SeverityLabels {
                            severity: s.as_str().into(),
                        })
                        .inc();
                }
                "opened"
            }
            Ingested::Updated(_) => "updated",
            Ingested::Resolved(id) => {
                opened = true; // a resolved notice is owed
                let (st, id) = (state.clone(), id.clone());
                tokio::spawn(
                    async move { crate::worker::answer::resolved_elsewhere(&st, &id).await },
                );
                "resolved"
            }
            Ingested::Unchanged => "unchanged",
        };
        state
            .metrics
            .alerts
            .get_or_create(&AlertLabels {
                source: source.into(),
                outcome: outcome.into(),
            })
            .inc();
    }
    if opened {
        state.pager_wake.notify_one();
    }
    tracing::debug!(source, batches = n, "alerts committed");
    Ok(done)
}

pub async fn alertmanager(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    const SRC: &str = "alertmanager";
    let only = routes_allowed(&state, &headers)
        .await
        .map_err(|e| refused(&state, SRC, e))?;
    let value = read_json(body, state.cfg.server.max_body.0)
        .await
        .map_err(|e| refused(&state, SRC, e))?;
    let payload: am::Payload = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        refused(&state, SRC, ApiError::field(&field, e.inner().to_string()))
    })?;
    let (payload, alerts) =
        am::check(payload).map_err(|e| refused(&state, SRC, ApiError::validation(e)))?;
    // Alerts a heartbeat takes as its ping (Alertmanager's always-firing Watchdog) ping it
    // and page no one.
    let mut alerts = alerts;
    let now = now_millis();
    let mut pinged = Vec::new();
    alerts.retain(|a| {
        let hb = state.heartbeats.iter().find(|h| {
            !h.watchdog.is_empty()
                && crate::core::alerts::matchers::all_match(&h.watchdog, &a.alert.labels)
        });
        match hb {
            Some(h) => {
                if a.alert.status == "firing" {
                    pinged.push(h.cfg.id.clone());
                }
                false
            }
            None => true,
        }
    });
    pinged.dedup();
    for id in &pinged {
        state.store.incidents.ping_heartbeat(id, now).await?;
    }
    let may_use = |r: &Route| only.as_ref().is_none_or(|id| *id == r.cfg.id);
    let batches = batches::from_alertmanager(
        &state.routes,
        &payload,
        &alerts,
        &may_use,
        &mut || new_id("inc"),
        now_millis(),
    );
    let done = if batches.is_empty() {
        Vec::new()
    } else {
        commit(&state, SRC, batches).await?
    };
    let incidents: Vec<&str> = done
        .iter()
        .filter_map(|d| match d {
            Ingested::Opened(id) | Ingested::Updated(id) | Ingested::Resolved(id) => {
                Some(id.as_str())
            }
            Ingested::Unchanged => None,
        })
        .collect();
    Ok(
        Json(json!({"status": "ok", "alerts": alerts.len(), "incidents": incidents}))
            .into_response(),
    )
}

/// PagerDuty's answer to an event it cannot take.
fn pd_invalid(state: &AppState, errors: Vec<String>) -> Response {
    state
        .metrics
        .alerts_refused
        .get_or_create(&AlertLabels {
            source: "events".into(),
            outcome: "invalid_event".into(),
        })
        .inc();
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors})),
    )
        .into_response()
}

pub async fn events(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let value = match read_json(body, state.cfg.server.max_body.0).await {
        Ok(v) => v,
        Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE => return Err(e),
        Err(e) => return Ok(pd_invalid(&state, vec![e.detail])),
    };
    let ev = match events::parse(&value) {
        Ok(e) => e,
        Err(errs) => return Ok(pd_invalid(&state, errs)),
    };
    // The routing key is the credential, as with PagerDuty.
    let Some(route) = state.routes.iter().find(|r| {
        r.cfg
            .routing_key
            .as_ref()
            .is_some_and(|k| constant_time_eq(k.expose().as_bytes(), ev.routing_key.as_bytes()))
    }) else {
        return Ok(pd_invalid(
            &state,
            vec!["'routing_key' is not the routing key of any route".into()],
        ));
    };
    let dedup = ev.dedup_key.clone().unwrap_or_else(|| new_id("dk"));
    let key = batches::events_key(&route.cfg.id, &dedup);
    match ev.action {
        events::Action::Trigger => {
            let b = vec![batches::from_event(
                route,
                &ev,
                &dedup,
                new_id("inc"),
                now_millis(),
            )];
            commit(&state, "events", b).await?;
        }
        events::Action::Acknowledge | events::Action::Resolve => {
            // An event for no open incident changes nothing, as with PagerDuty.
            if let Some(open) = state.store.incidents.open_incident(&key).await? {
                let action = if ev.action == events::Action::Acknowledge {
                    IncidentAction::Acknowledge
                } else {
                    IncidentAction::Resolve
                };
                let acted = state
                    .store
                    .incidents
                    .act_incident(&open.id, action, "events", "Events API", now_millis())
                    .await?;
                if matches!(acted, Acted::Done(_)) && action == IncidentAction::Resolve {
                    state.pager_wake.notify_one();
                    crate::worker::answer::resolved_elsewhere(&state, &open.id).await;
                }
            }
            state
                .metrics
                .alerts
                .get_or_create(&AlertLabels {
                    source: "events".into(),
                    outcome: if ev.action == events::Action::Acknowledge {
                        "acknowledge"
                    } else {
                        "resolve"
                    }
                    .into(),
                })
                .inc();
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "success", "message": "Event processed", "dedup_key": dedup})),
    )
        .into_response())
}
