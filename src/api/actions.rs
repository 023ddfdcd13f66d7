//! The operator actions that can be critical (a mode switch, disabling a provider, a dead
//! letter replay) and the one pipeline every caller goes through — the JSON API, the console
//! and an approval being executed: classify, then act now, ask a second person (`202
//! {"approval":…}`) or act alone (break-glass, flagged for review).

use super::AppState;
use super::auth::Principal;
use crate::core::approval::{Gate, gate};
use crate::core::types::{Channel, Millis, Role, new_id, now_millis};
use crate::error::ApiError;
use crate::store::{ApprovalRecord, ListFilter, ProviderSwitch, ReplaySelector};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// An action, as it will be executed (and as an approval request keeps it).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    ModeSet {
        mode: String,
    },
    ProviderSwitch {
        provider: String,
        disabled: bool,
        until: Option<Millis>,
    },
    Replay {
        ids: Option<Vec<String>>,
        channel: Option<Channel>,
    },
}

impl Action {
    /// The name approval requests and the audit log use.
    pub fn name(&self) -> &'static str {
        match self {
            Action::ModeSet { .. } => "mode.set",
            Action::ProviderSwitch { disabled: true, .. } => "provider.disable",
            Action::ProviderSwitch { .. } => "provider.enable",
            Action::Replay { .. } => "dead_letters.replay",
        }
    }

    /// The role the action needs (an approver needs it too).
    pub fn role(&self) -> Role {
        match self {
            Action::ModeSet { .. } => Role::Admin,
            _ => Role::Operator,
        }
    }

    pub fn params(&self) -> Value {
        match self {
            Action::ModeSet { mode } => json!({ "mode": mode }),
            Action::ProviderSwitch {
                provider,
                disabled,
                until,
            } => json!({ "provider": provider, "disabled": disabled, "until": until }),
            Action::Replay { ids: Some(ids), .. } => json!({ "ids": ids }),
            Action::Replay { channel, .. } => json!({ "all": true, "channel": channel }),
        }
    }

    /// Reads an action back from an approval request.
    pub fn from_stored(name: &str, p: &Value) -> Option<Action> {
        let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
        match name {
            "mode.set" => Some(Action::ModeSet { mode: s("mode")? }),
            "provider.disable" | "provider.enable" => Some(Action::ProviderSwitch {
                provider: s("provider")?,
                disabled: name == "provider.disable",
                until: p.get("until").and_then(Value::as_i64),
            }),
            "dead_letters.replay" => Some(Action::Replay {
                ids: p
                    .get("ids")
                    .and_then(|v| serde_json::from_value(v.clone()).ok()),
                channel: s("channel").and_then(|c| c.parse().ok()),
            }),
            _ => None,
        }
    }

    /// The action in words, for the request's reader.
    pub fn summary(&self, replay_count: Option<u64>) -> String {
        match self {
            Action::ModeSet { mode } => format!("switch the mode to {mode}"),
            Action::ProviderSwitch {
                provider,
                disabled: true,
                until,
            } => match until {
                Some(u) => format!(
                    "disable provider {provider} until {}",
                    crate::core::types::rfc3339(*u)
                ),
                None => format!("disable provider {provider}"),
            },
            Action::ProviderSwitch { provider, .. } => format!("enable provider {provider}"),
            Action::Replay { ids: Some(ids), .. } => {
                format!("replay {} dead letters (by id)", ids.len())
            }
            Action::Replay { channel, .. } => format!(
                "replay {} dead letters{}",
                replay_count.map(|n| n.to_string()).unwrap_or_default(),
                channel.map(|c| format!(" of {c}")).unwrap_or_default()
            ),
        }
    }
}

/// How many dead letters a replay would take, by channel (paged through, bounded).
pub async fn replay_preview(
    state: &AppState,
    ids: Option<&[String]>,
    channel: Option<Channel>,
) -> Result<(u64, BTreeMap<String, u64>), ApiError> {
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    let mut after = None;
    let wanted: Option<std::collections::HashSet<&str>> =
        ids.map(|ids| ids.iter().map(String::as_str).collect());
    // At most 100 pages of 1000: a preview of a larger dead-letter queue counts the first
    // 100 000.
    for _ in 0..100 {
        let page = state
            .store
            .messages
            .dead_letters(ListFilter {
                status: None,
                channel,
                limit: 1000,
                after: after.clone(),
            })
            .await?;
        for d in &page {
            if wanted
                .as_ref()
                .is_none_or(|w| w.contains(d.message_id.as_str()))
            {
                *by.entry(d.channel.to_string()).or_default() += 1;
            }
        }
        if page.len() < 1000 {
            break;
        }
        after = page.last().map(|d| d.message_id.clone());
    }
    Ok((by.values().sum(), by))
}

