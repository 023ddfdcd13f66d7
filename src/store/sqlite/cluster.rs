//! Node heartbeats, dead nodes and job leases on SQLite (one node, but the same rows as a
//! cluster keeps, so that `herald nodes` and the reaper read the same way).

use super::SqliteStore;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::OptionalExtension;

#[async_trait]
impl Cluster for SqliteStore {
    async fn heartbeat(&self, node: NodeView) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO nodes (id, address, started_at, heartbeat_at, state) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET heartbeat_at = ?4, state = ?5, address = ?2",
                rusqlite::params![node.id, node.address, node.started_at, node.heartbeat_at, node.state],
            )?;
            Ok(())
        })
        .await
    }
    async fn reap_dead_nodes(
        &self,
        now: i64,
        dead_after_ms: i64,
    ) -> Result<Vec<(String, usize)>, StoreError> {
        self.write(move |c| {
            let dead: Vec<String> = c
                .prepare("UPDATE nodes SET state = 'dead' WHERE state = 'alive' AND heartbeat_at < ?1 RETURNING id")?
                .query_map([now - dead_after_ms], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut out = Vec::new();
            for id in dead {
                let n = c.execute(
                    "UPDATE deliveries SET status = 'queued', due_at = ?2, lease_owner = NULL WHERE status = 'sending' AND lease_owner = ?1",
                    rusqlite::params![id, now],
                )?;
                out.push((id, n));
            }
            Ok(out)
        })
        .await
    }
    async fn nodes(&self) -> Result<Vec<NodeView>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT n.id, n.address, n.started_at, n.heartbeat_at, n.state,
                        (SELECT COUNT(*) FROM deliveries d WHERE d.status = 'sending' AND d.lease_owner = n.id)
                 FROM nodes n ORDER BY n.started_at DESC LIMIT 100",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(NodeView { id: r.get(0)?, address: r.get(1)?, started_at: r.get(2)?, heartbeat_at: r.get(3)?, state: r.get(4)?, leases: r.get(5)? })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
    async fn take_job_lease(
        &self,
        job: &str,
        holder: &str,
        now: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let (job, holder) = (job.to_string(), holder.to_string());
        self.write(move |c| {
            let got: Option<String> = c
                .query_row(
                    "INSERT INTO job_leases (name, holder, until) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET holder = ?2, until = ?3 WHERE job_leases.until < ?4 OR job_leases.holder = ?2
                     RETURNING holder",
                    rusqlite::params![job, holder, now + ttl_ms, now],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(got.is_some())
        })
        .await
    }
}
