//! Storms and inhibition on PostgreSQL: triage runs under one transaction lock (openings
//! are rare next to messages), so two nodes never both begin a storm for one scope, and
//! a storm's count is each member once.

use super::incidents::{COLUMNS, event, one, record};
use super::{PgStore, corrupt};
use crate::core::alerts::inhibit::{Labels, inhibitor, labels_of};
use crate::core::incident::Status;
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use serde_json::json;
use sqlx::{AssertSqlSafe, PgConnection, Row};

async fn get(c: &mut PgConnection, id: &str) -> Result<Option<IncidentRecord>, StoreError> {
    one(c, "id = $1", id, true).await
}

fn parse_labels(l: &str) -> Result<Labels, StoreError> {
    Ok(labels_of(&serde_json::from_str(l).map_err(corrupt)?))
}

async fn firing(c: &mut PgConnection, id: &str) -> Result<Vec<Labels>, StoreError> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT labels FROM occurrences WHERE incident_id = $1 AND status = 'firing'",
    )
    .bind(id)
    .fetch_all(&mut *c)
    .await?;
    rows.iter().map(|l| parse_labels(l)).collect()
}

/// `(incident, labels)` of every firing alert of open incidents but `except`.
async fn firing_elsewhere(
    c: &mut PgConnection,
    except: &str,
) -> Result<Vec<(String, Labels)>, StoreError> {
    let rows = sqlx::query(
        "SELECT o.incident_id, o.labels FROM occurrences o JOIN incidents i ON i.id = o.incident_id
         WHERE i.status <> 'resolved' AND o.status = 'firing' AND i.id <> $1 AND i.inhibited_by IS NULL
         ORDER BY i.number",
    )
    .bind(except)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, parse_labels(&r.try_get::<String, _>(1)?)?)))
        .collect()
}

/// An incident stops paging: its escalation ends, its held pages are dropped.
async fn stop_paging(c: &mut PgConnection, id: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE escalations SET state = 'done', fence = fence + 1, lease_owner = NULL, lease_until = NULL
         WHERE incident_id = $1 AND state <> 'done'",
    )
    .bind(id)
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "UPDATE pages SET bundle_id = '-' WHERE incident_id = $1 AND kind = 'page'
           AND hold_until IS NOT NULL AND bundle_id IS NULL AND message_id IS NULL",
    )
    .bind(id)
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn inhibit(c: &mut PgConnection, id: &str, by: &str, now: Millis) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE incidents SET inhibited_by = $2, page_state = CASE WHEN page_state = 'pending' THEN 'none' ELSE page_state END,
             updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(by)
    .bind(now)
    .execute(&mut *c)
    .await?;
    stop_paging(c, id).await?;
    let n: Option<i64> = sqlx::query_scalar("SELECT number FROM incidents WHERE id = $1")
        .bind(by)
        .fetch_optional(&mut *c)
        .await?;
    let detail = json!({"by": by, "number": n.unwrap_or(0)});
    event(c, id, now, "inhibited", "system", detail).await
}

/// Groups `m` into the storm incident `s`: its count, title and severity follow.
async fn join(
    c: &mut PgConnection,
    s: &IncidentRecord,
    m: &IncidentRecord,
    scope: &str,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE incidents SET grouped_into = $2, page_state = CASE WHEN page_state = 'pending' THEN 'none' ELSE page_state END,
             updated_at = $3 WHERE id = $1",
    )
    .bind(&m.id)
    .bind(&s.id)
    .bind(now)
    .execute(&mut *c)
    .await?;
    stop_paging(c, &m.id).await?;
    let detail = json!({"into": s.id, "number": s.number});
    event(c, &m.id, now, "grouped", "system", detail).await?;
    let count: i64 = sqlx::query_scalar(
        "UPDATE storms SET count = count + 1 WHERE incident_id = $1 RETURNING count",
    )
    .bind(&s.id)
    .fetch_one(&mut *c)
    .await?;
    let cur = get(c, &s.id)
        .await?
        .ok_or_else(|| corrupt("storm incident gone"))?;
    let severity = cur.severity.min(m.severity);
    let mut details = cur.details.clone();
    details["storm"]["count"] = json!(count);
    sqlx::query(
        "UPDATE incidents SET title = $2, details = $3, severity = $4, updated_at = $5 WHERE id = $1",
    )
    .bind(&s.id)
    .bind(rules::storm_title(count, scope))
    .bind(details.to_string())
    .bind(severity.as_str())
    .bind(now)
    .execute(&mut *c)
    .await?;
    if severity < cur.severity {
        let detail = json!({"from": cur.severity, "to": severity});
        event(c, &s.id, now, "severity_raised", "system", detail).await?;
    }
    let detail = json!({"incident": m.id, "number": m.number, "title": m.title,
                        "severity": m.severity, "count": count});
    event(c, &s.id, now, "joined", "system", detail).await
}

