//! Approval requests and console sessions on SQLite.

use super::SqliteStore;
use super::operations::audit;
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;

const COLUMNS: &str = "id, action, params, summary, reason, requester, requester_name, status, \
     created_at, expires_at, decided_by, decided_at, decision_note, result, break_glass, \
     reviewed_by, reviewed_at";

fn row(r: &Row<'_>) -> rusqlite::Result<(ApprovalRecord, String, Option<String>)> {
    Ok((
        ApprovalRecord {
            id: r.get(0)?,
            action: r.get(1)?,
            params: serde_json::Value::Null,
            summary: r.get(3)?,
            reason: r.get(4)?,
            requester: r.get(5)?,
            requester_name: r.get(6)?,
            status: r.get(7)?,
            created_at: r.get(8)?,
            expires_at: r.get(9)?,
            decided_by: r.get(10)?,
            decided_at: r.get(11)?,
            note: r.get(12)?,
            result: None,
            break_glass: r.get::<_, i64>(14)? != 0,
            reviewed_by: r.get(15)?,
            reviewed_at: r.get(16)?,
        },
        r.get(2)?,
        r.get(13)?,
    ))
}

fn record(
    (mut a, params, result): (ApprovalRecord, String, Option<String>),
) -> Result<ApprovalRecord, StoreError> {
    a.params = serde_json::from_str(&params).map_err(corrupt)?;
    a.result = result
        .map(|r| serde_json::from_str(&r))
        .transpose()
        .map_err(corrupt)?;
    Ok(a)
}

fn one(c: &Connection, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"))?
        .query_row([id], row)
        .optional()?
        .map(record)
        .transpose()
}

fn create(c: &Connection, a: &ApprovalRecord) -> Result<(), StoreError> {
    c.execute(
        &format!(
            "INSERT INTO approvals ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
        ),
        params![
            a.id,
            a.action,
            a.params.to_string(),
            a.summary,
            a.reason,
            a.requester,
            a.requester_name,
            a.status,
            a.created_at,
            a.expires_at,
            a.decided_by,
            a.decided_at,
            a.note,
            a.result.as_ref().map(|r| r.to_string()),
            a.break_glass as i64,
            a.reviewed_by,
            a.reviewed_at
        ],
    )?;
    audit(c, &rules::approval_created(a))
}

fn list(
    c: &Connection,
    status: Option<&str>,
    limit: usize,
    after: Option<&str>,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let rows = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM approvals
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR id < ?2)
             ORDER BY id DESC LIMIT ?3"
        ))?
        .query_map(params![status, after, limit as i64], row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(record).collect()
}

fn decide(
    c: &Connection,
    id: &str,
    to: &str,
    by: &str,
    note: Option<&str>,
    now: Millis,
) -> Result<bool, StoreError> {
    let n = c.execute(
        "UPDATE approvals SET status = ?2, decided_by = ?3, decided_at = ?4, decision_note = ?5
         WHERE id = ?1 AND status = 'pending'",
        params![id, to, by, now, note],
    )?;
    if n == 0 {
        return Ok(false);
    }
    if let Some(a) = one(c, id)? {
        audit(c, &rules::approval_decided(&a, to, by, now))?;
    }
    Ok(true)
}

fn finish(
    c: &Connection,
    id: &str,
    status: &str,
    result: &serde_json::Value,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE approvals SET status = ?2, result = ?3 WHERE id = ?1 AND status = 'approved'",
        params![id, status, result.to_string()],
    )?;
    Ok(())
}

fn review(c: &Connection, id: &str, by: &str, now: Millis) -> Result<bool, StoreError> {
    let n = c.execute(
        "UPDATE approvals SET reviewed_by = ?2, reviewed_at = ?3
         WHERE id = ?1 AND break_glass = 1 AND reviewed_by IS NULL",
        params![id, by, now],
    )?;
    if n == 0 {
        return Ok(false);
    }
    audit(
        c,
        &AuditEntry {
            id: 0,
            at: now,
            actor: by.into(),
            action: "approval.review".into(),
            target: id.into(),
            before: None,
            after: Some(json!({ "reviewed": true })),
            reason: None,
        },
    )?;
    Ok(true)
}

#[async_trait]
impl Console for SqliteStore {
    async fn create_approval(&self, a: ApprovalRecord) -> Result<(), StoreError> {
        self.write(move |c| create(c, &a)).await
    }
    async fn approvals(
        &self,
        status: Option<String>,
        limit: usize,
        after: Option<String>,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.read(move |c| list(c, status.as_deref(), limit, after.as_deref()))
            .await
    }
    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |c| one(c, &id)).await
    }
    async fn decide_approval(
        &self,
        id: &str,
        to: &str,
        by: &str,
        note: Option<String>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (id, to, by) = (id.to_string(), to.to_string(), by.to_string());
        self.write(move |c| decide(c, &id, &to, &by, note.as_deref(), now))
            .await
    }
    async fn finish_approval(
        &self,
        id: &str,
        status: &str,
        result: serde_json::Value,
    ) -> Result<(), StoreError> {
        let (id, status) = (id.to_string(), status.to_string());
        self.write(move |c| finish(c, &id, &status, &result)).await
    }
    async fn review_approval(&self, id: &str, by: &str, now: i64) -> Result<bool, StoreError> {
        let (id, by) = (id.to_string(), by.to_string());
        self.write(move |c| review(c, &id, &by, now)).await
    }

    async fn create_session(&self, s: SessionRecord) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO console_sessions (token_hash, key_hash, csrf_hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.token_hash, s.key_hash, s.csrf_hash, s.created_at, s.expires_at],
            )?;
            Ok(())
        })
        .await
    }
    async fn session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let h = token_hash.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT token_hash, key_hash, csrf_hash, created_at, expires_at FROM console_sessions
                 WHERE token_hash = ?1 AND expires_at > ?2",
            )?
            .query_row(params![h, now], |r| {
                Ok(SessionRecord {
                    token_hash: r.get(0)?,
                    key_hash: r.get(1)?,
                    csrf_hash: r.get(2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            })
            .optional()?)
        })
        .await
    }
    async fn end_session(&self, token_hash: &str, now: i64) -> Result<(), StoreError> {
        let h = token_hash.to_string();
        self.write(move |c| {
            c.execute(
                "DELETE FROM console_sessions WHERE token_hash = ?1 OR expires_at <= ?2",
                params![h, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn status_sample(&self, samples: Vec<StatusSample>) -> Result<(), StoreError> {
        self.write(move |c| super::status::sample(c, &samples))
            .await
    }
    async fn status_days(&self, since: String) -> Result<Vec<StatusDay>, StoreError> {
        self.read(move |c| super::status::days(c, &since)).await
    }
    async fn status_incidents(&self, limit: usize) -> Result<Vec<StatusIncident>, StoreError> {
        self.read(move |c| super::status::incidents(c, limit)).await
    }
    async fn post_status_incident(&self, i: StatusIncident) -> Result<(), StoreError> {
        self.write(move |c| super::status::post_incident(c, &i))
            .await
    }
    async fn post_status_update(
        &self,
        incident: &str,
        u: StatusUpdate,
        components: Option<serde_json::Value>,
    ) -> Result<bool, StoreError> {
        let incident = incident.to_string();
        self.write(move |c| super::status::post_update(c, &incident, &u, components.as_ref()))
            .await
    }
}
