//! What goes in and out of a [`super::Store`].

use crate::core::message::Content;
use crate::core::next_step::Step;
use crate::core::types::{
    Channel, DeliveryStatus, ErrorClass, MessageStatus, Millis, Priority, Role, rfc3339,
};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

pub(crate) fn ts<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ms))
}
pub(crate) fn ts_opt<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(m) => s.serialize_str(&rfc3339(*m)),
        None => s.serialize_none(),
    }
}

/// The reply to an accepted send (SPEC: `202 {"id","status","created_at","deliveries"}`).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct AcceptReply {
    pub id: String,
    pub status: String,
    pub created_at: String,
    pub deliveries: Vec<AcceptReplyDelivery>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AcceptReplyDelivery {
    pub channel: Channel,
    pub status: String,
}

/// The reply a newly accepted message gets (also for spooled messages).
pub fn reply_for(m: &crate::core::message::NewMessage) -> AcceptReply {
    let statuses = m.initial_statuses();
    AcceptReply {
        id: m.id.clone(),
        status: m.initial_status().as_str().into(),
        created_at: rfc3339(m.created_at),
        deliveries: m
            .deliveries
            .iter()
            .zip(&statuses)
            .map(|(d, s)| AcceptReplyDelivery {
                channel: d.channel,
                status: s.public().to_string(),
            })
            .collect(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    New(AcceptReply),
    /// Same idempotency key and body as before: the first reply.
    Existing(AcceptReply),
    /// Same idempotency key, another body.
    Mismatch,
    /// Over a per-recipient limit: nothing stored.
    RecipientLimited {
        channel: Channel,
        retry_after_ms: i64,
    },
}

#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub owner: String,
    /// Most deliveries to claim in all.
    pub limit: usize,
    /// Most to claim of each priority (critical, high, normal, low): the lanes.
    pub lane_limits: [usize; 4],
    /// Most to claim of `normal` and `low` together, so that `critical` and `high` always
    /// find slots.
    pub bulk_limit: usize,
    pub lease_ms: i64,
    pub now: Millis,
    /// Webhook origins (`scheme://host[:port]`) whose deliveries are left unclaimed: their
    /// endpoint holds its share of the calls, or its circuit is open.
    pub skip_endpoints: Vec<String>,
}

/// A delivery handed to a worker, with all it needs to send.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub lease: Lease,
    pub message_id: String,
    pub channel: Channel,
    pub to: String,
    pub priority: Priority,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// Calls made for this delivery since the last replay, this claim included.
    pub tries: u32,
    pub content: Content,
    /// The template the message was sent with, if any.
    pub template: Option<String>,
    pub params: Option<Map<String, Value>>,
    pub metadata: Map<String, Value>,
    /// Providers that must not be used again for it (provider-class errors).
    pub skip_providers: Vec<String>,
    pub last_provider: Option<String>,
    /// Whether a later channel of the message waits for this one to fail.
    pub has_next_channel: bool,
    /// When this channel's turn began.
    pub activated_at: Millis,
    /// The span this delivery's work runs under: the accept's when claimed; the dispatcher
    /// sets the provider call's before calling, and providers that pass a trace on
    /// (webhooks, as `traceparent`) send that.
    pub trace: Option<crate::telemetry::TraceParent>,
}

/// A claim: the delivery and the fencing token it was claimed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub delivery_id: String,
    pub fence: i64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AttemptError {
    pub class: ErrorClass,
    pub code: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Attempt {
    /// 1, 2, 3 … per delivery: numbered by storage when recorded (what a worker sets here
    /// is ignored), so deferrals and takeovers leave no gaps.
    pub n: i64,
    pub provider: String,
    #[serde(serialize_with = "ts")]
    pub at: Millis,
    pub duration_ms: i64,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<AttemptError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
}

/// The end of one claim: what was tried (if anything) and the step decided.
#[derive(Debug, Clone)]
pub struct Completion {
    pub lease: Lease,
    pub attempt: Option<Attempt>,
    pub step: Step,
    pub now: Millis,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub id: String,
    pub channel: Channel,
    pub to: String,
    #[serde(serialize_with = "pub_status")]
    pub status: DeliveryStatus,
    pub provider: Option<String>,
    /// Why it was not made (a contact's opt-out), when Herald decided so at accept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<DeliveryReason>,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryReason {
    pub code: String,
    pub detail: String,
}

fn pub_status<S: Serializer>(st: &DeliveryStatus, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(st.public())
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub id: String,
    pub status: MessageStatus,
    pub priority: Priority,
    #[serde(serialize_with = "ts")]
    pub created_at: Millis,
    #[serde(serialize_with = "ts")]
    pub updated_at: Millis,
    #[serde(serialize_with = "ts")]
    pub send_at: Millis,
    #[serde(serialize_with = "ts")]
    pub expires_at: Millis,
    pub metadata: Map<String, Value>,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<MessageStatus>,
    pub channel: Option<Channel>,
    pub limit: usize,
    /// Cursor: the id of the last item of the previous page.
    pub after: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    pub channel: Channel,
    pub priority: Priority,
    #[serde(serialize_with = "ts")]
    pub failed_at: Millis,
    /// The provider that reported the last error (called, or whose receipt failed it).
    pub provider: Option<String>,
    pub last_error: Option<AttemptError>,
}

#[derive(Debug, Clone)]
pub enum ReplaySelector {
    Ids(Vec<String>),
    All { channel: Option<Channel> },
}

#[derive(Debug, Clone, Serialize)]
pub struct InboxItem {
    pub id: String,
    pub user: String,
    pub message_id: String,
    #[serde(skip)]
    pub delivery_id: String,
    #[serde(flatten)]
    pub content: Content,
    pub metadata: Map<String, Value>,
    #[serde(serialize_with = "ts")]
    pub created_at: Millis,
    #[serde(serialize_with = "ts_opt")]
    pub read_at: Option<Millis>,
}

/// A contact as stored: the document, its write counter and when it was made and changed.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactRecord {
    pub contact: crate::core::contact::Contact,
    /// 1 when created, one more at each write.
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What a contact write expects to find: nothing (create), a given version (an edit of what
/// was read), or anything (replace or create).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Absent,
    Version(i64),
    Any,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::config::Rate>,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    #[serde(skip)]
    pub key_hash: String,
    #[serde(serialize_with = "ts")]
    pub created_at: Millis,
    /// May approve what another key asked for (two-person approval).
    pub approver: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(serialize_with = "ts")]
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub reason: Option<String>,
}

