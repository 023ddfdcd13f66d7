//! The audit log, the mode, provider switches and figures on PostgreSQL.

use super::PgStore;
use super::parse;
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use serde_json::json;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};

pub(super) async fn audit(c: &mut PgConnection, e: &AuditEntry) -> Result<(), StoreError> {
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

pub(super) fn entry(
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

pub async fn audit_entries(
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
        by.push((parse(r.try_get::<String, _>(0)?)?, r.try_get::<i64, _>(1)?));
    }
    let dead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters")
        .fetch_one(pool)
        .await?;
    Ok(Stats {
        deliveries_by_status: by,
        dead_letters: dead,
    })
}

#[async_trait]
impl Operations for PgStore {
    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        audit(&mut conn, &entry).await
    }
    async fn audit_list(
        &self,
        limit: usize,
        after: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        audit_entries(&self.pool, limit, after).await
    }
    async fn mode(&self) -> Result<Option<ModeRecord>, StoreError> {
        mode(&self.pool).await
    }
    async fn set_mode(
        &self,
        mode: &str,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<ModeRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = set_mode(&mut tx, mode, reason, actor, now).await?;
        tx.commit().await?;
        Ok(r)
    }
    async fn provider_switches(&self) -> Result<Vec<ProviderSwitch>, StoreError> {
        provider_switches(&self.pool).await
    }
    async fn set_provider_switch(&self, s: ProviderSwitch) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        set_provider_switch(&mut tx, &s).await?;
        tx.commit().await?;
        Ok(())
    }
    async fn stats(&self) -> Result<Stats, StoreError> {
        stats(&self.pool).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
