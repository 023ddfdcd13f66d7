//! Reads on PostgreSQL.

use crate::core::message::Content;
use crate::core::types::Priority;
use crate::store::*;
use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn parse<T: std::str::FromStr<Err = String>>(s: String) -> Result<T, StoreError> {
    s.parse().map_err(corrupt)
}

use crate::store::assemble::{
    self, ATTEMPT_COLS, AttemptRow, DELIVERY_COLS, DeliveryRow, MESSAGE_COLS, MessageRow,
};
use sqlx::PgConnection;

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
        "SELECT {DELIVERY_COLS} FROM deliveries WHERE message_id = ANY($1) ORDER BY message_id, position"
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
                channel: parse(r.try_get(1)?)?,
                priority: Priority::from_rank(r.try_get(2)?),
                failed_at: r.try_get(3)?,
                provider,
                last_error,
            })
        })
        .collect()
}

pub async fn inbox(
    pool: &PgPool,
    user: &str,
    unread_only: bool,
    f: &ListFilter,
) -> Result<Vec<InboxItem>, StoreError> {
    let rows = sqlx::query(
        r#"SELECT id, message_id, delivery_id, body, created_at, read_at FROM inbox
           WHERE "user" = $1 AND ($2::TEXT IS NULL OR id < $2) AND (NOT $3 OR read_at IS NULL)
           ORDER BY id DESC LIMIT $4"#,
    )
    .bind(user)
    .bind(&f.after)
    .bind(unread_only)
    .bind(f.limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.try_get::<String, _>(3)?).map_err(corrupt)?;
            Ok(InboxItem {
                id: r.try_get(0)?,
                user: user.to_string(),
                message_id: r.try_get(1)?,
                delivery_id: r.try_get(2)?,
                content: serde_json::from_value::<Content>(body["content"].clone())
                    .unwrap_or_default(),
                metadata: serde_json::from_value::<Map<String, Value>>(body["metadata"].clone())
                    .unwrap_or_default(),
                created_at: r.try_get(4)?,
                read_at: r.try_get(5)?,
            })
        })
        .collect()
}

/// Live keys; with `hash`, only the one with that hash.
pub async fn api_keys(pool: &PgPool, hash: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, name, role, key_hash, prefix, created_at, rate_limit FROM api_keys
         WHERE revoked_at IS NULL AND ($1::TEXT IS NULL OR key_hash = $1) ORDER BY created_at",
    )
    .bind(hash)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ApiKeyRecord {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                role: parse(r.try_get(2)?)?,
                key_hash: r.try_get(3)?,
                prefix: r.try_get(4)?,
                created_at: r.try_get(5)?,
                rate_limit: r
                    .try_get::<Option<String>, _>(6)?
                    .map(|s| crate::config::Rate::parse(&s))
                    .transpose()
                    .map_err(corrupt)?,
            })
        })
        .collect()
}

pub async fn audit(
    pool: &PgPool,
    limit: usize,
    after: Option<i64>,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, at, actor, action, target, before, after, reason FROM audit
         WHERE ($1::BIGINT IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(after)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r.try_get(0)?,
                at: r.try_get(1)?,
                actor: r.try_get(2)?,
                action: r.try_get(3)?,
                target: r.try_get(4)?,
                before: json(r.try_get(5)?),
                after: json(r.try_get(6)?),
                reason: r.try_get(7)?,
            })
        })
        .collect()
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
         WHERE status = 'sent' AND provider = $1 AND updated_at >= $2 AND updated_at <= $3 ORDER BY updated_at LIMIT $4",
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

pub async fn mode(pool: &PgPool) -> Result<Option<ModeRecord>, StoreError> {
    let r = sqlx::query("SELECT value, reason, actor, updated_at FROM settings WHERE key = 'mode'")
        .fetch_optional(pool)
        .await?;
    r.map(|r| {
        Ok(ModeRecord {
            mode: r.try_get(0)?,
            reason: r.try_get(1)?,
            actor: r.try_get(2)?,
            since: r.try_get(3)?,
        })
    })
    .transpose()
}

pub async fn provider_switches(pool: &PgPool) -> Result<Vec<ProviderSwitch>, StoreError> {
    let rows =
        sqlx::query("SELECT provider, disabled, reason, actor, updated_at FROM provider_switches")
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|r| {
            Ok(ProviderSwitch {
                provider: r.try_get(0)?,
                disabled: r.try_get::<i64, _>(1)? != 0,
                reason: r.try_get(2)?,
                actor: r.try_get(3)?,
                at: r.try_get(4)?,
            })
        })
        .collect()
}

pub async fn stats(pool: &PgPool) -> Result<Stats, StoreError> {
    let rows = sqlx::query("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
        .fetch_all(pool)
        .await?;
    let mut by = Vec::new();
    for r in rows {
        by.push((parse(r.try_get(0)?)?, r.try_get::<i64, _>(1)?));
    }
    let dead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters")
        .fetch_one(pool)
        .await?;
    Ok(Stats {
        deliveries_by_status: by,
        dead_letters: dead,
    })
}
