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
) -> Result<Vec<AuditRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, at, actor, action, target, before, after, reason, seq, hash FROM audit
         WHERE ($1::BIGINT IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(after)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    rows.iter()
        .map(|r| {
            Ok(AuditRow {
                entry: AuditEntry {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    action: r.try_get(3)?,
                    target: r.try_get(4)?,
                    before: json(r.try_get(5)?),
                    after: json(r.try_get(6)?),
                    reason: r.try_get(7)?,
                },
                seq: r.try_get(8)?,
                hash: r.try_get(9)?,
            })
        })
        .collect()
}

/// The lock every sealer takes: one node at a time extends the chain. Writers of audit
/// entries never take it, so it cannot deadlock with their transactions.
const SEAL_LOCK: i64 = 7004;

async fn anchor(c: &mut PgConnection) -> Result<(i64, String), StoreError> {
    let v: Option<String> =
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'audit_anchor'")
            .fetch_optional(&mut *c)
            .await?;
    Ok(crate::store::rules::parse_audit_anchor(v.as_deref()))
}

/// Seals committed entries that have no place in the chain yet, in id order. An entry
/// committed late with a lower id simply takes the next place.
pub async fn seal(pool: &PgPool) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SEAL_LOCK)
        .execute(&mut *tx)
        .await?;
    let head: Option<(i64, String)> = sqlx::query_as(
        "SELECT seq, hash FROM audit WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let (mut seq, mut prev) = match head {
        Some(h) => h,
        None => {
            let (next, hash) = anchor(&mut tx).await?;
            (next - 1, hash)
        }
    };
    let rows = sqlx::query(
        "SELECT id, at, actor, action, target, before, after, reason FROM audit
         WHERE seq IS NULL ORDER BY id LIMIT 1000",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut seqs = Vec::with_capacity(rows.len());
    let mut prevs = Vec::with_capacity(rows.len());
    let mut hashes = Vec::with_capacity(rows.len());
    for r in &rows {
        seq += 1;
        let h = crate::core::audit_chain::hash(
            &prev,
            seq,
            r.try_get(1)?,
            r.try_get::<&str, _>(2)?,
            r.try_get::<&str, _>(3)?,
            r.try_get::<&str, _>(4)?,
            r.try_get::<Option<&str>, _>(5)?,
            r.try_get::<Option<&str>, _>(6)?,
            r.try_get::<Option<&str>, _>(7)?,
        );
        ids.push(r.try_get::<i64, _>(0)?);
        seqs.push(seq);
        prevs.push(std::mem::replace(&mut prev, h.clone()));
        hashes.push(h);
    }
    if !ids.is_empty() {
        sqlx::query(
            "UPDATE audit SET seq = u.seq, prev_hash = u.prev, hash = u.hash
             FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[]) AS u(id, seq, prev, hash)
             WHERE audit.id = u.id",
        )
        .bind(&ids)
        .bind(&seqs)
        .bind(&prevs)
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(ids.len())
}

