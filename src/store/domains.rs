//! The storage domains, one trait each. [`Store`] is their sum: whatever implements every
//! domain is a `Store`. A worker or handler asks only for the domain it uses (an
//! `Arc<dyn Store>` coerces to `Arc<dyn Queue>` and the others).
//!
//! A new domain (contacts, incidents, on-call …) is a new trait here, added to [`Store`],
//! with one file per backend (`sqlite/<domain>.rs`, `postgres/<domain>.rs`) and one
//! conformance module (`tests/it/store_conformance/<domain>.rs`) run on both.

use super::*;
use crate::core::message::NewMessage;
use crate::core::types::Millis;
use async_trait::async_trait;

/// The queue: accepting messages, claiming due deliveries under a lease, recording outcomes
/// under the lease's fence, giving leases back.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Stores messages durably (one transaction for all). Each gets its own outcome.
    async fn accept(&self, batch: Vec<NewMessage>) -> Result<Vec<Accepted>, StoreError>;
    /// The body hash stored for each idempotency key of `scope` used since `since` (`None`
    /// for a key not in use), in the order of `keys`.
    async fn idempotency_hashes(
        &self,
        scope: &str,
        keys: Vec<String>,
        since: i64,
    ) -> Result<Vec<Option<String>>, StoreError>;

    /// Claims up to `limit` due deliveries, highest priority first, under a lease.
    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StoreError>;
    /// Records the outcome of claimed deliveries; a completion whose fence is stale is
    /// refused (returned `false`).
    async fn complete(&self, batch: Vec<Completion>) -> Result<Vec<bool>, StoreError>;
    /// Gives claimed deliveries back untouched (shutdown).
    async fn release(&self, leases: Vec<Lease>) -> Result<usize, StoreError>;
    /// Frees every lease held by a previous run of this (single) node.
    async fn recover_leases(&self, now: i64) -> Result<usize, StoreError>;
    /// Deliveries waiting or in flight (for load shedding; cheap).
    async fn queue_depth(&self) -> Result<u64, StoreError>;
}

/// Messages as senders and operators see them: reads, cancel, dead letters and replay.
#[async_trait]
pub trait Messages: Send + Sync + 'static {
    async fn get_message(&self, id: &str) -> Result<Option<MessageView>, StoreError>;
    async fn list_messages(&self, f: ListFilter) -> Result<Vec<MessageView>, StoreError>;
    async fn cancel(&self, id: &str, actor: &str) -> Result<Option<MessageView>, StoreError>;

    async fn dead_letters(&self, f: ListFilter) -> Result<Vec<DeadLetter>, StoreError>;
    async fn replay(&self, sel: ReplaySelector, actor: &str, now: i64)
    -> Result<usize, StoreError>;
}

/// Delivery reports from providers.
#[async_trait]
pub trait Receipts: Send + Sync + 'static {
    /// Applies a provider's delivery report, once.
    async fn apply_receipt(&self, r: ReceiptReport) -> Result<ReceiptOutcome, StoreError>;
    /// Deliveries sent through `provider` between `from` and `until` still without a receipt.
    async fn awaiting_receipts(
        &self,
        provider: &str,
        from: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<AwaitingReceipt>, StoreError>;
    /// Notes something a provider reported about a delivery it made without settling it (a
    /// key pressed during a call, an answering machine): the delivery's `reason`. Returns
    /// the delivery and message ids, or `None` when no delivery of `provider` has that id.
    async fn note_delivery(
        &self,
        provider: &str,
        provider_message_id: &str,
        note: DeliveryReason,
        at: crate::core::types::Millis,
    ) -> Result<Option<(String, String)>, StoreError>;
}

/// The inbox channel's items, per user.
#[async_trait]
pub trait Inbox: Send + Sync + 'static {
    async fn inbox_put(&self, item: InboxItem) -> Result<(), StoreError>;
    async fn inbox_list(
        &self,
        user: &str,
        unread_only: bool,
        f: ListFilter,
    ) -> Result<Vec<InboxItem>, StoreError>;
    async fn inbox_mark_read(&self, user: &str, id: &str, now: i64) -> Result<bool, StoreError>;
}

