//! API keys on SQLite.

use super::operations::audit;
use super::parse;
use super::{SqliteStore, corrupt};
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;

type KeyRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
);

pub fn create_api_key(c: &Connection, k: &ApiKeyRecord, actor: &str) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO api_keys (id, name, role, key_hash, prefix, created_at, rate_limit, approver) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![k.id, k.name, k.role.as_str(), k.key_hash, k.prefix, k.created_at, k.rate_limit.map(|r| r.to_string()), k.approver as i64],
    )?;
    audit(
        c,
        &AuditEntry {
            id: 0,
            at: k.created_at,
            actor: actor.into(),
            action: "api_key.create".into(),
            target: k.id.clone(),
            before: None,
            after: Some(
                json!({ "name": k.name, "role": k.role, "prefix": k.prefix, "approver": k.approver }),
            ),
            reason: None,
        },
    )
}

pub fn revoke_api_key(
    c: &Connection,
    id: &str,
    actor: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let row: Option<(String, String)> = c
        .query_row(
            "SELECT name, role FROM api_keys WHERE id = ?1 AND revoked_at IS NULL",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((name, role)) = row else {
        return Ok(false);
    };
    c.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    audit(
        c,
        &AuditEntry {
            id: 0,
            at: now,
            actor: actor.into(),
            action: "api_key.delete".into(),
            target: id.into(),
            before: Some(json!({ "name": name, "role": role })),
            after: None,
            reason: None,
        },
    )?;
    Ok(true)
}

fn key_row(r: &Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn to_key(
    (id, name, role, key_hash, prefix, created_at, rate_limit, approver): KeyRow,
) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id,
        name,
        role: parse(role)?,
        rate_limit: rate_limit
            .map(|r: String| crate::config::Rate::parse(&r))
            .transpose()
            .map_err(corrupt)?,
        key_hash,
        prefix,
        created_at,
        approver: approver != 0,
    })
}

pub fn api_keys(c: &Connection) -> Result<Vec<ApiKeyRecord>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, name, role, key_hash, prefix, created_at, rate_limit, approver FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at",
    )?;
    let rows: Vec<_> = stmt.query_map([], key_row)?.collect::<Result<_, _>>()?;
    rows.into_iter().map(to_key).collect()
}

pub fn api_key_by_hash(c: &Connection, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT id, name, role, key_hash, prefix, created_at, rate_limit, approver FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL",
        )?
        .query_row([hash], key_row)
        .optional()?;
    row.map(to_key).transpose()
}

#[async_trait]
impl Keys for SqliteStore {
    async fn create_api_key(&self, key: ApiKeyRecord, actor: &str) -> Result<(), StoreError> {
        let actor = actor.to_string();
        self.write(move |c| create_api_key(c, &key, &actor)).await
    }
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.read(api_keys).await
    }
    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let h = key_hash.to_string();
        self.read(move |c| api_key_by_hash(c, &h)).await
    }
    async fn revoke_api_key(&self, id: &str, actor: &str, now: i64) -> Result<bool, StoreError> {
        let (id, actor) = (id.to_string(), actor.to_string());
        self.write(move |c| revoke_api_key(c, &id, &actor, now))
            .await
    }
}
