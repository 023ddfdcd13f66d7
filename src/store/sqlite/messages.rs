//! Messages and dead letters on SQLite: snapshot reads on pooled readers; cancel and replay
//! in the writer.

use super::operations::audit;
use super::parse;
use super::settle::recompute;
use super::{SqliteStore, corrupt};
use crate::core::types::{Channel, Millis, Priority};
use crate::store::assemble::{
    self, ATTEMPT_COLS, AttemptRow, DELIVERY_COLS, DeliveryRow, MESSAGE_COLS, MessageRow,
};
use crate::store::rules;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

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
        "SELECT {DELIVERY_COLS} FROM deliveries d LEFT JOIN delivery_notes n ON n.delivery_id = d.id
         WHERE d.message_id IN (SELECT value FROM json_each(?1)) ORDER BY d.message_id, d.position"
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
                note_code: r.get(6)?,
                note_detail: r.get(7)?,
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

#[async_trait]
impl Messages for SqliteStore {
    async fn get_message(&self, id: &str) -> Result<Option<MessageView>, StoreError> {
        let id = id.to_string();
        self.read(move |c| message(c, &id)).await
    }
    async fn list_messages(&self, f: ListFilter) -> Result<Vec<MessageView>, StoreError> {
        self.read(move |c| list_messages(c, &f)).await
    }
    async fn cancel(&self, id: &str, actor: &str) -> Result<Option<MessageView>, StoreError> {
        let (id, actor) = (id.to_string(), actor.to_string());
        let id2 = id.clone();
        let found = self.write(move |c| cancel(c, &id, &actor)).await?;
        if !found {
            return Ok(None);
        }
        self.read(move |c| message(c, &id2)).await
    }
    async fn dead_letters(&self, f: ListFilter) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(move |c| dead_letters(c, &f)).await
    }
    async fn replay(
        &self,
        sel: ReplaySelector,
        actor: &str,
        now: i64,
    ) -> Result<usize, StoreError> {
        let actor = actor.to_string();
        self.write(move |c| replay(c, &sel, &actor, now)).await
    }
}
