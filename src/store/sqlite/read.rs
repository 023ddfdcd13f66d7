//! Reads, on pooled connections beside the writer (WAL lets them run concurrently).

use crate::core::message::Content;
use crate::core::types::Priority;
use crate::store::*;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn parse<T: std::str::FromStr<Err = String>>(s: String) -> Result<T, StoreError> {
    s.parse().map_err(corrupt)
}

use crate::store::assemble::{
    self, ATTEMPT_COLS, AttemptRow, DELIVERY_COLS, DeliveryRow, MESSAGE_COLS, MessageRow,
};

fn message_rows(rows: &mut rusqlite::Rows<'_>) -> Result<Vec<MessageRow>, StoreError> {
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(MessageRow {
            id: r.get(0)?,
            status: r.get(1)?,
            priority: r.get(2)?,
            created_at: r.get(3)?,
            updated_at: r.get(4)?,
            send_at: r.get(5)?,
            expires_at: r.get(6)?,
            body: r.get(7)?,
        });
    }
    Ok(out)
}

/// The views of `messages`, their deliveries and attempts read in two more queries. The
/// caller's read transaction (see `SqliteStore::read`) makes the three one snapshot.
fn views(c: &Connection, messages: Vec<MessageRow>) -> Result<Vec<MessageView>, StoreError> {
    if messages.is_empty() {
        return Ok(vec![]);
    }
    let ids = serde_json::to_string(&messages.iter().map(|m| &m.id).collect::<Vec<_>>())
        .map_err(corrupt)?;
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {DELIVERY_COLS} FROM deliveries
         WHERE message_id IN (SELECT value FROM json_each(?1)) ORDER BY message_id, position"
    ))?;
    let deliveries = stmt
        .query_map([&ids], |r| {
            Ok(DeliveryRow {
                message_id: r.get(0)?,
                id: r.get(1)?,
                channel: r.get(2)?,
                to: r.get(3)?,
                status: r.get(4)?,
                provider: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {ATTEMPT_COLS} FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
         WHERE d.message_id IN (SELECT value FROM json_each(?1)) ORDER BY a.delivery_id, a.n"
    ))?;
    let attempts = stmt
        .query_map([&ids], |r| {
            Ok(AttemptRow {
                delivery_id: r.get(0)?,
                n: r.get(1)?,
                provider: r.get(2)?,
                at: r.get(3)?,
                duration_ms: r.get(4)?,
                outcome: r.get(5)?,
                error_class: r.get(6)?,
                error_code: r.get(7)?,
                error_detail: r.get(8)?,
                provider_message_id: r.get(9)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    assemble::views(messages, deliveries, attempts)
}

pub fn message(c: &Connection, id: &str) -> Result<Option<MessageView>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {MESSAGE_COLS} FROM messages WHERE id = ?1"
    ))?;
    let rows = message_rows(&mut stmt.query([id])?)?;
    Ok(views(c, rows)?.pop())
}

pub fn list_messages(c: &Connection, f: &ListFilter) -> Result<Vec<MessageView>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {MESSAGE_COLS} FROM messages m
         WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR status = ?2)
           AND (?3 IS NULL OR EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.channel = ?3))
         ORDER BY id DESC LIMIT ?4"
    ))?;
    let rows = message_rows(&mut stmt.query(params![
        f.after,
        f.status.map(|s| s.as_str()),
        f.channel.map(|c| c.as_str()),
        f.limit as i64
    ])?)?;
    views(c, rows)
}

pub fn dead_letters(c: &Connection, f: &ListFilter) -> Result<Vec<DeadLetter>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT message_id, channel, priority, failed_at, last_error FROM dead_letters
         WHERE (?1 IS NULL OR message_id < ?1) AND (?2 IS NULL OR channel = ?2)
         ORDER BY message_id DESC LIMIT ?3",
    )?;
    let rows: Vec<(String, String, i64, i64, Option<String>)> = stmt
        .query_map(
            params![f.after, f.channel.map(|c| c.as_str()), f.limit as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(message_id, channel, prio, failed_at, err)| {
            let last = err
                .map(|e| crate::store::rules::parse_last_error(&e).map_err(corrupt))
                .transpose()?;
            let (last_error, provider) = match last {
                Some((e, p)) => (Some(e), p),
                None => (None, None),
            };
            Ok(DeadLetter {
                message_id,
                channel: parse(channel)?,
                priority: Priority::from_rank(prio),
                failed_at,
                provider,
                last_error,
            })
        })
        .collect()
}

