//! Incidents on SQLite.

use super::{SqliteStore, corrupt};
use crate::core::incident::{self, Occurrence, Severity, Status};
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Value, json};

pub(super) const COLUMNS: &str =
    "id, number, dedup_key, source, route, service, severity, status, title, details,
    opened_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, page_state, notice_state,
    updated_at, grouped_into, inhibited_by";

/// A row as read, before its texts are parsed.
pub(super) struct Raw(IncidentRecord, String, String, String);

pub(super) fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw(
        IncidentRecord {
            id: r.get(0)?,
            number: r.get(1)?,
            dedup_key: r.get(2)?,
            source: r.get(3)?,
            route: r.get(4)?,
            service: r.get(5)?,
            severity: Severity::P3,
            status: Status::Triggered,
            title: r.get(8)?,
            details: Value::Null,
            opened_at: r.get(10)?,
            acknowledged_at: r.get(11)?,
            acknowledged_by: r.get(12)?,
            resolved_at: r.get(13)?,
            resolved_by: r.get(14)?,
            page_state: r.get(15)?,
            notice_state: r.get(16)?,
            updated_at: r.get(17)?,
            grouped_into: r.get(18)?,
            inhibited_by: r.get(19)?,
        },
        r.get(6)?,
        r.get(7)?,
        r.get(9)?,
    ))
}

pub(super) fn parsed(
    Raw(mut rec, severity, status, details): Raw,
) -> Result<IncidentRecord, StoreError> {
    rec.severity = Severity::parse(&severity).ok_or_else(|| corrupt(&severity))?;
    rec.status = Status::parse(&status).ok_or_else(|| corrupt(&status))?;
    rec.details = serde_json::from_str(&details).map_err(corrupt)?;
    Ok(rec)
}

pub(super) fn one(
    c: &Connection,
    sql_where: &str,
    arg: &str,
) -> Result<Option<IncidentRecord>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM incidents WHERE {sql_where}"
    ))?
    .query_row([arg], raw)
    .optional()?
    .map(parsed)
    .transpose()
}

fn occurrences(c: &Connection, id: &str) -> Result<Vec<Occurrence>, StoreError> {
    let rows = c
        .prepare_cached(
            "SELECT fingerprint, starts_at, status, ends_at, labels, annotations, generator_url
             FROM occurrences WHERE incident_id = ?1 ORDER BY starts_at, fingerprint",
        )?
        .query_map([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(
            |(fingerprint, starts_at, status, ends_at, l, a, generator_url)| {
                Ok(Occurrence {
                    fingerprint,
                    starts_at,
                    status,
                    ends_at,
                    labels: serde_json::from_str(&l).map_err(corrupt)?,
                    annotations: serde_json::from_str(&a).map_err(corrupt)?,
                    generator_url,
                })
            },
        )
        .collect()
}

pub(super) fn event(
    c: &Connection,
    id: &str,
    at: Millis,
    kind: &str,
    actor: &str,
    detail: Value,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO incident_events (incident_id, n, at, kind, actor, detail)
         VALUES (?1, (SELECT COALESCE(MAX(n), 0) + 1 FROM incident_events WHERE incident_id = ?1), ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, at, kind, actor, detail.to_string()])?;
    Ok(())
}

fn upsert(c: &Connection, id: &str, o: &Occurrence, at: Millis) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO occurrences (incident_id, fingerprint, starts_at, status, ends_at, labels, annotations, generator_url, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (incident_id, fingerprint, starts_at) DO UPDATE SET status = excluded.status,
             ends_at = excluded.ends_at, updated_at = excluded.updated_at",
    )?
    .execute(params![
        id,
        o.fingerprint,
        o.starts_at,
        o.status,
        o.ends_at,
        o.labels.to_string(),
        o.annotations.to_string(),
        o.generator_url,
        at
    ])?;
    Ok(())
}

pub(super) fn resolve(
    c: &Connection,
    id: &str,
    actor: &str,
    reason: &str,
    at: Millis,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE incidents SET status = 'resolved', resolved_at = ?2, resolved_by = ?3, updated_at = ?2,
             notice_state = CASE WHEN notify_resolved = 1 AND page_state IN ('paged', 'pending')
                                 THEN 'pending' ELSE notice_state END
         WHERE id = ?1",
    )?
    .execute(params![id, at, actor])?;
    event(c, id, at, "resolved", actor, json!({"reason": reason}))
}

