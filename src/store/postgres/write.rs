//! Writes on PostgreSQL: the SQLite store's rules, with row locks where nodes may race.

use crate::core::message::NewMessage;
use crate::core::progress::initial;
use crate::core::types::{Channel, DeliveryStatus, Millis};
use crate::store::*;
use serde_json::json;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};

use super::DB_NOW;
use crate::store::rules::{self, IDEMPOTENCY_WINDOW_MS};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

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
        let body = json!({ "content": m.content, "template": m.template, "params": m.params, "metadata": m.metadata });
        // A message id is fixed when it is first accepted (or spooled): storing it again
        // (a spool replayed twice) changes nothing.
        let inserted = sqlx::query(
            "INSERT INTO messages (id, status, priority, strategy, sender, created_at, updated_at, send_at, expires_at, body)
             VALUES ($1, 'queued', $2, $3, $4, $5, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&m.id)
        .bind(m.priority.rank())
        .bind(m.strategy.as_str())
        .bind(&m.sender)
        .bind(m.created_at)
        .bind(m.send_at)
        .bind(m.expires_at)
        .bind(body.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            out.push(Accepted::Existing(reply));
            continue;
        }
        for (i, (d, st)) in m
            .deliveries
            .iter()
            .zip(initial(m.strategy, m.deliveries.len()))
            .enumerate()
        {
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
        out.push(Accepted::New(reply));
    }
    Ok(out)
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
        body.push(json!({ "content": m.content, "template": m.template, "params": m.params, "metadata": m.metadata }).to_string());
    }
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO messages (id, status, priority, strategy, sender, created_at, updated_at, send_at, expires_at, body)
         SELECT id, 'queued', p, s, snd, c, c, sa, e, b
         FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::BIGINT[], $8::TEXT[])
              AS t(id, p, s, snd, c, sa, e, b)
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
        for (i, (d, st)) in m
            .deliveries
            .iter()
            .zip(initial(m.strategy, m.deliveries.len()))
            .enumerate()
        {
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

/// Moves one message on after one of its deliveries changed (see `complete::recompute`).
async fn recompute(
    tx: &mut PgConnection,
    message_id: &str,
    now: Millis,
    channel: &str,
    last_error: Option<String>,
) -> Result<(), StoreError> {
    let touched = std::collections::BTreeMap::from([(
        message_id.to_string(),
        super::complete::Touched {
            now,
            channel: channel.to_string(),
            last_error,
        },
    )]);
    super::complete::recompute(tx, &touched).await
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

pub async fn audit(c: &mut PgConnection, e: &AuditEntry) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit (at, actor, action, target, before, after, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(e.at)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(e.before.as_ref().map(|v| v.to_string()))
        .bind(e.after.as_ref().map(|v| v.to_string()))
        .bind(&e.reason)
        .execute(c)
        .await?;
    Ok(())
}

fn entry(
    at: Millis,
    actor: &str,
    action: &str,
    target: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    reason: Option<String>,
) -> AuditEntry {
    AuditEntry {
        id: 0,
        at,
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        before,
        after,
        reason,
    }
}

pub async fn cancel(tx: &mut PgConnection, id: &str, actor: &str) -> Result<bool, StoreError> {
    let now = crate::core::types::now_millis();
    let before: Option<String> = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(before) = before else {
        return Ok(false);
    };
    let n = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE deliveries SET status = 'cancelled', due_at = NULL, updated_at = $2 WHERE message_id = $1 AND status IN ({})",
        rules::CANCELLABLE
    )))
    .bind(id)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n > 0 {
        recompute(tx, id, now, "", None).await?;
        let after: String = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        audit(
            tx,
            &entry(
                now,
                actor,
                "message.cancel",
                id,
                Some(json!({"status": before})),
                Some(json!({"status": after, "deliveries_cancelled": n})),
                None,
            ),
        )
        .await?;
    }
    Ok(true)
}

