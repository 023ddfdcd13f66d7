//! Writes, each run inside the writer thread's group transaction.

use crate::core::message::NewMessage;
use crate::core::progress::{initial, is_dead_letter, message_status, progress};
use crate::core::types::{Channel, DeliveryStatus, Millis, Strategy};
use crate::store::*;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use crate::store::rules::{self, IDEMPOTENCY_WINDOW_MS};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub fn accept(c: &Connection, batch: &[NewMessage]) -> Result<Vec<Accepted>, StoreError> {
    let mut out = Vec::with_capacity(batch.len());
    let mut find_idem = c.prepare_cached(
        "SELECT body_hash, reply, created_at FROM idempotency WHERE scope = ?1 AND key = ?2",
    )?;
    let mut ins_msg = c.prepare_cached(
        "INSERT OR IGNORE INTO messages (id, status, priority, strategy, sender, created_at, updated_at, send_at, expires_at, body)
         VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)",
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
        let body = json!({
            "content": m.content,
            "template": m.template,
            "params": m.params,
            "metadata": m.metadata,
        });
        // A message id is fixed when first accepted (or spooled): storing it again changes nothing.
        let inserted = ins_msg.execute(params![
            m.id,
            m.priority.rank(),
            m.strategy.as_str(),
            m.sender,
            m.created_at,
            m.send_at,
            m.expires_at,
            body.to_string()
        ])?;
        let statuses = initial(m.strategy, m.deliveries.len());
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

pub fn claim(c: &Connection, req: &ClaimRequest) -> Result<Vec<ClaimRow>, StoreError> {
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
    let mut take = c.prepare_cached(
        "UPDATE deliveries SET status = 'sending', fence = fence + 1, tries = tries + 1,
                lease_owner = ?2, due_at = ?3, updated_at = ?4
         WHERE id = ?1",
    )?;
    let mut mark_msg = c.prepare_cached(
        "UPDATE messages SET status = 'sending', updated_at = ?2 WHERE id = ?1 AND status = 'queued'",
    )?;
    let skip_endpoints =
        (!req.skip_endpoints.is_empty()).then(|| json!(req.skip_endpoints).to_string());
    let mut taken = [0usize; 4];
    for rank in 0..4i64 {
        let want = crate::store::rules::lane_want(req, rank as usize, &taken);
        if want == 0 {
            continue;
        }
        let rows = select.query_map(params![rank, req.now, want as i64, skip_endpoints], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, i64>(9)?,
                r.get::<_, i64>(10)?,
                r.get::<_, String>(11)?,
                r.get::<_, Option<String>>(12)?,
                r.get::<_, i64>(13)?,
                r.get::<_, bool>(14)?,
            ))
        })?;
        let rows: Vec<_> = rows.collect::<Result<_, _>>()?;
        for row in rows {
            take.execute(params![row.0, req.owner, req.now + req.lease_ms, req.now])?;
            mark_msg.execute(params![row.3, req.now])?;
            taken[rank as usize] += 1;
            out.push(row);
        }
    }
    Ok(out)
}

/// A claimed row as read inside the writer; turned into a [`Claimed`] (JSON parsed) by
/// [`claimed`] outside it, so that the one writer thread only reads and writes.
pub type ClaimRow = (
    String,
    i64,
    i64,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    i64,
    i64,
    String,
    Option<String>,
    i64,
    bool,
);

