//! The queue on SQLite: accept, claim, outcomes, leases; every write in the writer's group
//! transaction.

use super::settle::{recompute, settle};
use super::{SqliteStore, corrupt};
use crate::core::message::NewMessage;
use crate::core::types::{DeliveryStatus, Millis, Strategy};
use crate::store::assemble::ClaimedRow;
use crate::store::rules::{self, IDEMPOTENCY_WINDOW_MS};
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

pub fn accept(c: &Connection, batch: &[NewMessage]) -> Result<Vec<Accepted>, StoreError> {
    let mut out = Vec::with_capacity(batch.len());
    let mut find_idem = c.prepare_cached(
        "SELECT body_hash, reply, created_at FROM idempotency WHERE scope = ?1 AND key = ?2",
    )?;
    let mut ins_msg = c.prepare_cached(
        "INSERT OR IGNORE INTO messages (id, status, priority, strategy, sender, created_at, updated_at, send_at, expires_at, body)
         VALUES (?1, ?9, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)",
    )?;
    let mut ins_dlv = c.prepare_cached(
        "INSERT INTO deliveries (id, message_id, position, channel, recipient, status, priority, due_at, updated_at, content, activated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?8)",
    )?;
    let mut ins_idem = c.prepare_cached(
        "INSERT OR REPLACE INTO idempotency (scope, key, body_hash, message_id, reply, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for m in batch {
        if let Some(idem) = &m.idempotency {
            let found: Option<(String, String, i64)> = find_idem
                .query_row(params![idem.scope, idem.key], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            if let Some((hash, reply, created)) = found
                && created > m.created_at - IDEMPOTENCY_WINDOW_MS
            {
                out.push(if hash == idem.body_hash {
                    Accepted::Existing(serde_json::from_str(&reply).map_err(corrupt)?)
                } else {
                    Accepted::Mismatch
                });
                continue;
            }
        }
        if let Some(limited) = recipient_limited(c, m)? {
            out.push(limited);
            continue;
        }
        let body = m.stored_body();
        // A message id is fixed when first accepted (or spooled): storing it again changes nothing.
        let inserted = ins_msg.execute(params![
            m.id,
            m.priority.rank(),
            m.strategy.as_str(),
            m.sender,
            m.created_at,
            m.send_at,
            m.expires_at,
            body.to_string(),
            m.initial_status().as_str()
        ])?;
        let statuses = m.initial_statuses();
        if inserted == 0 {
            out.push(Accepted::Existing(reply_for(m)));
            continue;
        }
        for (i, (d, st)) in m.deliveries.iter().zip(&statuses).enumerate() {
            let due = (*st == DeliveryStatus::Queued).then_some(m.send_at);
            ins_dlv.execute(params![
                d.id,
                m.id,
                i as i64,
                d.channel.as_str(),
                d.to,
                st.as_str(),
                m.priority.rank(),
                due,
                m.created_at,
                d.content.as_ref().map(|c| json!(c).to_string())
            ])?;
            if let Some(s) = &d.skip {
                c.prepare_cached(
                    "INSERT OR IGNORE INTO delivery_notes (delivery_id, code, detail, at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![d.id, s.code, s.detail, m.created_at])?;
            }
        }
        let reply = reply_for(m);
        if let Some(idem) = &m.idempotency {
            let text = serde_json::to_string(&reply).map_err(corrupt)?;
            ins_idem.execute(params![
                idem.scope,
                idem.key,
                idem.body_hash,
                m.id,
                text,
                m.created_at
            ])?;
        }
        out.push(Accepted::New(reply));
    }
    Ok(out)
}

/// The first per-recipient limit the message would break, if any.
fn recipient_limited(c: &Connection, m: &NewMessage) -> Result<Option<Accepted>, StoreError> {
    for l in &m.recipient_limits {
        for rate in &l.rates {
            let span = rate.per.as_millis() as i64;
            let recent: Vec<i64> = c
                .prepare_cached(
                    "SELECT m.created_at FROM deliveries d JOIN messages m ON m.id = d.message_id
                     WHERE d.channel = ?1 AND d.recipient = ?2 AND m.created_at > ?3
                     ORDER BY m.created_at DESC LIMIT ?4",
                )?
                .query_map(
                    params![
                        l.channel.as_str(),
                        l.to,
                        m.created_at - span,
                        rate.count as i64
                    ],
                    |r| r.get(0),
                )?
                .collect::<Result<_, _>>()?;
            if let Some(refusal) =
                crate::store::rules::recipient_refusal(l.channel, &recent, rate, m.created_at)
            {
                return Ok(Some(refusal));
            }
        }
    }
    Ok(None)
}

/// Claims due deliveries in the writer; each row is turned into a [`Claimed`] (its JSON
/// parsed) outside it, so that the one writer thread only reads and writes.
pub fn claim(c: &Connection, req: &ClaimRequest) -> Result<Vec<ClaimedRow>, StoreError> {
    let mut out = Vec::new();
    let mut select = c.prepare_cached(
        "SELECT d.id, d.fence, d.tries, d.message_id, d.channel, d.recipient, d.priority,
                d.skip_providers, d.provider, m.created_at, m.expires_at, m.body, d.content,
                COALESCE(d.activated_at, m.send_at),
                EXISTS (SELECT 1 FROM deliveries n WHERE n.message_id = d.message_id
                        AND n.position > d.position AND n.status = 'pending')
         FROM deliveries d JOIN messages m ON m.id = d.message_id
         WHERE d.due_at IS NOT NULL AND d.priority = ?1 AND d.due_at <= ?2
           AND (?4 IS NULL OR d.channel <> 'webhook' OR NOT EXISTS (
                SELECT 1 FROM json_each(?4) j
                WHERE substr(d.recipient, 1, length(j.value) + 1) = j.value || '/'))
         ORDER BY d.due_at LIMIT ?3",
    )?;
    // One statement per table for the whole claim, not two per row.
    let mut take = c.prepare_cached(
        "UPDATE deliveries SET status = 'sending', fence = fence + 1, tries = tries + 1,
                lease_owner = ?2, due_at = ?3, updated_at = ?4
         WHERE id IN (SELECT value FROM json_each(?1))",
    )?;
    let mut mark_msg = c.prepare_cached(
        "UPDATE messages SET status = 'sending', updated_at = ?2
         WHERE id IN (SELECT value FROM json_each(?1)) AND status = 'queued'",
    )?;
    let skip_endpoints =
        (!req.skip_endpoints.is_empty()).then(|| json!(req.skip_endpoints).to_string());
    let mut taken = [0usize; 4];
    for rank in 0..4i64 {
        let want = crate::store::rules::lane_want(req, rank as usize, &taken);
        if want == 0 {
            continue;
        }
        // Read as the row will be once the claim's update below is applied: fence and
        // tries one higher.
        let rows = select.query_map(params![rank, req.now, want as i64, skip_endpoints], |r| {
            Ok(ClaimedRow {
                id: r.get(0)?,
                fence: r.get::<_, i64>(1)? + 1,
                tries: r.get::<_, i64>(2)? + 1,
                message_id: r.get(3)?,
                channel: r.get(4)?,
                to: r.get(5)?,
                priority: r.get(6)?,
                skip_providers: r.get(7)?,
                last_provider: r.get(8)?,
                created_at: r.get(9)?,
                expires_at: r.get(10)?,
                body: r.get(11)?,
                own_content: r.get(12)?,
                activated_at: r.get(13)?,
                has_next_channel: r.get(14)?,
            })
        })?;
        let rows: Vec<ClaimedRow> = rows.collect::<Result<_, _>>()?;
        if rows.is_empty() {
            continue;
        }
        let ids = json!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>()).to_string();
        let messages = json!(
            rows.iter()
                .map(|r| r.message_id.as_str())
                .collect::<Vec<_>>()
        )
        .to_string();
        take.execute(params![ids, req.owner, req.now + req.lease_ms, req.now])?;
        mark_msg.execute(params![messages, req.now])?;
        taken[rank as usize] += rows.len();
        out.extend(rows);
    }
    Ok(out)
}

pub fn complete(c: &Connection, x: &Completion) -> Result<bool, StoreError> {
    // With the delivery, how many its message has: alone, the message's status follows
    // from this one outcome and nothing else needs reading.
    let current: Option<(String, String, i64, Option<String>, String, i64)> = c
        .prepare_cached(
            "SELECT message_id, status, fence, skip_providers, channel,
                    (SELECT COUNT(*) FROM deliveries n WHERE n.message_id = d.message_id)
             FROM deliveries d WHERE id = ?1",
        )?
        .query_row([&x.lease.delivery_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .optional()?;
    let Some((message_id, status, fence, skip, channel, siblings)) = current else {
        return Ok(false);
    };
    if status != "sending" || fence != x.lease.fence {
        return Ok(false); // a stale worker: another claim owns it now
    }
    let skip: Vec<String> = skip
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let (new_status, due, skip) = rules::step_effect(x, skip);
    let provider = x.attempt.as_ref().map(|a| a.provider.clone());
    let skip_json = (!skip.is_empty()).then(|| json!(skip).to_string());
    let provider_message_id = x
        .attempt
        .as_ref()
        .and_then(|a| a.provider_message_id.clone());
    c.prepare_cached(
        "UPDATE deliveries SET status = ?2, due_at = ?3, lease_owner = NULL,
                provider = COALESCE(?4, provider), skip_providers = ?5, updated_at = ?6,
                provider_message_id = COALESCE(?7, provider_message_id),
                tries = MAX(tries - ?8, 0)
         WHERE id = ?1",
    )?
    .execute(params![
        x.lease.delivery_id,
        new_status.as_str(),
        due,
        provider,
        skip_json,
        x.now,
        provider_message_id,
        rules::untried(x) as i64
    ])?;
    if let Some(a) = &x.attempt {
        c.prepare_cached(
            "INSERT INTO attempts (delivery_id, n, provider, at, duration_ms, outcome,
                 error_class, error_code, error_detail, provider_message_id)
             VALUES (?1, (SELECT COALESCE(MAX(n), 0) + 1 FROM attempts WHERE delivery_id = ?1),
                     ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            x.lease.delivery_id,
            a.provider,
            a.at,
            a.duration_ms,
            a.outcome,
            a.error.as_ref().map(|e| e.class.as_str()),
            a.error.as_ref().map(|e| e.code.as_str()),
            a.error.as_ref().map(|e| e.detail.as_str()),
            a.provider_message_id
        ])?;
    }
    let last_error = x.attempt.as_ref().and_then(|a| {
        a.error
            .as_ref()
            .map(|e| rules::last_error_json(Some(&a.provider), e))
    });
    if siblings == 1 {
        settle(
            c,
            &message_id,
            x.now,
            &channel,
            last_error,
            Strategy::All,
            vec![(x.lease.delivery_id.clone(), new_status)],
        )?;
    } else {
        recompute(c, &message_id, x.now, &channel, last_error)?;
    }
    Ok(true)
}

pub fn release(c: &Connection, leases: &[Lease]) -> Result<usize, StoreError> {
    let now = crate::core::types::now_millis();
    let mut stmt = c.prepare_cached(
        "UPDATE deliveries SET status = 'queued', due_at = ?3, lease_owner = NULL, tries = MAX(tries - 1, 0)
         WHERE id = ?1 AND fence = ?2 AND status = 'sending'",
    )?;
    let mut n = 0;
    for l in leases {
        n += stmt.execute(params![l.delivery_id, l.fence, now])?;
    }
    Ok(n)
}

pub fn recover_leases(c: &Connection, now: Millis) -> Result<usize, StoreError> {
    Ok(c.execute(
        "UPDATE deliveries SET status = 'queued', due_at = ?1, lease_owner = NULL WHERE status = 'sending'",
        [now],
    )?)
}

#[async_trait]
impl Queue for SqliteStore {
    async fn accept(&self, batch: Vec<NewMessage>) -> Result<Vec<Accepted>, StoreError> {
        self.write(move |c| accept(c, &batch)).await
    }
    async fn idempotency_hashes(
        &self,
        scope: &str,
        keys: Vec<String>,
        since: i64,
    ) -> Result<Vec<Option<String>>, StoreError> {
        let scope = scope.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT body_hash FROM idempotency WHERE scope = ?1 AND key = ?2 AND created_at > ?3",
            )?;
            keys.iter()
                .map(|k| {
                    stmt.query_row(rusqlite::params![scope, k, since], |r| r.get(0))
                        .optional()
                        .map_err(StoreError::from)
                })
                .collect()
        })
        .await
    }
    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        let rows = self.write(move |c| claim(c, &req)).await?;
        // A row that cannot be read is left to its lease; the others go on.
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                r.into_claimed()
                    .map_err(|e| tracing::error!(error = %e, "a claimed delivery cannot be read"))
                    .ok()
            })
            .collect())
    }
    async fn complete(&self, batch: Vec<Completion>) -> Result<Vec<bool>, StoreError> {
        self.write(move |c| batch.iter().map(|x| complete(c, x)).collect())
            .await
    }
    async fn release(&self, leases: Vec<Lease>) -> Result<usize, StoreError> {
        self.write(move |c| release(c, &leases)).await
    }
    async fn recover_leases(&self, now: i64) -> Result<usize, StoreError> {
        self.write(move |c| recover_leases(c, now)).await
    }
    async fn queue_depth(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM deliveries WHERE due_at IS NOT NULL",
                [],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
        .await
    }
}
