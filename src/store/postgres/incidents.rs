//! Incidents on PostgreSQL. Batches for one incident key are serialized by a transaction
//! advisory lock on the key, so two nodes taking the same group (an Alertmanager HA pair
//! sending to both) open one incident.

use super::{PgStore, corrupt};
use crate::core::incident::{self, Occurrence, Severity, Status};
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

pub(super) const COLUMNS: &str =
    "id, number, dedup_key, source, route, service, severity, status, title, details,
    opened_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, page_state, notice_state,
    updated_at, grouped_into, inhibited_by";

pub(super) fn record(r: &PgRow) -> Result<IncidentRecord, StoreError> {
    let severity: String = r.try_get(6)?;
    let status: String = r.try_get(7)?;
    Ok(IncidentRecord {
        id: r.try_get(0)?,
        number: r.try_get(1)?,
        dedup_key: r.try_get(2)?,
        source: r.try_get(3)?,
        route: r.try_get(4)?,
        service: r.try_get(5)?,
        severity: Severity::parse(&severity).ok_or_else(|| corrupt(&severity))?,
        status: Status::parse(&status).ok_or_else(|| corrupt(&status))?,
        title: r.try_get(8)?,
        details: serde_json::from_str(&r.try_get::<String, _>(9)?).map_err(corrupt)?,
        opened_at: r.try_get(10)?,
        acknowledged_at: r.try_get(11)?,
        acknowledged_by: r.try_get(12)?,
        resolved_at: r.try_get(13)?,
        resolved_by: r.try_get(14)?,
        page_state: r.try_get(15)?,
        notice_state: r.try_get(16)?,
        updated_at: r.try_get(17)?,
        grouped_into: r.try_get(18)?,
        inhibited_by: r.try_get(19)?,
    })
}

pub(super) async fn one(
    c: &mut PgConnection,
    sql_where: &str,
    arg: &str,
    lock: bool,
) -> Result<Option<IncidentRecord>, StoreError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM incidents WHERE {sql_where}{lock}"
    )))
    .bind(arg)
    .fetch_optional(&mut *c)
    .await?
    .as_ref()
    .map(record)
    .transpose()
}

async fn occurrences(c: &mut PgConnection, id: &str) -> Result<Vec<Occurrence>, StoreError> {
    sqlx::query(
        "SELECT fingerprint, starts_at, status, ends_at, labels, annotations, generator_url
         FROM occurrences WHERE incident_id = $1 ORDER BY starts_at, fingerprint COLLATE \"C\"",
    )
    .bind(id)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| {
        Ok(Occurrence {
            fingerprint: r.try_get(0)?,
            starts_at: r.try_get(1)?,
            status: r.try_get(2)?,
            ends_at: r.try_get(3)?,
            labels: serde_json::from_str(&r.try_get::<String, _>(4)?).map_err(corrupt)?,
            annotations: serde_json::from_str(&r.try_get::<String, _>(5)?).map_err(corrupt)?,
            generator_url: r.try_get(6)?,
        })
    })
    .collect()
}

