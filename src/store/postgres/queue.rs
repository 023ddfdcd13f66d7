//! The queue on PostgreSQL: accepts (group-committed by the node's committer), claims with
//! `FOR UPDATE SKIP LOCKED`, outcomes in groups (`complete.rs`), leases given back.

use super::DB_NOW;
use super::{PgStore, corrupt};
use crate::core::message::NewMessage;
use crate::core::types::DeliveryStatus;
use crate::store::rules::IDEMPOTENCY_WINDOW_MS;
use crate::store::*;
use async_trait::async_trait;
use serde_json::json;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};
use tokio::sync::oneshot;

pub async fn accept(
    tx: &mut PgConnection,
    batch: &[NewMessage],
) -> Result<Vec<Accepted>, StoreError> {
    // Messages with nothing to check (no idempotency key, no recipient limit) are stored with
    // one statement per table; the others one by one, in order, as they may race other nodes.
    let simple = |m: &NewMessage| m.idempotency.is_none() && m.recipient_limits.is_empty();
    if batch.len() > 1 && batch.iter().all(simple) {
        return accept_bulk(tx, batch).await;
    }
    let mut out = Vec::with_capacity(batch.len());
    for m in batch {
        let reply = reply_for(m);
        // The idempotency row first: a concurrent request with the same key (on any node)
        // waits on it, then sees ours.
        if let Some(idem) = &m.idempotency {
            let text = serde_json::to_string(&reply).map_err(corrupt)?;
            let claimed = sqlx::query(
                "INSERT INTO idempotency (scope, key, body_hash, message_id, reply, created_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (scope, key) DO UPDATE SET body_hash = $3, message_id = $4, reply = $5, created_at = $6
                   WHERE idempotency.created_at <= $7
                 RETURNING message_id",
            )
            .bind(&idem.scope)
            .bind(&idem.key)
            .bind(&idem.body_hash)
            .bind(&m.id)
            .bind(&text)
            .bind(m.created_at)
            .bind(m.created_at - IDEMPOTENCY_WINDOW_MS)
            .fetch_optional(&mut *tx)
            .await?;
            if claimed.is_none() {
                let row = sqlx::query(
                    "SELECT body_hash, reply FROM idempotency WHERE scope = $1 AND key = $2",
                )
                .bind(&idem.scope)
                .bind(&idem.key)
                .fetch_one(&mut *tx)
                .await?;
                let hash: String = row.try_get(0)?;
                out.push(if hash == idem.body_hash {
                    Accepted::Existing(
                        serde_json::from_str(&row.try_get::<String, _>(1)?).map_err(corrupt)?,
                    )
                } else {
                    Accepted::Mismatch
                });
                continue;
            }
        }
        if let Some(limited) = recipient_limited(tx, m).await? {
            if let Some(idem) = &m.idempotency {
                sqlx::query(
                    "DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND message_id = $3",
                )
                .bind(&idem.scope)
                .bind(&idem.key)
                .bind(&m.id)
                .execute(&mut *tx)
                .await?;
            }
            out.push(limited);
            continue;
        }
        let body = m.stored_body();
        // A message id is fixed when it is first accepted (or spooled): storing it again
        // (a spool replayed twice) changes nothing.
        let inserted = sqlx::query(
            "INSERT INTO messages (id, status, priority, strategy, sender, created_at, updated_at, send_at, expires_at, body)
             VALUES ($1, $9, $2, $3, $4, $5, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&m.id)
        .bind(m.priority.rank())
        .bind(m.strategy.as_str())
        .bind(&m.sender)
        .bind(m.created_at)
        .bind(m.send_at)
        .bind(m.expires_at)
        .bind(body.to_string())
        .bind(m.initial_status().as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            out.push(Accepted::Existing(reply));
            continue;
        }
        for (i, (d, st)) in m.deliveries.iter().zip(m.initial_statuses()).enumerate() {
            let due = (st == DeliveryStatus::Queued).then_some(m.send_at);
            sqlx::query(
                "INSERT INTO deliveries (id, message_id, position, channel, recipient, status, priority, due_at, updated_at, content, activated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $8)",
            )
            .bind(&d.id)
            .bind(&m.id)
            .bind(i as i64)
            .bind(d.channel.as_str())
            .bind(&d.to)
            .bind(st.as_str())
            .bind(m.priority.rank())
            .bind(due)
            .bind(m.created_at)
            .bind(d.content.as_ref().map(|c| json!(c).to_string()))
            .execute(&mut *tx)
            .await?;
        }
        write_notes(tx, std::slice::from_ref(m)).await?;
        out.push(Accepted::New(reply));
    }
    Ok(out)
}

/// The notes of deliveries accepted as `skipped` (a contact's opt-out), one statement.
async fn write_notes(tx: &mut PgConnection, messages: &[NewMessage]) -> Result<(), StoreError> {
    let (mut ids, mut codes, mut details, mut at) = (vec![], vec![], vec![], vec![]);
    for m in messages {
        for d in &m.deliveries {
            if let Some(s) = &d.skip {
                ids.push(d.id.clone());
                codes.push(s.code.clone());
                details.push(s.detail.clone());
                at.push(m.created_at);
            }
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO delivery_notes (delivery_id, code, detail, at)
         SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[])
         ON CONFLICT (delivery_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&codes)
    .bind(&details)
    .bind(&at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Stores many messages with one `INSERT … SELECT FROM UNNEST` per table; a message whose id
/// is already stored (a spool replayed twice) is left as it is.
async fn accept_bulk(
    tx: &mut PgConnection,
    batch: &[NewMessage],
) -> Result<Vec<Accepted>, StoreError> {
    let mut ids = Vec::with_capacity(batch.len());
    let (mut prio, mut strat, mut sender, mut created, mut send_at, mut expires, mut body) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for m in batch {
        ids.push(m.id.clone());
        prio.push(m.priority.rank());
        strat.push(m.strategy.as_str().to_string());
        sender.push(m.sender.clone());
        created.push(m.created_at);
        send_at.push(m.send_at);
        expires.push(m.expires_at);
        body.push(m.stored_body().to_string());
    }
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO messages (id, status, priority, strategy, sender, created_at, updated_at, send_at, expires_at, body)
         SELECT id, st, p, s, snd, c, c, sa, e, b
         FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::BIGINT[], $8::TEXT[], $9::TEXT[])
              AS t(id, p, s, snd, c, sa, e, b, st)
         ON CONFLICT (id) DO NOTHING RETURNING id",
    )
    .bind(&ids)
    .bind(&prio)
    .bind(&strat)
    .bind(&sender)
    .bind(&created)
    .bind(&send_at)
    .bind(&expires)
    .bind(&body)
    .bind(
        batch
            .iter()
            .map(|m| m.initial_status().as_str())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await?;
    let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
    let (
        mut d_id,
        mut d_msg,
        mut d_pos,
        mut d_ch,
        mut d_to,
        mut d_st,
        mut d_prio,
        mut d_due,
        mut d_upd,
        mut d_content,
    ) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for m in batch.iter().filter(|m| inserted.contains(&m.id)) {
        for (i, (d, st)) in m.deliveries.iter().zip(m.initial_statuses()).enumerate() {
            d_id.push(d.id.clone());
            d_msg.push(m.id.clone());
            d_pos.push(i as i64);
            d_ch.push(d.channel.as_str().to_string());
            d_to.push(d.to.clone());
            d_st.push(st.as_str().to_string());
            d_prio.push(m.priority.rank());
            d_due.push((st == DeliveryStatus::Queued).then_some(m.send_at));
            d_upd.push(m.created_at);
            d_content.push(d.content.as_ref().map(|c| json!(c).to_string()));
        }
    }
    sqlx::query(
        "INSERT INTO deliveries (id, message_id, position, channel, recipient, status, priority, due_at, updated_at, content, activated_at)
         SELECT id, m, pos, ch, rcpt, st, p, due, upd, ct, due
         FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::TEXT[])
              AS t(id, m, pos, ch, rcpt, st, p, due, upd, ct)",
    )
    .bind(&d_id)
    .bind(&d_msg)
    .bind(&d_pos)
    .bind(&d_ch)
    .bind(&d_to)
    .bind(&d_st)
    .bind(&d_prio)
    .bind(&d_due)
    .bind(&d_upd)
    .bind(&d_content)
    .execute(&mut *tx)
    .await?;
    let fresh: Vec<NewMessage> = batch
        .iter()
        .filter(|m| inserted.contains(&m.id) && m.deliveries.iter().any(|d| d.skip.is_some()))
        .cloned()
        .collect();
    write_notes(tx, &fresh).await?;
    Ok(batch
        .iter()
        .map(|m| {
            if inserted.contains(&m.id) {
                Accepted::New(reply_for(m))
            } else {
                Accepted::Existing(reply_for(m))
            }
        })
        .collect())
}

async fn recipient_limited(
    tx: &mut PgConnection,
    m: &NewMessage,
) -> Result<Option<Accepted>, StoreError> {
    for l in &m.recipient_limits {
        // One sender at a time per address, across nodes, until this transaction ends.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("{}:{}", l.channel, l.to))
            .execute(&mut *tx)
            .await?;
        for rate in &l.rates {
            let span = rate.per.as_millis() as i64;
            let recent: Vec<i64> = sqlx::query_scalar(
                "SELECT m.created_at FROM deliveries d JOIN messages m ON m.id = d.message_id
                 WHERE d.channel = $1 AND d.recipient = $2 AND m.created_at > $3
                 ORDER BY m.created_at DESC LIMIT $4",
            )
            .bind(l.channel.as_str())
            .bind(&l.to)
            .bind(m.created_at - span)
            .bind(rate.count as i64)
            .fetch_all(&mut *tx)
            .await?;
            if let Some(refusal) =
                crate::store::rules::recipient_refusal(l.channel, &recent, rate, m.created_at)
            {
                return Ok(Some(refusal));
            }
        }
    }
    Ok(None)
}

pub async fn claim(pool: &PgPool, req: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
    let mut out = Vec::new();
    // `origin/…` as LIKE patterns, with LIKE's own characters escaped.
    let skip_patterns: Vec<String> = req
        .skip_endpoints
        .iter()
        .map(|o| {
            let esc = o
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("{esc}/%")
        })
        .collect();
    // Two statements for the four lanes: how much due work each has (up to what it could
    // take alone), then the claim itself with each lane's exact share, decided in priority
    // order by `rules::lane_want` as on SQLite.
    let alone: Vec<i64> = (0..4)
        .map(|r| crate::store::rules::lane_want(req, r, &[0; 4]) as i64)
        .collect();
    // Lane r's due deliveries, oldest first, up to element r of the array `$limits`.
    let due = |r: usize, lock: &str, limits: &str, skip: &str| {
        format!(
            "SELECT id FROM deliveries
                WHERE due_at IS NOT NULL AND priority = {r} AND due_at <= {DB_NOW}
                  AND (cardinality({skip}::TEXT[]) = 0 OR channel <> 'webhook'
                       OR NOT (recipient LIKE ANY({skip}::TEXT[])))
                ORDER BY due_at LIMIT ({limits}::BIGINT[])[{}] {lock}",
            r + 1
        )
    };
    let counts: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT r::BIGINT, (SELECT count(*) FROM ({}) x) FROM (VALUES (0)) v(r)
         UNION ALL SELECT 1, (SELECT count(*) FROM ({}) x)
         UNION ALL SELECT 2, (SELECT count(*) FROM ({}) x)
         UNION ALL SELECT 3, (SELECT count(*) FROM ({}) x)",
        due(0, "", "$1", "$2"),
        due(1, "", "$1", "$2"),
        due(2, "", "$1", "$2"),
        due(3, "", "$1", "$2")
    )))
    .bind(&alone)
    .bind(&skip_patterns)
    .fetch_all(pool)
    .await?;
    let mut available = [0usize; 4];
    for (r, n) in counts {
        if let Some(a) = available.get_mut(r.clamp(0, 3) as usize) {
            *a = n.max(0) as usize;
        }
    }
    let mut wants = [0usize; 4];
    for r in 0..4 {
        wants[r] = crate::store::rules::lane_want(req, r, &wants).min(available[r]);
    }
    if wants.iter().all(|w| *w == 0) {
        return Ok(out);
    }
    let wants: Vec<i64> = wants.iter().map(|w| *w as i64).collect();
    let lane = |r: usize| format!("c{r} AS ({})", due(r, "FOR UPDATE SKIP LOCKED", "$2", "$5"));
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH {}, {}, {}, {},
         c AS (SELECT id FROM c0 UNION ALL SELECT id FROM c1 UNION ALL SELECT id FROM c2 UNION ALL SELECT id FROM c3),
         t AS (
            UPDATE deliveries d SET status = 'sending', fence = d.fence + 1, tries = d.tries + 1,
                   lease_owner = $3, due_at = {DB_NOW} + $4, updated_at = $1
            FROM c WHERE d.id = c.id
            RETURNING d.id, d.fence, d.tries, d.message_id, d.channel, d.recipient, d.priority,
                      d.skip_providers, d.provider, d.content, d.activated_at, d.position
         ), u AS (
            UPDATE messages m SET status = 'sending', updated_at = $1
            WHERE m.id = ANY(ARRAY(SELECT message_id FROM t)) AND m.status = 'queued'
         )
         SELECT t.*, m.created_at, m.expires_at, m.body, m.send_at,
                EXISTS (SELECT 1 FROM deliveries n WHERE n.message_id = t.message_id
                        AND n.position > t.position AND n.status = 'pending') AS has_next
         FROM t JOIN messages m ON m.id = t.message_id
         ORDER BY t.priority",
        lane(0),
        lane(1),
        lane(2),
        lane(3)
    )))
    .bind(req.now)
    .bind(&wants)
    .bind(&req.owner)
    .bind(req.lease_ms)
    .bind(&skip_patterns)
    .fetch_all(pool)
    .await?;
    for r in rows {
        // A row that cannot be read is left to its lease; the others go on.
        match claimed_row(&r) {
            Ok(c) => out.push(c),
            Err(e) => tracing::error!(error = %e, "a claimed delivery cannot be read"),
        }
    }
    Ok(out)
}