async fn open_storm(
    c: &mut PgConnection,
    st: &StormRule,
    first: &IncidentRecord,
    scope: &str,
    now: Millis,
) -> Result<IncidentRecord, StoreError> {
    let service = if st.per_service {
        first.service.as_str()
    } else {
        "*"
    };
    let details = json!({"storm": {"scope": scope, "count": 0, "threshold": st.threshold,
                                   "window_ms": st.window_ms}});
    sqlx::query(
        "INSERT INTO incidents (id, number, dedup_key, source, route, service, severity, status, title, details,
             opened_at, page_state, notice_state, notify_resolved, updated_at)
         VALUES ($1, (SELECT COALESCE(MAX(number), 0) + 1 FROM incidents), $2, 'storm', $3, $4, $5, 'triggered', $6, $7,
                 $8, 'pending', 'none', 1, $8)",
    )
    .bind(&st.new_id)
    .bind(format!("storm:{scope}:{now}"))
    .bind(&first.route)
    .bind(service)
    .bind(first.severity.as_str())
    .bind(rules::storm_title(0, scope))
    .bind(details.to_string())
    .bind(now)
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "INSERT INTO storms (incident_id, scope, started_at, ended_at, count) VALUES ($1, $2, $3, NULL, 0)",
    )
    .bind(&st.new_id)
    .bind(scope)
    .bind(now)
    .execute(&mut *c)
    .await?;
    let detail = json!({"severity": first.severity, "storm": scope});
    event(c, &st.new_id, now, "opened", "storm", detail).await?;
    get(c, &st.new_id)
        .await?
        .ok_or_else(|| corrupt("storm incident not written"))
}

async fn triage(
    c: &mut PgConnection,
    id: &str,
    r: &TriageRules,
    now: Millis,
) -> Result<Triaged, StoreError> {
    // Triage's own lock, then the numbering lock a storm opened below needs, both before
    // any incident's row. (An ingest of several batches can hold one incident's row while
    // it waits for the numbering lock: PostgreSQL then breaks the rare deadlock, and the
    // loser is retried — the triage at the pager's next sweep, the payload by Alertmanager.)
    for lock in [7002i64, 7001] {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock)
            .execute(&mut *c)
            .await?;
    }
    let Some(i) = get(c, id).await? else {
        return Ok(Triaged::Page);
    };
    if let Some(settled) = rules::triage_settled(&i) {
        return Ok(settled);
    }
    if !r.inhibit.is_empty() {
        let mine = firing(c, id).await?;
        let others = firing_elsewhere(c, id).await?;
        if let Some(by) = inhibitor(&r.inhibit, &mine, &others) {
            let by = by.to_string();
            inhibit(c, id, &by, now).await?;
            return Ok(Triaged::Inhibited(by));
        }
        // As a source: what it inhibits that is still triggered stops paging.
        let sources: Vec<(String, Labels)> =
            mine.into_iter().map(|l| (id.to_string(), l)).collect();
        let mut targets: Vec<String> = others.iter().map(|(t, _)| t.clone()).collect();
        targets.dedup();
        for t in targets {
            let Some(ti) = get(c, &t).await? else {
                continue;
            };
            if ti.status != Status::Triggered
                || ti.grouped_into.is_some()
                || rules::triage_exempt(&ti.source)
            {
                continue;
            }
            if inhibitor(&r.inhibit, &firing(c, &t).await?, &sources).is_some() {
                inhibit(c, &t, id, now).await?;
            }
        }
    }
    let Some(st) = r.storm.as_ref().filter(|s| s.threshold > 0) else {
        return Ok(Triaged::Page);
    };
    let scope = st.scope(&i.service);
    let active: Option<String> = sqlx::query_scalar(
        "SELECT s.incident_id FROM storms s JOIN incidents i ON i.id = s.incident_id
         WHERE s.scope = $1 AND s.ended_at IS NULL AND i.status <> 'resolved'",
    )
    .bind(&scope)
    .fetch_optional(&mut *c)
    .await?;
    if let Some(sid) = active
        && let Some(s) = get(c, &sid).await?
    {
        join(c, &s, &i, &scope, now).await?;
        return Ok(Triaged::Grouped {
            storm: s.id,
            started: false,
        });
    }
    // A storm whose incident was resolved is over.
    sqlx::query("UPDATE storms SET ended_at = $2 WHERE scope = $1 AND ended_at IS NULL")
        .bind(&scope)
        .bind(now)
        .execute(&mut *c)
        .await?;
    let exempt_list: Vec<String> = rules::TRIAGE_EXEMPT.iter().map(|s| s.to_string()).collect();
    let recent: Vec<IncidentRecord> = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM incidents
         WHERE ($1::TEXT IS NULL OR service = $1) AND opened_at >= $2 AND NOT (source = ANY($3))
           AND grouped_into IS NULL AND inhibited_by IS NULL AND status = 'triggered'
         ORDER BY opened_at, number"
    )))
    .bind(st.per_service.then_some(&i.service))
    .bind(now - st.window_ms)
    .bind(&exempt_list)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(record)
    .collect::<Result<_, _>>()?;
    if recent.len() < st.threshold as usize {
        return Ok(Triaged::Page);
    }
    let s = open_storm(c, st, &i, &scope, now).await?;
    for m in &recent {
        join(c, &s, m, &scope, now).await?;
    }
    Ok(Triaged::Grouped {
        storm: s.id,
        started: true,
    })
}

