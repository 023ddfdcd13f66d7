//! Storms and inhibition on SQLite: the triage of an incident before it is paged, in one
//! write (the one writer serialises storms of a scope).

use super::incidents::{COLUMNS, event, one, parsed, raw};
use super::{SqliteStore, corrupt};
use crate::core::alerts::inhibit::{Labels, inhibitor, labels_of};
use crate::core::incident::Status;
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

/// `rules::TRIAGE_EXEMPT` as an SQL list.
fn exempt_sql() -> String {
    let quoted: Vec<String> = rules::TRIAGE_EXEMPT
        .iter()
        .map(|s| format!("'{s}'"))
        .collect();
    format!("({})", quoted.join(", "))
}

fn firing(c: &Connection, id: &str) -> Result<Vec<Labels>, StoreError> {
    let rows = c
        .prepare_cached(
            "SELECT labels FROM occurrences WHERE incident_id = ?1 AND status = 'firing'",
        )?
        .query_map([id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    rows.iter()
        .map(|l| Ok(labels_of(&serde_json::from_str(l).map_err(corrupt)?)))
        .collect()
}

/// `(incident, labels)` of every firing alert of open incidents but `except`.
fn firing_elsewhere(c: &Connection, except: &str) -> Result<Vec<(String, Labels)>, StoreError> {
    let rows = c
        .prepare_cached(
            "SELECT o.incident_id, o.labels FROM occurrences o JOIN incidents i ON i.id = o.incident_id
             WHERE i.status <> 'resolved' AND o.status = 'firing' AND i.id <> ?1 AND i.inhibited_by IS NULL
             ORDER BY i.number",
        )?
        .query_map([except], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(i, l)| Ok((i, labels_of(&serde_json::from_str(&l).map_err(corrupt)?))))
        .collect()
}

fn number(c: &Connection, id: &str) -> Result<i64, StoreError> {
    Ok(
        c.prepare_cached("SELECT number FROM incidents WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .unwrap_or(0),
    )
}

/// An incident stops paging: its escalation ends, its held pages are dropped.
fn stop_paging(c: &Connection, id: &str) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE escalations SET state = 'done', fence = fence + 1, lease_owner = NULL, lease_until = NULL
         WHERE incident_id = ?1 AND state <> 'done'",
    )?
    .execute([id])?;
    c.prepare_cached(
        "UPDATE pages SET bundle_id = '-' WHERE incident_id = ?1 AND kind = 'page'
           AND hold_until IS NOT NULL AND bundle_id IS NULL AND message_id IS NULL",
    )?
    .execute([id])?;
    Ok(())
}

fn inhibit(c: &Connection, id: &str, by: &str, now: Millis) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE incidents SET inhibited_by = ?2, page_state = CASE WHEN page_state = 'pending' THEN 'none' ELSE page_state END,
             updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, by, now])?;
    stop_paging(c, id)?;
    let n = number(c, by)?;
    event(
        c,
        id,
        now,
        "inhibited",
        "system",
        json!({"by": by, "number": n}),
    )
}

/// Groups `m` into the storm incident `s`: its count, title and severity follow.
fn join(
    c: &Connection,
    s: &IncidentRecord,
    m: &IncidentRecord,
    scope: &str,
    now: Millis,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE incidents SET grouped_into = ?2, page_state = CASE WHEN page_state = 'pending' THEN 'none' ELSE page_state END,
             updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![m.id, s.id, now])?;
    stop_paging(c, &m.id)?;
    event(
        c,
        &m.id,
        now,
        "grouped",
        "system",
        json!({"into": s.id, "number": s.number}),
    )?;
    let count: i64 = c
        .prepare_cached(
            "UPDATE storms SET count = count + 1 WHERE incident_id = ?1 RETURNING count",
        )?
        .query_row([&s.id], |r| r.get(0))?;
    let now_s = one(c, "id = ?1", &s.id)?.ok_or_else(|| corrupt("storm incident gone"))?;
    let severity = now_s.severity.min(m.severity);
    let mut details = now_s.details.clone();
    details["storm"]["count"] = json!(count);
    let title = rules::storm_title(count, scope);
    c.prepare_cached("UPDATE incidents SET title = ?2, details = ?3, severity = ?4, updated_at = ?5 WHERE id = ?1")?
        .execute(params![s.id, title, details.to_string(), severity.as_str(), now])?;
    if severity < now_s.severity {
        event(
            c,
            &s.id,
            now,
            "severity_raised",
            "system",
            json!({"from": now_s.severity, "to": severity}),
        )?;
    }
    event(
        c,
        &s.id,
        now,
        "joined",
        "system",
        json!({"incident": m.id, "number": m.number, "title": m.title, "severity": m.severity, "count": count}),
    )
}