pub fn inbox(
    c: &Connection,
    user: &str,
    unread_only: bool,
    f: &ListFilter,
) -> Result<Vec<InboxItem>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, message_id, delivery_id, body, created_at, read_at FROM inbox
         WHERE user = ?1 AND (?2 IS NULL OR id < ?2) AND (?3 = 0 OR read_at IS NULL)
         ORDER BY id DESC LIMIT ?4",
    )?;
    let rows: Vec<(String, String, String, String, i64, Option<i64>)> = stmt
        .query_map(
            params![user, f.after, unread_only as i64, f.limit as i64],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, message_id, delivery_id, body, created_at, read_at)| {
            let body: Value = serde_json::from_str(&body).map_err(corrupt)?;
            Ok(InboxItem {
                id,
                user: user.to_string(),
                message_id,
                delivery_id,
                content: serde_json::from_value::<Content>(body["content"].clone())
                    .unwrap_or_default(),
                metadata: serde_json::from_value::<Map<String, Value>>(body["metadata"].clone())
                    .unwrap_or_default(),
                created_at,
                read_at,
            })
        })
        .collect()
}

type KeyRow = (String, String, String, String, String, i64, Option<String>);

fn key_row(r: &Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn to_key(
    (id, name, role, key_hash, prefix, created_at, rate_limit): KeyRow,
) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id,
        name,
        role: parse(role)?,
        rate_limit: rate_limit
            .map(|r: String| crate::config::Rate::parse(&r))
            .transpose()
            .map_err(corrupt)?,
        key_hash,
        prefix,
        created_at,
    })
}

pub fn api_keys(c: &Connection) -> Result<Vec<ApiKeyRecord>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, name, role, key_hash, prefix, created_at, rate_limit FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at",
    )?;
    let rows: Vec<_> = stmt.query_map([], key_row)?.collect::<Result<_, _>>()?;
    rows.into_iter().map(to_key).collect()
}

pub fn api_key_by_hash(c: &Connection, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT id, name, role, key_hash, prefix, created_at, rate_limit FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL",
        )?
        .query_row([hash], key_row)
        .optional()?;
    row.map(to_key).transpose()
}

pub fn audit(
    c: &Connection,
    limit: usize,
    after: Option<i64>,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, at, actor, action, target, before, after, reason FROM audit
         WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
    )?;
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    let rows = stmt.query_map(params![after, limit as i64], |r| {
        Ok(AuditEntry {
            id: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            before: json(r.get(5)?),
            after: json(r.get(6)?),
            reason: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn stats(c: &Connection) -> Result<Stats, StoreError> {
    let mut stmt = c.prepare_cached("SELECT status, COUNT(*) FROM deliveries GROUP BY status")?;
    let rows: Vec<(String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut by = Vec::new();
    for (s, n) in rows {
        by.push((parse(s)?, n));
    }
    let dead = c.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?;
    Ok(Stats {
        deliveries_by_status: by,
        dead_letters: dead,
    })
}

pub fn awaiting_receipts(
    c: &Connection,
    provider: &str,
    from: i64,
    until: i64,
    limit: usize,
) -> Result<Vec<AwaitingReceipt>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, recipient, provider_message_id, updated_at FROM deliveries
         WHERE status = 'sent' AND provider = ?1 AND updated_at >= ?2 AND updated_at <= ?3
         ORDER BY updated_at LIMIT ?4",
    )?;
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

pub fn mode(c: &Connection) -> Result<Option<ModeRecord>, StoreError> {
    Ok(c.query_row(
        "SELECT value, reason, actor, updated_at FROM settings WHERE key = 'mode'",
        [],
        |r| {
            Ok(ModeRecord {
                mode: r.get(0)?,
                reason: r.get(1)?,
                actor: r.get(2)?,
                since: r.get(3)?,
            })
        },
    )
    .optional()?)
}

pub fn provider_switches(c: &Connection) -> Result<Vec<ProviderSwitch>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT provider, disabled, reason, actor, updated_at FROM provider_switches",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ProviderSwitch {
            provider: r.get(0)?,
            disabled: r.get::<_, i64>(1)? != 0,
            reason: r.get(2)?,
            actor: r.get(3)?,
            at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
