//! The audit log, the mode, provider switches and figures on SQLite.

use super::SqliteStore;
use super::parse;
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

pub(super) fn audit(c: &Connection, e: &AuditEntry) -> Result<(), StoreError> {
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

pub fn audit_entries(
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

pub fn set_mode(
    c: &Connection,
    mode: &str,
    reason: &str,
    actor: &str,
    now: Millis,
) -> Result<ModeRecord, StoreError> {
    let before = self::mode(c)?;
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

#[async_trait]
impl Operations for SqliteStore {
    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.write(move |c| audit(c, &entry)).await
    }
    async fn audit_list(
        &self,
        limit: usize,
        after: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |c| audit_entries(c, limit, after)).await
    }
    async fn mode(&self) -> Result<Option<ModeRecord>, StoreError> {
        self.read(mode).await
    }
    async fn set_mode(
        &self,
        mode: &str,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<ModeRecord, StoreError> {
        let (mode, reason, actor) = (mode.to_string(), reason.to_string(), actor.to_string());
        self.write(move |c| set_mode(c, &mode, &reason, &actor, now))
            .await
    }
    async fn provider_switches(&self) -> Result<Vec<ProviderSwitch>, StoreError> {
        self.read(provider_switches).await
    }
    async fn set_provider_switch(&self, s: ProviderSwitch) -> Result<(), StoreError> {
        self.write(move |c| set_provider_switch(c, &s)).await
    }
    async fn stats(&self) -> Result<Stats, StoreError> {
        self.read(stats).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}