/// API keys (stored hashed).
#[async_trait]
pub trait Keys: Send + Sync + 'static {
    async fn create_api_key(&self, key: ApiKeyRecord, actor: &str) -> Result<(), StoreError>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn revoke_api_key(&self, id: &str, actor: &str, now: i64) -> Result<bool, StoreError>;
}

/// What operators switch and read: the audit log, the mode, provider switches, figures.
#[async_trait]
pub trait Operations: Send + Sync + 'static {
    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError>;
    async fn audit_list(
        &self,
        limit: usize,
        after: Option<i64>,
    ) -> Result<Vec<AuditRow>, StoreError>;
    /// Gives entries not sealed yet their place in the hash chain (in the order they were
    /// committed); how many it sealed.
    async fn audit_seal(&self) -> Result<usize, StoreError>;
    /// The sealed log in chain order, for `audit verify`.
    async fn audit_chain(&self) -> Result<AuditChain, StoreError>;

    /// The mode, if an operator ever set one.
    async fn mode(&self) -> Result<Option<ModeRecord>, StoreError>;
    /// Sets the mode; audited with actor, before/after and reason.
    async fn set_mode(
        &self,
        mode: &str,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<ModeRecord, StoreError>;
    async fn provider_switches(&self) -> Result<Vec<ProviderSwitch>, StoreError>;
    /// Disables or enables a provider; audited.
    async fn set_provider_switch(&self, s: ProviderSwitch) -> Result<(), StoreError>;
    /// Ends the switches whose `until` has passed (audited as `system`); the providers it
    /// enabled again.
    async fn expire_switches(&self, now: i64) -> Result<Vec<String>, StoreError>;

    /// Deliveries by status, and the number of dead letters (read at scrape time).
    async fn stats(&self) -> Result<Stats, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
}

/// What nodes sharing the storage coordinate through: heartbeats, dead nodes, jobs that run
/// on one node at a time, rate limits that hold across nodes.
#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// Whether other nodes share this storage (limits must then hold across nodes).
    fn shared(&self) -> bool {
        false
    }
    /// Records that `node` is alive (every few seconds).
    async fn heartbeat(&self, node: NodeView) -> Result<(), StoreError>;
    /// Marks nodes silent for `dead_after_ms` dead and gives their leases back to the queue;
    /// returns each dead node with the number of deliveries freed. A dead node's late
    /// completion is refused by the fence.
    async fn reap_dead_nodes(
        &self,
        now: i64,
        dead_after_ms: i64,
    ) -> Result<Vec<(String, usize)>, StoreError>;
    async fn nodes(&self) -> Result<Vec<NodeView>, StoreError>;
    /// Takes or renews the lease of a job that must run on one node at a time.
    async fn take_job_lease(
        &self,
        job: &str,
        holder: &str,
        now: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Takes a slot under `rates` for `key` across every node sharing this storage; on
    /// refusal, the milliseconds until one frees. Single-node stores limit in memory instead.
    async fn take_rate_slot(
        &self,
        _key: &str,
        _rates: &[crate::config::Rate],
        _now: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }
}

/// Forgetting what is old: finished messages, inbox items, audit entries, receipts,
/// idempotency keys.
#[async_trait]
pub trait Retention: Send + Sync + 'static {
    /// Deletes one batch (at most `cut.batch` rows of each kind) of what is older than its
    /// cut-off: finished messages with their deliveries, attempts and dead letters; inbox
    /// items; audit entries; rows of stopped or dead nodes; receipts; rate events.
    async fn purge(&self, cut: Cutoffs) -> Result<Purged, StoreError>;
    /// Forgets idempotency keys older than `before`.
    async fn purge_idempotency(&self, before: i64) -> Result<usize, StoreError>;
}

