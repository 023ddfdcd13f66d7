//! Escalations and pages on PostgreSQL. Due rows are claimed with `FOR UPDATE SKIP LOCKED`
//! (two nodes never take the same row), each claim raising the row's fence; a firing's
//! pages and its move are written only while its fence is the row's. Reply codes for one
//! phone are chosen under a transaction advisory lock on the phone.

use super::incidents::event;
use super::{PgStore, corrupt};
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

const ESC: &str =
    "incident_id, policy_id, state, step, pass, round, fired_step, fired_pass, due_at,
    fence, first_page_at, first_ack_at, first_ack_step";
pub(super) const PAGE: &str = "key, incident_id, step, pass, round, person, method, address, reply_code, message_id, created_at,
    kind, note, not_before, hold_until, bundle_id";

fn esc(r: &PgRow) -> Result<EscalationRow, StoreError> {
    let state: String = r.try_get(2)?;
    Ok(EscalationRow {
        incident_id: r.try_get(0)?,
        policy_id: r.try_get(1)?,
        state: EscState::parse(&state)
            .ok_or_else(|| corrupt(format!("escalation state {state}")))?,
        step: r.try_get(3)?,
        pass: r.try_get(4)?,
        round: r.try_get(5)?,
        fired_step: r.try_get(6)?,
        fired_pass: r.try_get(7)?,
        due_at: r.try_get(8)?,
        fence: r.try_get(9)?,
        first_page_at: r.try_get(10)?,
        first_ack_at: r.try_get(11)?,
        first_ack_step: r.try_get(12)?,
    })
}

pub(super) fn page(r: &PgRow) -> Result<PageRow, StoreError> {
    Ok(PageRow {
        key: r.try_get(0)?,
        incident_id: r.try_get(1)?,
        step: r.try_get(2)?,
        pass: r.try_get(3)?,
        round: r.try_get(4)?,
        person: r.try_get(5)?,
        method: r.try_get(6)?,
        address: r.try_get(7)?,
        reply_code: r.try_get(8)?,
        message_id: r.try_get(9)?,
        created_at: r.try_get(10)?,
        kind: r.try_get(11)?,
        note: r.try_get(12)?,
        not_before: r.try_get(13)?,
        hold_until: r.try_get(14)?,
        bundle_id: r.try_get(15)?,
    })
}

async fn locked(c: &mut PgConnection, id: &str) -> Result<Option<EscalationRow>, StoreError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ESC} FROM escalations WHERE incident_id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    .as_ref()
    .map(esc)
    .transpose()
}

pub(super) async fn code_for(
    c: &mut PgConnection,
    address: &str,
    id: &str,
    since: Millis,
) -> Result<i64, StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('page-code:' || $1, 0))")
        .bind(address)
        .execute(&mut *c)
        .await?;
    let same: Option<i64> = sqlx::query_scalar(
        "SELECT reply_code FROM pages WHERE address = $1 AND incident_id = $2 AND created_at >= $3
           AND reply_code IS NOT NULL LIMIT 1",
    )
    .bind(address)
    .bind(id)
    .bind(since)
    .fetch_optional(&mut *c)
    .await?;
    let used: Vec<i64> = sqlx::query_scalar(
        "SELECT reply_code FROM pages WHERE address = $1 AND created_at >= $2 AND reply_code IS NOT NULL
         UNION SELECT reply_code FROM bundles WHERE address = $1 AND created_at >= $2 AND reply_code IS NOT NULL",
    )
    .bind(address)
    .bind(since)
    .fetch_all(&mut *c)
    .await?;
    Ok(rules::reply_code(same, &used))
}