fn ingest_one(c: &Connection, b: &AlertBatch) -> Result<Ingested, StoreError> {
    let open = one(c, "dedup_key = ?1 AND status <> 'resolved'", &b.dedup_key)?;
    let known = match &open {
        Some(i) => occurrences(c, &i.id)?,
        None => Vec::new(),
    };
    let m = incident::merge(&known, &b.occurrences, b.complete, b.at);
    let id = match &open {
        Some(i) => i.id.clone(),
        None if m.new_firing => {
            let n = &b.open;
            let number: i64 = c
                .prepare_cached("SELECT COALESCE(MAX(number), 0) + 1 FROM incidents")?
                .query_row([], |r| r.get(0))?;
            c.prepare_cached(
                "INSERT INTO incidents (id, number, dedup_key, source, route, service, severity, status, title, details,
                     opened_at, page_state, notice_state, notify_resolved, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'triggered', ?8, ?9, ?10, ?11, 'none', ?12, ?10)",
            )?
            .execute(params![
                n.id,
                number,
                b.dedup_key,
                n.source,
                n.route,
                n.service,
                n.severity.as_str(),
                n.title,
                n.details.to_string(),
                b.at,
                if n.suppressed { "none" } else { "pending" },
                n.notify_resolved as i64
            ])?;
            event(
                c,
                &n.id,
                b.at,
                "opened",
                &n.source,
                json!({"severity": n.severity, "suppressed": n.suppressed}),
            )?;
            n.id.clone()
        }
        None => return Ok(Ingested::Unchanged),
    };
    if m.upserts.is_empty() {
        return Ok(Ingested::Unchanged);
    }
    for o in &m.upserts {
        upsert(c, &id, o, b.at)?;
    }
    for (kind, detail) in crate::store::rules::occurrence_events(&m.upserts) {
        event(c, &id, b.at, kind, &b.open.source, detail)?;
    }
    // A more severe alert raises the incident's severity.
    if let Some(i) = &open
        && b.open.severity < i.severity
        && m.new_firing
    {
        c.prepare_cached("UPDATE incidents SET severity = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![id, b.open.severity.as_str(), b.at])?;
        event(
            c,
            &id,
            b.at,
            "severity_raised",
            &b.open.source,
            json!({"from": i.severity, "to": b.open.severity}),
        )?;
    }
    if m.all_resolved {
        resolve(c, &id, &b.open.source, "every alert resolved", b.at)?;
        return Ok(Ingested::Resolved(id));
    }
    if open.is_some() {
        c.prepare_cached("UPDATE incidents SET updated_at = ?2 WHERE id = ?1")?
            .execute(params![id, b.at])?;
    }
    Ok(if open.is_none() {
        Ingested::Opened(id)
    } else {
        Ingested::Updated(id)
    })
}

fn act(
    c: &Connection,
    id: &str,
    action: IncidentAction,
    actor: &str,
    reason: &str,
    now: Millis,
) -> Result<Acted, StoreError> {
    let Some(i) = one(c, "id = ?1", id)? else {
        return Ok(Acted::NotFound);
    };
    match (action, i.status) {
        (IncidentAction::Acknowledge, Status::Triggered) => {
            c.execute(
                "UPDATE incidents SET status = 'acknowledged', acknowledged_at = ?2, acknowledged_by = ?3, updated_at = ?2 WHERE id = ?1",
                params![id, now, actor],
            )?;
            event(c, id, now, "acknowledged", actor, json!({"reason": reason}))?;
        }
        (IncidentAction::Resolve, Status::Triggered | Status::Acknowledged) => {
            resolve(c, id, actor, reason, now)?;
        }
        _ => return Ok(Acted::NotNow(i)),
    }
    Ok(one(c, "id = ?1", id)?
        .map(Acted::Done)
        .unwrap_or(Acted::NotFound))
}

fn view(c: &Connection, id: &str) -> Result<Option<IncidentView>, StoreError> {
    let Some(incident) = one(c, "id = ?1", id)? else {
        return Ok(None);
    };
    let occurrences = occurrences(c, id)?;
    let messages = c
        .prepare_cached("SELECT message_id, kind FROM incident_messages WHERE incident_id = ?1 ORDER BY kind, message_id")?
        .query_map([id], |r| Ok(IncidentMessage { message_id: r.get(0)?, kind: r.get(1)? }))?
        .collect::<Result<Vec<_>, _>>()?;
    let rows = c
        .prepare_cached(
            "SELECT at, kind, actor, detail FROM incident_events WHERE incident_id = ?1 ORDER BY n",
        )?
        .query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let timeline = rows
        .into_iter()
        .map(|(at, kind, actor, d)| {
            Ok(TimelineEntry {
                at,
                kind,
                actor,
                detail: serde_json::from_str(&d).map_err(corrupt)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(IncidentView {
        incident,
        occurrences,
        messages,
        timeline,
    }))
}

fn list(c: &Connection, f: &IncidentFilter) -> Result<Vec<IncidentRecord>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM incidents
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR severity = ?2) AND (?3 IS NULL OR service = ?3)
           AND (?4 IS NULL OR number < ?4)
         ORDER BY number DESC LIMIT ?5"
    ))?
    .query_map(
        params![
            f.status.map(Status::as_str),
            f.severity.map(Severity::as_str),
            f.service,
            f.before_number,
            f.limit as i64
        ],
        raw,
    )?
    .map(|r| r.map_err(StoreError::from).and_then(parsed))
    .collect()
}

fn owed(c: &Connection, limit: usize) -> Result<Vec<IncidentRecord>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM incidents WHERE page_state = 'pending' OR notice_state = 'pending'
         ORDER BY updated_at LIMIT ?1"
    ))?
    .query_map([limit as i64], raw)?
    .map(|r| r.map_err(StoreError::from).and_then(parsed))
    .collect()
}