/// An audit entry as read back, with its place in the hash chain once sealed.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub seq: Option<i64>,
    pub hash: Option<String>,
}

impl std::ops::Deref for AuditRow {
    type Target = AuditEntry;
    fn deref(&self) -> &AuditEntry {
        &self.entry
    }
}

/// The sealed audit log, for checking its chain: the anchor its first entry follows (the
/// last purged entry's hash, or the genesis hash) and the number that entry must carry.
#[derive(Debug, Clone)]
pub struct AuditChain {
    pub anchor: String,
    pub first_seq: i64,
    pub links: Vec<crate::core::audit_chain::Link>,
    /// Entries written but not sealed yet (PostgreSQL seals within a second of commit).
    pub unsealed: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub deliveries_by_status: Vec<(DeliveryStatus, i64)>,
    pub dead_letters: i64,
    /// Deliveries waiting to be sent, by channel (as stored) and priority rank.
    pub waiting: Vec<(String, i64, i64)>,
}

/// A delivery report from a provider (push or poll).
#[derive(Debug, Clone)]
pub struct ReceiptReport {
    pub provider: String,
    /// Our delivery id, when the provider echoes it (Aliyun `OutId`).
    pub delivery_id: Option<String>,
    /// The provider's message id (Twilio `MessageSid`, Aliyun `BizId`).
    pub provider_message_id: Option<String>,
    /// What makes this report unique, to drop repeats.
    pub dedupe_key: String,
    pub delivered: bool,
    pub error: Option<AttemptError>,
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptOutcome {
    Applied {
        delivery_id: String,
        delivered: bool,
    },
    /// Seen before: nothing done.
    Duplicate,
    /// For a delivery that is not (or no longer) `sent`.
    Ignored,
    /// No delivery matches.
    Unknown,
}

impl ReceiptOutcome {
    /// The outcome's name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            ReceiptOutcome::Applied { .. } => "applied",
            ReceiptOutcome::Duplicate => "duplicate",
            ReceiptOutcome::Ignored => "ignored",
            ReceiptOutcome::Unknown => "unknown",
        }
    }
}

/// A sent delivery still waiting for its receipt (for pollers).
#[derive(Debug, Clone)]
pub struct AwaitingReceipt {
    pub delivery_id: String,
    pub to: String,
    pub provider_message_id: Option<String>,
    pub sent_at: Millis,
}

/// The gateway's mode (SPEC: `normal`, `core_only`, `read_only`) with who set it and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModeRecord {
    pub mode: String,
    pub reason: Option<String>,
    pub actor: String,
    #[serde(serialize_with = "ts")]
    pub since: Millis,
}

/// A provider switched off (or back on) by an operator.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProviderSwitch {
    pub provider: String,
    pub disabled: bool,
    pub reason: Option<String>,
    pub actor: String,
    #[serde(serialize_with = "ts")]
    pub at: Millis,
    /// When the switch ends by itself (the provider is enabled again, audited as `system`).
    #[serde(serialize_with = "ts_opt")]
    pub until: Option<Millis>,
}

/// A node of the cluster, as `GET /v1/nodes` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeView {
    pub id: String,
    pub address: String,
    #[serde(serialize_with = "ts")]
    pub started_at: Millis,
    #[serde(serialize_with = "ts")]
    pub heartbeat_at: Millis,
    /// `alive`, `dead` (silent too long; its leases were taken over) or `stopped`.
    pub state: String,
    /// Deliveries it holds leases on now.
    pub leases: i64,
}

/// What a retention pass deletes: rows older than each cut-off (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub messages: Millis,
    pub inbox: Millis,
    pub audit: Millis,
    pub nodes: Millis,
    /// Receipt rows (dedupe keys) of deliveries that no longer exist, and unmatched ones.
    pub receipts: Millis,
    /// Rate-limit events: older than the longest window.
    pub rate_events: Millis,
    /// Rows deleted per statement at most.
    pub batch: usize,
}

/// How many rows one pass deleted, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    pub messages: usize,
    pub inbox: usize,
    pub audit: usize,
    pub nodes: usize,
    pub receipts: usize,
    pub rate_events: usize,
}

impl Purged {
    pub fn add(&mut self, o: &Purged) {
        self.messages += o.messages;
        self.inbox += o.inbox;
        self.audit += o.audit;
        self.nodes += o.nodes;
        self.receipts += o.receipts;
        self.rate_events += o.rate_events;
    }

    pub fn total(&self) -> usize {
        self.messages + self.inbox + self.audit + self.nodes + self.receipts + self.rate_events
    }

    /// The kinds and counts, for metrics and logs.
    pub fn kinds(&self) -> [(&'static str, usize); 6] {
        [
            ("messages", self.messages),
            ("inbox", self.inbox),
            ("audit", self.audit),
            ("nodes", self.nodes),
            ("receipts", self.receipts),
            ("rate_events", self.rate_events),
        ]
    }
}