pub async fn replay(
    tx: &mut PgConnection,
    sel: &ReplaySelector,
    actor: &str,
    now: Millis,
) -> Result<usize, StoreError> {
    let ids: Vec<String> = match sel {
        ReplaySelector::Ids(ids) => {
            let mut found: Vec<String> = sqlx::query_scalar(
                "SELECT message_id FROM dead_letters WHERE message_id = ANY($1) FOR UPDATE",
            )
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?;
            found.sort_by_key(|f| ids.iter().position(|i| i == f));
            found
        }
        ReplaySelector::All { channel } => sqlx::query_scalar(
            "SELECT message_id FROM dead_letters WHERE $1::TEXT IS NULL OR channel = $1 FOR UPDATE",
        )
        .bind(channel.map(Channel::as_str))
        .fetch_all(&mut *tx)
        .await?,
    };
    for id in &ids {
        let strategy: String =
            sqlx::query_scalar("SELECT strategy FROM messages WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        let failed: Vec<String> = sqlx::query_scalar("SELECT id FROM deliveries WHERE message_id = $1 AND status = 'failed' ORDER BY position")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        for (i, dlv) in failed.iter().enumerate() {
            let (status, due_now) = rules::replay_status(strategy.parse().map_err(corrupt)?, i);
            let (status, due) = (status.as_str(), due_now.then_some(now));
            sqlx::query(
                "UPDATE deliveries SET status = $2, due_at = $3, tries = 0, skip_providers = NULL, updated_at = $4, activated_at = $3 WHERE id = $1",
            )
            .bind(dlv)
            .bind(status)
            .bind(due)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE messages SET status = 'queued', updated_at = $2, send_at = $2, expires_at = $2 + GREATEST(expires_at - send_at, 60000) WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM dead_letters WHERE message_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    if !ids.is_empty() {
        let target = match sel {
            ReplaySelector::Ids(_) => "ids".to_string(),
            ReplaySelector::All { channel: Some(ch) } => format!("all:{ch}"),
            ReplaySelector::All { channel: None } => "all".to_string(),
        };
        let shown: Vec<&String> = ids.iter().take(1000).collect();
        audit(
            tx,
            &entry(
                now,
                actor,
                "dead_letters.replay",
                &target,
                None,
                Some(json!({"replayed": ids.len(), "ids": shown})),
                None,
            ),
        )
        .await?;
    }
    Ok(ids.len())
}

pub async fn inbox_put(pool: &PgPool, item: &InboxItem) -> Result<(), StoreError> {
    let body = json!({ "content": item.content, "metadata": item.metadata });
    sqlx::query(
        r#"INSERT INTO inbox (id, "user", message_id, delivery_id, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (delivery_id) DO NOTHING"#,
    )
    .bind(&item.id)
    .bind(&item.user)
    .bind(&item.message_id)
    .bind(&item.delivery_id)
    .bind(body.to_string())
    .bind(item.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn create_api_key(
    tx: &mut PgConnection,
    k: &ApiKeyRecord,
    actor: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO api_keys (id, name, role, key_hash, prefix, created_at, rate_limit) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(&k.id)
        .bind(&k.name)
        .bind(k.role.as_str())
        .bind(&k.key_hash)
        .bind(&k.prefix)
        .bind(k.created_at)
        .bind(k.rate_limit.map(|r| r.to_string()))
        .execute(&mut *tx)
        .await?;
    audit(
        tx,
        &entry(
            k.created_at,
            actor,
            "api_key.create",
            &k.id,
            None,
            Some(json!({"name": k.name, "role": k.role, "prefix": k.prefix})),
            None,
        ),
    )
    .await
}

pub async fn revoke_api_key(
    tx: &mut PgConnection,
    id: &str,
    actor: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let row = sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING name, role")
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let (name, role): (String, String) = (row.try_get(0)?, row.try_get(1)?);
    audit(
        tx,
        &entry(
            now,
            actor,
            "api_key.delete",
            id,
            Some(json!({"name": name, "role": role})),
            None,
            None,
        ),
    )
    .await?;
    Ok(true)
}

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
    recompute(tx, &message_id, r.at, &channel, last_error).await?;
    Ok(ReceiptOutcome::Applied {
        delivery_id,
        delivered: r.delivered,
    })
}

pub async fn set_mode(
    tx: &mut PgConnection,
    mode: &str,
    reason: &str,
    actor: &str,
    now: Millis,
) -> Result<ModeRecord, StoreError> {
    let before: Option<String> =
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'mode' FOR UPDATE")
            .fetch_optional(&mut *tx)
            .await?;
    sqlx::query(
        "INSERT INTO settings (key, value, reason, actor, updated_at) VALUES ('mode', $1, $2, $3, $4)
         ON CONFLICT (key) DO UPDATE SET value = $1, reason = $2, actor = $3, updated_at = $4",
    )
    .bind(mode)
    .bind(reason)
    .bind(actor)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let before = before.unwrap_or_else(|| "normal".into());
    audit(
        tx,
        &entry(
            now,
            actor,
            "mode.set",
            "mode",
            Some(json!({"mode": before})),
            Some(json!({"mode": mode})),
            Some(reason.into()),
        ),
    )
    .await?;
    Ok(ModeRecord {
        mode: mode.into(),
        reason: Some(reason.into()),
        actor: actor.into(),
        since: now,
    })
}

pub async fn set_provider_switch(
    tx: &mut PgConnection,
    s: &ProviderSwitch,
) -> Result<(), StoreError> {
    let before: Option<i64> =
        sqlx::query_scalar("SELECT disabled FROM provider_switches WHERE provider = $1 FOR UPDATE")
            .bind(&s.provider)
            .fetch_optional(&mut *tx)
            .await?;
    sqlx::query(
        "INSERT INTO provider_switches (provider, disabled, reason, actor, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (provider) DO UPDATE SET disabled = $2, reason = $3, actor = $4, updated_at = $5",
    )
    .bind(&s.provider)
    .bind(s.disabled as i64)
    .bind(&s.reason)
    .bind(&s.actor)
    .bind(s.at)
    .execute(&mut *tx)
    .await?;
    let action = if s.disabled {
        "provider.disable"
    } else {
        "provider.enable"
    };
    audit(
        tx,
        &entry(
            s.at,
            &s.actor,
            action,
            &s.provider,
            Some(json!({"disabled": before.unwrap_or(0) != 0})),
            Some(json!({"disabled": s.disabled})),
            s.reason.clone(),
        ),
    )
    .await
}