fn sent(
    c: &Connection,
    id: &str,
    kind: NoticeKind,
    ids: &[String],
    now: Millis,
) -> Result<(), StoreError> {
    let (column, was, name, entry) = kind.columns();
    let changed = c.execute(
        &format!("UPDATE incidents SET {column} WHERE id = ?1 AND {was}"),
        [id],
    )?;
    for m in ids {
        c.prepare_cached("INSERT OR IGNORE INTO incident_messages (incident_id, message_id, kind) VALUES (?1, ?2, ?3)")?
            .execute(params![id, m, name])?;
    }
    if changed > 0 {
        event(c, id, now, entry, "system", json!({"messages": ids}))?;
    }
    Ok(())
}

fn pings(c: &Connection, ids: &[String], now: Millis) -> Result<Vec<(String, Millis)>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        c.prepare_cached(
            "INSERT OR IGNORE INTO heartbeats (id, last_ping, pings) VALUES (?1, ?2, 0)",
        )?
        .execute(params![id, now])?;
        let last: i64 = c
            .prepare_cached("SELECT last_ping FROM heartbeats WHERE id = ?1")?
            .query_row([id], |r| r.get(0))?;
        out.push((id.clone(), last));
    }
    Ok(out)
}

fn windows(c: &Connection, now: Millis) -> Result<Vec<MaintenanceWindow>, StoreError> {
    let rows = c
        .prepare_cached(
            "SELECT id, matchers, starts_at, ends_at, reason, actor, created_at FROM maintenance_windows
             WHERE ends_at > ?1 ORDER BY starts_at, id",
        )?
        .query_map([now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(id, m, starts_at, ends_at, reason, actor, created_at)| {
            Ok(MaintenanceWindow {
                id,
                matchers: serde_json::from_str(&m).map_err(corrupt)?,
                starts_at,
                ends_at,
                reason,
                actor,
                created_at,
            })
        })
        .collect()
}

#[async_trait]
impl Incidents for SqliteStore {
    async fn put_maintenance(&self, w: MaintenanceWindow) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO maintenance_windows (id, matchers, starts_at, ends_at, reason, actor, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![w.id, json!(w.matchers).to_string(), w.starts_at, w.ends_at, w.reason, w.actor, w.created_at],
            )?;
            Ok(())
        })
        .await
    }
    async fn maintenance_windows(&self, now: Millis) -> Result<Vec<MaintenanceWindow>, StoreError> {
        self.read(move |c| windows(c, now)).await
    }
    async fn delete_maintenance(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            Ok(c.execute("DELETE FROM maintenance_windows WHERE id = ?1", [id])? > 0)
        })
        .await
    }
    async fn heartbeat_pings(
        &self,
        ids: Vec<String>,
        now: Millis,
    ) -> Result<Vec<(String, Millis)>, StoreError> {
        self.write(move |c| pings(c, &ids, now)).await
    }
    async fn ping_heartbeat(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO heartbeats (id, last_ping, pings) VALUES (?1, ?2, 1)
                 ON CONFLICT (id) DO UPDATE SET last_ping = MAX(last_ping, excluded.last_ping), pings = pings + 1",
            )?
            .execute(params![id, now])?;
            Ok(())
        })
        .await
    }
    async fn ingest(&self, batches: Vec<AlertBatch>) -> Result<Vec<Ingested>, StoreError> {
        let mut batches = batches;
        self.write(move |c| {
            let since = batches.iter().map(|b| b.at).min().unwrap_or(0);
            crate::store::rules::suppress(&windows(c, since)?, &mut batches);
            batches.iter().map(|b| ingest_one(c, b)).collect()
        })
        .await
    }
    async fn open_incident(&self, dedup_key: &str) -> Result<Option<IncidentRecord>, StoreError> {
        let k = dedup_key.to_string();
        self.read(move |c| one(c, "dedup_key = ?1 AND status <> 'resolved'", &k))
            .await
    }
    async fn get_incident(&self, id: &str) -> Result<Option<IncidentView>, StoreError> {
        let id = id.to_string();
        self.read(move |c| view(c, &id)).await
    }
    async fn list_incidents(&self, f: IncidentFilter) -> Result<Vec<IncidentRecord>, StoreError> {
        self.read(move |c| list(c, &f)).await
    }
    async fn act_incident(
        &self,
        id: &str,
        action: IncidentAction,
        actor: &str,
        reason: &str,
        now: Millis,
    ) -> Result<Acted, StoreError> {
        let (id, actor, reason) = (id.to_string(), actor.to_string(), reason.to_string());
        self.write(move |c| act(c, &id, action, &actor, &reason, now))
            .await
    }
    async fn owed_notices(&self, limit: usize) -> Result<Vec<IncidentRecord>, StoreError> {
        self.read(move |c| owed(c, limit)).await
    }
    async fn notices_sent(
        &self,
        id: &str,
        kind: NoticeKind,
        message_ids: Vec<String>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |c| sent(c, &id, kind, &message_ids, now))
            .await
    }
}
