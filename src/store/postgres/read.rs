//! Reads on PostgreSQL.

use crate::core::message::Content;
use crate::core::types::{DeliveryStatus, Priority};
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

async fn message_row(pool: &PgPool, r: &PgRow) -> Result<MessageView, StoreError> {
    let id: String = r.try_get("id")?;
    let body: Value = serde_json::from_str(&r.try_get::<String, _>("body")?).map_err(corrupt)?;
    Ok(MessageView {
        status: parse(r.try_get("status")?)?,
        priority: Priority::from_rank(r.try_get("priority")?),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        send_at: r.try_get("send_at")?,
        expires_at: r.try_get("expires_at")?,
        metadata: serde_json::from_value(body["metadata"].clone()).unwrap_or_default(),
        deliveries: deliveries(pool, &id).await?,
        id,
    })
}

pub async fn message(pool: &PgPool, id: &str) -> Result<Option<MessageView>, StoreError> {
    let row = sqlx::query("SELECT id, status, priority, created_at, updated_at, send_at, expires_at, body FROM messages WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    match row {
        Some(r) => Ok(Some(message_row(pool, &r).await?)),
        None => Ok(None),
    }
}

async fn deliveries(pool: &PgPool, message_id: &str) -> Result<Vec<DeliveryView>, StoreError> {
    let rows = sqlx::query("SELECT id, channel, recipient, status, provider FROM deliveries WHERE message_id = $1 ORDER BY position")
        .bind(message_id)
        .fetch_all(pool)
        .await?;
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    let attempts = sqlx::query(
        "SELECT delivery_id, n, provider, at, duration_ms, outcome, error_class, error_code, error_detail, provider_message_id
         FROM attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, n",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = r.try_get(0)?;
        let status: DeliveryStatus = parse(r.try_get(3)?)?;
        let mut list = Vec::new();
        for a in attempts
            .iter()
            .filter(|a| a.try_get::<String, _>(0).is_ok_and(|d| d == id))
        {
            let class: Option<String> = a.try_get(6)?;
            let outcome: String = a.try_get(5)?;
            list.push(Attempt {
                n: a.try_get(1)?,
                provider: a.try_get(2)?,
                at: a.try_get(3)?,
                duration_ms: a.try_get(4)?,
                outcome: if outcome == "sent" { "sent" } else { "error" },
                error: match class {
                    Some(c) => Some(AttemptError {
                        class: parse(c)?,
                        code: a.try_get::<Option<String>, _>(7)?.unwrap_or_default(),
                        detail: a.try_get::<Option<String>, _>(8)?.unwrap_or_default(),
                    }),
                    None => None,
                },
                provider_message_id: a.try_get(9)?,
            });
        }
        out.push(DeliveryView {
            channel: parse(r.try_get(1)?)?,
            to: r.try_get(2)?,
            provider: r
                .try_get::<Option<String>, _>(4)?
                .filter(|_| status.is_success()),
            status,
            attempts: list,
            id,
        });
    }
    Ok(out)
}

pub async fn list_messages(pool: &PgPool, f: &ListFilter) -> Result<Vec<MessageView>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, status, priority, created_at, updated_at, send_at, expires_at, body FROM messages m
         WHERE ($1::TEXT IS NULL OR id < $1) AND ($2::TEXT IS NULL OR status = $2)
           AND ($3::TEXT IS NULL OR EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.channel = $3))
         ORDER BY id DESC LIMIT $4",
    )
    .bind(&f.after)
    .bind(f.status.map(|s| s.as_str()))
    .bind(f.channel.map(|c| c.as_str()))
    .bind(f.limit as i64)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(message_row(pool, r).await?);
    }
    Ok(out)
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
