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
