//! Delivery reports on SQLite.

use super::settle::recompute;
use super::{SqliteStore, corrupt};
use crate::core::types::DeliveryStatus;
use crate::store::rules;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

/// Applies a delivery receipt once: `delivered` confirms a sent delivery; `failed` fails it
/// (the message then fails over or is dead-lettered like any failure).
pub fn apply_receipt(c: &Connection, r: &ReceiptReport) -> Result<ReceiptOutcome, StoreError> {
    let status = rules::receipt_status(r.delivered).as_str();
    let found: Option<(String, String, String, String)> = match (&r.delivery_id, &r.provider_message_id) {
        (Some(id), _) => c
            .query_row(
                "SELECT id, message_id, status, channel FROM deliveries WHERE id = ?1 AND provider = ?2",
                params![id, r.provider],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()?,
        (None, Some(pmid)) => c
            .query_row(
                "SELECT id, message_id, status, channel FROM deliveries WHERE provider = ?1 AND provider_message_id = ?2",
                params![r.provider, pmid],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()?,
        (None, None) => None,
    };
    // A report of no delivery Herald knows leaves nothing behind (anyone can send one).
    let Some((delivery_id, message_id, current, channel)) = found else {
        return Ok(ReceiptOutcome::Unknown);
    };
    let fresh = c
        .prepare_cached(
            "INSERT OR IGNORE INTO receipts (provider, receipt_key, delivery_id, status, received_at, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![r.provider, r.dedupe_key, delivery_id, status, r.at, r.error.as_ref().map(|e| json!(e).to_string())])?;
    let current: DeliveryStatus = current.parse().map_err(corrupt)?;
    if let Some(refused) = rules::receipt_refusal(fresh > 0, current) {
        return Ok(refused);
    }
    c.execute(
        "UPDATE deliveries SET status = ?2, updated_at = ?3 WHERE id = ?1",
        params![delivery_id, status, r.at],
    )?;
    // Why the report failed it, on the delivery (its `reason`).
    if let Some(e) = &r.error {
        c.execute(
            "INSERT INTO delivery_notes (delivery_id, code, detail, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (delivery_id) DO UPDATE SET code = excluded.code, detail = excluded.detail, at = excluded.at",
            params![delivery_id, e.code, e.detail, r.at],
        )?;
    }
    if rules::receipt_reopens_failover(r.delivered) {
        c.execute(
            "UPDATE deliveries SET status = 'pending', updated_at = ?2
             WHERE message_id = ?3 AND status = 'skipped'
               AND position > (SELECT position FROM deliveries WHERE id = ?1)
               AND EXISTS (SELECT 1 FROM messages WHERE id = ?3 AND strategy = 'failover')",
            params![delivery_id, r.at, message_id],
        )?;
    }
    let last_error = r
        .error
        .as_ref()
        .map(|e| crate::store::rules::last_error_json(Some(&r.provider), e));
    recompute(c, &message_id, r.at, &channel, last_error)?;
    Ok(ReceiptOutcome::Applied {
        delivery_id,
        delivered: r.delivered,
    })
}

/// SMS deliveries sent through a provider in a time window and still without a receipt
/// (only SMS is polled for reports; the partial index `deliveries_awaiting_receipt` holds
/// exactly these rows, and the query's terms imply its predicate so that it is used).
const AWAITING: &str = "SELECT id, recipient, provider_message_id, updated_at FROM deliveries
     WHERE status = 'sent' AND channel = 'sms' AND provider = ?1 AND updated_at >= ?2 AND updated_at <= ?3
     ORDER BY updated_at LIMIT ?4";

pub fn awaiting_receipts(
    c: &Connection,
    provider: &str,
    from: i64,
    until: i64,
    limit: usize,
) -> Result<Vec<AwaitingReceipt>, StoreError> {
    let mut stmt = c.prepare_cached(AWAITING)?;
    let rows = stmt.query_map(params![provider, from, until, limit as i64], |r| {
        Ok(AwaitingReceipt {
            delivery_id: r.get(0)?,
            to: r.get(1)?,
            provider_message_id: r.get(2)?,
            sent_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn note_delivery(
    c: &Connection,
    provider: &str,
    pmid: &str,
    note: &DeliveryReason,
    at: i64,
) -> Result<Option<(String, String)>, StoreError> {
    let found: Option<(String, String)> = c
        .query_row(
            "SELECT id, message_id FROM deliveries WHERE provider = ?1 AND provider_message_id = ?2",
            params![provider, pmid],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((id, _)) = &found {
        c.execute(
            "INSERT INTO delivery_notes (delivery_id, code, detail, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (delivery_id) DO UPDATE SET code = excluded.code, detail = excluded.detail, at = excluded.at",
            params![id, note.code, note.detail, at],
        )?;
    }
    Ok(found)
}

#[async_trait]
impl Receipts for SqliteStore {
    async fn apply_receipt(&self, r: ReceiptReport) -> Result<ReceiptOutcome, StoreError> {
        self.write(move |c| apply_receipt(c, &r)).await
    }
    async fn note_delivery(
        &self,
        provider: &str,
        provider_message_id: &str,
        note: DeliveryReason,
        at: crate::core::types::Millis,
    ) -> Result<Option<(String, String)>, StoreError> {
        let (p, m) = (provider.to_string(), provider_message_id.to_string());
        self.write(move |c| note_delivery(c, &p, &m, &note, at))
            .await
    }
    async fn awaiting_receipts(
        &self,
        provider: &str,
        from: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<AwaitingReceipt>, StoreError> {
        let provider = provider.to_string();
        self.read(move |c| awaiting_receipts(c, &provider, from, until, limit))
            .await
    }
}

#[cfg(test)]
mod tests {
    /// The poller's query is answered from its partial index, not by reading every sent
    /// delivery: the query and the index's predicate must not drift apart.
    #[test]
    fn awaiting_receipts_reads_its_partial_index() {
        let t = tempfile::tempdir().unwrap();
        let mut c = super::super::connect(&t.path().join("h.db")).unwrap();
        super::super::migrate(&mut c).unwrap();
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {}", super::AWAITING))
            .unwrap()
            .query_map(rusqlite::params!["p", 0, 1, 10], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|d| d.contains("deliveries_awaiting_receipt")),
            "{plan:?}"
        );
    }
}
