//! What the console domain stores: approval requests, console sessions, and the status
//! page's incidents and daily figures.

use super::types::{ts, ts_opt};
use crate::core::types::Millis;
use serde::Serialize;
use serde_json::Value;

/// A critical action waiting for (or past) a second person's decision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApprovalRecord {
    pub id: String,
    /// `mode.set`, `provider.disable`, `dead_letters.replay`.
    pub action: String,
    /// What the action will do, exactly as it will be executed.
    pub params: Value,
    /// The action in words ("switch the mode to read_only").
    pub summary: String,
    pub reason: String,
    /// The requester's key id (compared, never shown to decide who may approve).
    #[serde(skip)]
    pub requester: String,
    #[serde(rename = "requested_by")]
    pub requester_name: String,
    /// `pending`, `approved` (executing), `executed`, `failed`, `rejected`, `expired`.
    pub status: String,
    #[serde(serialize_with = "ts")]
    pub created_at: Millis,
    #[serde(serialize_with = "ts")]
    pub expires_at: Millis,
    pub decided_by: Option<String>,
    #[serde(serialize_with = "ts_opt")]
    pub decided_at: Option<Millis>,
    /// The approver's or rejecter's note.
    pub note: Option<String>,
    /// What the action answered when it ran.
    pub result: Option<Value>,
    /// Done by one person alone; needs a review by another approver.
    pub break_glass: bool,
    pub reviewed_by: Option<String>,
    #[serde(serialize_with = "ts_opt")]
    pub reviewed_at: Option<Millis>,
}

/// A console sign-in. Tokens are kept as SHA-256 hashes; the key is kept as its hash, so a
/// revoked key ends its sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub token_hash: String,
    pub key_hash: String,
    pub csrf_hash: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// An incident posted on the public status page (Statuspage's model).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusIncident {
    pub id: String,
    pub title: String,
    /// `none`, `minor`, `major`, `critical`.
    pub impact: String,
    /// `investigating`, `identified`, `monitoring`, `resolved` (or, for maintenance,
    /// `scheduled`, `in_progress`, `completed`).
    pub status: String,
    /// Components it affects, each with the state it puts them in:
    /// `[{"id":"sms","status":"partial_outage"}]`.
    pub components: serde_json::Value,
    /// The on-call incident it tells the public about, if any (left out when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    #[serde(serialize_with = "ts")]
    pub created_at: Millis,
    #[serde(serialize_with = "ts")]
    pub updated_at: Millis,
    #[serde(serialize_with = "ts_opt")]
    pub resolved_at: Option<Millis>,
    /// Newest first.
    pub updates: Vec<StatusUpdate>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusUpdate {
    pub id: String,
    pub status: String,
    pub body: String,
    #[serde(skip)]
    pub actor: String,
    #[serde(serialize_with = "ts")]
    pub created_at: Millis,
}

/// A component's minutes in each state on one UTC day (`YYYY-MM-DD`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Default)]
pub struct StatusDay {
    pub component: String,
    pub day: String,
    pub degraded: i64,
    pub partial: i64,
    pub major: i64,
    pub maintenance: i64,
    /// Minutes sampled that day.
    pub sampled: i64,
}

/// One minute's state of one component, as sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusSample {
    pub component: String,
    pub day: String,
    /// Minutes since the Unix epoch: each is counted once, whichever node samples it.
    pub minute: i64,
    /// The `status_days` column it adds to (`None` for operational).
    pub column: Option<&'static str>,
}