#[async_trait]
pub trait Contacts: Send + Sync + 'static {
    async fn get_contact(&self, id: &str) -> Result<Option<ContactRecord>, StoreError>;
    /// By id, after the cursor `after`, at most `limit`.
    async fn list_contacts(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<ContactRecord>, StoreError>;
    /// Writes the contact when what is stored matches `expect`; `None` when it does not
    /// (exists already, or changed since it was read). Audited with the fields changed
    /// (never their values: contacts are personal data and the audit log is kept longer).
    async fn put_contact(
        &self,
        contact: crate::core::contact::Contact,
        expect: Expect,
        actor: &str,
        now: i64,
    ) -> Result<Option<ContactRecord>, StoreError>;
    /// Deletes it; false when there was none. Audited.
    async fn delete_contact(&self, id: &str, actor: &str, now: i64) -> Result<bool, StoreError>;
}

/// On-call documents (schedules, escalation policies): JSON bodies checked by the API,
/// stored with a version; every change audited as `{kind}.create|update|delete`.
#[async_trait]
pub trait OnCall: Send + Sync + 'static {
    async fn get_doc(&self, kind: DocKind, id: &str) -> Result<Option<DocRecord>, StoreError>;
    /// By id, after the cursor `after`, at most `limit`.
    async fn list_docs(
        &self,
        kind: DocKind,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DocRecord>, StoreError>;
    /// Writes it when what is stored matches `expect`; `None` when it does not.
    async fn put_doc(
        &self,
        kind: DocKind,
        id: &str,
        body: serde_json::Value,
        expect: Expect,
        actor: &str,
        now: i64,
    ) -> Result<Option<DocRecord>, StoreError>;
    /// Deletes it; false when there was none. Audited.
    async fn delete_doc(
        &self,
        kind: DocKind,
        id: &str,
        actor: &str,
        now: i64,
    ) -> Result<bool, StoreError>;
}

/// Incidents: what alerts become, their occurrences, timeline and the pages they owe.
#[async_trait]
pub trait Incidents: Send + Sync + 'static {
    /// Applies alert batches in one transaction: each goes to the open incident under its
    /// key, or opens one when something new fires. Repeats change nothing.
    async fn ingest(&self, batches: Vec<AlertBatch>) -> Result<Vec<Ingested>, StoreError>;
    /// The open incident under `dedup_key`, if any.
    async fn open_incident(&self, dedup_key: &str) -> Result<Option<IncidentRecord>, StoreError>;
    async fn get_incident(&self, id: &str) -> Result<Option<IncidentView>, StoreError>;
    /// Newest first.
    async fn list_incidents(&self, f: IncidentFilter) -> Result<Vec<IncidentRecord>, StoreError>;
    /// Acknowledges or resolves, with who and why (on the timeline). A resolve owes the
    /// resolved notice when the incident was opened with `notify_resolved`.
    async fn act_incident(
        &self,
        id: &str,
        action: IncidentAction,
        actor: &str,
        reason: &str,
        now: crate::core::types::Millis,
    ) -> Result<Acted, StoreError>;
    /// Incidents whose pages or resolved notice are owed, oldest first.
    async fn owed_notices(&self, limit: usize) -> Result<Vec<IncidentRecord>, StoreError>;
    /// The last ping of each heartbeat in `ids`; one never seen starts its clock at `now`.
    async fn heartbeat_pings(
        &self,
        ids: Vec<String>,
        now: crate::core::types::Millis,
    ) -> Result<Vec<(String, crate::core::types::Millis)>, StoreError>;
    /// Records a ping (never moving the last ping back).
    async fn ping_heartbeat(
        &self,
        id: &str,
        now: crate::core::types::Millis,
    ) -> Result<(), StoreError>;
    async fn put_maintenance(&self, w: MaintenanceWindow) -> Result<(), StoreError>;
    /// Windows that have not ended by `now`, by start.
    async fn maintenance_windows(
        &self,
        now: crate::core::types::Millis,
    ) -> Result<Vec<MaintenanceWindow>, StoreError>;
    /// False when there was none.
    async fn delete_maintenance(&self, id: &str) -> Result<bool, StoreError>;
    /// The owed notice was handed to the queue as these messages.
    async fn notices_sent(
        &self,
        id: &str,
        kind: NoticeKind,
        message_ids: Vec<String>,
        now: crate::core::types::Millis,
    ) -> Result<(), StoreError>;
}

