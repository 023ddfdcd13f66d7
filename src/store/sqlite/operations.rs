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
    // One writer: the entry takes its place in the chain at once.
    seal(c)?;
    Ok(())
}

/// The anchor the chain starts from: the next `seq` and the hash it follows.
fn anchor(c: &Connection) -> Result<(i64, String), StoreError> {
    let v: Option<String> = c
        .query_row(
            "SELECT value FROM settings WHERE key = 'audit_anchor'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(crate::store::rules::parse_audit_anchor(v.as_deref()))
}

/// Seals entries written without a place in the chain (older than the chain, restored, or
/// just written), in the order they were written.
pub(super) fn seal(c: &Connection) -> Result<usize, StoreError> {
    let head: Option<(i64, String)> = c
        .prepare_cached(
            "SELECT seq, hash FROM audit WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (mut seq, mut prev) = match head {
        Some(h) => h,
        None => {
            let (next, hash) = anchor(c)?;
            (next - 1, hash)
        }
    };
    let mut stmt = c.prepare_cached(
        "SELECT id, at, actor, action, target, before, after, reason FROM audit
         WHERE seq IS NULL ORDER BY id",
    )?;
    type Unsealed = (
        i64,
        i64,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Unsealed> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut update =
        c.prepare_cached("UPDATE audit SET seq = ?1, prev_hash = ?2, hash = ?3 WHERE id = ?4")?;
    for (id, at, actor, action, target, before, after, reason) in &rows {
        seq += 1;
        let h = crate::core::audit_chain::hash(
            &prev,
            seq,
            *at,
            actor,
            action,
            target,
            before.as_deref(),
            after.as_deref(),
            reason.as_deref(),
        );
        update.execute(params![seq, prev, h, id])?;
        prev = h;
    }
    Ok(rows.len())
}

pub fn audit_chain(c: &Connection) -> Result<AuditChain, StoreError> {
    let (first_seq, anchor) = anchor(c)?;
    let mut stmt = c.prepare_cached(
        "SELECT id, seq, at, actor, action, target, before, after, reason, prev_hash, hash
         FROM audit WHERE seq IS NOT NULL ORDER BY seq",
    )?;
    let links = stmt
        .query_map([], |r| {
            Ok(crate::core::audit_chain::Link {
                id: r.get(0)?,
                seq: r.get(1)?,
                at: r.get(2)?,
                actor: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                before: r.get(6)?,
                after: r.get(7)?,
                reason: r.get(8)?,
                prev_hash: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                hash: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
            })
        })?
        .collect::<Result<_, _>>()?;
    let unsealed = c.query_row("SELECT COUNT(*) FROM audit WHERE seq IS NULL", [], |r| {
        r.get(0)
    })?;
    Ok(AuditChain {
        anchor,
        first_seq,
        links,
        unsealed,
    })
}

/// Purges the oldest sealed entries written before `cut` (at most `batch`), as a prefix of
/// the chain, and leaves the anchor the rest follows from.
pub(super) fn purge_audit(c: &Connection, cut: Millis, batch: i64) -> Result<usize, StoreError> {
    let keep_from: Option<i64> = c.query_row(
        "SELECT MIN(seq) FROM audit WHERE seq IS NOT NULL AND at >= ?1",
        [cut],
        |r| r.get(0),
    )?;
    let last: Option<(i64, String)> = c
        .query_row(
            "SELECT seq, hash FROM audit WHERE seq IN (
                SELECT seq FROM audit WHERE seq IS NOT NULL AND at < ?1 AND (?2 IS NULL OR seq < ?2)
                ORDER BY seq LIMIT ?3)
             ORDER BY seq DESC LIMIT 1",
            params![cut, keep_from, batch],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((last, hash)) = last else {
        return Ok(0);
    };
    let n = c.execute("DELETE FROM audit WHERE seq <= ?1", [last])?;
    c.execute(
        "INSERT INTO settings (key, value, actor, updated_at) VALUES ('audit_anchor', ?1, 'system', ?2)
         ON CONFLICT(key) DO UPDATE SET value = ?1, updated_at = ?2",
        params![format!("{}:{hash}", last + 1), crate::core::types::now_millis()],
    )?;
    Ok(n)
}

pub fn audit_entries(
    c: &Connection,
    limit: usize,
    after: Option<i64>,
) -> Result<Vec<AuditRow>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, at, actor, action, target, before, after, reason, seq, hash FROM audit
         WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
    )?;
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    let rows = stmt.query_map(params![after, limit as i64], |r| {
        Ok(AuditRow {
            entry: AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                before: json(r.get(5)?),
                after: json(r.get(6)?),
                reason: r.get(7)?,
            },
            seq: r.get(8)?,
            hash: r.get(9)?,
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
        "INSERT INTO provider_switches (provider, disabled, reason, actor, updated_at, until) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(provider) DO UPDATE SET disabled = ?2, reason = ?3, actor = ?4, updated_at = ?5, until = ?6",
        params![s.provider, s.disabled as i64, s.reason, s.actor, s.at, s.until],
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
            after: Some(crate::store::rules::switch_after(s)),
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
        "SELECT provider, disabled, reason, actor, updated_at, until FROM provider_switches",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ProviderSwitch {
            provider: r.get(0)?,
            disabled: r.get::<_, i64>(1)? != 0,
            reason: r.get(2)?,
            actor: r.get(3)?,
            at: r.get(4)?,
            until: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ends switches whose `until` has passed: the provider is enabled again, audited as
/// `system`. Only the store write that ends a switch audits it (one node, once).
pub fn expire_switches(c: &Connection, now: Millis) -> Result<Vec<String>, StoreError> {
    let due: Vec<(String, Option<String>)> = c
        .prepare_cached(
            "SELECT provider, reason FROM provider_switches WHERE disabled = 1 AND until IS NOT NULL AND until <= ?1",
        )?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (provider, reason) in &due {
        set_provider_switch(
            c,
            &crate::store::rules::switch_expired(provider, reason.as_deref(), now),
        )?;
    }
    Ok(due.into_iter().map(|(p, _)| p).collect())
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
    let waiting = c
        .prepare_cached(
            "SELECT channel, priority, COUNT(*) FROM deliveries WHERE status = 'queued'
             GROUP BY channel, priority ORDER BY channel, priority",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Stats {
        deliveries_by_status: by,
        dead_letters: dead,
        waiting,
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
    ) -> Result<Vec<AuditRow>, StoreError> {
        self.read(move |c| audit_entries(c, limit, after)).await
    }
    async fn audit_seal(&self) -> Result<usize, StoreError> {
        self.write(seal).await
    }
    async fn audit_chain(&self) -> Result<AuditChain, StoreError> {
        self.read(audit_chain).await
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
    async fn expire_switches(&self, now: i64) -> Result<Vec<String>, StoreError> {
        self.write(move |c| expire_switches(c, now)).await
    }
    async fn stats(&self) -> Result<Stats, StoreError> {
        self.read(stats).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}