pub fn claimed(row: ClaimRow) -> Result<Claimed, StoreError> {
    let (
        id,
        fence,
        tries,
        message_id,
        channel,
        to,
        priority,
        skip_providers,
        last_provider,
        created_at,
        expires_at,
        body,
        own_content,
        activated_at,
        has_next_channel,
    ) = row;
    // The row was read before the claim's update: its fence and tries as they are now.
    crate::store::assemble::ClaimedRow {
        id,
        fence: fence + 1,
        tries: tries + 1,
        message_id,
        channel,
        to,
        priority,
        skip_providers,
        last_provider,
        created_at,
        expires_at,
        body,
        own_content,
        activated_at,
        has_next_channel,
    }
    .into_claimed()
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

/// Moves the message on after one of its deliveries changed: failover, skip, expiry, status,
/// dead letter.
fn recompute(
    c: &Connection,
    message_id: &str,
    now: Millis,
    channel: &str,
    last_error: Option<String>,
) -> Result<(), StoreError> {
    let strategy: Strategy = c
        .prepare_cached("SELECT strategy FROM messages WHERE id = ?1")?
        .query_row([message_id], |r| r.get::<_, String>(0))?
        .parse()
        .map_err(corrupt)?;
    let rows: Vec<(String, DeliveryStatus)> = c
        .prepare_cached(
            "SELECT id, status FROM deliveries WHERE message_id = ?1 ORDER BY position",
        )?
        .query_map([message_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .map(|r| {
            let (id, s) = r?;
            Ok((
                id,
                s.parse()
                    .map_err(|e: String| rusqlite::Error::InvalidColumnName(e))?,
            ))
        })
        .collect::<Result<_, rusqlite::Error>>()?;
    settle(c, message_id, now, channel, last_error, strategy, rows)
}

/// Moves the message on from its deliveries' statuses (`rows`, in channel order).
fn settle(
    c: &Connection,
    message_id: &str,
    now: Millis,
    channel: &str,
    last_error: Option<String>,
    strategy: Strategy,
    mut rows: Vec<(String, DeliveryStatus)>,
) -> Result<(), StoreError> {
    let statuses: Vec<DeliveryStatus> = rows.iter().map(|r| r.1).collect();
    let p = progress(strategy, &statuses);
    let mut set = c.prepare_cached(
        "UPDATE deliveries SET status = ?2, due_at = ?3, updated_at = ?4 WHERE id = ?1",
    )?;
    if let Some(i) = p.activate {
        set.execute(params![rows[i].0, "queued", now, now])?;
        c.prepare_cached("UPDATE deliveries SET activated_at = ?2 WHERE id = ?1")?
            .execute(params![rows[i].0, now])?;
        rows[i].1 = DeliveryStatus::Queued;
    }
    for i in p.skip {
        set.execute(params![rows[i].0, "skipped", Option::<i64>::None, now])?;
        rows[i].1 = DeliveryStatus::Skipped;
    }
    for i in p.expire {
        set.execute(params![rows[i].0, "expired", Option::<i64>::None, now])?;
        rows[i].1 = DeliveryStatus::Expired;
    }
    let statuses: Vec<DeliveryStatus> = rows.iter().map(|r| r.1).collect();
    let st = message_status(&statuses);
    c.prepare_cached("UPDATE messages SET status = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![message_id, st.as_str(), now])?;
    if is_dead_letter(&statuses) {
        c.prepare_cached(
            "INSERT OR REPLACE INTO dead_letters (message_id, channel, priority, failed_at, last_error)
             SELECT id, ?2, priority, ?3, ?4 FROM messages WHERE id = ?1",
        )?
        .execute(params![
            message_id,
            channel,
            now,
            last_error
        ])?;
    }
    Ok(())
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

pub fn cancel(c: &Connection, id: &str, actor: &str) -> Result<bool, StoreError> {
    let now = crate::core::types::now_millis();
    let before: Option<String> = c
        .query_row("SELECT status FROM messages WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(before) = before else {
        return Ok(false);
    };
    let n = c.execute(
        &format!(
            "UPDATE deliveries SET status = 'cancelled', due_at = NULL, updated_at = ?2
             WHERE message_id = ?1 AND status IN ({})",
            rules::CANCELLABLE
        ),
        params![id, now],
    )?;
    if n > 0 {
        recompute(c, id, now, "", None)?;
        let after: String =
            c.query_row("SELECT status FROM messages WHERE id = ?1", [id], |r| {
                r.get(0)
            })?;
        audit(
            c,
            &AuditEntry {
                id: 0,
                at: now,
                actor: actor.into(),
                action: "message.cancel".into(),
                target: id.into(),
                before: Some(json!({ "status": before })),
                after: Some(json!({ "status": after, "deliveries_cancelled": n })),
                reason: None,
            },
        )?;
    }
    Ok(true)
}

pub fn replay(
    c: &Connection,
    sel: &ReplaySelector,
    actor: &str,
    now: Millis,
) -> Result<usize, StoreError> {
    let ids: Vec<String> = match sel {
        ReplaySelector::Ids(ids) => {
            let mut stmt = c.prepare_cached("SELECT 1 FROM dead_letters WHERE message_id = ?1")?;
            let mut found = Vec::new();
            for id in ids {
                if stmt.exists([id])? && !found.contains(id) {
                    found.push(id.clone());
                }
            }
            found
        }
        ReplaySelector::All { channel } => {
            let mut stmt =
                c.prepare("SELECT message_id FROM dead_letters WHERE ?1 IS NULL OR channel = ?1")?;
            let rows = stmt.query_map([channel.map(Channel::as_str)], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        }
    };
    for id in &ids {
        let strategy: String =
            c.query_row("SELECT strategy FROM messages WHERE id = ?1", [id], |r| {
                r.get(0)
            })?;
        let failed: Vec<String> = c
            .prepare_cached("SELECT id FROM deliveries WHERE message_id = ?1 AND status = 'failed' ORDER BY position")?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for (i, dlv) in failed.iter().enumerate() {
            let (status, due_now) = rules::replay_status(strategy.parse().map_err(corrupt)?, i);
            let (status, due) = (status.as_str(), due_now.then_some(now));
            c.execute(
                "UPDATE deliveries SET status = ?2, due_at = ?3, tries = 0, skip_providers = NULL, updated_at = ?4, activated_at = ?3 WHERE id = ?1",
                params![dlv, status, due, now],
            )?;
        }
        c.execute(
            "UPDATE messages SET status = 'queued', updated_at = ?2, send_at = ?2,
                    expires_at = ?2 + MAX(expires_at - send_at, 60000) WHERE id = ?1",
            params![id, now],
        )?;
        c.execute("DELETE FROM dead_letters WHERE message_id = ?1", [id])?;
    }
    if !ids.is_empty() {
        let shown: Vec<&String> = ids.iter().take(1000).collect();
        audit(
            c,
            &AuditEntry {
                id: 0,
                at: now,
                actor: actor.into(),
                action: "dead_letters.replay".into(),
                target: match sel {
                    ReplaySelector::Ids(_) => "ids".into(),
                    ReplaySelector::All { channel: Some(ch) } => format!("all:{ch}"),
                    ReplaySelector::All { channel: None } => "all".into(),
                },
                before: None,
                after: Some(json!({ "replayed": ids.len(), "ids": shown })),
                reason: None,
            },
        )?;
    }
    Ok(ids.len())
}

pub fn inbox_put(c: &Connection, item: &InboxItem) -> Result<(), StoreError> {
    let body = json!({ "content": item.content, "metadata": item.metadata });
    c.prepare_cached(
        "INSERT OR IGNORE INTO inbox (id, user, message_id, delivery_id, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![item.id, item.user, item.message_id, item.delivery_id, body.to_string(), item.created_at])?;
    Ok(())
}

pub fn inbox_mark_read(
    c: &Connection,
    user: &str,
    id: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    Ok(c.execute(
        "UPDATE inbox SET read_at = COALESCE(read_at, ?3) WHERE id = ?1 AND user = ?2",
        params![id, user, now],
    )? > 0)
}

pub fn create_api_key(c: &Connection, k: &ApiKeyRecord, actor: &str) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO api_keys (id, name, role, key_hash, prefix, created_at, rate_limit) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![k.id, k.name, k.role.as_str(), k.key_hash, k.prefix, k.created_at, k.rate_limit.map(|r| r.to_string())],
    )?;
    audit(
        c,
        &AuditEntry {
            id: 0,
            at: k.created_at,
            actor: actor.into(),
            action: "api_key.create".into(),
            target: k.id.clone(),
            before: None,
            after: Some(json!({ "name": k.name, "role": k.role, "prefix": k.prefix })),
            reason: None,
        },
    )
}

pub fn revoke_api_key(
    c: &Connection,
    id: &str,
    actor: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let row: Option<(String, String)> = c
        .query_row(
            "SELECT name, role FROM api_keys WHERE id = ?1 AND revoked_at IS NULL",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((name, role)) = row else {
        return Ok(false);
    };
    c.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    audit(
        c,
        &AuditEntry {
            id: 0,
            at: now,
            actor: actor.into(),
            action: "api_key.delete".into(),
            target: id.into(),
            before: Some(json!({ "name": name, "role": role })),
            after: None,
            reason: None,
        },
    )?;
    Ok(true)
}

pub fn audit(c: &Connection, e: &AuditEntry) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO audit (at, actor, action, target, before, after, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        e.at,
        e.actor,
        e.action,
        e.target,
        e.before.as_ref().map(|v| v.to_string()),
        e.after.as_ref().map(|v| v.to_string()),
        e.reason
    ])?;
    Ok(())
}

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

pub fn set_mode(
    c: &Connection,
    mode: &str,
    reason: &str,
    actor: &str,
    now: Millis,
) -> Result<ModeRecord, StoreError> {
    let before = super::read::mode(c)?;
    c.execute(
        "INSERT INTO settings (key, value, reason, actor, updated_at) VALUES ('mode', ?1, ?2, ?3, ?4)
         ON CONFLICT(key) DO UPDATE SET value = ?1, reason = ?2, actor = ?3, updated_at = ?4",
        params![mode, reason, actor, now],
    )?;
    audit(
        c,
        &AuditEntry {
            id: 0,
            at: now,
            actor: actor.into(),
            action: "mode.set".into(),
            target: "mode".into(),
            before: Some(
                json!({ "mode": before.as_ref().map(|b| b.mode.as_str()).unwrap_or("normal") }),
            ),
            after: Some(json!({ "mode": mode })),
            reason: Some(reason.into()),
        },
    )?;
    Ok(ModeRecord {
        mode: mode.into(),
        reason: Some(reason.into()),
        actor: actor.into(),
        since: now,
    })
}

pub fn set_provider_switch(c: &Connection, s: &ProviderSwitch) -> Result<(), StoreError> {
    let before: Option<bool> = c
        .query_row(
            "SELECT disabled FROM provider_switches WHERE provider = ?1",
            [&s.provider],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .map(|d| d != 0);
    c.execute(
        "INSERT INTO provider_switches (provider, disabled, reason, actor, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(provider) DO UPDATE SET disabled = ?2, reason = ?3, actor = ?4, updated_at = ?5",
        params![s.provider, s.disabled as i64, s.reason, s.actor, s.at],
    )?;
    audit(
        c,
        &AuditEntry {
            id: 0,
            at: s.at,
            actor: s.actor.clone(),
            action: if s.disabled {
                "provider.disable".into()
            } else {
                "provider.enable".into()
            },
            target: s.provider.clone(),
            before: Some(json!({ "disabled": before.unwrap_or(false) })),
            after: Some(json!({ "disabled": s.disabled })),
            reason: s.reason.clone(),
        },
    )
}
