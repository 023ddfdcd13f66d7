//! PostgreSQL store, for many nodes: accepts are group-committed by one task per node (each
//! caller answered after the commit); claims use `FOR UPDATE SKIP LOCKED`; the rules that
//! move a message on are the same pure functions the SQLite store uses.

mod complete;
mod read;
mod retention;
mod write;

use super::*;
use crate::core::message::NewMessage;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;

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
    pub async fn open(url: &str, wait: Duration) -> Result<Arc<Self>, StoreError> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad postgres URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(opts);
        let deadline = std::time::Instant::now() + wait;
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
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(committer(pool.clone(), rx));
        Ok(Arc::new(PgStore { pool, accepts: tx }))
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
                match write::accept(&mut tx, batch).await {
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

#[async_trait]
impl Store for PgStore {
    async fn accept(&self, batch: Vec<NewMessage>) -> Result<Vec<Accepted>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.accepts
            .send((batch, tx))
            .await
            .map_err(|_| StoreError::Unavailable("the committer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the committer has stopped".into()))?
    }
    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        write::claim(&self.pool, &req).await
    }
    async fn complete(&self, batch: Vec<Completion>) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let applied = complete::complete(&mut tx, &batch).await?;
        tx.commit().await?;
        Ok(applied)
    }
    async fn release(&self, leases: Vec<Lease>) -> Result<usize, StoreError> {
        write::release(&self.pool, &leases).await
    }
    async fn recover_leases(&self, _now: i64) -> Result<usize, StoreError> {
        // Many nodes share this database: a starting node must not free the leases other,
        // live nodes hold. Leases of dead nodes are freed when they expire.
        Ok(0)
    }
    async fn get_message(&self, id: &str) -> Result<Option<MessageView>, StoreError> {
        read::message(&self.pool, id).await
    }
    async fn list_messages(&self, f: ListFilter) -> Result<Vec<MessageView>, StoreError> {
        read::list_messages(&self.pool, &f).await
    }
    async fn cancel(&self, id: &str, actor: &str) -> Result<Option<MessageView>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found = write::cancel(&mut tx, id, actor).await?;
        tx.commit().await?;
        if !found {
            return Ok(None);
        }
        read::message(&self.pool, id).await
    }
    async fn dead_letters(&self, f: ListFilter) -> Result<Vec<DeadLetter>, StoreError> {
        read::dead_letters(&self.pool, &f).await
    }
    async fn replay(
        &self,
        sel: ReplaySelector,
        actor: &str,
        now: i64,
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = write::replay(&mut tx, &sel, actor, now).await?;
        tx.commit().await?;
        Ok(n)
    }
    async fn inbox_put(&self, item: InboxItem) -> Result<(), StoreError> {
        write::inbox_put(&self.pool, &item).await
    }
    async fn inbox_list(
        &self,
        user: &str,
        unread_only: bool,
        f: ListFilter,
    ) -> Result<Vec<InboxItem>, StoreError> {
        read::inbox(&self.pool, user, unread_only, &f).await
    }
    async fn inbox_mark_read(&self, user: &str, id: &str, now: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            r#"UPDATE inbox SET read_at = COALESCE(read_at, $3) WHERE id = $1 AND "user" = $2"#,
        )
        .bind(id)
        .bind(user)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }
    async fn create_api_key(&self, key: ApiKeyRecord, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        write::create_api_key(&mut tx, &key, actor).await?;
        tx.commit().await?;
        Ok(())
    }
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        read::api_keys(&self.pool, None).await
    }
    async fn purge(&self, cut: Cutoffs) -> Result<Purged, StoreError> {
        let mut tx = self.pool.begin().await?;
        let purged = retention::purge(&mut tx, &cut).await?;
        tx.commit().await?;
        Ok(purged)
    }
    async fn idempotency_hashes(
        &self,
        scope: &str,
        keys: Vec<String>,
        since: i64,
    ) -> Result<Vec<Option<String>>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.key, i.body_hash FROM UNNEST($2::TEXT[]) AS k(key)
             LEFT JOIN idempotency i ON i.scope = $1 AND i.key = k.key AND i.created_at > $3",
        )
        .bind(scope)
        .bind(&keys)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut found = std::collections::HashMap::new();
        for r in rows {
            let k: String = sqlx::Row::try_get(&r, 0)?;
            let h: Option<String> = sqlx::Row::try_get(&r, 1)?;
            if let Some(h) = h {
                found.insert(k, h);
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }
    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(read::api_keys(&self.pool, Some(key_hash)).await?.pop())
    }
    async fn revoke_api_key(&self, id: &str, actor: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = write::revoke_api_key(&mut tx, id, actor, now).await?;
        tx.commit().await?;
        Ok(done)
    }
    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        write::audit(&mut conn, &entry).await
    }
    async fn audit_list(
        &self,
        limit: usize,
        after: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        read::audit(&self.pool, limit, after).await
    }
    async fn apply_receipt(&self, r: ReceiptReport) -> Result<ReceiptOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let out = write::apply_receipt(&mut tx, &r).await?;
        tx.commit().await?;
        Ok(out)
    }
    async fn awaiting_receipts(
        &self,
        provider: &str,
        from: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<AwaitingReceipt>, StoreError> {
        read::awaiting_receipts(&self.pool, provider, from, until, limit).await
    }
    async fn mode(&self) -> Result<Option<ModeRecord>, StoreError> {
        read::mode(&self.pool).await
    }
    async fn set_mode(
        &self,
        mode: &str,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<ModeRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = write::set_mode(&mut tx, mode, reason, actor, now).await?;
        tx.commit().await?;
        Ok(r)
    }
    async fn provider_switches(&self) -> Result<Vec<ProviderSwitch>, StoreError> {
        read::provider_switches(&self.pool).await
    }
    async fn set_provider_switch(&self, s: ProviderSwitch) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        write::set_provider_switch(&mut tx, &s).await?;
        tx.commit().await?;
        Ok(())
    }
    async fn queue_depth(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE due_at IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }
    async fn heartbeat(&self, node: NodeView) -> Result<(), StoreError> {
        // The database's clock, not the node's: a node whose clock runs ahead must not make
        // the others look silent (nor its own lateness look fresh).
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO nodes (id, address, started_at, heartbeat_at, state) VALUES ($1, $2, $3, {DB_NOW}, $4)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = {DB_NOW}, state = $4, address = $2"
        )))
        .bind(&node.id)
        .bind(&node.address)
        .bind(node.started_at)
        .bind(&node.state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    async fn reap_dead_nodes(
        &self,
        _now: i64,
        dead_after_ms: i64,
    ) -> Result<Vec<(String, usize)>, StoreError> {
        use sqlx::Row;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH dead AS (
                UPDATE nodes SET state = 'dead' WHERE state = 'alive' AND heartbeat_at < {DB_NOW} - $1 RETURNING id
             ), freed AS (
                UPDATE deliveries d SET status = 'queued', due_at = {DB_NOW}, lease_owner = NULL
                FROM dead WHERE d.status = 'sending' AND d.lease_owner = dead.id
                RETURNING dead.id AS owner
             )
             SELECT dead.id, (SELECT COUNT(*) FROM freed WHERE freed.owner = dead.id) FROM dead"
        )))
        .bind(dead_after_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? as usize)))
            .collect()
    }
    async fn nodes(&self) -> Result<Vec<NodeView>, StoreError> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT n.id, n.address, n.started_at, n.heartbeat_at, n.state,
                    (SELECT COUNT(*) FROM deliveries d WHERE d.status = 'sending' AND d.lease_owner = n.id)
             FROM nodes n ORDER BY n.started_at DESC LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeView {
                    id: r.try_get(0)?,
                    address: r.try_get(1)?,
                    started_at: r.try_get(2)?,
                    heartbeat_at: r.try_get(3)?,
                    state: r.try_get(4)?,
                    leases: r.try_get(5)?,
                })
            })
            .collect()
    }
    async fn take_job_lease(
        &self,
        job: &str,
        holder: &str,
        _now: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let got: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "INSERT INTO job_leases (name, holder, until) VALUES ($1, $2, {DB_NOW} + $3)
             ON CONFLICT (name) DO UPDATE SET holder = $2, until = {DB_NOW} + $3
                WHERE job_leases.until < {DB_NOW} OR job_leases.holder = $2
             RETURNING holder"
        )))
        .bind(job)
        .bind(holder)
        .bind(ttl_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(got.is_some())
    }
    fn shared(&self) -> bool {
        true
    }
    async fn take_rate_slot(
        &self,
        key: &str,
        rates: &[crate::config::Rate],
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        // Every node counts in the database's time, whatever its own clock says.
        let _ = now;
        let now: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {DB_NOW}")))
            .fetch_one(&mut *tx)
            .await?;
        let longest = rates
            .iter()
            .map(|r| r.per.as_millis() as i64)
            .max()
            .unwrap_or(0);
        sqlx::query("DELETE FROM rate_events WHERE key = $1 AND at <= $2")
            .bind(key)
            .bind(now - longest)
            .execute(&mut *tx)
            .await?;
        let mut wait = 0i64;
        for r in rates {
            let span = r.per.as_millis() as i64;
            let recent: Vec<i64> = sqlx::query_scalar(
                "SELECT at FROM rate_events WHERE key = $1 AND at > $2 ORDER BY at DESC LIMIT $3",
            )
            .bind(key)
            .bind(now - span)
            .bind(r.count as i64)
            .fetch_all(&mut *tx)
            .await?;
            if recent.len() >= r.count as usize
                && let Some(oldest) = recent.last()
            {
                wait = wait.max(oldest + span - now + 1);
            }
        }
        if wait > 0 {
            tx.commit().await?;
            return Ok(Some(wait));
        }
        sqlx::query("INSERT INTO rate_events (key, at) VALUES ($1, $2)")
            .bind(key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(None)
    }
    async fn stats(&self) -> Result<Stats, StoreError> {
        read::stats(&self.pool).await
    }
    async fn purge_idempotency(&self, before: i64) -> Result<usize, StoreError> {
        let r = sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() as usize)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
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