fn claimed_row(r: &sqlx::postgres::PgRow) -> Result<Claimed, StoreError> {
    let send_at: i64 = r.try_get("send_at")?;
    crate::store::assemble::ClaimedRow {
        id: r.try_get("id")?,
        fence: r.try_get("fence")?,
        tries: r.try_get("tries")?,
        message_id: r.try_get("message_id")?,
        channel: r.try_get("channel")?,
        to: r.try_get("recipient")?,
        priority: r.try_get("priority")?,
        skip_providers: r.try_get("skip_providers")?,
        last_provider: r.try_get("provider")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        body: r.try_get("body")?,
        own_content: r.try_get("content")?,
        activated_at: r
            .try_get::<Option<i64>, _>("activated_at")?
            .unwrap_or(send_at),
        has_next_channel: r.try_get("has_next")?,
    }
    .into_claimed()
}

pub async fn release(pool: &PgPool, leases: &[Lease]) -> Result<usize, StoreError> {
    let now = crate::core::types::now_millis();
    let mut n = 0;
    for l in leases {
        n += sqlx::query(
            "UPDATE deliveries SET status = 'queued', due_at = $3, lease_owner = NULL, tries = GREATEST(tries - 1, 0)
             WHERE id = $1 AND fence = $2 AND status = 'sending'",
        )
        .bind(&l.delivery_id)
        .bind(l.fence)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected() as usize;
    }
    Ok(n)
}

#[async_trait]
impl Queue for PgStore {
    async fn accept(&self, batch: Vec<NewMessage>) -> Result<Vec<Accepted>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.accepts
            .send((batch, tx))
            .await
            .map_err(|_| StoreError::Unavailable("the committer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the committer has stopped".into()))?
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
    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
        claim(&self.pool, &req).await
    }
    async fn complete(&self, batch: Vec<Completion>) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let applied = super::complete::complete(&mut tx, &batch).await?;
        tx.commit().await?;
        Ok(applied)
    }
    async fn release(&self, leases: Vec<Lease>) -> Result<usize, StoreError> {
        release(&self.pool, &leases).await
    }
    async fn recover_leases(&self, _now: i64) -> Result<usize, StoreError> {
        // Many nodes share this database: a starting node must not free the leases other,
        // live nodes hold. Leases of dead nodes are freed when they expire.
        Ok(0)
    }
    async fn queue_depth(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE due_at IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }
}
