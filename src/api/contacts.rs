//! `/v1/contacts`: the people `to.user` names. `sender` reads (and registers a browser's push
//! subscription), `operator` writes; every change is audited by the store.

use super::body::read_json;
use super::{AppState, Caller, page, page_limit};
use crate::core::contact::{Contact, WebPushSubscription, check_webpush};
use crate::core::types::{Role, now_millis, rfc3339};
use crate::core::validate::{FieldError, decode_as, valid_user};
use crate::error::ApiError;
use crate::store::{ContactRecord, Expect};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Edits of one contact retried when another edit landed in between.
const EDIT_TRIES: usize = 5;

fn view(r: &ContactRecord) -> Value {
    let mut v = json!(r.contact);
    v["version"] = json!(r.version);
    v["created_at"] = json!(rfc3339(r.created_at));
    v["updated_at"] = json!(rfc3339(r.updated_at));
    v
}

fn check_id(id: &str) -> Result<(), ApiError> {
    valid_user(id).map_err(|m| ApiError::field("id", m))
}

/// Decodes and validates a contact document; `path_id` is the id of the route, if any (the
/// body may leave it out, or must repeat it).
fn contact_from(
    state: &AppState,
    mut doc: Value,
    path_id: Option<&str>,
) -> Result<Contact, ApiError> {
    let Some(obj) = doc.as_object_mut() else {
        return Err(ApiError::field("body", "must be a JSON object"));
    };
    // What a read returns may be sent back as it is.
    for k in ["version", "created_at", "updated_at"] {
        obj.remove(k);
    }
    if let Some(id) = path_id {
        match obj.get("id") {
            None => {
                obj.insert("id".into(), json!(id));
            }
            Some(Value::String(s)) if s == id => {}
            Some(_) => {
                return Err(ApiError::field(
                    "id",
                    "must be the id in the path (a contact's id cannot change)",
                ));
            }
        }
    }
    let c: Contact = decode_as(doc).map_err(|e| ApiError::validation(vec![e]))?;
    c.validate(&|id| state.chat_targets.contains_key(id))
        .map_err(ApiError::validation)?;
    Ok(c)
}

fn exists(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "contact_exists",
        format!("contact `{id}` exists already: PUT or PATCH it"),
    )
}

pub async fn create(
    State(state): State<AppState>,
    Caller(who): Caller,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    let doc = read_json(body, state.cfg.server.max_body.0).await?;
    let c = contact_from(&state, doc, None)?;
    let id = c.id.clone();
    match state
        .store
        .contacts
        .put_contact(c, Expect::Absent, &who.name, now_millis())
        .await?
    {
        Some(r) => Ok((StatusCode::CREATED, Json(view(&r))).into_response()),
        None => Err(exists(&id)),
    }
}

pub async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    who.require(Role::Sender)?;
    let limit = page_limit(q.get("limit").map(String::as_str))?;
    let after = q.get("after").filter(|s| !s.is_empty()).cloned();
    if let Some(a) = &after {
        valid_user(a).map_err(|m| ApiError::field("after", m))?;
    }
    let items = state.store.contacts.list_contacts(after, limit).await?;
    let views: Vec<Value> = items.iter().map(view).collect();
    Ok(page(views, limit, |v| v["id"].clone()))
}

pub async fn get_one(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Role::Sender)?;
    check_id(&id)?;
    match state.store.contacts.get_contact(&id).await? {
        Some(r) => Ok(Json(view(&r)).into_response()),
        None => Err(ApiError::not_found(format!("contact `{id}`"))),
    }
}

