//! `/v1/schedules` and `/v1/escalation-policies`: on-call documents. `viewer` reads,
//! `operator` writes; the contacts and schedules a document names must exist; every change
//! is audited by the store with the fields it changed.

use super::auth::Principal;
use super::body::read_json;
use super::{AppState, Caller, page, page_limit};
use crate::core::oncall::policy_doc::PolicyDoc;
use crate::core::oncall::schedule::on_call;
use crate::core::oncall::schedule_doc::ScheduleDoc;
use crate::core::types::{Millis, Role, now_millis, parse_rfc3339, rfc3339};
use crate::core::validate::{FieldError, decode_as, valid_user};
use crate::error::ApiError;
use crate::store::{DocKind, DocRecord, Expect};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Replacements retried when another writer created the same document at the same moment.
const EDIT_TRIES: usize = 5;

fn noun(kind: DocKind) -> &'static str {
    match kind {
        DocKind::Schedule => "schedule",
        DocKind::Policy => "escalation policy",
    }
}

fn view(r: &DocRecord) -> Value {
    let mut v = r.body.clone();
    v["id"] = json!(r.id);
    v["version"] = json!(r.version);
    v["created_at"] = json!(rfc3339(r.created_at));
    v["updated_at"] = json!(rfc3339(r.updated_at));
    v
}

fn check_id(id: &str) -> Result<(), ApiError> {
    valid_user(id).map_err(|m| ApiError::field("id", m))
}

/// The document of a request, checked: its fields, then that what it names exists. Returns
/// the id (from the path, or the body when creating) and the body to store.
async fn document(
    state: &AppState,
    kind: DocKind,
    mut doc: Value,
    path_id: Option<&str>,
) -> Result<(String, Value), ApiError> {
    let Some(obj) = doc.as_object_mut() else {
        return Err(ApiError::field("body", "must be a JSON object"));
    };
    for k in ["version", "created_at", "updated_at"] {
        obj.remove(k);
    }
    let id = match (obj.remove("id"), path_id) {
        (None, Some(p)) => p.to_string(),
        (Some(Value::String(s)), Some(p)) if s == p => s,
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "id",
                format!(
                    "must be the id in the path (a {}'s id cannot change)",
                    noun(kind)
                ),
            ));
        }
        (Some(Value::String(s)), None) => s,
        (_, None) => return Err(ApiError::field("id", "must be given")),
    };
    check_id(&id)?;
    let mut errs: Vec<FieldError> = Vec::new();
    let mut refs: Vec<(String, String, String)> = Vec::new();
    let body = match kind {
        DocKind::Schedule => {
            let d: ScheduleDoc = decode_as(doc).map_err(|e| ApiError::validation(vec![e]))?;
            if let Err(e) = d.compile() {
                errs.extend(e);
            }
            for (f, p) in d.people() {
                refs.push((f, "contact".into(), p.to_string()));
            }
            json!(d)
        }
        DocKind::Policy => {
            let d: PolicyDoc = decode_as(doc).map_err(|e| ApiError::validation(vec![e]))?;
            errs.extend(d.check(&|c| state.chat_targets.contains_key(c)));
            for (f, k, v) in d.references() {
                if k == "contact" || k == "schedule" {
                    refs.push((f, k.to_string(), v.to_string()));
                }
            }
            json!(d)
        }
    };
    if !errs.is_empty() {
        return Err(ApiError::validation(errs));
    }
    let mut seen: HashMap<(String, String), bool> = HashMap::new();
    for (field, k, v) in refs {
        let key = (k.clone(), v.clone());
        let found = match seen.get(&key) {
            Some(f) => *f,
            None => {
                let f = match k.as_str() {
                    "contact" => state.store.contacts.get_contact(&v).await?.is_some(),
                    _ => state
                        .store
                        .oncall
                        .get_doc(DocKind::Schedule, &v)
                        .await?
                        .is_some(),
                };
                seen.insert(key, f);
                f
            }
        };
        if !found {
            errs.push(FieldError::new(field, format!("no {k} `{v}` exists")));
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::validation(errs));
    }
    Ok((id, body))
}

async fn create(
    state: AppState,
    who: Principal,
    kind: DocKind,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    let doc = read_json(body, state.cfg.server.max_body.0).await?;
    let (id, body) = document(&state, kind, doc, None).await?;
    match state
        .store
        .oncall
        .put_doc(kind, &id, body, Expect::Absent, &who.name, now_millis())
        .await?
    {
        Some(r) => Ok((StatusCode::CREATED, Json(view(&r))).into_response()),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "document_exists",
            format!("{} `{id}` exists already: PUT it", noun(kind)),
        )),
    }
}

async fn list(
    state: AppState,
    who: Principal,
    kind: DocKind,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let limit = page_limit(q.get("limit").map(String::as_str))?;
    let after = q.get("after").filter(|s| !s.is_empty()).cloned();
    if let Some(a) = &after {
        valid_user(a).map_err(|m| ApiError::field("after", m))?;
    }
    let items = state.store.oncall.list_docs(kind, after, limit).await?;
    let views: Vec<Value> = items.iter().map(view).collect();
    Ok(page(views, limit, |v| v["id"].clone()))
}