/// Escalations: each open incident's position in its policy, due time and lease, and the
/// pages it made (each once, by key). Any node fires a due escalation after claiming it;
/// every change raises the row's fence, and a holder with a stale fence changes nothing.
#[async_trait]
pub trait Escalations: Send + Sync + 'static {
    /// Begins the escalation of an incident at step 0 (nothing when it has one already).
    async fn start_escalation(
        &self,
        incident_id: &str,
        policy_id: &str,
        due_at: Millis,
    ) -> Result<bool, StoreError>;
    async fn get_escalation(&self, incident_id: &str) -> Result<Option<EscalationRow>, StoreError>;
    /// Takes up to `limit` rows due by `now` that nobody holds (or whose lease ran out),
    /// leased to `owner` until `now + lease_ms`, each with a new fence.
    async fn claim_escalations(
        &self,
        owner: &str,
        now: Millis,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<EscalationRow>, StoreError>;
    /// Records the pages of one firing (when the fence still holds): those of the same
    /// incident, step, pass and round already recorded are returned instead (a firing
    /// finished by another node pages the people the first one chose). Pages to a phone get
    /// a reply code unique for that phone among its pages since `codes_since`.
    async fn reserve_pages(
        &self,
        incident_id: &str,
        fence: i64,
        pages: Vec<PageRow>,
        codes_since: Millis,
    ) -> Result<Option<Vec<PageRow>>, StoreError>;
    /// Moves the row (when the fence still holds) and records what the firing sent, on the
    /// incident's timeline too. False: the fence was lost; nothing changed.
    async fn advance_escalation(
        &self,
        incident_id: &str,
        fence: i64,
        to: EscalationMove,
        fired: Fired,
        now: Millis,
    ) -> Result<bool, StoreError>;
    /// Sets the row from outside (acknowledged, snoozed, escalated now, resolved), raising
    /// its fence; `ack` also keeps the first acknowledgement's time. False: no row.
    async fn set_escalation(
        &self,
        incident_id: &str,
        to: EscalationMove,
        ack: bool,
        now: Millis,
    ) -> Result<bool, StoreError>;
    /// An acknowledged incident goes back to triggered (its acknowledgement timed out).
    async fn retrigger_incident(
        &self,
        incident_id: &str,
        actor: &str,
        reason: &str,
        now: Millis,
    ) -> Result<bool, StoreError>;
    /// Every page of an incident, oldest first.
    async fn pages_of(&self, incident_id: &str) -> Result<Vec<PageRow>, StoreError>;
    /// The page a reply from `address` means: with a code, the newest page to that phone
    /// with that code since `since`; without, the newest page to it since `since` whose
    /// incident is still triggered.
    async fn page_for_reply(
        &self,
        address: &str,
        code: Option<i64>,
        since: Millis,
    ) -> Result<Option<PageRow>, StoreError>;
    /// The newest page to `address` since `since`, whatever its incident's state.
    async fn last_page_to(
        &self,
        address: &str,
        since: Millis,
    ) -> Result<Option<PageRow>, StoreError>;
    /// The page a message was made for (a keypress during its call names the message).
    async fn page_of_message(&self, message_id: &str) -> Result<Option<PageRow>, StoreError>;
    /// How many escalations still running (not done) follow the policy `policy_id`.
    async fn escalations_using(&self, policy_id: &str) -> Result<i64, StoreError>;
    /// Spends an acknowledge link's nonce: true the first time only.
    async fn spend_link(&self, nonce: &str, now: Millis) -> Result<bool, StoreError>;
    /// The figures of incidents opened in `[since, until)` that are not drills.
    async fn incident_times(
        &self,
        since: Millis,
        until: Millis,
    ) -> Result<Vec<IncidentTimes>, StoreError>;
}

