//! Escalations and pages on SQLite (one node: claims never race, but leases and fences are
//! kept the same way as on PostgreSQL so the worker's rules are one).

use super::incidents::event;
use super::{SqliteStore, corrupt};
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;

const ESC: &str =
    "incident_id, policy_id, state, step, pass, round, fired_step, fired_pass, due_at,
    fence, first_page_at, first_ack_at, first_ack_step";
pub(super) const PAGE: &str = "key, incident_id, step, pass, round, person, method, address, reply_code, message_id, created_at,
    kind, note, not_before, hold_until, bundle_id";

fn esc(r: &Row<'_>) -> rusqlite::Result<(EscalationRow, String)> {
    Ok((
        EscalationRow {
            incident_id: r.get(0)?,
            policy_id: r.get(1)?,
            state: EscState::Done,
            step: r.get(3)?,
            pass: r.get(4)?,
            round: r.get(5)?,
            fired_step: r.get(6)?,
            fired_pass: r.get(7)?,
            due_at: r.get(8)?,
            fence: r.get(9)?,
            first_page_at: r.get(10)?,
            first_ack_at: r.get(11)?,
            first_ack_step: r.get(12)?,
        },
        r.get(2)?,
    ))
}

fn with_state((mut row, state): (EscalationRow, String)) -> Result<EscalationRow, StoreError> {
    row.state =
        EscState::parse(&state).ok_or_else(|| corrupt(format!("escalation state {state}")))?;
    Ok(row)
}

pub(super) fn page(r: &Row<'_>) -> rusqlite::Result<PageRow> {
    Ok(PageRow {
        key: r.get(0)?,
        incident_id: r.get(1)?,
        step: r.get(2)?,
        pass: r.get(3)?,
        round: r.get(4)?,
        person: r.get(5)?,
        method: r.get(6)?,
        address: r.get(7)?,
        reply_code: r.get(8)?,
        message_id: r.get(9)?,
        created_at: r.get(10)?,
        kind: r.get(11)?,
        note: r.get(12)?,
        not_before: r.get(13)?,
        hold_until: r.get(14)?,
        bundle_id: r.get(15)?,
    })
}

fn get(c: &Connection, id: &str) -> Result<Option<EscalationRow>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {ESC} FROM escalations WHERE incident_id = ?1"
    ))?
    .query_row([id], esc)
    .optional()?
    .map(with_state)
    .transpose()
}

