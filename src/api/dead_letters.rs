//! `/v1/dead-letters`: list and replay (audited with the caller as actor).

use super::body::read_json;
use super::{AppState, Caller, page_limit};
use crate::core::types::{Channel, Role, now_millis};
use crate::error::ApiError;
use crate::store::{ListFilter, ReplaySelector};
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
    let filter = ListFilter {
        channel: q
            .get("channel")
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|m| ApiError::field("channel", m)))
            .transpose()?,
        limit: page_limit(q.get("limit").map(String::as_str))?,
        after: q.get("after").filter(|s| !s.is_empty()).cloned(),
        ..Default::default()
    };
    let limit = filter.limit;
    let items = state.store.dead_letters(filter).await?;
    let next = (items.len() == limit)
        .then(|| items.last().map(|d| d.message_id.clone()))
        .flatten();
    Ok(Json(json!({ "data": items, "next_after": next })).into_response())
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
    let value = read_json(body, state.cfg.server.max_body.0).await?;
    let b: ReplayBody = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::field(
            if path == "." { "body" } else { &path },
            e.inner().to_string(),
        )
    })?;
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
    let n = state.store.replay(sel, &who.name, now_millis()).await?;
    if n > 0 {
        state.wake.notify_one();
    }
    Ok(Json(json!({ "replayed": n })).into_response())
}
