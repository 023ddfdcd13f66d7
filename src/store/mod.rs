//! Storage, by domain. Every write that must be durable goes through it; a `202` is answered
//! only after [`Queue::accept`] returns.
//!
//! | domain | trait | what it holds |
//! |---|---|---|
//! | queue | [`Queue`] | accept, idempotency, claims under a lease, outcomes under the fence, release |
//! | messages | [`Messages`] | message views, cancel, dead letters, replay |
//! | receipts | [`Receipts`] | provider delivery reports |
//! | inbox | [`Inbox`] | the inbox channel's items |
//! | keys | [`Keys`] | API keys (hashed) |
//! | operations | [`Operations`] | audit log, mode, provider switches, figures |
//! | cluster | [`Cluster`] | heartbeats, dead nodes, job leases, shared rate slots |
//! | retention | [`Retention`] | deleting what is past its keep-time |
//! | contacts | [`Contacts`] | the people `to.user` names: addresses and preferences |
//! | incidents | [`Incidents`] | what alerts become: occurrences, timeline, owed pages |
//! | on-call | [`OnCall`] | schedules and escalation policies (versioned JSON documents) |
//! | escalations | [`Escalations`] | each incident's place in its policy, leased and fenced; pages and reply codes |
//! | storms | [`Storms`] | storm detection (new incidents grouped into one) and inhibition |
//! | bundles | [`Bundles`] | pages and notices held for one person and method, sent as one message |
//! | console | [`Console`] | approval requests, console sessions, the status page's incidents and days |
//!
//! [`Store`] is the sum of them all, so a backend is one type implementing every domain:
//! `sqlite::SqliteStore` (one writer thread with group commit, pooled readers) and
//! `postgres::PgStore` (sqlx), each with one file per domain (`sqlite/queue.rs`,
//! `postgres/queue.rs`, …). What both backends share stays here: [`rules`] (the pure rules
//! they apply), `assemble` (rows into views), `types` (what crosses the trait).
//!
//! Callers name the narrowest domain they use: the dispatcher holds an `Arc<dyn Queue>` and
//! an `Arc<dyn Cluster>`, the API's state a [`Domains`] (`state.store.messages.cancel(…)`);
//! an `Arc<dyn Store>` coerces to any of them.
//!
//! **A new domain** (contacts, incidents, on-call, approvals …): a trait in `domains.rs`
//! added to [`Store`] (and to [`Domains`] if the API uses it), its tables in a new migration
//! of each backend, one file per backend implementing it, its tables in the backup catalogue
//! (`backup::catalog`), and a conformance module in `tests/it/store_conformance/` run on
//! both backends.

pub(crate) mod assemble;
mod console_types;
mod domains;
mod escalation_types;
mod incident_types;
pub mod postgres;
pub mod rules;
pub mod sqlite;
mod types;

pub use domains::{
    Bundles, Cluster, Console, Contacts, Domains, Escalations, Inbox, Incidents, Keys, Messages,
    OnCall, Operations, Queue, Receipts, Retention, Store, Storms,
};

pub use console_types::*;
pub use escalation_types::*;
pub use incident_types::*;
pub use types::*;

/// Stored data that cannot be read back as what it should be.
pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A stored text parsed as `T` (a status, a priority …), or [`corrupt`].
pub(crate) fn parse<T: std::str::FromStr<Err = String>>(
    s: impl AsRef<str>,
) -> Result<T, StoreError> {
    s.as_ref().parse().map_err(corrupt)
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("storage error: {0}")]
    Postgres(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
}