fn claim(
    c: &Connection,
    owner: &str,
    now: Millis,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<EscalationRow>, StoreError> {
    let rows = c
        .prepare_cached(&format!(
            "UPDATE escalations SET lease_owner = ?1, lease_until = ?2 + ?3, fence = fence + 1
             WHERE incident_id IN (
               SELECT incident_id FROM escalations
               WHERE state <> 'done' AND due_at <= ?2 AND (lease_until IS NULL OR lease_until < ?2)
               ORDER BY due_at LIMIT ?4)
             RETURNING {ESC}"
        ))?
        .query_map(params![owner, now, lease_ms, limit as i64], esc)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(with_state).collect()
}

fn holds(c: &Connection, id: &str, fence: i64) -> Result<bool, StoreError> {
    Ok(
        c.prepare_cached("SELECT 1 FROM escalations WHERE incident_id = ?1 AND fence = ?2")?
            .query_row(params![id, fence], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

fn reserve(
    c: &Connection,
    id: &str,
    fence: i64,
    pages: Vec<PageRow>,
    since: Millis,
) -> Result<Option<Vec<PageRow>>, StoreError> {
    if !holds(c, id, fence)? {
        return Ok(None);
    }
    let Some(first) = pages.first() else {
        return Ok(Some(vec![]));
    };
    let known: Vec<PageRow> = c
        .prepare_cached(&format!(
            "SELECT {PAGE} FROM pages WHERE incident_id = ?1 AND step = ?2 AND pass = ?3 AND round = ?4 ORDER BY key"
        ))?
        .query_map(params![id, first.step, first.pass, first.round], page)?
        .collect::<Result<_, _>>()?;
    if !known.is_empty() {
        return Ok(Some(known));
    }
    let mut out = Vec::with_capacity(pages.len());
    for mut p in pages {
        if let Some(a) = &p.address {
            let same: Option<i64> = c
                .prepare_cached(
                    "SELECT reply_code FROM pages WHERE address = ?1 AND incident_id = ?2 AND created_at >= ?3
                       AND reply_code IS NOT NULL LIMIT 1",
                )?
                .query_row(params![a, id, since], |r| r.get(0))
                .optional()?;
            let used: Vec<i64> = c
                .prepare_cached(
                    "SELECT reply_code FROM pages WHERE address = ?1 AND created_at >= ?2 AND reply_code IS NOT NULL
                     UNION SELECT reply_code FROM bundles WHERE address = ?1 AND created_at >= ?2 AND reply_code IS NOT NULL",
                )?
                .query_map(params![a, since], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            p.reply_code = Some(rules::reply_code(same, &used));
        }
        c.prepare_cached(&format!(
            "INSERT OR IGNORE INTO pages ({PAGE})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, ?11, ?12, ?13, ?14, NULL)"
        ))?
        .execute(params![
            p.key,
            p.incident_id,
            p.step,
            p.pass,
            p.round,
            p.person,
            p.method,
            p.address,
            p.reply_code,
            p.created_at,
            p.kind,
            p.note,
            p.not_before,
            p.hold_until
        ])?;
        out.push(p);
    }
    Ok(Some(out))
}

fn advance(
    c: &Connection,
    id: &str,
    fence: i64,
    to: EscalationMove,
    fired: Fired,
    now: Millis,
) -> Result<bool, StoreError> {
    let Some(row) = get(c, id)? else {
        return Ok(false);
    };
    if row.fence != fence {
        record_messages(c, id, &fired.messages)?;
        return Ok(false);
    }
    let (state, step, pass, round, due) =
        rules::escalation_target(to, (row.step, row.pass, row.round));
    // The round fired is kept even when the policy ends with it (a later re-entry starts
    // the round after it).
    let (fs, fp, round) = match fired.at {
        Some((s, p, r)) => (Some(s), Some(p), round.max(r)),
        None => (row.fired_step, row.fired_pass, round),
    };
    let paged = !fired.messages.is_empty();
    c.prepare_cached(
        "UPDATE escalations SET state = ?2, step = ?3, pass = ?4, due_at = COALESCE(?5, due_at),
            fired_step = ?6, fired_pass = ?7, lease_owner = NULL, lease_until = NULL,
            first_page_at = CASE WHEN ?8 THEN COALESCE(first_page_at, ?9) ELSE first_page_at END,
            round = ?10
         WHERE incident_id = ?1",
    )?
    .execute(params![
        id, state, step, pass, due, fs, fp, paged, now, round
    ])?;
    record_messages(c, id, &fired.messages)?;
    if let Some(s) = fired.summary {
        event(c, id, now, "escalated", "system", s)?;
    }
    Ok(true)
}

fn record_messages(
    c: &Connection,
    id: &str,
    messages: &[(String, String)],
) -> Result<(), StoreError> {
    for (key, m) in messages {
        c.prepare_cached("UPDATE pages SET message_id = ?2 WHERE key = ?1")?
            .execute(params![key, m])?;
        c.prepare_cached(
            "INSERT OR IGNORE INTO incident_messages (incident_id, message_id, kind) VALUES (?1, ?2, 'page')",
        )?
        .execute(params![id, m])?;
    }
    Ok(())
}

fn set(
    c: &Connection,
    id: &str,
    to: EscalationMove,
    ack: bool,
    now: Millis,
) -> Result<bool, StoreError> {
    let Some(row) = get(c, id)? else {
        return Ok(false);
    };
    let (state, step, pass, round, due) =
        rules::escalation_target(to, (row.step, row.pass, row.round));
    c.prepare_cached(
        "UPDATE escalations SET state = ?2, step = ?3, pass = ?4, due_at = COALESCE(?5, due_at),
            fence = fence + 1, lease_owner = NULL, lease_until = NULL,
            first_ack_step = CASE WHEN ?6 AND first_ack_at IS NULL THEN fired_step ELSE first_ack_step END,
            first_ack_at = CASE WHEN ?6 THEN COALESCE(first_ack_at, ?7) ELSE first_ack_at END,
            round = ?8
         WHERE incident_id = ?1",
    )?
    .execute(params![id, state, step, pass, due, ack, now, round])?;
    Ok(true)
}

fn retrigger(
    c: &Connection,
    id: &str,
    actor: &str,
    reason: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let n = c.execute(
        "UPDATE incidents SET status = 'triggered', updated_at = ?2 WHERE id = ?1 AND status = 'acknowledged'",
        params![id, now],
    )?;
    if n > 0 {
        event(c, id, now, "retriggered", actor, json!({"reason": reason}))?;
    }
    Ok(n > 0)
}

fn for_reply(
    c: &Connection,
    address: &str,
    code: Option<i64>,
    since: Millis,
) -> Result<Option<PageRow>, StoreError> {
    let cols = PAGE
        .split(',')
        .map(|k| format!("p.{}", k.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(match code {
        Some(code) => c
            .prepare_cached(&format!(
                "SELECT {cols} FROM pages p WHERE p.address = ?1 AND p.reply_code = ?2 AND p.created_at >= ?3
                 ORDER BY p.created_at DESC LIMIT 1"
            ))?
            .query_row(params![address, code, since], page)
            .optional()?,
        None => c
            .prepare_cached(&format!(
                "SELECT {cols} FROM pages p JOIN incidents i ON i.id = p.incident_id
                 WHERE p.address = ?1 AND p.created_at >= ?2 AND i.status = 'triggered'
                   AND (p.message_id IS NOT NULL OR (p.bundle_id IS NOT NULL AND p.bundle_id <> '-')) AND i.grouped_into IS NULL
                 ORDER BY p.created_at DESC LIMIT 1"
            ))?
            .query_row(params![address, since], page)
            .optional()?,
    })
}

fn times(c: &Connection, since: Millis, until: Millis) -> Result<Vec<IncidentTimes>, StoreError> {
    Ok(c
        .prepare_cached(
            "SELECT i.service, i.severity, i.opened_at, e.first_page_at, e.first_ack_at, e.first_ack_step, i.resolved_at
             FROM incidents i LEFT JOIN escalations e ON e.incident_id = i.id
             WHERE i.opened_at >= ?1 AND i.opened_at < ?2 AND i.source <> 'drill'",
        )?
        .query_map(params![since, until], |r| {
            Ok(IncidentTimes {
                service: r.get(0)?,
                severity: r.get(1)?,
                opened_at: r.get(2)?,
                first_page_at: r.get(3)?,
                first_ack_at: r.get(4)?,
                first_ack_step: r.get(5)?,
                resolved_at: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?)
}

#[async_trait]
impl Escalations for SqliteStore {
    async fn start_escalation(
        &self,
        id: &str,
        policy: &str,
        due_at: Millis,
    ) -> Result<bool, StoreError> {
        let (id, policy) = (id.to_string(), policy.to_string());
        self.write(move |c| {
            Ok(c.prepare_cached(
                "INSERT OR IGNORE INTO escalations (incident_id, policy_id, state, step, pass, round, due_at, fence)
                 VALUES (?1, ?2, 'active', 0, 0, 0, ?3, 0)",
            )?
            .execute(params![id, policy, due_at])?
                > 0)
        })
        .await
    }
    async fn get_escalation(&self, id: &str) -> Result<Option<EscalationRow>, StoreError> {
        let id = id.to_string();
        self.read(move |c| get(c, &id)).await
    }
    async fn claim_escalations(
        &self,
        owner: &str,
        now: Millis,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<EscalationRow>, StoreError> {
        let owner = owner.to_string();
        self.write(move |c| claim(c, &owner, now, lease_ms, limit))
            .await
    }
    async fn reserve_pages(
        &self,
        id: &str,
        fence: i64,
        pages: Vec<PageRow>,
        since: Millis,
    ) -> Result<Option<Vec<PageRow>>, StoreError> {
        let id = id.to_string();
        self.write(move |c| reserve(c, &id, fence, pages, since))
            .await
    }
    async fn advance_escalation(
        &self,
        id: &str,
        fence: i64,
        to: EscalationMove,
        fired: Fired,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| advance(c, &id, fence, to, fired, now))
            .await
    }
    async fn set_escalation(
        &self,
        id: &str,
        to: EscalationMove,
        ack: bool,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |c| set(c, &id, to, ack, now)).await
    }
    async fn retrigger_incident(
        &self,
        id: &str,
        actor: &str,
        reason: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let (id, actor, reason) = (id.to_string(), actor.to_string(), reason.to_string());
        self.write(move |c| retrigger(c, &id, &actor, &reason, now))
            .await
    }
    async fn pages_of(&self, id: &str) -> Result<Vec<PageRow>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {PAGE} FROM pages WHERE incident_id = ?1 AND kind = 'page' ORDER BY created_at, key"
            ))?
            .query_map([id], page)?
            .collect::<Result<_, _>>()?)
        })
        .await
    }
    async fn page_for_reply(
        &self,
        address: &str,
        code: Option<i64>,
        since: Millis,
    ) -> Result<Option<PageRow>, StoreError> {
        let address = address.to_string();
        self.read(move |c| for_reply(c, &address, code, since))
            .await
    }
    async fn last_page_to(
        &self,
        address: &str,
        since: Millis,
    ) -> Result<Option<PageRow>, StoreError> {
        let a = address.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {PAGE} FROM pages WHERE address = ?1 AND created_at >= ?2 ORDER BY created_at DESC LIMIT 1"
            ))?
            .query_row(params![a, since], page)
            .optional()?)
        })
        .await
    }
    async fn page_of_message(&self, message_id: &str) -> Result<Option<PageRow>, StoreError> {
        let m = message_id.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {PAGE} FROM pages WHERE message_id = ?1 LIMIT 1"
            ))?
            .query_row([m], page)
            .optional()?)
        })
        .await
    }
    async fn escalations_using(&self, policy_id: &str) -> Result<i64, StoreError> {
        let p = policy_id.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT COUNT(*) FROM escalations WHERE policy_id = ?1 AND state <> 'done'",
            )?
            .query_row([p], |r| r.get(0))?)
        })
        .await
    }
    async fn spend_link(&self, nonce: &str, now: Millis) -> Result<bool, StoreError> {
        let n = nonce.to_string();
        self.write(move |c| {
            Ok(c.prepare_cached(
                "INSERT OR IGNORE INTO spent_links (nonce, spent_at) VALUES (?1, ?2)",
            )?
            .execute(params![n, now])?
                > 0)
        })
        .await
    }
    async fn incident_times(
        &self,
        since: Millis,
        until: Millis,
    ) -> Result<Vec<IncidentTimes>, StoreError> {
        self.read(move |c| times(c, since, until)).await
    }
}
