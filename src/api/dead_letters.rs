//! `/v1/dead-letters`: list and replay (audited with the caller as actor).

use super::body::read_typed;
use super::{AppState, Caller, list_filter, page};
use crate::core::types::{Channel, Role, now_millis};
use crate::error::ApiError;
use crate::store::ReplaySelector;
use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;

pub async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    who.require(Role::Viewer)?;
    let filter = list_filter(&q)?;
    let limit = filter.limit;
    let items = state.store.messages.dead_letters(filter).await?;
    Ok(page(items, limit, |d| d.message_id.clone()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    all: Option<bool>,
    #[serde(default)]
    channel: Option<String>,
}

pub async fn replay(
    State(state): State<AppState>,
    Caller(who): Caller,
    body: Body,
) -> Result<Response, ApiError> {
    who.require(Role::Operator)?;
    let b: ReplayBody = read_typed(body, state.cfg.server.max_body.0).await?;
    let sel = match (b.ids, b.all.unwrap_or(false)) {
        (Some(_), true) => return Err(ApiError::field("ids", "give `ids` or `all`, not both")),
        (Some(ids), false) => {
            if ids.is_empty() || ids.len() > 10_000 {
                return Err(ApiError::field("ids", "must hold 1 to 10000 message ids"));
            }
            if b.channel.is_some() {
                return Err(ApiError::field("channel", "only used with `all`"));
            }
            ReplaySelector::Ids(ids)
        }
        (None, true) => ReplaySelector::All {
            channel: b
                .channel
                .map(|c| {
                    c.parse::<Channel>()
                        .map_err(|m| ApiError::field("channel", m))
                })
                .transpose()?,
        },
        (None, false) => return Err(ApiError::field("ids", "give `ids` or `\"all\": true`")),
    };
    let n = state
        .store
        .messages
        .replay(sel, &who.name, now_millis())
        .await?;
    if n > 0 {
        state.wake.notify_one();
    }
    Ok(Json(json!({ "replayed": n })).into_response())
}
