//! `/v1/dead-letters`: list and replay (audited with the caller as actor).

use super::body::read_typed;
use super::{AppState, Caller, list_filter, page};
use crate::core::types::{Channel, Role};
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
    /// Why (kept in the audit log; an approval request shows it).
    #[serde(default)]
    reason: Option<String>,
    /// Count what would be replayed, by channel, and replay nothing.
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    break_glass: Option<String>,
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
    let (ids, channel) = match sel {
        ReplaySelector::Ids(ids) => (Some(ids), None),
        ReplaySelector::All { channel } => (None, channel),
    };
    if b.dry_run {
        let (n, by) = super::actions::replay_preview(&state, ids.as_deref(), channel).await?;
        let over = state.cfg.approvals.requires("dead_letters.replay")
            && n > state.cfg.approvals.replay_over;
        return Ok(Json(json!({
            "would_replay": n,
            "channels": by,
            "needs_approval": over,
        }))
        .into_response());
    }
    let reason = match &b.reason {
        Some(r) => super::operators::check_reason(r)?,
        None => "dead letters replayed".to_string(),
    };
    super::actions::submit(
        &state,
        &who,
        super::actions::Action::Replay { ids, channel },
        reason,
        b.break_glass,
    )
    .await
}