async fn record_messages(
    c: &mut PgConnection,
    id: &str,
    messages: &[(String, String)],
) -> Result<(), StoreError> {
    for (key, m) in messages {
        sqlx::query("UPDATE pages SET message_id = $2 WHERE key = $1")
            .bind(key)
            .bind(m)
            .execute(&mut *c)
            .await?;
        sqlx::query(
            "INSERT INTO incident_messages (incident_id, message_id, kind) VALUES ($1, $2, 'page')
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(m)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl Escalations for PgStore {
    async fn start_escalation(
        &self,
        id: &str,
        policy: &str,
        due_at: Millis,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO escalations (incident_id, policy_id, state, step, pass, round, due_at, fence)
             VALUES ($1, $2, 'active', 0, 0, 0, $3, 0) ON CONFLICT (incident_id) DO NOTHING",
        )
        .bind(id)
        .bind(policy)
        .bind(due_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn get_escalation(&self, id: &str) -> Result<Option<EscalationRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ESC} FROM escalations WHERE incident_id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(esc)
        .transpose()
    }

    async fn claim_escalations(
        &self,
        owner: &str,
        now: Millis,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<EscalationRow>, StoreError> {
        let cols = ESC
            .split(',')
            .map(|k| format!("e.{}", k.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE escalations e SET lease_owner = $1, lease_until = $2 + $3, fence = e.fence + 1
             FROM (SELECT incident_id FROM escalations
                   WHERE state <> 'done' AND due_at <= $2 AND (lease_until IS NULL OR lease_until < $2)
                   ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) d
             WHERE e.incident_id = d.incident_id
             RETURNING {cols}"
        )))
        .bind(owner)
        .bind(now)
        .bind(lease_ms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(esc)
        .collect()
    }

    async fn reserve_pages(
        &self,
        id: &str,
        fence: i64,
        pages: Vec<PageRow>,
        since: Millis,
    ) -> Result<Option<Vec<PageRow>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        match locked(&mut tx, id).await? {
            Some(r) if r.fence == fence => {}
            _ => return Ok(None),
        }
        let Some(first) = pages.first() else {
            return Ok(Some(vec![]));
        };
        let known: Vec<PageRow> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PAGE} FROM pages WHERE incident_id = $1 AND step = $2 AND pass = $3 AND round = $4 ORDER BY key"
        )))
        .bind(id)
        .bind(first.step)
        .bind(first.pass)
        .bind(first.round)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(page)
        .collect::<Result<_, _>>()?;
        if !known.is_empty() {
            return Ok(Some(known));
        }
        // Phones are locked in one order (two incidents paging the same phones never wait
        // on each other crosswise).
        let mut phones: Vec<String> = pages.iter().filter_map(|p| p.address.clone()).collect();
        phones.sort();
        phones.dedup();
        for a in &phones {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('page-code:' || $1, 0))")
                .bind(a)
                .execute(&mut *tx)
                .await?;
        }
        let mut out = Vec::with_capacity(pages.len());
        for mut p in pages {
            if let Some(a) = p.address.clone() {
                p.reply_code = Some(code_for(&mut tx, &a, id, since).await?);
            }
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO pages ({PAGE})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, $12, $13, $14, NULL)
                 ON CONFLICT (key) DO NOTHING"
            )))
            .bind(&p.key)
            .bind(&p.incident_id)
            .bind(p.step)
            .bind(p.pass)
            .bind(p.round)
            .bind(&p.person)
            .bind(&p.method)
            .bind(&p.address)
            .bind(p.reply_code)
            .bind(p.created_at)
            .bind(&p.kind)
            .bind(&p.note)
            .bind(p.not_before)
            .bind(p.hold_until)
            .execute(&mut *tx)
            .await?;
            out.push(p);
        }
        tx.commit().await?;
        Ok(Some(out))
    }

    async fn advance_escalation(
        &self,
        id: &str,
        fence: i64,
        to: EscalationMove,
        fired: Fired,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The incident first (as acknowledging locks it), then its escalation: the timeline
        // numbering below never races a person's answer.
        sqlx::query("SELECT 1 FROM incidents WHERE id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let row = match locked(&mut tx, id).await? {
            Some(r) if r.fence == fence => r,
            Some(_) => {
                record_messages(&mut tx, id, &fired.messages).await?;
                tx.commit().await?;
                return Ok(false);
            }
            None => return Ok(false),
        };
        let (state, step, pass, round, due) =
            rules::escalation_target(to, (row.step, row.pass, row.round));
        // The round fired is kept even when the policy ends with it.
        let (fs, fp, round) = match fired.at {
            Some((s, p, r)) => (Some(s), Some(p), round.max(r)),
            None => (row.fired_step, row.fired_pass, round),
        };
        sqlx::query(
            "UPDATE escalations SET state = $2, step = $3, pass = $4, due_at = COALESCE($5, due_at),
                fired_step = $6, fired_pass = $7, lease_owner = NULL, lease_until = NULL,
                first_page_at = CASE WHEN $8 THEN COALESCE(first_page_at, $9) ELSE first_page_at END,
                round = $10
             WHERE incident_id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(step)
        .bind(pass)
        .bind(due)
        .bind(fs)
        .bind(fp)
        .bind(!fired.messages.is_empty())
        .bind(now)
        .bind(round)
        .execute(&mut *tx)
        .await?;
        record_messages(&mut tx, id, &fired.messages).await?;
        if let Some(s) = fired.summary {
            event(&mut tx, id, now, "escalated", "system", s).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn set_escalation(
        &self,
        id: &str,
        to: EscalationMove,
        ack: bool,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = locked(&mut tx, id).await? else {
            return Ok(false);
        };
        let (state, step, pass, round, due) =
            rules::escalation_target(to, (row.step, row.pass, row.round));
        sqlx::query(
            "UPDATE escalations SET state = $2, step = $3, pass = $4, due_at = COALESCE($5, due_at),
                fence = fence + 1, lease_owner = NULL, lease_until = NULL,
                first_ack_step = CASE WHEN $6 AND first_ack_at IS NULL THEN fired_step ELSE first_ack_step END,
                first_ack_at = CASE WHEN $6 THEN COALESCE(first_ack_at, $7) ELSE first_ack_at END,
                round = $8
             WHERE incident_id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(step)
        .bind(pass)
        .bind(due)
        .bind(ack)
        .bind(now)
        .bind(round)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn retrigger_incident(
        &self,
        id: &str,
        actor: &str,
        reason: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE incidents SET status = 'triggered', updated_at = $2 WHERE id = $1 AND status = 'acknowledged'",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            event(
                &mut tx,
                id,
                now,
                "retriggered",
                actor,
                json!({"reason": reason}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn pages_of(&self, id: &str) -> Result<Vec<PageRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PAGE} FROM pages WHERE incident_id = $1 AND kind = 'page' ORDER BY created_at, key"
        )))
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(page)
        .collect()
    }

    async fn page_for_reply(
        &self,
        address: &str,
        code: Option<i64>,
        since: Millis,
    ) -> Result<Option<PageRow>, StoreError> {
        let cols = PAGE
            .split(',')
            .map(|k| format!("p.{}", k.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let q = match code {
            Some(_) => format!(
                "SELECT {cols} FROM pages p WHERE p.address = $1 AND p.reply_code = $2 AND p.created_at >= $3
                 ORDER BY p.created_at DESC LIMIT 1"
            ),
            None => format!(
                "SELECT {cols} FROM pages p JOIN incidents i ON i.id = p.incident_id
                 WHERE p.address = $1 AND ($2::BIGINT IS NULL) AND p.created_at >= $3 AND i.status = 'triggered'
                   AND (p.message_id IS NOT NULL OR (p.bundle_id IS NOT NULL AND p.bundle_id <> '-')) AND i.grouped_into IS NULL
                 ORDER BY p.created_at DESC LIMIT 1"
            ),
        };
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(address)
            .bind(code)
            .bind(since)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(page)
            .transpose()
    }

    async fn last_page_to(
        &self,
        address: &str,
        since: Millis,
    ) -> Result<Option<PageRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PAGE} FROM pages WHERE address = $1 AND created_at >= $2 ORDER BY created_at DESC LIMIT 1"
        )))
        .bind(address)
        .bind(since)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(page)
        .transpose()
    }

    async fn page_of_message(&self, message_id: &str) -> Result<Option<PageRow>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PAGE} FROM pages WHERE message_id = $1 LIMIT 1"
        )))
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(page)
        .transpose()
    }

    async fn escalations_using(&self, policy_id: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM escalations WHERE policy_id = $1 AND state <> 'done'",
        )
        .bind(policy_id)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn spend_link(&self, nonce: &str, now: Millis) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO spent_links (nonce, spent_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(nonce)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn incident_times(
        &self,
        since: Millis,
        until: Millis,
    ) -> Result<Vec<IncidentTimes>, StoreError> {
        sqlx::query(
            "SELECT i.service, i.severity, i.opened_at, e.first_page_at, e.first_ack_at, e.first_ack_step, i.resolved_at
             FROM incidents i LEFT JOIN escalations e ON e.incident_id = i.id
             WHERE i.opened_at >= $1 AND i.opened_at < $2 AND i.source <> 'drill'",
        )
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(IncidentTimes {
                service: r.try_get(0)?,
                severity: r.try_get(1)?,
                opened_at: r.try_get(2)?,
                first_page_at: r.try_get(3)?,
                first_ack_at: r.try_get(4)?,
                first_ack_step: r.try_get(5)?,
                resolved_at: r.try_get(6)?,
            })
        })
        .collect()
    }
}
