//! Messages and dead letters on PostgreSQL: reads in one snapshot; cancel and replay.

use super::complete::recompute_one;
use super::operations::audit;
use super::operations::entry;
use super::parse;
use super::{PgStore, corrupt};
use crate::core::types::{Channel, Millis, Priority};
use crate::store::assemble::{
    self, ATTEMPT_COLS, AttemptRow, DELIVERY_COLS, DeliveryRow, MESSAGE_COLS, MessageRow,
};
use crate::store::rules;
use crate::store::*;
use async_trait::async_trait;
use serde_json::json;
use sqlx::postgres::PgPool;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

fn message_row(r: &PgRow) -> Result<MessageRow, StoreError> {
    Ok(MessageRow {
        id: r.try_get(0)?,
        status: r.try_get(1)?,
        priority: r.try_get(2)?,
        created_at: r.try_get(3)?,
        updated_at: r.try_get(4)?,
        send_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        body: r.try_get(7)?,
    })
}

/// A read-only snapshot: every query in it sees the same committed state.
async fn snapshot(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
    Ok(pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?)
}

/// The views of `messages`, with every delivery and attempt of the page read in two more
/// queries on the same snapshot.
async fn views(
    c: &mut PgConnection,
    messages: Vec<MessageRow>,
) -> Result<Vec<MessageView>, StoreError> {
    if messages.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
    let deliveries = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLS} FROM deliveries d LEFT JOIN delivery_notes n ON n.delivery_id = d.id
         WHERE d.message_id = ANY($1) ORDER BY d.message_id, d.position"
    )))
    .bind(&ids)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| {
        Ok(DeliveryRow {
            message_id: r.try_get(0)?,
            id: r.try_get(1)?,
            channel: r.try_get(2)?,
            to: r.try_get(3)?,
            status: r.try_get(4)?,
            provider: r.try_get(5)?,
            note_code: r.try_get(6)?,
            note_detail: r.try_get(7)?,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    let attempts = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTEMPT_COLS} FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
         WHERE d.message_id = ANY($1) ORDER BY a.delivery_id, a.n"
    )))
    .bind(&ids)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|a| {
        Ok(AttemptRow {
            delivery_id: a.try_get(0)?,
            n: a.try_get(1)?,
            provider: a.try_get(2)?,
            at: a.try_get(3)?,
            duration_ms: a.try_get(4)?,
            outcome: a.try_get(5)?,
            error_class: a.try_get(6)?,
            error_code: a.try_get(7)?,
            error_detail: a.try_get(8)?,
            provider_message_id: a.try_get(9)?,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    assemble::views(messages, deliveries, attempts)
}

pub async fn message(pool: &PgPool, id: &str) -> Result<Option<MessageView>, StoreError> {
    let mut tx = snapshot(pool).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLS} FROM messages WHERE id = $1"
    )))
    .bind(id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(message_row)
    .collect::<Result<Vec<_>, _>>()?;
    let mut v = views(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(v.pop())
}

pub async fn list_messages(pool: &PgPool, f: &ListFilter) -> Result<Vec<MessageView>, StoreError> {
    let mut tx = snapshot(pool).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLS} FROM messages m
         WHERE ($1::TEXT IS NULL OR id < $1) AND ($2::TEXT IS NULL OR status = $2)
           AND ($3::TEXT IS NULL OR EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.channel = $3))
         ORDER BY id DESC LIMIT $4"
    )))
    .bind(&f.after)
    .bind(f.status.map(|s| s.as_str()))
    .bind(f.channel.map(|c| c.as_str()))
    .bind(f.limit as i64)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(message_row)
    .collect::<Result<Vec<_>, _>>()?;
    let v = views(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(v)
}

pub async fn dead_letters(pool: &PgPool, f: &ListFilter) -> Result<Vec<DeadLetter>, StoreError> {
    let rows = sqlx::query(
        "SELECT message_id, channel, priority, failed_at, last_error FROM dead_letters
         WHERE ($1::TEXT IS NULL OR message_id < $1) AND ($2::TEXT IS NULL OR channel = $2)
         ORDER BY message_id DESC LIMIT $3",
    )
    .bind(&f.after)
    .bind(f.channel.map(|c| c.as_str()))
    .bind(f.limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let last = r
                .try_get::<Option<String>, _>(4)?
                .map(|e| crate::store::rules::parse_last_error(&e).map_err(corrupt))
                .transpose()?;
            let (last_error, provider) = match last {
                Some((e, p)) => (Some(e), p),
                None => (None, None),
            };
            Ok(DeadLetter {
                message_id: r.try_get(0)?,
                channel: parse(r.try_get::<String, _>(1)?)?,
                priority: Priority::from_rank(r.try_get(2)?),
                failed_at: r.try_get(3)?,
                provider,
                last_error,
            })
        })
        .collect()
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
        recompute_one(tx, id, now, "", None).await?;
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

#[async_trait]
impl Messages for PgStore {
    async fn get_message(&self, id: &str) -> Result<Option<MessageView>, StoreError> {
        message(&self.pool, id).await
    }
    async fn list_messages(&self, f: ListFilter) -> Result<Vec<MessageView>, StoreError> {
        list_messages(&self.pool, &f).await
    }
    async fn cancel(&self, id: &str, actor: &str) -> Result<Option<MessageView>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found = cancel(&mut tx, id, actor).await?;
        tx.commit().await?;
        if !found {
            return Ok(None);
        }
        message(&self.pool, id).await
    }
    async fn dead_letters(&self, f: ListFilter) -> Result<Vec<DeadLetter>, StoreError> {
        dead_letters(&self.pool, &f).await
    }
    async fn replay(
        &self,
        sel: ReplaySelector,
        actor: &str,
        now: i64,
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = replay(&mut tx, &sel, actor, now).await?;
        tx.commit().await?;
        Ok(n)
    }
}
