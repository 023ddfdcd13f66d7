//! PostgreSQL store, for many nodes: accepts are group-committed by one task per node (each
//! caller answered after the commit); claims use `FOR UPDATE SKIP LOCKED`; the rules that
//! move a message on are the same pure functions the SQLite store uses.

mod bundles;
mod cluster;
mod complete;
mod console;
mod contacts;
mod escalations;
pub mod hosts;
mod inbox;
mod incidents;
mod keys;
mod messages;
mod oncall;
mod operations;
mod queue;
mod receipts;
mod retention;
mod status;
mod storms;

use super::*;
use crate::core::message::NewMessage;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// The database's clock in Unix milliseconds: what leases, heartbeats, reaping, job leases
/// and rate slots are measured in, so that nodes whose clocks disagree still agree on them.
/// The statement's start time, not `clock_timestamp()`: a stable value can bound an index
/// scan, where a volatile one made each claim read and sort every due delivery of its lane.
pub(crate) const DB_NOW: &str = "(EXTRACT(EPOCH FROM statement_timestamp()) * 1000)::BIGINT";
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "nodes",
        include_str!("../../../migrations/postgres/0002_nodes.sql"),
    ),
    (
        3,
        "rate_events",
        include_str!("../../../migrations/postgres/0003_rate_events.sql"),
    ),
    (
        4,
        "retention",
        include_str!("../../../migrations/postgres/0004_retention.sql"),
    ),
    (
        5,
        "lean_queue",
        include_str!("../../../migrations/postgres/0005_lean_queue.sql"),
    ),
    (
        6,
        "contacts",
        include_str!("../../../migrations/postgres/0006_contacts.sql"),
    ),
    (
        7,
        "incidents",
        include_str!("../../../migrations/postgres/0007_incidents.sql"),
    ),
    (
        8,
        "heartbeats",
        include_str!("../../../migrations/postgres/0008_heartbeats.sql"),
    ),
    (
        9,
        "oncall_documents",
        include_str!("../../../migrations/postgres/0009_oncall_documents.sql"),
    ),
    (
        10,
        "escalations",
        include_str!("../../../migrations/postgres/0010_escalations.sql"),
    ),
    (
        11,
        "bundles_storms",
        include_str!("../../../migrations/postgres/0011_bundles_storms.sql"),
    ),
    (
        12,
        "console",
        include_str!("../../../migrations/postgres/0012_console.sql"),
    ),
];

/// Accept requests gathered into one transaction at most.
const MAX_GROUP: usize = 512;

type AcceptJob = (
    Vec<NewMessage>,
    oneshot::Sender<Result<Vec<Accepted>, StoreError>>,
);

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(d)
                if d.code()
                    .is_some_and(|c| c.starts_with("08") || c == "57P01" || c == "57P03") =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Postgres(e.to_string()),
        }
    }
}

pub struct PgStore {
    pool: PgPool,
    accepts: mpsc::Sender<AcceptJob>,
    /// With several hosts: the task that follows the primary (ends with the store).
    follower: Option<tokio::task::AbortHandle>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(f) = &self.follower {
            f.abort();
        }
    }
}

/// The schema version this build migrates to.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Runs the migrations not yet applied, under an advisory lock so that nodes starting
/// together do not race; returns the versions applied now.
pub async fn migrate(pool: &PgPool) -> Result<Vec<i64>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(7243001)")
        .execute(&mut *tx)
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let current: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await?;
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > known {
        return Err(StoreError::Migration(format!(
            "the database is at schema version {current}, newer than this build knows ({known}); upgrade Herald"
        )));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::Migration(format!("{version}_{name}: {e}")))?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(name)
        .bind(crate::core::types::now_millis())
        .execute(&mut *tx)
        .await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}

impl PgStore {
    /// Connects (waiting up to `wait` for the server), migrates, starts the accept committer.
    /// Opens the pool (on the host that takes writes, when the URL names several, and
    /// following that role from then on), waiting up to `wait` for the server; migrates.
    pub async fn open(url: &str, wait: Duration) -> Result<Arc<Self>, StoreError> {
        let hosts = hosts::host_options(url)
            .map_err(|e| StoreError::Unavailable(format!("bad postgres URL: {e}")))?;
        let deadline = std::time::Instant::now() + wait;
        let first = if hosts.len() > 1 {
            loop {
                if let Some(i) = hosts::find_primary(&hosts).await {
                    break i;
                }
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Unavailable(format!(
                        "none of the {} PostgreSQL hosts takes writes",
                        hosts.len()
                    )));
                }
                tracing::info!("waiting for a PostgreSQL primary among the hosts");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        } else {
            0
        };
        let following = Arc::new(hosts::Following::starting_on(first));
        let mut options = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(2));
        if hosts.len() > 1 {
            // After the pool moves to a new primary, connections opened before the move
            // (to the old host) are closed rather than used again.
            let (a, b) = (following.clone(), following.clone());
            options = options
                .before_acquire(move |_, meta| {
                    let keep = !a.opened_before_move(meta.age);
                    Box::pin(async move { Ok(keep) })
                })
                .after_release(move |_, meta| {
                    let keep = !b.opened_before_move(meta.age);
                    Box::pin(async move { Ok(keep) })
                });
        }
        let pool = options.connect_lazy_with(hosts[first].clone());
        loop {
            match sqlx::query("SELECT 1").execute(&pool).await {
                Ok(_) => break,
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::info!(error = %e, "waiting for PostgreSQL");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => {
                    return Err(StoreError::Unavailable(format!(
                        "cannot reach PostgreSQL: {e}"
                    )));
                }
            }
        }
        migrate(&pool).await?;
        let follower = (hosts.len() > 1)
            .then(|| tokio::spawn(hosts::follow(pool.clone(), hosts, following)).abort_handle());
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(committer(pool.clone(), rx));
        Ok(Arc::new(PgStore {
            pool,
            accepts: tx,
            follower,
        }))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Gathers concurrent accepts into one transaction, one savepoint each; answers every caller
/// after the commit.
async fn committer(pool: PgPool, mut rx: mpsc::Receiver<AcceptJob>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut results: Vec<Result<Vec<Accepted>, StoreError>> = Vec::with_capacity(jobs.len());
        let outcome: Result<(), StoreError> = async {
            let mut tx = pool.begin().await?;
            for (batch, _) in &jobs {
                sqlx::query("SAVEPOINT job").execute(&mut *tx).await?;
                match queue::accept(&mut tx, batch).await {
                    Ok(r) => {
                        sqlx::query("RELEASE SAVEPOINT job")
                            .execute(&mut *tx)
                            .await?;
                        results.push(Ok(r));
                    }
                    Err(e) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT job")
                            .execute(&mut *tx)
                            .await?;
                        results.push(Err(e));
                    }
                }
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                for ((_, reply), r) in jobs.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for (_, reply) in jobs {
                    let _ = reply.send(Err(StoreError::Unavailable(format!(
                        "commit failed: {msg}"
                    ))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_migration_file_is_registered() {
        crate::store::rules::assert_migrations_registered(
            concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"),
            super::MIGRATIONS,
        );
    }
}