pub(super) async fn event(
    c: &mut PgConnection,
    id: &str,
    at: Millis,
    kind: &str,
    actor: &str,
    detail: Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO incident_events (incident_id, n, at, kind, actor, detail)
         VALUES ($1, (SELECT COALESCE(MAX(n), 0) + 1 FROM incident_events WHERE incident_id = $1), $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(at)
    .bind(kind)
    .bind(actor)
    .bind(detail.to_string())
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn resolve(
    c: &mut PgConnection,
    id: &str,
    actor: &str,
    reason: &str,
    at: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE incidents SET status = 'resolved', resolved_at = $2, resolved_by = $3, updated_at = $2,
             notice_state = CASE WHEN notify_resolved = 1 AND page_state IN ('paged', 'pending')
                                 THEN 'pending' ELSE notice_state END
         WHERE id = $1",
    )
    .bind(id)
    .bind(at)
    .bind(actor)
    .execute(&mut *c)
    .await?;
    event(c, id, at, "resolved", actor, json!({"reason": reason})).await
}

async fn ingest_one(c: &mut PgConnection, b: &AlertBatch) -> Result<Ingested, StoreError> {
    let open = one(
        c,
        "dedup_key = $1 AND status <> 'resolved'",
        &b.dedup_key,
        true,
    )
    .await?;
    let known = match &open {
        Some(i) => occurrences(c, &i.id).await?,
        None => Vec::new(),
    };
    let m = incident::merge(&known, &b.occurrences, b.complete, b.at);
    let id = match &open {
        Some(i) => i.id.clone(),
        None if m.new_firing => {
            let n = &b.open;
            // Numbers are handed out one opening at a time (openings are rare; a sequence
            // would not survive a restore from a backup).
            sqlx::query("SELECT pg_advisory_xact_lock(7001)")
                .execute(&mut *c)
                .await?;
            sqlx::query(
                "INSERT INTO incidents (id, number, dedup_key, source, route, service, severity, status, title, details,
                     opened_at, page_state, notice_state, notify_resolved, updated_at)
                 VALUES ($1, (SELECT COALESCE(MAX(number), 0) + 1 FROM incidents), $2, $3, $4, $5, $6, 'triggered', $7, $8, $9, $10, 'none', $11, $9)",
            )
            .bind(&n.id)
            .bind(&b.dedup_key)
            .bind(&n.source)
            .bind(&n.route)
            .bind(&n.service)
            .bind(n.severity.as_str())
            .bind(&n.title)
            .bind(n.details.to_string())
            .bind(b.at)
            .bind(if n.suppressed { "none" } else { "pending" })
            .bind(n.notify_resolved as i64)
            .execute(&mut *c)
            .await?;
            event(
                c,
                &n.id,
                b.at,
                "opened",
                &n.source,
                json!({"severity": n.severity, "suppressed": n.suppressed}),
            )
            .await?;
            n.id.clone()
        }
        None => return Ok(Ingested::Unchanged),
    };
    if m.upserts.is_empty() {
        return Ok(Ingested::Unchanged);
    }
    for o in &m.upserts {
        sqlx::query(
            "INSERT INTO occurrences (incident_id, fingerprint, starts_at, status, ends_at, labels, annotations, generator_url, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (incident_id, fingerprint, starts_at) DO UPDATE SET status = EXCLUDED.status,
                 ends_at = EXCLUDED.ends_at, updated_at = EXCLUDED.updated_at",
        )
        .bind(&id)
        .bind(&o.fingerprint)
        .bind(o.starts_at)
        .bind(&o.status)
        .bind(o.ends_at)
        .bind(o.labels.to_string())
        .bind(o.annotations.to_string())
        .bind(&o.generator_url)
        .bind(b.at)
        .execute(&mut *c)
        .await?;
    }
    for (kind, detail) in crate::store::rules::occurrence_events(&m.upserts) {
        event(c, &id, b.at, kind, &b.open.source, detail).await?;
    }
    if let Some(i) = &open
        && b.open.severity < i.severity
        && m.new_firing
    {
        sqlx::query("UPDATE incidents SET severity = $2, updated_at = $3 WHERE id = $1")
            .bind(&id)
            .bind(b.open.severity.as_str())
            .bind(b.at)
            .execute(&mut *c)
            .await?;
        event(
            c,
            &id,
            b.at,
            "severity_raised",
            &b.open.source,
            json!({"from": i.severity, "to": b.open.severity}),
        )
        .await?;
    }
    if m.all_resolved {
        resolve(c, &id, &b.open.source, "every alert resolved", b.at).await?;
        return Ok(Ingested::Resolved(id));
    }
    if open.is_some() {
        sqlx::query("UPDATE incidents SET updated_at = $2 WHERE id = $1")
            .bind(&id)
            .bind(b.at)
            .execute(&mut *c)
            .await?;
    }
    Ok(if open.is_none() {
        Ingested::Opened(id)
    } else {
        Ingested::Updated(id)
    })
}

/// The windows not yet over at `now` (some may not have begun).
async fn windows(c: &mut PgConnection, now: Millis) -> Result<Vec<MaintenanceWindow>, StoreError> {
    sqlx::query(
        "SELECT id, matchers, starts_at, ends_at, reason, actor, created_at FROM maintenance_windows
         WHERE ends_at > $1 ORDER BY starts_at, id COLLATE \"C\"",
    )
    .bind(now)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| {
        Ok(MaintenanceWindow {
            id: r.try_get(0)?,
            matchers: serde_json::from_str(&r.try_get::<String, _>(1)?).map_err(corrupt)?,
            starts_at: r.try_get(2)?,
            ends_at: r.try_get(3)?,
            reason: r.try_get(4)?,
            actor: r.try_get(5)?,
            created_at: r.try_get(6)?,
        })
    })
    .collect()
}