async fn get_doc(state: &AppState, kind: DocKind, id: &str) -> Result<DocRecord, ApiError> {
    check_id(id)?;
    state
        .store
        .oncall
        .get_doc(kind, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{} `{id}`", noun(kind))))
}

async fn put(
    state: AppState,
    who: Principal,
    kind: DocKind,
    id: String,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    check_id(&id)?;
    let doc = read_json(body, state.cfg.server.max_body.0).await?;
    let expect = super::expected_version(&doc)?;
    let (id, body) = document(&state, kind, doc, Some(&id)).await?;
    for _ in 0..EDIT_TRIES {
        let Some(r) = state
            .store
            .oncall
            .put_doc(kind, &id, body.clone(), expect, &who.name, now_millis())
            .await?
        else {
            if let Expect::Version(v) = expect {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "document_changed",
                    format!(
                        "{} `{id}` is no longer at version {v} (or is gone): read it again",
                        noun(kind)
                    ),
                ));
            }
            continue; // created by another writer at the same moment: replace it
        };
        let status = if r.version == 1 {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return Ok((status, Json(view(&r))).into_response());
    }
    Err(ApiError {
        retry_after: Some(1),
        ..ApiError::new(
            StatusCode::CONFLICT,
            "document_busy",
            format!(
                "{} `{id}` is being written by others at the same time: retry",
                noun(kind)
            ),
        )
    })
}

/// Who still names the document: policies that page a schedule, routes that name a policy.
async fn users_of(state: &AppState, kind: DocKind, id: &str) -> Result<Vec<String>, ApiError> {
    match kind {
        DocKind::Policy => {
            let mut out: Vec<String> = state
                .routes
                .iter()
                .filter(|r| r.cfg.escalation_policy.as_deref() == Some(id))
                .map(|r| format!("alert route `{}`", r.cfg.id))
                .collect();
            let running = state.store.escalations.escalations_using(id).await?;
            if running > 0 {
                out.push(format!("{running} open incident(s) escalating by it"));
            }
            Ok(out)
        }
        DocKind::Schedule => {
            let mut out = Vec::new();
            let mut after = None;
            loop {
                let batch = state
                    .store
                    .oncall
                    .list_docs(DocKind::Policy, after.clone(), 500)
                    .await?;
                for p in &batch {
                    if let Ok(d) = serde_json::from_value::<PolicyDoc>(p.body.clone())
                        && d.references()
                            .iter()
                            .any(|(_, k, v)| *k == "schedule" && *v == id)
                    {
                        out.push(format!("escalation policy `{}`", p.id));
                    }
                }
                if batch.len() < 500 {
                    return Ok(out);
                }
                after = batch.last().map(|p| p.id.clone());
            }
        }
    }
}

async fn delete(
    state: AppState,
    who: Principal,
    kind: DocKind,
    id: String,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    check_id(&id)?;
    let users = users_of(&state, kind, &id).await?;
    if !users.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "document_in_use",
            format!(
                "{} `{id}` is used by {}: change those first",
                noun(kind),
                users.join(", ")
            ),
        ));
    }
    if state
        .store
        .oncall
        .delete_doc(kind, &id, &who.name, now_millis())
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("{} `{id}`", noun(kind))))
    }
}

/// Who the stored schedule `id` has on call at `at` (now when absent).
pub async fn on_call_at(
    state: &AppState,
    id: &str,
    at: Millis,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(r) = state.store.oncall.get_doc(DocKind::Schedule, id).await? else {
        return Ok(None);
    };
    let doc: ScheduleDoc = serde_json::from_value(r.body).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("stored schedule `{id}` unreadable: {e}"),
        )
    })?;
    let s = doc.compile().map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("stored schedule `{id}` no longer compiles"),
        )
    })?;
    Ok(Some(on_call(&s, at)))
}

pub async fn schedule_on_call(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    check_id(&id)?;
    let at = match q.get("at").filter(|s| !s.is_empty()) {
        None => now_millis(),
        Some(s) => parse_rfc3339(s).map_err(|m| ApiError::field("at", m))?,
    };
    match on_call_at(&state, &id, at).await? {
        Some(people) => {
            Ok(Json(json!({"schedule": id, "at": rfc3339(at), "on_call": people})).into_response())
        }
        None => Err(ApiError::not_found(format!("schedule `{id}`"))),
    }
}

macro_rules! handlers {
    ($kind:expr, $create:ident, $list:ident, $get:ident, $put:ident, $delete:ident) => {
        pub async fn $create(
            State(s): State<AppState>,
            Caller(w): Caller,
            b: Body,
        ) -> Result<Response, ApiError> {
            create(s, w, $kind, b).await
        }
        pub async fn $list(
            State(s): State<AppState>,
            Caller(w): Caller,
            Query(q): Query<HashMap<String, String>>,
        ) -> Result<Response, ApiError> {
            list(s, w, $kind, q).await
        }
        pub async fn $get(
            State(s): State<AppState>,
            Caller(w): Caller,
            Path(id): Path<String>,
        ) -> Result<Response, ApiError> {
            w.require(Role::Viewer)?;
            Ok(Json(view(&get_doc(&s, $kind, &id).await?)).into_response())
        }
        pub async fn $put(
            State(s): State<AppState>,
            Caller(w): Caller,
            Path(id): Path<String>,
            b: Body,
        ) -> Result<Response, ApiError> {
            put(s, w, $kind, id, b).await
        }
        pub async fn $delete(
            State(s): State<AppState>,
            Caller(w): Caller,
            Path(id): Path<String>,
        ) -> Result<Response, ApiError> {
            delete(s, w, $kind, id).await
        }
    };
}

handlers!(
    DocKind::Schedule,
    create_schedule,
    list_schedules,
    get_schedule,
    put_schedule,
    delete_schedule
);
handlers!(
    DocKind::Policy,
    create_policy,
    list_policies,
    get_policy,
    put_policy,
    delete_policy
);