fn open_storm(
    c: &Connection,
    st: &StormRule,
    first: &IncidentRecord,
    scope: &str,
    now: Millis,
) -> Result<IncidentRecord, StoreError> {
    let number: i64 = c
        .prepare_cached("SELECT COALESCE(MAX(number), 0) + 1 FROM incidents")?
        .query_row([], |r| r.get(0))?;
    let service = if st.per_service {
        first.service.as_str()
    } else {
        "*"
    };
    let details = json!({"storm": {"scope": scope, "count": 0, "threshold": st.threshold, "window_ms": st.window_ms}});
    c.prepare_cached(
        "INSERT INTO incidents (id, number, dedup_key, source, route, service, severity, status, title, details,
             opened_at, page_state, notice_state, notify_resolved, updated_at)
         VALUES (?1, ?2, ?3, 'storm', ?4, ?5, ?6, 'triggered', ?7, ?8, ?9, 'pending', 'none', 1, ?9)",
    )?
    .execute(params![
        st.new_id,
        number,
        format!("storm:{scope}:{now}"),
        first.route,
        service,
        first.severity.as_str(),
        rules::storm_title(0, scope),
        details.to_string(),
        now
    ])?;
    c.prepare_cached("INSERT INTO storms (incident_id, scope, started_at, ended_at, count) VALUES (?1, ?2, ?3, NULL, 0)")?
        .execute(params![st.new_id, scope, now])?;
    event(
        c,
        &st.new_id,
        now,
        "opened",
        "storm",
        json!({"severity": first.severity, "storm": scope}),
    )?;
    one(c, "id = ?1", &st.new_id)?.ok_or_else(|| corrupt("storm incident not written"))
}

fn triage(c: &Connection, id: &str, r: &TriageRules, now: Millis) -> Result<Triaged, StoreError> {
    let Some(i) = one(c, "id = ?1", id)? else {
        return Ok(Triaged::Page);
    };
    if let Some(settled) = rules::triage_settled(&i) {
        return Ok(settled);
    }
    if !r.inhibit.is_empty() {
        let mine = firing(c, id)?;
        let others = firing_elsewhere(c, id)?;
        if let Some(by) = inhibitor(&r.inhibit, &mine, &others) {
            let by = by.to_string();
            inhibit(c, id, &by, now)?;
            return Ok(Triaged::Inhibited(by));
        }
        // As a source: what it inhibits that is still triggered stops paging.
        let sources: Vec<(String, Labels)> =
            mine.into_iter().map(|l| (id.to_string(), l)).collect();
        let mut targets: Vec<String> = others.iter().map(|(t, _)| t.clone()).collect();
        targets.dedup();
        for t in targets {
            let Some(ti) = one(c, "id = ?1", &t)? else {
                continue;
            };
            if ti.status != Status::Triggered
                || ti.grouped_into.is_some()
                || rules::triage_exempt(&ti.source)
            {
                continue;
            }
            if inhibitor(&r.inhibit, &firing(c, &t)?, &sources).is_some() {
                inhibit(c, &t, id, now)?;
            }
        }
    }
    let Some(st) = r.storm.as_ref().filter(|s| s.threshold > 0) else {
        return Ok(Triaged::Page);
    };
    let scope = st.scope(&i.service);
    let active: Option<String> = c
        .prepare_cached(
            "SELECT s.incident_id FROM storms s JOIN incidents i ON i.id = s.incident_id
             WHERE s.scope = ?1 AND s.ended_at IS NULL AND i.status <> 'resolved'",
        )?
        .query_row([&scope], |r| r.get(0))
        .optional()?;
    if let Some(s) = active
        .and_then(|s| one(c, "id = ?1", &s).transpose())
        .transpose()?
    {
        join(c, &s, &i, &scope, now)?;
        return Ok(Triaged::Grouped {
            storm: s.id,
            started: false,
        });
    }
    // A storm whose incident was resolved is over.
    c.prepare_cached("UPDATE storms SET ended_at = ?2 WHERE scope = ?1 AND ended_at IS NULL")?
        .execute(params![scope, now])?;
    let exempt = exempt_sql();
    let recent: Vec<IncidentRecord> = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM incidents
             WHERE (?1 IS NULL OR service = ?1) AND opened_at >= ?2 AND source NOT IN {exempt}
               AND grouped_into IS NULL AND inhibited_by IS NULL AND status = 'triggered'
             ORDER BY opened_at, number"
        ))?
        .query_map(
            params![st.per_service.then_some(&i.service), now - st.window_ms],
            raw,
        )?
        .map(|r| r.map_err(StoreError::from).and_then(parsed))
        .collect::<Result<_, _>>()?;
    if recent.len() < st.threshold as usize {
        return Ok(Triaged::Page);
    }
    let s = open_storm(c, st, &i, &scope, now)?;
    for m in &recent {
        join(c, &s, m, &scope, now)?;
    }
    Ok(Triaged::Grouped {
        storm: s.id,
        started: true,
    })
}

