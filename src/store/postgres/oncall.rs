//! On-call documents on PostgreSQL.

use super::operations::{audit, entry};
use super::{PgStore, corrupt};
use crate::store::*;
use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::PgRow;

/// The columns [`record`] reads, in order.
const COLUMNS: &str = "id, body, version, created_at, updated_at";

fn record(r: &PgRow) -> Result<DocRecord, StoreError> {
    Ok(DocRecord {
        id: r.try_get(0)?,
        body: serde_json::from_str(&r.try_get::<String, _>(1)?).map_err(corrupt)?,
        version: r.try_get(2)?,
        created_at: r.try_get(3)?,
        updated_at: r.try_get(4)?,
    })
}

#[async_trait]
impl OnCall for PgStore {
    async fn get_doc(&self, kind: DocKind, id: &str) -> Result<Option<DocRecord>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM oncall_documents WHERE kind = $1 AND id = $2"
        )))
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(record)
        .transpose()
    }

    async fn list_docs(
        &self,
        kind: DocKind,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DocRecord>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM oncall_documents
             WHERE kind = $1 AND ($2::TEXT IS NULL OR id > $2) ORDER BY id LIMIT $3"
        )))
        .bind(kind.as_str())
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(record)
        .collect()
    }

    async fn put_doc(
        &self,
        kind: DocKind,
        id: &str,
        body: Value,
        expect: Expect,
        actor: &str,
        now: i64,
    ) -> Result<Option<DocRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let before = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM oncall_documents WHERE kind = $1 AND id = $2 FOR UPDATE"
        )))
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(record)
        .transpose()?;
        let Some((version, created_at)) = crate::store::rules::versioned_write(
            expect,
            before.as_ref().map(|b| (b.version, b.created_at)),
            now,
        ) else {
            return Ok(None);
        };
        // Two creators at once: the second finds the row made and writes nothing.
        let written = sqlx::query(
            "INSERT INTO oncall_documents (kind, id, body, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, version = excluded.version,
                 updated_at = excluded.updated_at
             WHERE oncall_documents.version = $4 - 1",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(body.to_string())
        .bind(version)
        .bind(created_at)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if written == 0 {
            return Ok(None);
        }
        let changed = crate::store::rules::changed_keys(before.as_ref().map(|b| &b.body), &body);
        let verb = if before.is_some() { "update" } else { "create" };
        audit(
            &mut tx,
            &entry(
                now,
                actor,
                &format!("{}.{verb}", kind.as_str()),
                id,
                None,
                Some(json!({"changed": changed, "version": version})),
                None,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(DocRecord {
            id: id.into(),
            body,
            version,
            created_at,
            updated_at: now,
        }))
    }

    async fn delete_doc(
        &self,
        kind: DocKind,
        id: &str,
        actor: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM oncall_documents WHERE kind = $1 AND id = $2")
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Ok(false);
        }
        let action = format!("{}.delete", kind.as_str());
        audit(&mut tx, &entry(now, actor, &action, id, None, None, None)).await?;
        tx.commit().await?;
        Ok(true)
    }
}
