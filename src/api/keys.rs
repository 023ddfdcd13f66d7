//! `/v1/api-keys`: create (the key is shown once), list, revoke. Admin only; audited.

use super::auth::{generate_key, hash_key, new_key_id};
use super::body::read_typed;
use super::{AppState, Caller};
use crate::core::types::{Role, now_millis};
use crate::error::ApiError;
use crate::store::ApiKeyRecord;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    role: String,
    #[serde(default)]
    rate_limit: Option<String>,
    #[serde(default)]
    approver: bool,
}

pub async fn create(
    State(state): State<AppState>,
    Caller(who): Caller,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Admin)?;
    let req: CreateKey = read_typed(body, state.cfg.server.max_body.0).await?;
    let name = req.name.trim_matches(super::body::schema_space);
    // Control characters are refused anywhere, also where trimming would hide them.
    if name.is_empty() || name.chars().count() > 100 || req.name.chars().any(char::is_control) {
        return Err(ApiError::field(
            "name",
            "must be 1 to 100 printable characters",
        ));
    }
    // Names say who did what in the audit log: unique among live keys, `admin` reserved.
    let taken = name.eq_ignore_ascii_case("admin")
        || state.cfg.api_keys.iter().any(|k| k.name == name)
        || state
            .store
            .keys
            .list_api_keys()
            .await?
            .iter()
            .any(|k| k.name == name);
    if taken {
        return Err(ApiError::field(
            "name",
            format!("`{name}` is already the name of another key (or reserved): pick another"),
        ));
    }
    let role: Role = req.role.parse().map_err(|m| ApiError::field("role", m))?;
    let rate_limit = req
        .rate_limit
        .map(|r| crate::config::Rate::parse(&r).map_err(|m| ApiError::field("rate_limit", m)))
        .transpose()?;
    let key = generate_key();
    let rec = ApiKeyRecord {
        id: new_key_id(),
        name: name.to_string(),
        role,
        rate_limit,
        prefix: key.chars().take(10).collect(),
        key_hash: hash_key(&key),
        created_at: now_millis(),
        approver: req.approver,
    };
    state
        .store
        .keys
        .create_api_key(rec.clone(), &who.name)
        .await?;
    state.auth.forget();
    let mut body = json!(rec);
    body["key"] = json!(key);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    who.require(Role::Admin)?;
    let keys = state.store.keys.list_api_keys().await?;
    Ok(Json(json!({ "data": keys })).into_response())
}

pub async fn revoke(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(Role::Admin)?;
    if state
        .store
        .keys
        .revoke_api_key(&id, &who.name, now_millis())
        .await?
    {
        state.auth.forget();
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "API key `{}`",
            id.chars().take(64).collect::<String>()
        )))
    }
}