/// Storms and inhibition: what decides, before an incident is paged, whether it pages.
#[async_trait]
pub trait Storms: Send + Sync + 'static {
    /// Before an incident owing pages is paged: inhibited by a firing alert, grouped into
    /// its scope's storm (beginning one when `threshold` opened within the window — those
    /// still triggered are grouped too, their escalations ended), or paged. Decided once:
    /// an incident already inhibited or grouped says so again.
    async fn triage(
        &self,
        id: &str,
        rules: TriageRules,
        now: Millis,
    ) -> Result<Triaged, StoreError>;
    /// Ends the storms of which fewer than `threshold` incidents opened within the last
    /// `window_ms` (none began that recently); the storms ended.
    async fn end_quiet_storms(
        &self,
        threshold: u32,
        window_ms: i64,
        now: Millis,
    ) -> Result<Vec<StormRow>, StoreError>;
    /// Storms going on now.
    async fn active_storms(&self) -> Result<Vec<StormRow>, StoreError>;
    /// The incidents grouped into a storm incident.
    async fn storm_members(&self, storm_id: &str) -> Result<Vec<String>, StoreError>;
    /// Incidents a resolved incident inhibited that still fire: they page now (inhibition
    /// lifted, escalation begun afresh). Their ids.
    async fn lift_inhibition(
        &self,
        source_id: &str,
        now: Millis,
    ) -> Result<Vec<String>, StoreError>;
}

/// Bundles: pages and notices held for one person and contact method, taken into one
/// message each — every held row into exactly one bundle, whichever node takes it.
#[async_trait]
pub trait Bundles: Send + Sync + 'static {
    /// Records notices to people paged, held for a bundle (a key already recorded: kept).
    async fn hold_notices(&self, notices: Vec<PageRow>) -> Result<(), StoreError>;
    /// Every row held for a bundle, oldest first.
    async fn held_pages(&self, limit: usize) -> Result<Vec<PageRow>, StoreError>;
    /// Bundles made since `since`, oldest first.
    async fn bundles_since(&self, since: Millis) -> Result<Vec<BundleRow>, StoreError>;
    /// Takes every row held for `b`'s person, method and kind that may go by `now` into
    /// `b` (pages of incidents that no longer page — answered, grouped into a storm,
    /// inhibited — are dropped instead). A bundle of several pages to a phone gets a reply
    /// code unique for it since `codes_since`. `None`: nothing was left to take.
    async fn take_bundle(
        &self,
        b: BundleRow,
        now: Millis,
        codes_since: Millis,
    ) -> Result<Option<Bundle>, StoreError>;
    /// Bundles made before `before` whose message was never recorded (a node died between).
    async fn unsent_bundles(&self, before: Millis) -> Result<Vec<Bundle>, StoreError>;
    /// Records the message a bundle became (on its incidents too).
    async fn bundle_sent(&self, id: &str, message_id: &str, now: Millis) -> Result<(), StoreError>;
    /// The bundle a reply code from `address` names, since `since`.
    async fn bundle_for_reply(
        &self,
        address: &str,
        code: i64,
        since: Millis,
    ) -> Result<Option<Bundle>, StoreError>;
    /// The bundle a message was made for (a keypress during its call names the message).
    async fn bundle_of_message(&self, message_id: &str) -> Result<Option<Bundle>, StoreError>;
    async fn get_bundle(&self, id: &str) -> Result<Option<Bundle>, StoreError>;
    /// Drops the pages still held for an incident (someone answered it): how many.
    async fn drop_held(&self, incident_id: &str) -> Result<u64, StoreError>;
}

