//! Approval requests and console sessions on PostgreSQL. A decision is one conditional
//! UPDATE (`WHERE status = 'pending'`): of two nodes approving at once, one wins and only it
//! executes.

use super::PgStore;
use super::operations::{audit, entry};
use crate::store::*;
use async_trait::async_trait;
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

const COLUMNS: &str = "id, action, params, summary, reason, requester, requester_name, status, \
     created_at, expires_at, decided_by, decided_at, decision_note, result, break_glass, \
     reviewed_by, reviewed_at";

fn record(r: &PgRow) -> Result<ApprovalRecord, StoreError> {
    let json = |s: Option<String>| {
        s.map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(corrupt)
    };
    Ok(ApprovalRecord {
        id: r.try_get(0)?,
        action: r.try_get(1)?,
        params: json(r.try_get(2)?)?.unwrap_or_default(),
        summary: r.try_get(3)?,
        reason: r.try_get(4)?,
        requester: r.try_get(5)?,
        requester_name: r.try_get(6)?,
        status: r.try_get(7)?,
        created_at: r.try_get(8)?,
        expires_at: r.try_get(9)?,
        decided_by: r.try_get(10)?,
        decided_at: r.try_get(11)?,
        note: r.try_get(12)?,
        result: json(r.try_get(13)?)?,
        break_glass: r.try_get::<i64, _>(14)? != 0,
        reviewed_by: r.try_get(15)?,
        reviewed_at: r.try_get(16)?,
    })
}

#[async_trait]
impl Console for PgStore {
    async fn create_approval(&self, a: ApprovalRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO approvals ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        )))
        .bind(&a.id)
        .bind(&a.action)
        .bind(a.params.to_string())
        .bind(&a.summary)
        .bind(&a.reason)
        .bind(&a.requester)
        .bind(&a.requester_name)
        .bind(&a.status)
        .bind(a.created_at)
        .bind(a.expires_at)
        .bind(&a.decided_by)
        .bind(a.decided_at)
        .bind(&a.note)
        .bind(a.result.as_ref().map(|r| r.to_string()))
        .bind(a.break_glass as i64)
        .bind(&a.reviewed_by)
        .bind(a.reviewed_at)
        .execute(&mut *tx)
        .await?;
        audit(&mut tx, &rules::approval_created(&a)).await?;
        tx.commit().await?;
        Ok(())
    }
    async fn approvals(
        &self,
        status: Option<String>,
        limit: usize,
        after: Option<String>,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM approvals
             WHERE ($1::TEXT IS NULL OR status = $1) AND ($2::TEXT IS NULL OR id < $2)
             ORDER BY id COLLATE \"C\" DESC LIMIT $3"
        )))
        .bind(status)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }
    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM approvals WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(record)
        .transpose()
    }
    async fn decide_approval(
        &self,
        id: &str,
        to: &str,
        by: &str,
        note: Option<String>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE approvals SET status = $2, decided_by = $3, decided_at = $4, decision_note = $5
             WHERE id = $1 AND status = 'pending' RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(to)
        .bind(by)
        .bind(now)
        .bind(&note)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let a = record(&row)?;
        audit(&mut tx, &rules::approval_decided(&a, to, by, now)).await?;
        tx.commit().await?;
        Ok(true)
    }
    async fn finish_approval(
        &self,
        id: &str,
        status: &str,
        result: serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE approvals SET status = $2, result = $3 WHERE id = $1 AND status = 'approved'",
        )
        .bind(id)
        .bind(status)
        .bind(result.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    async fn review_approval(&self, id: &str, by: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE approvals SET reviewed_by = $2, reviewed_at = $3
             WHERE id = $1 AND break_glass = 1 AND reviewed_by IS NULL",
        )
        .bind(id)
        .bind(by)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        audit(
            &mut tx,
            &entry(
                now,
                by,
                "approval.review",
                id,
                None,
                Some(json!({ "reviewed": true })),
                None,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_session(&self, s: SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, key_hash, csrf_hash, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.token_hash)
        .bind(&s.key_hash)
        .bind(&s.csrf_hash)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    async fn session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let r: Option<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT token_hash, key_hash, csrf_hash, created_at, expires_at FROM console_sessions
             WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.map(
            |(token_hash, key_hash, csrf_hash, created_at, expires_at)| SessionRecord {
                token_hash,
                key_hash,
                csrf_hash,
                created_at,
                expires_at,
            },
        ))
    }
    async fn end_session(&self, token_hash: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1 OR expires_at <= $2")
            .bind(token_hash)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn status_sample(&self, samples: Vec<StatusSample>) -> Result<(), StoreError> {
        super::status::sample(&self.pool, &samples).await
    }
    async fn status_days(&self, since: String) -> Result<Vec<StatusDay>, StoreError> {
        super::status::days(&self.pool, &since).await
    }
    async fn status_incidents(&self, limit: usize) -> Result<Vec<StatusIncident>, StoreError> {
        super::status::incidents(&self.pool, limit).await
    }
    async fn post_status_incident(&self, i: StatusIncident) -> Result<(), StoreError> {
        super::status::post_incident(&self.pool, &i).await
    }
    async fn post_status_update(
        &self,
        incident: &str,
        u: StatusUpdate,
        components: Option<serde_json::Value>,
    ) -> Result<bool, StoreError> {
        super::status::post_update(&self.pool, incident, &u, components.as_ref()).await
    }
}
