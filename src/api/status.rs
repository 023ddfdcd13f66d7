//! The public status page (`/status`, open, read from the snapshot only, so it answers
//! while storage is down) and the operator routes that post incidents on it
//! (`/v1/status/incidents`, audited).

use super::body::read_typed;
use super::{AppState, Caller};
use crate::core::types::{Role, new_id, now_millis};
use crate::error::ApiError;
use crate::status::render;
use crate::status::state::State as CState;
use crate::store::{StatusIncident, StatusUpdate};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

const IMPACTS: [&str; 4] = ["none", "minor", "major", "critical"];
const STATUSES: [&str; 8] = [
    "investigating",
    "identified",
    "monitoring",
    "resolved",
    "scheduled",
    "in_progress",
    "verifying",
    "completed",
];

fn base(state: &AppState) -> String {
    state
        .cfg
        .server
        .public_url
        .clone()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string()
}

/// How long browsers and proxies may keep a status document: no longer than the snapshot
/// takes to be rebuilt (at most 5 s), so an outage shows within seconds.
fn max_age(state: &AppState) -> u64 {
    state.cfg.status.refresh.0.as_secs().min(5)
}

fn with(mut r: Response, content_type: &'static str, max_age: u64) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let cache = if max_age == 0 {
        "no-cache".to_string()
    } else {
        format!("public, max-age={max_age}")
    };
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn not_ready() -> Response {
    with(
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            "The status page is starting; try again in a few seconds.\n",
        )
            .into_response(),
        "text/plain; charset=utf-8",
        0,
    )
}

pub async fn page(State(state): State<AppState>) -> Response {
    let Some(s) = state.status.get() else {
        return not_ready();
    };
    match render::html(&s, now_millis()) {
        Ok(h) => with(
            h.into_response(),
            "text/html; charset=utf-8",
            max_age(&state),
        ),
        Err(e) => {
            tracing::error!(error = %e, "status page did not render");
            ApiError::internal().into_response()
        }
    }
}

pub async fn css() -> Response {
    with(render::CSS.into_response(), "text/css; charset=utf-8", 300)
}

/// `/status/api/v2/{doc}`: Statuspage's documents.
pub async fn api(State(state): State<AppState>, Path(doc): Path<String>) -> Response {
    let Some(s) = state.status.get() else {
        return not_ready();
    };
    let b = base(&state);
    let v = match doc.as_str() {
        "summary.json" => render::summary_json(&s, &b),
        "status.json" => render::status_json(&s, &b),
        "components.json" => render::components_json(&s, &b),
        "incidents.json" => render::incidents_json(&s, &b, false),
        "scheduled-maintenances.json" => json!({ "scheduled_maintenances": [] }),
        _ => return ApiError::not_found("status document").into_response(),
    };
    with(Json(v).into_response(), "application/json", max_age(&state))
}

pub async fn unresolved(State(state): State<AppState>) -> Response {
    let Some(s) = state.status.get() else {
        return not_ready();
    };
    with(
        Json(render::incidents_json(&s, &base(&state), true)).into_response(),
        "application/json",
        max_age(&state),
    )
}

pub async fn atom(State(state): State<AppState>) -> Response {
    let Some(s) = state.status.get() else {
        return not_ready();
    };
    with(
        render::atom(&s, &base(&state)).into_response(),
        "application/atom+xml; charset=utf-8",
        max_age(&state),
    )
}