fn storms(c: &Connection, sql_where: &str, arg: Millis) -> Result<Vec<StormRow>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT incident_id, scope, started_at, ended_at, count FROM storms WHERE {sql_where} ORDER BY started_at"
    ))?
    .query_map([arg], |r| {
        Ok(StormRow {
            incident_id: r.get(0)?,
            scope: r.get(1)?,
            started_at: r.get(2)?,
            ended_at: r.get(3)?,
            count: r.get(4)?,
        })
    })?
    .collect::<Result<_, _>>()?)
}

fn end_quiet(
    c: &Connection,
    threshold: u32,
    window: i64,
    now: Millis,
) -> Result<Vec<StormRow>, StoreError> {
    let mut out = Vec::new();
    for mut s in storms(c, "ended_at IS NULL AND started_at <= ?1", now - window)? {
        let n: i64 = c
            .prepare_cached(
                "SELECT COUNT(*) FROM incidents WHERE grouped_into = ?1 AND opened_at >= ?2",
            )?
            .query_row(params![s.incident_id, now - window], |r| r.get(0))?;
        if n >= threshold as i64 {
            continue;
        }
        c.prepare_cached("UPDATE storms SET ended_at = ?2 WHERE incident_id = ?1")?
            .execute(params![s.incident_id, now])?;
        let detail = json!({"count": s.count, "joined_in_window": n, "threshold": threshold});
        event(c, &s.incident_id, now, "storm_ended", "system", detail)?;
        s.ended_at = Some(now);
        out.push(s);
    }
    Ok(out)
}

fn lift(c: &Connection, source: &str, now: Millis) -> Result<Vec<String>, StoreError> {
    let ids: Vec<String> = c
        .prepare_cached(
            "SELECT id FROM incidents WHERE inhibited_by = ?1 AND status = 'triggered'
               AND EXISTS (SELECT 1 FROM occurrences o WHERE o.incident_id = incidents.id AND o.status = 'firing')",
        )?
        .query_map([source], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        c.prepare_cached("UPDATE incidents SET inhibited_by = NULL, page_state = 'pending', updated_at = ?2 WHERE id = ?1")?
            .execute(params![id, now])?;
        // Its escalation begins again from the first step, in a new round (new page keys:
        // the pages dropped while it was inhibited do not stand in for these).
        c.prepare_cached(
            "UPDATE escalations SET state = 'active', step = 0, pass = 0, round = round + 1, due_at = ?2,
                 fired_step = NULL, fired_pass = NULL, fence = fence + 1, lease_owner = NULL, lease_until = NULL
             WHERE incident_id = ?1",
        )?
        .execute(params![id, now])?;
        event(c, id, now, "uninhibited", "system", json!({"by": source}))?;
    }
    Ok(ids)
}

#[async_trait]
impl Storms for SqliteStore {
    async fn triage(
        &self,
        id: &str,
        rules: TriageRules,
        now: Millis,
    ) -> Result<Triaged, StoreError> {
        let id = id.to_string();
        self.write(move |c| triage(c, &id, &rules, now)).await
    }
    async fn end_quiet_storms(
        &self,
        threshold: u32,
        window_ms: i64,
        now: Millis,
    ) -> Result<Vec<StormRow>, StoreError> {
        self.write(move |c| end_quiet(c, threshold, window_ms, now))
            .await
    }
    async fn active_storms(&self) -> Result<Vec<StormRow>, StoreError> {
        self.read(|c| storms(c, "ended_at IS NULL AND ?1 = 0", 0))
            .await
    }
    async fn storm_members(&self, storm_id: &str) -> Result<Vec<String>, StoreError> {
        let s = storm_id.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT id FROM incidents WHERE grouped_into = ?1 ORDER BY number",
            )?
            .query_map([s], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
        })
        .await
    }
    async fn lift_inhibition(
        &self,
        source_id: &str,
        now: Millis,
    ) -> Result<Vec<String>, StoreError> {
        let s = source_id.to_string();
        self.write(move |c| lift(c, &s, now)).await
    }
}
