//! Delivery reports on PostgreSQL.

use super::complete::recompute_one;
use super::{PgStore, corrupt};
use crate::store::rules;
use crate::store::*;
use async_trait::async_trait;
use serde_json::json;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};

pub async fn apply_receipt(
    tx: &mut PgConnection,
    r: &ReceiptReport,
) -> Result<ReceiptOutcome, StoreError> {
    let status = rules::receipt_status(r.delivered).as_str();
    let found = match (&r.delivery_id, &r.provider_message_id) {
        (Some(id), _) => {
            sqlx::query("SELECT id, message_id, status, channel FROM deliveries WHERE id = $1 AND provider = $2 FOR UPDATE")
                .bind(id)
                .bind(&r.provider)
                .fetch_optional(&mut *tx)
                .await?
        }
        (None, Some(pmid)) => {
            sqlx::query("SELECT id, message_id, status, channel FROM deliveries WHERE provider = $1 AND provider_message_id = $2 FOR UPDATE")
                .bind(&r.provider)
                .bind(pmid)
                .fetch_optional(&mut *tx)
                .await?
        }
        (None, None) => None,
    };
    let Some(row) = found else {
        return Ok(ReceiptOutcome::Unknown);
    };
    let (delivery_id, message_id, current, channel): (String, String, String, String) = (
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
    );
    // A report of no delivery Herald knows leaves nothing behind (anyone can send one).
    let fresh = sqlx::query(
        "INSERT INTO receipts (provider, receipt_key, delivery_id, status, received_at, detail) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (provider, receipt_key) DO NOTHING",
    )
    .bind(&r.provider)
    .bind(&r.dedupe_key)
    .bind(&delivery_id)
    .bind(status)
    .bind(r.at)
    .bind(r.error.as_ref().map(|e| json!(e).to_string()))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if let Some(refused) = rules::receipt_refusal(fresh > 0, current.parse().map_err(corrupt)?) {
        return Ok(refused);
    }
    sqlx::query("UPDATE deliveries SET status = $2, updated_at = $3 WHERE id = $1")
        .bind(&delivery_id)
        .bind(status)
        .bind(r.at)
        .execute(&mut *tx)
        .await?;
    // Why the report failed it, on the delivery (its `reason`).
    if let Some(e) = &r.error {
        sqlx::query(
            "INSERT INTO delivery_notes (delivery_id, code, detail, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (delivery_id) DO UPDATE SET code = EXCLUDED.code, detail = EXCLUDED.detail, at = EXCLUDED.at",
        )
        .bind(&delivery_id)
        .bind(&e.code)
        .bind(&e.detail)
        .bind(r.at)
        .execute(&mut *tx)
        .await?;
    }
    if rules::receipt_reopens_failover(r.delivered) {
        sqlx::query(
            "UPDATE deliveries SET status = 'pending', updated_at = $2
             WHERE message_id = $3 AND status = 'skipped'
               AND position > (SELECT position FROM deliveries WHERE id = $1)
               AND EXISTS (SELECT 1 FROM messages WHERE id = $3 AND strategy = 'failover')",
        )
        .bind(&delivery_id)
        .bind(r.at)
        .bind(&message_id)
        .execute(&mut *tx)
        .await?;
    }
    let last_error = r
        .error
        .as_ref()
        .map(|e| crate::store::rules::last_error_json(Some(&r.provider), e));
    recompute_one(tx, &message_id, r.at, &channel, last_error).await?;
    Ok(ReceiptOutcome::Applied {
        delivery_id,
        delivered: r.delivered,
    })
}

pub async fn awaiting_receipts(
    pool: &PgPool,
    provider: &str,
    from: i64,
    until: i64,
    limit: usize,
) -> Result<Vec<AwaitingReceipt>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, recipient, provider_message_id, updated_at FROM deliveries
         WHERE status = 'sent' AND channel = 'sms' AND provider = $1 AND updated_at >= $2 AND updated_at <= $3 ORDER BY updated_at LIMIT $4",
    )
    .bind(provider)
    .bind(from)
    .bind(until)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AwaitingReceipt {
                delivery_id: r.try_get(0)?,
                to: r.try_get(1)?,
                provider_message_id: r.try_get(2)?,
                sent_at: r.try_get(3)?,
            })
        })
        .collect()
}

#[async_trait]
impl Receipts for PgStore {
    async fn apply_receipt(&self, r: ReceiptReport) -> Result<ReceiptOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let out = apply_receipt(&mut tx, &r).await?;
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
        awaiting_receipts(&self.pool, provider, from, until, limit).await
    }
    async fn note_delivery(
        &self,
        provider: &str,
        provider_message_id: &str,
        note: DeliveryReason,
        at: crate::core::types::Millis,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query(
            "WITH d AS (SELECT id, message_id FROM deliveries WHERE provider = $1 AND provider_message_id = $2 LIMIT 1),
                  n AS (INSERT INTO delivery_notes (delivery_id, code, detail, at)
                        SELECT id, $3, $4, $5 FROM d
                        ON CONFLICT (delivery_id) DO UPDATE SET code = EXCLUDED.code, detail = EXCLUDED.detail, at = EXCLUDED.at)
             SELECT id, message_id FROM d",
        )
        .bind(provider)
        .bind(provider_message_id)
        .bind(&note.code)
        .bind(&note.detail)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?))),
            None => Ok(None),
        }
    }
}