#[async_trait]
impl Incidents for PgStore {
    async fn put_maintenance(&self, w: MaintenanceWindow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO maintenance_windows (id, matchers, starts_at, ends_at, reason, actor, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&w.id)
        .bind(json!(w.matchers).to_string())
        .bind(w.starts_at)
        .bind(w.ends_at)
        .bind(&w.reason)
        .bind(&w.actor)
        .bind(w.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn maintenance_windows(&self, now: Millis) -> Result<Vec<MaintenanceWindow>, StoreError> {
        let mut c = self.pool.acquire().await?;
        windows(&mut c, now).await
    }

    async fn delete_maintenance(&self, id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM maintenance_windows WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    async fn heartbeat_pings(
        &self,
        ids: Vec<String>,
        now: Millis,
    ) -> Result<Vec<(String, Millis)>, StoreError> {
        sqlx::query(
            "INSERT INTO heartbeats (id, last_ping, pings) SELECT id, $2, 0 FROM UNNEST($1::TEXT[]) AS t(id)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&ids)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query("SELECT id, last_ping FROM heartbeats WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    async fn ping_heartbeat(&self, id: &str, now: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO heartbeats (id, last_ping, pings) VALUES ($1, $2, 1)
             ON CONFLICT (id) DO UPDATE SET last_ping = GREATEST(heartbeats.last_ping, EXCLUDED.last_ping),
                                            pings = heartbeats.pings + 1",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn ingest(&self, batches: Vec<AlertBatch>) -> Result<Vec<Ingested>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Every key's lock first, in one order, then the numbering lock when opening: no two
        // transactions can wait on each other.
        let mut keys: Vec<&str> = batches.iter().map(|b| b.dedup_key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
                .bind(k)
                .execute(&mut *tx)
                .await?;
        }
        let mut batches = batches;
        let since = batches.iter().map(|b| b.at).min().unwrap_or(0);
        crate::store::rules::suppress(&windows(&mut tx, since).await?, &mut batches);
        let mut out = Vec::with_capacity(batches.len());
        for b in &batches {
            out.push(ingest_one(&mut tx, b).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn open_incident(&self, dedup_key: &str) -> Result<Option<IncidentRecord>, StoreError> {
        let mut c = self.pool.acquire().await?;
        one(
            &mut c,
            "dedup_key = $1 AND status <> 'resolved'",
            dedup_key,
            false,
        )
        .await
    }

    async fn get_incident(&self, id: &str) -> Result<Option<IncidentView>, StoreError> {
        let mut c = self.pool.acquire().await?;
        let Some(incident) = one(&mut c, "id = $1", id, false).await? else {
            return Ok(None);
        };
        let occurrences = occurrences(&mut c, id).await?;
        let messages = sqlx::query(
            "SELECT message_id, kind FROM incident_messages WHERE incident_id = $1 ORDER BY kind, message_id COLLATE \"C\"",
        )
        .bind(id)
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| {
            Ok(IncidentMessage {
                message_id: r.try_get(0)?,
                kind: r.try_get(1)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let timeline = sqlx::query(
            "SELECT at, kind, actor, detail FROM incident_events WHERE incident_id = $1 ORDER BY n",
        )
        .bind(id)
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| {
            Ok(TimelineEntry {
                at: r.try_get(0)?,
                kind: r.try_get(1)?,
                actor: r.try_get(2)?,
                detail: serde_json::from_str(&r.try_get::<String, _>(3)?).map_err(corrupt)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(IncidentView {
            incident,
            occurrences,
            messages,
            timeline,
        }))
    }

    async fn list_incidents(&self, f: IncidentFilter) -> Result<Vec<IncidentRecord>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM incidents
             WHERE ($1::TEXT IS NULL OR status = $1) AND ($2::TEXT IS NULL OR severity = $2)
               AND ($3::TEXT IS NULL OR service = $3) AND ($4::BIGINT IS NULL OR number < $4)
             ORDER BY number DESC LIMIT $5"
        )))
        .bind(f.status.map(Status::as_str))
        .bind(f.severity.map(Severity::as_str))
        .bind(f.service)
        .bind(f.before_number)
        .bind(f.limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(record)
        .collect()
    }

    async fn act_incident(
        &self,
        id: &str,
        action: IncidentAction,
        actor: &str,
        reason: &str,
        now: Millis,
    ) -> Result<Acted, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(i) = one(&mut tx, "id = $1", id, true).await? else {
            return Ok(Acted::NotFound);
        };
        match (action, i.status) {
            (IncidentAction::Acknowledge, Status::Triggered) => {
                sqlx::query(
                    "UPDATE incidents SET status = 'acknowledged', acknowledged_at = $2, acknowledged_by = $3, updated_at = $2 WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .bind(actor)
                .execute(&mut *tx)
                .await?;
                event(
                    &mut tx,
                    id,
                    now,
                    "acknowledged",
                    actor,
                    json!({"reason": reason}),
                )
                .await?;
            }
            (IncidentAction::Resolve, Status::Triggered | Status::Acknowledged) => {
                resolve(&mut tx, id, actor, reason, now).await?;
            }
            _ => return Ok(Acted::NotNow(i)),
        }
        let after = one(&mut tx, "id = $1", id, false).await?;
        tx.commit().await?;
        Ok(after.map(Acted::Done).unwrap_or(Acted::NotFound))
    }

    async fn owed_notices(&self, limit: usize) -> Result<Vec<IncidentRecord>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM incidents WHERE page_state = 'pending' OR notice_state = 'pending'
             ORDER BY updated_at LIMIT $1"
        )))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(record)
        .collect()
    }

    async fn notices_sent(
        &self,
        id: &str,
        kind: NoticeKind,
        message_ids: Vec<String>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let (set, was, name, entry) = kind.columns();
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE incidents SET {set} WHERE id = $1 AND {was}"
        )))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for m in &message_ids {
            sqlx::query(
                "INSERT INTO incident_messages (incident_id, message_id, kind) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(m)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        if changed > 0 {
            event(
                &mut tx,
                id,
                now,
                entry,
                "system",
                json!({"messages": message_ids}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
