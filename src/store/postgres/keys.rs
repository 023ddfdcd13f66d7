//! API keys on PostgreSQL.

use super::operations::audit;
use super::operations::entry;
use super::parse;
use super::{PgStore, corrupt};
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use serde_json::json;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};

pub async fn create_api_key(
    tx: &mut PgConnection,
    k: &ApiKeyRecord,
    actor: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO api_keys (id, name, role, key_hash, prefix, created_at, rate_limit, approver) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&k.id)
        .bind(&k.name)
        .bind(k.role.as_str())
        .bind(&k.key_hash)
        .bind(&k.prefix)
        .bind(k.created_at)
        .bind(k.rate_limit.map(|r| r.to_string()))
        .bind(k.approver as i64)
        .execute(&mut *tx)
        .await?;
    audit(
        tx,
        &entry(
            k.created_at,
            actor,
            "api_key.create",
            &k.id,
            None,
            Some(
                json!({"name": k.name, "role": k.role, "prefix": k.prefix, "approver": k.approver}),
            ),
            None,
        ),
    )
    .await
}

pub async fn revoke_api_key(
    tx: &mut PgConnection,
    id: &str,
    actor: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let row = sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING name, role")
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let (name, role): (String, String) = (row.try_get(0)?, row.try_get(1)?);
    audit(
        tx,
        &entry(
            now,
            actor,
            "api_key.delete",
            id,
            Some(json!({"name": name, "role": role})),
            None,
            None,
        ),
    )
    .await?;
    Ok(true)
}

/// Live keys; with `hash`, only the one with that hash.
pub async fn api_keys(pool: &PgPool, hash: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, name, role, key_hash, prefix, created_at, rate_limit, approver FROM api_keys
         WHERE revoked_at IS NULL AND ($1::TEXT IS NULL OR key_hash = $1) ORDER BY created_at",
    )
    .bind(hash)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ApiKeyRecord {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                role: parse(r.try_get::<String, _>(2)?)?,
                key_hash: r.try_get(3)?,
                prefix: r.try_get(4)?,
                created_at: r.try_get(5)?,
                rate_limit: r
                    .try_get::<Option<String>, _>(6)?
                    .map(|s| crate::config::Rate::parse(&s))
                    .transpose()
                    .map_err(corrupt)?,
                approver: r.try_get::<i64, _>(7)? != 0,
            })
        })
        .collect()
}

#[async_trait]
impl Keys for PgStore {
    async fn create_api_key(&self, key: ApiKeyRecord, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        create_api_key(&mut tx, &key, actor).await?;
        tx.commit().await?;
        Ok(())
    }
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        api_keys(&self.pool, None).await
    }
    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(api_keys(&self.pool, Some(key_hash)).await?.pop())
    }
    async fn revoke_api_key(&self, id: &str, actor: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = revoke_api_key(&mut tx, id, actor, now).await?;
        tx.commit().await?;
        Ok(done)
    }
}
