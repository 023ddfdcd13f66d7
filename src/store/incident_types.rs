//! What crosses the [`super::Incidents`] trait.

use crate::core::incident::{Occurrence, Severity, Status};
use crate::core::types::Millis;
use serde::Serialize;
use serde_json::Value;

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentRecord {
    pub id: String,
    /// A short number a person can type (`#42`), unique in this storage.
    pub number: i64,
    #[serde(skip)]
    pub dedup_key: String,
    pub source: String,
    pub route: String,
    pub service: String,
    pub severity: Severity,
    pub status: Status,
    pub title: String,
    pub details: Value,
    #[serde(serialize_with = "super::types::ts")]
    pub opened_at: Millis,
    #[serde(serialize_with = "super::types::ts_opt")]
    pub acknowledged_at: Option<Millis>,
    pub acknowledged_by: Option<String>,
    #[serde(serialize_with = "super::types::ts_opt")]
    pub resolved_at: Option<Millis>,
    pub resolved_by: Option<String>,
    /// `pending` (pages not yet handed to the queue), `paged`, or `none` (suppressed,
    /// inhibited, grouped into a storm).
    pub page_state: String,
    /// `none`, `pending` (a resolved notice is owed) or `sent`.
    pub notice_state: String,
    #[serde(serialize_with = "super::types::ts")]
    pub updated_at: Millis,
    /// The storm incident it was grouped into (it pages no one itself).
    pub grouped_into: Option<String>,
    /// The incident whose firing alert inhibits it (it pages no one while that fires).
    pub inhibited_by: Option<String>,
}

/// What opens an incident, when a batch finds none open under its key.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub id: String,
    pub source: String,
    pub route: String,
    pub service: String,
    pub severity: Severity,
    pub title: String,
    pub details: Value,
    /// Suppressed incidents (a maintenance window) page no one.
    pub suppressed: bool,
    /// Whether a resolved notice is owed when it resolves.
    pub notify_resolved: bool,
}

/// The alerts of one payload that belong to one incident key.
#[derive(Debug, Clone)]
pub struct AlertBatch {
    pub dedup_key: String,
    /// The payload holds the whole current set (absent occurrences have resolved).
    pub complete: bool,
    pub occurrences: Vec<Occurrence>,
    pub open: NewIncident,
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// A new incident (pages are owed).
    Opened(String),
    /// An open incident took new or resolved occurrences.
    Updated(String),
    /// Its last occurrence resolved: the incident did.
    Resolved(String),
    /// Nothing changed (a repeat), or only resolved alerts of no open incident.
    Unchanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentAction {
    Acknowledge,
    Resolve,
}

impl IncidentAction {
    /// What people are told it did: `acknowledged`, `resolved`.
    pub fn done(self) -> &'static str {
        match self {
            IncidentAction::Acknowledge => "acknowledged",
            IncidentAction::Resolve => "resolved",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Acted {
    Done(IncidentRecord),
    /// Already in a state the action does not apply to (acknowledging a resolved one).
    NotNow(IncidentRecord),
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    #[serde(serialize_with = "super::types::ts")]
    pub at: Millis,
    pub kind: String,
    pub actor: String,
    pub detail: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentMessage {
    pub message_id: String,
    /// `page` or `resolved`.
    pub kind: String,
}

/// One incident with all it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentView {
    #[serde(flatten)]
    pub incident: IncidentRecord,
    pub occurrences: Vec<Occurrence>,
    pub messages: Vec<IncidentMessage>,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub status: Option<Status>,
    pub severity: Option<Severity>,
    pub service: Option<String>,
    /// Cursor: incidents numbered below this one (newest first).
    pub before_number: Option<i64>,
    pub limit: usize,
}

/// Which owed notices were handed to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Page,
    Resolved,
}

impl NoticeKind {
    /// What both backends write when it is handed over: (the state set, the state it must
    /// be in, the `incident_messages.kind`, the timeline entry).
    pub fn columns(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            NoticeKind::Page => (
                "page_state = 'paged'",
                "page_state = 'pending'",
                "page",
                "paged",
            ),
            NoticeKind::Resolved => (
                "notice_state = 'sent'",
                "notice_state = 'pending'",
                "resolved",
                "resolved_notice",
            ),
        }
    }
}

/// A maintenance window: alerts matching all its matchers between its times open incidents
/// marked suppressed, which page no one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaintenanceWindow {
    pub id: String,
    pub matchers: Vec<String>,
    #[serde(serialize_with = "super::types::ts")]
    pub starts_at: Millis,
    #[serde(serialize_with = "super::types::ts")]
    pub ends_at: Millis,
    pub reason: String,
    pub actor: String,
    #[serde(serialize_with = "super::types::ts")]
    pub created_at: Millis,
}

/// What an on-call document is: a schedule or an escalation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Schedule,
    Policy,
}

impl DocKind {
    /// The stored kind, also the audit action's prefix (`schedule.create` …).
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Schedule => "schedule",
            DocKind::Policy => "escalation_policy",
        }
    }
}

/// A stored on-call document: its JSON as the API took it, with a version for safe edits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocRecord {
    pub id: String,
    pub body: Value,
    pub version: i64,
    #[serde(serialize_with = "super::types::ts")]
    pub created_at: Millis,
    #[serde(serialize_with = "super::types::ts")]
    pub updated_at: Millis,
}

/// What decides, before an incident is paged, whether it pages at all.
#[derive(Debug, Clone, Default)]
pub struct TriageRules {
    /// Every route's inhibit rules.
    pub inhibit: Vec<crate::core::alerts::inhibit::InhibitRule>,
    /// Storm detection, when on.
    pub storm: Option<StormRule>,
}

/// `[oncall.storm]` as the store applies it.
#[derive(Debug, Clone)]
pub struct StormRule {
    pub threshold: u32,
    pub window_ms: i64,
    /// One storm per service (else one for all).
    pub per_service: bool,
    /// The id a storm incident opened now takes.
    pub new_id: String,
}

impl StormRule {
    /// The scope an incident of `service` falls in: `service:<name>` or `all`.
    pub fn scope(&self, service: &str) -> String {
        if self.per_service {
            format!("service:{service}")
        } else {
            "all".into()
        }
    }
}

/// What triage decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triaged {
    /// Paged as usual.
    Page,
    /// A firing alert of this incident inhibits it: nobody is paged.
    Inhibited(String),
    /// Grouped into this storm incident (`started`: the storm began with it).
    Grouped { storm: String, started: bool },
}

/// A storm: new incidents of one scope grouped into one incident while they come fast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StormRow {
    pub incident_id: String,
    pub scope: String,
    #[serde(serialize_with = "super::types::ts")]
    pub started_at: Millis,
    #[serde(serialize_with = "super::types::ts_opt")]
    pub ended_at: Option<Millis>,
    pub count: i64,
}