async fn storms(
    c: &mut PgConnection,
    sql_where: &str,
    arg: Millis,
) -> Result<Vec<StormRow>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT incident_id, scope, started_at, ended_at, count FROM storms WHERE {sql_where} ORDER BY started_at"
    )))
    .bind(arg)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StormRow {
                incident_id: r.try_get(0)?,
                scope: r.try_get(1)?,
                started_at: r.try_get(2)?,
                ended_at: r.try_get(3)?,
                count: r.try_get(4)?,
            })
        })
        .collect()
}

#[async_trait]
impl Storms for PgStore {
    async fn triage(
        &self,
        id: &str,
        rules: TriageRules,
        now: Millis,
    ) -> Result<Triaged, StoreError> {
        let mut tx = self.pool.begin().await?;
        let out = triage(&mut tx, id, &rules, now).await?;
        tx.commit().await?;
        Ok(out)
    }
    async fn end_quiet_storms(
        &self,
        threshold: u32,
        window_ms: i64,
        now: Millis,
    ) -> Result<Vec<StormRow>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(7002)")
            .execute(&mut *tx)
            .await?;
        let mut out = Vec::new();
        for mut s in storms(
            &mut tx,
            "ended_at IS NULL AND started_at <= $1",
            now - window_ms,
        )
        .await?
        {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM incidents WHERE grouped_into = $1 AND opened_at >= $2",
            )
            .bind(&s.incident_id)
            .bind(now - window_ms)
            .fetch_one(&mut *tx)
            .await?;
            if n >= threshold as i64 {
                continue;
            }
            sqlx::query("UPDATE storms SET ended_at = $2 WHERE incident_id = $1")
                .bind(&s.incident_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query("SELECT 1 FROM incidents WHERE id = $1 FOR UPDATE")
                .bind(&s.incident_id)
                .execute(&mut *tx)
                .await?;
            let detail = json!({"count": s.count, "joined_in_window": n, "threshold": threshold});
            event(
                &mut tx,
                &s.incident_id,
                now,
                "storm_ended",
                "system",
                detail,
            )
            .await?;
            s.ended_at = Some(now);
            out.push(s);
        }
        tx.commit().await?;
        Ok(out)
    }
    async fn active_storms(&self) -> Result<Vec<StormRow>, StoreError> {
        let mut c = self.pool.acquire().await?;
        storms(&mut c, "ended_at IS NULL AND $1 = 0", 0).await
    }
    async fn storm_members(&self, storm_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM incidents WHERE grouped_into = $1 ORDER BY number")
                .bind(storm_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }
    async fn lift_inhibition(
        &self,
        source_id: &str,
        now: Millis,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM incidents WHERE inhibited_by = $1 AND status = 'triggered'
               AND EXISTS (SELECT 1 FROM occurrences o WHERE o.incident_id = incidents.id AND o.status = 'firing')
             ORDER BY id FOR UPDATE",
        )
        .bind(source_id)
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            sqlx::query(
                "UPDATE incidents SET inhibited_by = NULL, page_state = 'pending', updated_at = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            // Its escalation begins again from the first step, in a new round (new page
            // keys: the pages dropped while it was inhibited do not stand in for these).
            sqlx::query(
                "UPDATE escalations SET state = 'active', step = 0, pass = 0, round = round + 1, due_at = $2,
                     fired_step = NULL, fired_pass = NULL, fence = fence + 1, lease_owner = NULL, lease_until = NULL
                 WHERE incident_id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            event(
                &mut tx,
                id,
                now,
                "uninhibited",
                "system",
                json!({"by": source_id}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }
}