/// Whether the action is critical here and now (by `[approvals]`).
async fn critical(state: &AppState, a: &Action) -> Result<(bool, Option<u64>), ApiError> {
    let cfg = &state.cfg.approvals;
    match a {
        Action::ModeSet { .. } => Ok((cfg.requires("mode.set"), None)),
        Action::ProviderSwitch {
            provider,
            disabled: true,
            ..
        } if cfg.requires("provider.disable_last") => {
            let views = state.providers.views(now_millis());
            let Some(channel) = views.iter().find(|v| &v.id == provider).map(|v| v.channel) else {
                return Ok((false, None));
            };
            let others_healthy = views.iter().any(|v| {
                v.channel == channel && &v.id != provider && matches!(v.state, "up" | "degraded")
            });
            Ok((!others_healthy, None))
        }
        Action::ProviderSwitch { .. } => Ok((false, None)),
        Action::Replay { ids, channel } => {
            if !cfg.requires("dead_letters.replay") {
                return Ok((false, None));
            }
            let n = match ids {
                Some(ids) => ids.len() as u64,
                None => replay_preview(state, None, *channel).await?.0,
            };
            Ok((n > cfg.replay_over, Some(n)))
        }
    }
}

/// Runs the action as `actor` (audited by the store with `reason`); its answer.
pub async fn execute(
    state: &AppState,
    a: &Action,
    actor: &str,
    reason: &str,
) -> Result<Value, ApiError> {
    let now = now_millis();
    match a {
        Action::ModeSet { mode } => {
            let rec = state
                .store
                .operations
                .set_mode(mode, reason, actor, now)
                .await?;
            tracing::warn!(mode = %rec.mode, actor = %rec.actor, reason = %reason, "mode switched");
            if let Ok(mut m) = state.mode.write() {
                *m = rec.clone();
            }
            Ok(json!(rec))
        }
        Action::ProviderSwitch {
            provider,
            disabled,
            until,
        } => {
            let sw = ProviderSwitch {
                provider: provider.clone(),
                disabled: *disabled,
                reason: Some(reason.to_string()),
                actor: actor.to_string(),
                at: now,
                until: until.filter(|_| *disabled),
            };
            state.store.operations.set_provider_switch(sw).await?;
            state
                .providers
                .set_switches(state.store.operations.provider_switches().await?);
            let view = state
                .providers
                .views(now_millis())
                .into_iter()
                .find(|v| &v.id == provider);
            Ok(json!(view))
        }
        Action::Replay { ids, channel } => {
            let sel = match ids {
                Some(ids) => ReplaySelector::Ids(ids.clone()),
                None => ReplaySelector::All { channel: *channel },
            };
            let n = state.store.messages.replay(sel, actor, now).await?;
            if n > 0 {
                state.wake.notify_one();
            }
            Ok(json!({ "replayed": n }))
        }
    }
}

/// The pipeline: classify the action, then act, ask, or act alone.
pub async fn submit(
    state: &AppState,
    who: &Principal,
    a: Action,
    reason: String,
    break_glass: Option<String>,
) -> Result<Response, ApiError> {
    who.require(a.role())?;
    let (critical, count) = critical(state, &a).await?;
    let g = gate(
        critical,
        break_glass.as_deref(),
        state.cfg.approvals.break_glass,
        who.approver,
    )
    .map_err(|m| ApiError::field("break_glass", m))?;
    let now = now_millis();
    let record = |status: &str, alone: bool| ApprovalRecord {
        id: new_id("apr"),
        action: a.name().to_string(),
        params: a.params(),
        summary: a.summary(count),
        reason: reason.clone(),
        requester: who.id.clone(),
        requester_name: who.name.clone(),
        status: status.to_string(),
        created_at: now,
        expires_at: now + state.cfg.approvals.expires.0.as_millis() as i64,
        decided_by: alone.then(|| who.name.clone()),
        decided_at: alone.then_some(now),
        note: None,
        result: None,
        break_glass: alone,
        reviewed_by: None,
        reviewed_at: None,
    };
    match g {
        Gate::Act => Ok(Json(execute(state, &a, &who.name, &reason).await?).into_response()),
        Gate::Ask => {
            let rec = record("pending", false);
            state.store.console.create_approval(rec.clone()).await?;
            tracing::info!(approval = %rec.id, action = %rec.action, requester = %who.name, "approval requested");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "approval": super::approvals::view(&rec, now) })),
            )
                .into_response())
        }
        Gate::ActAlone => {
            let rec = record("approved", true);
            state.store.console.create_approval(rec.clone()).await?;
            tracing::warn!(approval = %rec.id, action = %rec.action, actor = %who.name, "break-glass: acted alone; flagged for review");
            let mut out = run_approved(state, &rec, &a, &who.name).await?;
            if let Some(o) = out.as_object_mut() {
                o.insert("break_glass_review".into(), json!(rec.id));
            }
            Ok(Json(out).into_response())
        }
    }
}

/// Executes an approved request once (its status is already `approved`) and records how it
/// went. The actor is the requester; the reason says who approved.
pub async fn run_approved(
    state: &AppState,
    rec: &ApprovalRecord,
    a: &Action,
    approved_by: &str,
) -> Result<Value, ApiError> {
    let reason = if rec.break_glass {
        format!("{} [break-glass {}]", rec.reason, rec.id)
    } else {
        format!("{} [approval {} by {approved_by}]", rec.reason, rec.id)
    };
    match execute(state, a, &rec.requester_name, &reason).await {
        Ok(v) => {
            state
                .store
                .console
                .finish_approval(&rec.id, "executed", v.clone())
                .await?;
            Ok(v)
        }
        Err(e) => {
            let _ = state
                .store
                .console
                .finish_approval(
                    &rec.id,
                    "failed",
                    json!({ "error": e.detail, "code": e.code }),
                )
                .await;
            Err(e)
        }
    }
}