/// Approval requests (two-person rule) and console sessions.
#[async_trait]
pub trait Console: Send + Sync + 'static {
    /// Records a request (audited `approval.request`, or `approval.break_glass` for an act
    /// done alone, which is recorded already executed).
    async fn create_approval(&self, a: ApprovalRecord) -> Result<(), StoreError>;
    /// Newest first; `status` filters, `after` is the id of the last one of the page before.
    async fn approvals(
        &self,
        status: Option<String>,
        limit: usize,
        after: Option<String>,
    ) -> Result<Vec<ApprovalRecord>, StoreError>;
    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError>;
    /// Moves a `pending` request to `to` (`approved`, `rejected` or `expired`), audited;
    /// false when it was no longer pending (someone else decided first: it runs once).
    async fn decide_approval(
        &self,
        id: &str,
        to: &str,
        by: &str,
        note: Option<String>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Records how an approved request ran: `executed` or `failed`, and its answer.
    async fn finish_approval(
        &self,
        id: &str,
        status: &str,
        result: serde_json::Value,
    ) -> Result<(), StoreError>;
    /// Marks an act done alone as reviewed by `by` (audited); false when there was none to
    /// review.
    async fn review_approval(&self, id: &str, by: &str, now: i64) -> Result<bool, StoreError>;

    async fn create_session(&self, s: SessionRecord) -> Result<(), StoreError>;
    /// A live session (not expired at `now`).
    async fn session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError>;
    /// Ends a session, and drops every expired one.
    async fn end_session(&self, token_hash: &str, now: i64) -> Result<(), StoreError>;

    /// Counts each sampled minute once per component and day.
    async fn status_sample(&self, samples: Vec<StatusSample>) -> Result<(), StoreError>;
    /// Daily figures from `since` (`YYYY-MM-DD`) on.
    async fn status_days(&self, since: String) -> Result<Vec<StatusDay>, StoreError>;
    /// The newest status incidents with their updates.
    async fn status_incidents(&self, limit: usize) -> Result<Vec<StatusIncident>, StoreError>;
    /// Posts an incident with its first update (in `updates`), audited.
    async fn post_status_incident(&self, i: StatusIncident) -> Result<(), StoreError>;
    /// Adds an update (and the status it sets), audited; false for an unknown incident.
    async fn post_status_update(
        &self,
        incident: &str,
        u: StatusUpdate,
        components: Option<serde_json::Value>,
    ) -> Result<bool, StoreError>;
}

/// Every domain: what a backend is. Implemented for whatever implements them all.
pub trait Store:
    Queue
    + Messages
    + Receipts
    + Inbox
    + Keys
    + Operations
    + Cluster
    + Retention
    + Contacts
    + Incidents
    + OnCall
    + Escalations
    + Bundles
    + Storms
    + Console
{
}

impl<T> Store for T where
    T: Queue
        + Messages
        + Receipts
        + Inbox
        + Keys
        + Operations
        + Cluster
        + Retention
        + Contacts
        + Incidents
        + OnCall
        + Escalations
        + Bundles
        + Storms
        + Console
{
}

/// One store seen through each domain the API uses (retention is the workers' alone), so
/// that every handler names the domain it uses (`state.store.messages.get_message(…)`).
#[derive(Clone)]
pub struct Domains {
    pub queue: std::sync::Arc<dyn Queue>,
    pub messages: std::sync::Arc<dyn Messages>,
    pub receipts: std::sync::Arc<dyn Receipts>,
    pub inbox: std::sync::Arc<dyn Inbox>,
    pub keys: std::sync::Arc<dyn Keys>,
    pub operations: std::sync::Arc<dyn Operations>,
    pub cluster: std::sync::Arc<dyn Cluster>,
    pub contacts: std::sync::Arc<dyn Contacts>,
    pub incidents: std::sync::Arc<dyn Incidents>,
    pub oncall: std::sync::Arc<dyn OnCall>,
    pub escalations: std::sync::Arc<dyn Escalations>,
    pub bundles: std::sync::Arc<dyn Bundles>,
    pub storms: std::sync::Arc<dyn Storms>,
    pub console: std::sync::Arc<dyn Console>,
}

impl Domains {
    pub fn of(store: &std::sync::Arc<dyn Store>) -> Self {
        Domains {
            queue: store.clone(),
            messages: store.clone(),
            receipts: store.clone(),
            inbox: store.clone(),
            keys: store.clone(),
            operations: store.clone(),
            cluster: store.clone(),
            contacts: store.clone(),
            incidents: store.clone(),
            oncall: store.clone(),
            escalations: store.clone(),
            bundles: store.clone(),
            storms: store.clone(),
            console: store.clone(),
        }
    }
}