pub async fn audit_chain(pool: &PgPool) -> Result<AuditChain, StoreError> {
    let mut c = pool.acquire().await?;
    let (first_seq, anchor) = anchor(&mut c).await?;
    let rows = sqlx::query(
        "SELECT id, seq, at, actor, action, target, before, after, reason, prev_hash, hash
         FROM audit WHERE seq IS NOT NULL ORDER BY seq",
    )
    .fetch_all(&mut *c)
    .await?;
    let links = rows
        .iter()
        .map(|r| {
            Ok(crate::core::audit_chain::Link {
                id: r.try_get(0)?,
                seq: r.try_get(1)?,
                at: r.try_get(2)?,
                actor: r.try_get(3)?,
                action: r.try_get(4)?,
                target: r.try_get(5)?,
                before: r.try_get(6)?,
                after: r.try_get(7)?,
                reason: r.try_get(8)?,
                prev_hash: r.try_get::<Option<String>, _>(9)?.unwrap_or_default(),
                hash: r.try_get::<Option<String>, _>(10)?.unwrap_or_default(),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    let unsealed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit WHERE seq IS NULL")
        .fetch_one(&mut *c)
        .await?;
    Ok(AuditChain {
        anchor,
        first_seq,
        links,
        unsealed,
    })
}

/// Purges the oldest sealed entries written before `cut` (at most `batch`) as a prefix of
/// the chain, under the sealer's lock, and leaves the anchor the rest follows from.
pub(super) async fn purge_audit(
    tx: &mut PgConnection,
    cut: Millis,
    batch: i64,
) -> Result<usize, StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SEAL_LOCK)
        .execute(&mut *tx)
        .await?;
    let last: Option<(i64, String)> = sqlx::query_as(
        "SELECT seq, hash FROM audit WHERE seq IN (
            SELECT seq FROM audit WHERE seq IS NOT NULL AND at < $1
              AND seq < COALESCE((SELECT MIN(seq) FROM audit WHERE seq IS NOT NULL AND at >= $1), 9223372036854775807)
            ORDER BY seq LIMIT $2)
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(cut)
    .bind(batch)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((last, hash)) = last else {
        return Ok(0);
    };
    let n = sqlx::query("DELETE FROM audit WHERE seq <= $1")
        .bind(last)
        .execute(&mut *tx)
        .await?
        .rows_affected() as usize;
    sqlx::query(
        "INSERT INTO settings (key, value, actor, updated_at) VALUES ('audit_anchor', $1, 'system', $2)
         ON CONFLICT (key) DO UPDATE SET value = $1, updated_at = $2",
    )
    .bind(format!("{}:{hash}", last + 1))
    .bind(crate::core::types::now_millis())
    .execute(&mut *tx)
    .await?;
    Ok(n)
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
        "INSERT INTO provider_switches (provider, disabled, reason, actor, updated_at, until) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (provider) DO UPDATE SET disabled = $2, reason = $3, actor = $4, updated_at = $5, until = $6",
    )
    .bind(&s.provider)
    .bind(s.disabled as i64)
    .bind(&s.reason)
    .bind(&s.actor)
    .bind(s.at)
    .bind(s.until)
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
            Some(crate::store::rules::switch_after(s)),
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
    let rows = sqlx::query(
        "SELECT provider, disabled, reason, actor, updated_at, until FROM provider_switches",
    )
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
                until: r.try_get(5)?,
            })
        })
        .collect()
}

/// Ends switches whose `until` has passed, each under its row lock, so one node ends (and
/// audits) each once.
pub async fn expire_switches(pool: &PgPool, now: Millis) -> Result<Vec<String>, StoreError> {
    let mut tx = pool.begin().await?;
    let due: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT provider, reason FROM provider_switches
         WHERE disabled = 1 AND until IS NOT NULL AND until <= $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    for (provider, reason) in &due {
        set_provider_switch(
            &mut tx,
            &crate::store::rules::switch_expired(provider, reason.as_deref(), now),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(due.into_iter().map(|(p, _)| p).collect())
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
    let mut waiting = Vec::new();
    for r in sqlx::query(
        "SELECT channel, priority::BIGINT, COUNT(*) FROM deliveries WHERE status = 'queued'
         GROUP BY channel, priority ORDER BY channel, priority",
    )
    .fetch_all(pool)
    .await?
    {
        waiting.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
    }
    Ok(Stats {
        deliveries_by_status: by,
        dead_letters: dead,
        waiting,
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
    ) -> Result<Vec<AuditRow>, StoreError> {
        audit_entries(&self.pool, limit, after).await
    }
    async fn audit_seal(&self) -> Result<usize, StoreError> {
        seal(&self.pool).await
    }
    async fn audit_chain(&self) -> Result<AuditChain, StoreError> {
        audit_chain(&self.pool).await
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
    async fn expire_switches(&self, now: i64) -> Result<Vec<String>, StoreError> {
        expire_switches(&self.pool, now).await
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