pub async fn badge(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let Some(component) = file.strip_suffix(".svg") else {
        return ApiError::not_found("badge (ask for <component>.svg)").into_response();
    };
    let s = state.status.get();
    with(
        render::badge(s.as_deref(), component).into_response(),
        "image/svg+xml",
        max_age(&state),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Affected {
    id: String,
    status: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewIncident {
    title: String,
    impact: String,
    status: String,
    #[serde(default)]
    components: Vec<Affected>,
    body: String,
    #[serde(default)]
    incident_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUpdate {
    status: String,
    body: String,
    #[serde(default)]
    components: Option<Vec<Affected>>,
}

fn text(field: &str, v: &str, max: usize) -> Result<String, ApiError> {
    let t = v.trim_matches(super::body::schema_space);
    if t.is_empty() || t.chars().count() > max || v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::field(
            field,
            format!("1 to {max} printable characters"),
        ));
    }
    Ok(t.to_string())
}

fn one_of(field: &str, v: &str, allowed: &[&str]) -> Result<String, ApiError> {
    if allowed.contains(&v) {
        Ok(v.to_string())
    } else {
        Err(ApiError::field(
            field,
            format!("must be one of {}", allowed.join(", ")),
        ))
    }
}

fn affected(state: &AppState, list: &[Affected]) -> Result<Value, ApiError> {
    let known: Vec<String> = crate::status::component_ids(state)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut out = Vec::new();
    for (i, a) in list.iter().enumerate() {
        if !known.contains(&a.id) {
            return Err(ApiError::field(
                &format!("components[{i}].id"),
                format!("unknown component; one of {}", known.join(", ")),
            ));
        }
        if CState::parse(&a.status).is_none() {
            return Err(ApiError::field(
                &format!("components[{i}].status"),
                "operational, under_maintenance, degraded_performance, partial_outage or major_outage",
            ));
        }
        out.push(json!({ "id": a.id, "status": a.status }));
    }
    Ok(Value::Array(out))
}

pub async fn list_incidents(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let list = state.store.console.status_incidents(50).await?;
    Ok(Json(json!({ "data": list })).into_response())
}

pub async fn post_incident(
    State(state): State<AppState>,
    Caller(who): Caller,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    let b: NewIncident = read_typed(body, state.cfg.server.max_body.0).await?;
    let now = now_millis();
    let status = one_of("status", &b.status, &STATUSES)?;
    let resolved = matches!(status.as_str(), "resolved" | "completed");
    let i = StatusIncident {
        id: new_id("st"),
        title: text("title", &b.title, 200)?,
        impact: one_of("impact", &b.impact, &IMPACTS)?,
        components: affected(&state, &b.components)?,
        incident_id: match b.incident_id.as_deref() {
            None => None,
            // An empty id names nothing: leave the field out (or null) instead.
            Some(i)
                if i.is_empty() || i.chars().count() > 100 || i.chars().any(char::is_control) =>
            {
                return Err(ApiError::field(
                    "incident_id",
                    "1 to 100 printable characters, or null",
                ));
            }
            Some(i) => Some(i.to_string()),
        },
        created_at: now,
        updated_at: now,
        resolved_at: resolved.then_some(now),
        updates: vec![StatusUpdate {
            id: new_id("su"),
            status: status.clone(),
            body: text("body", &b.body, 5000)?,
            actor: who.name.clone(),
            created_at: now,
        }],
        status,
    };
    state.store.console.post_status_incident(i.clone()).await?;
    crate::status::refresh_now(&state).await;
    Ok((StatusCode::CREATED, Json(json!(i))).into_response())
}

pub async fn post_update(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    let b: NewUpdate = read_typed(body, state.cfg.server.max_body.0).await?;
    let u = StatusUpdate {
        id: new_id("su"),
        status: one_of("status", &b.status, &STATUSES)?,
        body: text("body", &b.body, 5000)?,
        actor: who.name.clone(),
        created_at: now_millis(),
    };
    let comps = b
        .components
        .as_deref()
        .map(|c| affected(&state, c))
        .transpose()?;
    if !state
        .store
        .console
        .post_status_update(&id, u.clone(), comps)
        .await?
    {
        return Err(ApiError::not_found(format!(
            "status incident `{}`",
            id.chars().take(64).collect::<String>()
        )));
    }
    crate::status::refresh_now(&state).await;
    Ok((StatusCode::CREATED, Json(json!(u))).into_response())
}
