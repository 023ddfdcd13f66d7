//! What nodes sharing one database coordinate through: heartbeats, reaping dead nodes, job
//! leases and rate slots, all on the database's clock (`DB_NOW`).

use super::DB_NOW;
use super::PgStore;
use crate::store::*;
use async_trait::async_trait;

#[async_trait]
impl Cluster for PgStore {
    fn shared(&self) -> bool {
        true
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
}
