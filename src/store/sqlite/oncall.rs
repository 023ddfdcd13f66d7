//! On-call documents on SQLite.

use super::operations::audit;
use super::{SqliteStore, corrupt};
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Value, json};

const COLUMNS: &str = "id, body, version, created_at, updated_at";

type Raw = (String, String, i64, i64, i64);

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn record((id, body, version, created_at, updated_at): Raw) -> Result<DocRecord, StoreError> {
    Ok(DocRecord {
        id,
        body: serde_json::from_str(&body).map_err(corrupt)?,
        version,
        created_at,
        updated_at,
    })
}

fn get(c: &Connection, kind: DocKind, id: &str) -> Result<Option<DocRecord>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM oncall_documents WHERE kind = ?1 AND id = ?2"
    ))?
    .query_row(params![kind.as_str(), id], raw)
    .optional()?
    .map(record)
    .transpose()
}

fn list(
    c: &Connection,
    kind: DocKind,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<DocRecord>, StoreError> {
    let rows: Vec<Raw> = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM oncall_documents WHERE kind = ?1 AND (?2 IS NULL OR id > ?2)
             ORDER BY id LIMIT ?3"
        ))?
        .query_map(params![kind.as_str(), after, limit as i64], raw)?
        .collect::<Result<_, _>>()?;
    rows.into_iter().map(record).collect()
}

fn note(
    c: &Connection,
    now: Millis,
    actor: &str,
    action: String,
    id: &str,
    after: Option<Value>,
) -> Result<(), StoreError> {
    audit(
        c,
        &AuditEntry {
            id: 0,
            at: now,
            actor: actor.into(),
            action,
            target: id.into(),
            before: None,
            after,
            reason: None,
        },
    )
}

fn put(
    c: &Connection,
    kind: DocKind,
    id: &str,
    body: Value,
    expect: Expect,
    actor: &str,
    now: Millis,
) -> Result<Option<DocRecord>, StoreError> {
    let before = get(c, kind, id)?;
    let Some((version, created_at)) = crate::store::rules::versioned_write(
        expect,
        before.as_ref().map(|b| (b.version, b.created_at)),
        now,
    ) else {
        return Ok(None);
    };
    c.prepare_cached(
        "INSERT INTO oncall_documents (kind, id, body, version, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, version = excluded.version,
                                              updated_at = excluded.updated_at",
    )?
    .execute(params![
        kind.as_str(),
        id,
        body.to_string(),
        version,
        created_at,
        now
    ])?;
    let changed = crate::store::rules::changed_keys(before.as_ref().map(|b| &b.body), &body);
    let verb = if before.is_some() { "update" } else { "create" };
    note(
        c,
        now,
        actor,
        format!("{}.{verb}", kind.as_str()),
        id,
        Some(json!({"changed": changed, "version": version})),
    )?;
    Ok(Some(DocRecord {
        id: id.into(),
        body,
        version,
        created_at,
        updated_at: now,
    }))
}

fn delete(
    c: &Connection,
    kind: DocKind,
    id: &str,
    actor: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let gone = c
        .prepare_cached("DELETE FROM oncall_documents WHERE kind = ?1 AND id = ?2")?
        .execute(params![kind.as_str(), id])?;
    if gone == 0 {
        return Ok(false);
    }
    note(c, now, actor, format!("{}.delete", kind.as_str()), id, None)?;
    Ok(true)
}

#[async_trait]
impl OnCall for SqliteStore {
    async fn get_doc(&self, kind: DocKind, id: &str) -> Result<Option<DocRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |c| get(c, kind, &id)).await
    }
    async fn list_docs(
        &self,
        kind: DocKind,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DocRecord>, StoreError> {
        self.read(move |c| list(c, kind, after.as_deref(), limit))
            .await
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
        let (id, actor) = (id.to_string(), actor.to_string());
        self.write(move |c| put(c, kind, &id, body, expect, &actor, now))
            .await
    }
    async fn delete_doc(
        &self,
        kind: DocKind,
        id: &str,
        actor: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (id, actor) = (id.to_string(), actor.to_string());
        self.write(move |c| delete(c, kind, &id, &actor, now)).await
    }
}
