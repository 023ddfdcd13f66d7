//! Retention on PostgreSQL: one bounded batch of each kind per call, in one transaction.

use super::PgStore;
use crate::store::rules::FINISHED;
use crate::store::{Cutoffs, Purged, Retention, StoreError};
use async_trait::async_trait;
use sqlx::{AssertSqlSafe, PgConnection};

async fn exec(
    tx: &mut PgConnection,
    sql: String,
    before: i64,
    batch: i64,
) -> Result<usize, StoreError> {
    Ok(sqlx::query(AssertSqlSafe(sql))
        .bind(before)
        .bind(batch)
        .execute(&mut *tx)
        .await?
        .rows_affected() as usize)
}

pub async fn purge(tx: &mut PgConnection, cut: &Cutoffs) -> Result<Purged, StoreError> {
    let batch = cut.batch as i64;
    let ids = format!(
        "SELECT id FROM messages WHERE status IN ({FINISHED}) AND updated_at < $1
         ORDER BY updated_at, id LIMIT $2"
    );
    // Lock the batch first so that every statement below sees the same messages.
    let locked: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("{ids} FOR UPDATE")))
        .bind(cut.messages)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
    let mut receipts = 0;
    let mut messages = 0;
    if !locked.is_empty() {
        let deliveries = "SELECT id FROM deliveries WHERE message_id = ANY($1)";
        for sql in [
            format!("DELETE FROM attempts WHERE delivery_id IN ({deliveries})"),
            format!("DELETE FROM delivery_notes WHERE delivery_id IN ({deliveries})"),
            format!("DELETE FROM receipts WHERE delivery_id IN ({deliveries})"),
            "DELETE FROM deliveries WHERE message_id = ANY($1)".to_string(),
            "DELETE FROM dead_letters WHERE message_id = ANY($1)".to_string(),
            "DELETE FROM messages WHERE id = ANY($1)".to_string(),
        ] {
            let is_receipts = sql.starts_with("DELETE FROM receipts");
            let is_messages = sql.starts_with("DELETE FROM messages");
            let n = sqlx::query(AssertSqlSafe(sql))
                .bind(&locked)
                .execute(&mut *tx)
                .await?
                .rows_affected() as usize;
            if is_receipts {
                receipts += n;
            }
            if is_messages {
                messages = n;
            }
        }
    }
    let inbox = exec(
        tx,
        "DELETE FROM inbox WHERE id IN (SELECT id FROM inbox WHERE created_at < $1 LIMIT $2)"
            .into(),
        cut.inbox,
        batch,
    )
    .await?;
    let audit = super::operations::purge_audit(tx, cut.audit, batch).await?;
    let nodes = sqlx::query("DELETE FROM nodes WHERE state <> 'alive' AND heartbeat_at < $1")
        .bind(cut.nodes)
        .execute(&mut *tx)
        .await?
        .rows_affected() as usize;
    receipts += exec(
        tx,
        "DELETE FROM receipts WHERE (provider, receipt_key) IN
            (SELECT provider, receipt_key FROM receipts WHERE received_at < $1 LIMIT $2)"
            .into(),
        cut.receipts,
        batch,
    )
    .await?;
    let rate_events = exec(
        tx,
        "DELETE FROM rate_events WHERE ctid IN (SELECT ctid FROM rate_events WHERE at < $1 LIMIT $2)"
            .into(),
        cut.rate_events,
        batch,
    )
    .await?;
    Ok(Purged {
        messages,
        inbox,
        audit,
        nodes,
        receipts,
        rate_events,
    })
}

#[async_trait]
impl Retention for PgStore {
    async fn purge(&self, cut: Cutoffs) -> Result<Purged, StoreError> {
        // Only sealed audit entries are purged (a prefix of the chain): seal first.
        super::operations::seal(&self.pool).await?;
        let mut tx = self.pool.begin().await?;
        let purged = purge(&mut tx, &cut).await?;
        tx.commit().await?;
        Ok(purged)
    }
    async fn purge_idempotency(&self, before: i64) -> Result<usize, StoreError> {
        let r = sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() as usize)
    }
}
