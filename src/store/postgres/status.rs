//! The status page's figures and posts on PostgreSQL. Each node samples every minute; the
//! `last_minute` guard counts a minute once whichever nodes sample it.

use super::operations::audit;
use crate::core::types::Millis;
use crate::store::*;
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Row};

pub async fn sample(pool: &PgPool, samples: &[StatusSample]) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for s in samples {
        // The column comes from a fixed list (`rules::status_column`), never from input.
        let add = s
            .column
            .map(|col| format!(", {col} = status_days.{col} + 1"))
            .unwrap_or_default();
        let init = s.column.map(|col| format!(", {col}")).unwrap_or_default();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO status_days (component, day, sampled, last_minute{init})
             VALUES ($1, $2, 1, $3{})
             ON CONFLICT (component, day) DO UPDATE SET sampled = status_days.sampled + 1, last_minute = $3{add}
             WHERE status_days.last_minute < $3",
            if s.column.is_some() { ", 1" } else { "" }
        )))
        .bind(&s.component)
        .bind(&s.day)
        .bind(s.minute)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn days(pool: &PgPool, since: &str) -> Result<Vec<StatusDay>, StoreError> {
    let rows = sqlx::query(
        "SELECT component, day, degraded, partial, major, maintenance, sampled FROM status_days
         WHERE day >= $1 ORDER BY component, day",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StatusDay {
                component: r.try_get(0)?,
                day: r.try_get(1)?,
                degraded: r.try_get(2)?,
                partial: r.try_get(3)?,
                major: r.try_get(4)?,
                maintenance: r.try_get(5)?,
                sampled: r.try_get(6)?,
            })
        })
        .collect()
}

pub async fn incidents(pool: &PgPool, limit: usize) -> Result<Vec<StatusIncident>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, title, impact, status, components, incident_id, created_at, updated_at, resolved_at
         FROM status_incidents ORDER BY created_at DESC, id DESC LIMIT $1",
    )
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    let mut list = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: String = r.try_get(0)?;
        let updates = sqlx::query(
            "SELECT id, status, body, actor, created_at FROM status_updates WHERE incident = $1
             ORDER BY created_at DESC, id DESC",
        )
        .bind(&id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|u| {
            Ok(StatusUpdate {
                id: u.try_get(0)?,
                status: u.try_get(1)?,
                body: u.try_get(2)?,
                actor: u.try_get(3)?,
                created_at: u.try_get(4)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
        list.push(StatusIncident {
            id,
            title: r.try_get(1)?,
            impact: r.try_get(2)?,
            status: r.try_get(3)?,
            components: serde_json::from_str(&r.try_get::<String, _>(4)?)
                .unwrap_or(serde_json::Value::Array(vec![])),
            incident_id: r.try_get(5)?,
            created_at: r.try_get(6)?,
            updated_at: r.try_get(7)?,
            resolved_at: r.try_get(8)?,
            updates,
        });
    }
    Ok(list)
}

async fn insert_update(
    tx: &mut sqlx::PgConnection,
    incident: &str,
    u: &StatusUpdate,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO status_updates (id, incident, status, body, actor, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&u.id)
    .bind(incident)
    .bind(&u.status)
    .bind(&u.body)
    .bind(&u.actor)
    .bind(u.created_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn post_incident(pool: &PgPool, i: &StatusIncident) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO status_incidents (id, title, impact, status, components, incident_id, created_at, updated_at, resolved_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&i.id)
    .bind(&i.title)
    .bind(&i.impact)
    .bind(&i.status)
    .bind(i.components.to_string())
    .bind(&i.incident_id)
    .bind(i.created_at)
    .bind(i.updated_at)
    .bind(i.resolved_at)
    .execute(&mut *tx)
    .await?;
    for u in &i.updates {
        insert_update(&mut tx, &i.id, u).await?;
        audit(
            &mut tx,
            &rules::status_posted("status.incident", &i.id, u, Some(&i.title)),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn post_update(
    pool: &PgPool,
    incident: &str,
    u: &StatusUpdate,
    components: Option<&serde_json::Value>,
) -> Result<bool, StoreError> {
    let resolved: Option<Millis> =
        (u.status == "resolved" || u.status == "completed").then_some(u.created_at);
    let mut tx = pool.begin().await?;
    let n = sqlx::query(
        "UPDATE status_incidents SET status = $2, updated_at = $3, resolved_at = $4,
            components = COALESCE($5, components)
         WHERE id = $1",
    )
    .bind(incident)
    .bind(&u.status)
    .bind(u.created_at)
    .bind(resolved)
    .bind(components.map(|v| v.to_string()))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    insert_update(&mut tx, incident, u).await?;
    audit(
        &mut tx,
        &rules::status_posted("status.update", incident, u, None),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