/// Replaces the contact whole (or creates it): `201` when new, `200` when replaced.
pub async fn put(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    check_id(&id)?;
    let doc = read_json(body, state.cfg.server.max_body.0).await?;
    // A document that says which version it replaces (as a read returns it) replaces only
    // that one: an edit made in between is not overwritten unseen.
    let expect = super::expected_version(&doc)?;
    let c = contact_from(&state, doc, Some(&id))?;
    for _ in 0..EDIT_TRIES {
        let Some(r) = state
            .store
            .contacts
            .put_contact(c.clone(), expect, &who.name, now_millis())
            .await?
        else {
            if let Expect::Version(v) = expect {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "contact_changed",
                    format!(
                        "contact `{id}` is no longer at version {v} (or is gone): read it again"
                    ),
                ));
            }
            continue; // created by someone else at the same moment: replace it
        };
        let status = if r.version == 1 {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return Ok((status, Json(view(&r))).into_response());
    }
    Err(busy(&id))
}

fn busy(id: &str) -> ApiError {
    ApiError {
        retry_after: Some(1),
        ..ApiError::new(
            StatusCode::CONFLICT,
            "contact_busy",
            format!("contact `{id}` is being edited by others at the same time: retry"),
        )
    }
}

/// RFC 7396 JSON merge patch: objects merge, `null` removes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (_, Some(p)) => {
            *target = json!({});
            merge(target, &Value::Object(p.clone()));
        }
        _ => *target = patch.clone(),
    }
}

/// Changes the fields the body names (JSON merge patch) on what is stored now.
pub async fn patch(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    check_id(&id)?;
    let patch = read_json(body, state.cfg.server.max_body.0).await?;
    if !patch.is_object() {
        return Err(ApiError::field(
            "body",
            "must be a JSON object (a merge patch)",
        ));
    }
    edit(&state, &who.name, &id, |doc| {
        merge(doc, &patch);
        Ok(())
    })
    .await
}

/// Reads the contact, changes its document with `change`, writes it back if nobody wrote in
/// between (else again, a few times).
async fn edit(
    state: &AppState,
    actor: &str,
    id: &str,
    change: impl Fn(&mut Value) -> Result<(), ApiError>,
) -> Result<Response, ApiError> {
    for _ in 0..EDIT_TRIES {
        let Some(now) = state.store.contacts.get_contact(id).await? else {
            return Err(ApiError::not_found(format!("contact `{id}`")));
        };
        let mut doc = json!(now.contact);
        change(&mut doc)?;
        let c = contact_from(state, doc, Some(id))?;
        if let Some(r) = state
            .store
            .contacts
            .put_contact(c, Expect::Version(now.version), actor, now_millis())
            .await?
        {
            return Ok(Json(view(&r)).into_response());
        }
    }
    Err(busy(id))
}

pub async fn delete(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    check_id(&id)?;
    if state
        .store
        .contacts
        .delete_contact(&id, &who.name, now_millis())
        .await?
    {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("contact `{id}`")))
    }
}

/// Adds a browser's `PushSubscription.toJSON()` to the contact (the same endpoint again
/// replaces its keys). A `sender` may: registering a browser is what an application's
/// backend does for its signed-in user.
pub async fn add_push_subscription(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Sender)?;
    check_id(&id)?;
    let doc = read_json(body, state.cfg.server.max_body.0).await?;
    let sub: WebPushSubscription = decode_as(doc).map_err(|e| ApiError::validation(vec![e]))?;
    let mut errs: Vec<FieldError> = Vec::new();
    check_webpush(&sub, "subscription", &mut errs);
    if !errs.is_empty() {
        for e in &mut errs {
            e.field = e.field.trim_start_matches("subscription.").to_string();
        }
        return Err(ApiError::validation(errs));
    }
    let sub_json = json!(sub);
    let r = edit(&state, &who.name, &id, |doc| {
        let list = doc
            .as_object_mut()
            .map(|o| o.entry("push").or_insert(json!({})))
            .and_then(|p| p.as_object_mut())
            .map(|p| p.entry("webpush").or_insert(json!([])));
        if let Some(Value::Array(subs)) = list {
            subs.retain(|s| s["endpoint"] != sub_json["endpoint"]);
            subs.push(sub_json.clone());
        }
        Ok(())
    })
    .await?;
    Ok((StatusCode::CREATED, r).into_response())
}
