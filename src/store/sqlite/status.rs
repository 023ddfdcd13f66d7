//! The status page's figures and posts on SQLite.

use super::operations::audit;
use crate::core::types::Millis;
use crate::store::*;
use rusqlite::{Connection, params};

pub fn sample(c: &Connection, samples: &[StatusSample]) -> Result<(), StoreError> {
    for s in samples {
        // The column comes from a fixed list (`rules::status_column`), never from input.
        let add = s
            .column
            .map(|col| format!(", {col} = {col} + 1"))
            .unwrap_or_default();
        let init = s.column.map(|col| format!(", {col}")).unwrap_or_default();
        c.execute(
            &format!(
                "INSERT INTO status_days (component, day, sampled, last_minute{init})
                 VALUES (?1, ?2, 1, ?3{})
                 ON CONFLICT (component, day) DO UPDATE SET sampled = sampled + 1, last_minute = ?3{add}
                 WHERE status_days.last_minute < ?3",
                if s.column.is_some() { ", 1" } else { "" }
            ),
            params![s.component, s.day, s.minute],
        )?;
    }
    Ok(())
}

pub fn days(c: &Connection, since: &str) -> Result<Vec<StatusDay>, StoreError> {
    let rows = c
        .prepare_cached(
            "SELECT component, day, degraded, partial, major, maintenance, sampled FROM status_days
             WHERE day >= ?1 ORDER BY component, day",
        )?
        .query_map([since], |r| {
            Ok(StatusDay {
                component: r.get(0)?,
                day: r.get(1)?,
                degraded: r.get(2)?,
                partial: r.get(3)?,
                major: r.get(4)?,
                maintenance: r.get(5)?,
                sampled: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn incidents(c: &Connection, limit: usize) -> Result<Vec<StatusIncident>, StoreError> {
    let mut list: Vec<StatusIncident> = c
        .prepare_cached(
            "SELECT id, title, impact, status, components, incident_id, created_at, updated_at, resolved_at
             FROM status_incidents ORDER BY created_at DESC, id DESC LIMIT ?1",
        )?
        .query_map([limit as i64], |r| {
            Ok(StatusIncident {
                id: r.get(0)?,
                title: r.get(1)?,
                impact: r.get(2)?,
                status: r.get(3)?,
                components: serde_json::from_str(&r.get::<_, String>(4)?)
                    .unwrap_or(serde_json::Value::Array(vec![])),
                incident_id: r.get(5)?,
                created_at: r.get(6)?,
                updated_at: r.get(7)?,
                resolved_at: r.get(8)?,
                updates: vec![],
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = c.prepare_cached(
        "SELECT id, status, body, actor, created_at FROM status_updates WHERE incident = ?1
         ORDER BY created_at DESC, id DESC",
    )?;
    for i in &mut list {
        i.updates = stmt
            .query_map([&i.id], |r| {
                Ok(StatusUpdate {
                    id: r.get(0)?,
                    status: r.get(1)?,
                    body: r.get(2)?,
                    actor: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(list)
}

fn insert_update(c: &Connection, incident: &str, u: &StatusUpdate) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO status_updates (id, incident, status, body, actor, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![u.id, incident, u.status, u.body, u.actor, u.created_at],
    )?;
    Ok(())
}

pub fn post_incident(c: &Connection, i: &StatusIncident) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO status_incidents (id, title, impact, status, components, incident_id, created_at, updated_at, resolved_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            i.id,
            i.title,
            i.impact,
            i.status,
            i.components.to_string(),
            i.incident_id,
            i.created_at,
            i.updated_at,
            i.resolved_at
        ],
    )?;
    for u in &i.updates {
        insert_update(c, &i.id, u)?;
        audit(
            c,
            &rules::status_posted("status.incident", &i.id, u, Some(&i.title)),
        )?;
    }
    Ok(())
}

pub fn post_update(
    c: &Connection,
    incident: &str,
    u: &StatusUpdate,
    components: Option<&serde_json::Value>,
) -> Result<bool, StoreError> {
    let resolved: Option<Millis> =
        (u.status == "resolved" || u.status == "completed").then_some(u.created_at);
    let n = c.execute(
        "UPDATE status_incidents SET status = ?2, updated_at = ?3,
            resolved_at = ?4, components = COALESCE(?5, components)
         WHERE id = ?1",
        params![
            incident,
            u.status,
            u.created_at,
            resolved,
            components.map(|v| v.to_string())
        ],
    )?;
    if n == 0 {
        return Ok(false);
    }
    insert_update(c, incident, u)?;
    audit(c, &rules::status_posted("status.update", incident, u, None))?;
    Ok(true)
}
