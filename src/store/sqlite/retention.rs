//! Retention on SQLite: one bounded batch of each kind per call, in the writer's transaction.

use super::SqliteStore;
use crate::store::rules::FINISHED;
use crate::store::{Cutoffs, Purged, Retention, StoreError};
use async_trait::async_trait;
use rusqlite::{Connection, params};

pub fn purge(c: &Connection, cut: &Cutoffs) -> Result<Purged, StoreError> {
    let batch = cut.batch as i64;
    // The same batch of finished messages for every statement of this transaction.
    let ids = format!(
        "SELECT id FROM messages WHERE status IN ({FINISHED}) AND updated_at < ?1
         ORDER BY updated_at, id LIMIT ?2"
    );
    let deliveries = format!("SELECT id FROM deliveries WHERE message_id IN ({ids})");
    c.execute(
        &format!("DELETE FROM attempts WHERE delivery_id IN ({deliveries})"),
        params![cut.messages, batch],
    )?;
    c.execute(
        &format!("DELETE FROM delivery_notes WHERE delivery_id IN ({deliveries})"),
        params![cut.messages, batch],
    )?;
    let mut receipts = c.execute(
        &format!("DELETE FROM receipts WHERE delivery_id IN ({deliveries})"),
        params![cut.messages, batch],
    )?;
    c.execute(
        &format!("DELETE FROM deliveries WHERE message_id IN ({ids})"),
        params![cut.messages, batch],
    )?;
    c.execute(
        &format!("DELETE FROM dead_letters WHERE message_id IN ({ids})"),
        params![cut.messages, batch],
    )?;
    let messages = c.execute(
        &format!("DELETE FROM messages WHERE id IN ({ids})"),
        params![cut.messages, batch],
    )?;
    let inbox = c.execute(
        "DELETE FROM inbox WHERE id IN (SELECT id FROM inbox WHERE created_at < ?1 LIMIT ?2)",
        params![cut.inbox, batch],
    )?;
    let audit = super::operations::purge_audit(c, cut.audit, batch)?;
    let nodes = c.execute(
        "DELETE FROM nodes WHERE state <> 'alive' AND heartbeat_at < ?1",
        params![cut.nodes],
    )?;
    receipts += c.execute(
        "DELETE FROM receipts WHERE (provider, receipt_key) IN
            (SELECT provider, receipt_key FROM receipts WHERE received_at < ?1 LIMIT ?2)",
        params![cut.receipts, batch],
    )?;
    Ok(Purged {
        messages,
        inbox,
        audit,
        nodes,
        receipts,
        // Rate events live in PostgreSQL only (one node keeps them in memory here).
        rate_events: 0,
    })
}

#[async_trait]
impl Retention for SqliteStore {
    async fn purge(&self, cut: Cutoffs) -> Result<Purged, StoreError> {
        self.write(move |c| purge(c, &cut)).await
    }
    async fn purge_idempotency(&self, before: i64) -> Result<usize, StoreError> {
        self.write(move |c| {
            Ok(c.execute("DELETE FROM idempotency WHERE created_at < ?1", [before])?)
        })
        .await
    }
}
