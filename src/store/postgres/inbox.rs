//! Inbox items on PostgreSQL.

use super::{PgStore, corrupt};
use crate::core::message::Content;
use crate::store::*;
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::postgres::PgPool;

pub async fn inbox_put(pool: &PgPool, item: &InboxItem) -> Result<(), StoreError> {
    let body = json!({ "content": item.content, "metadata": item.metadata });
    sqlx::query(
        r#"INSERT INTO inbox (id, "user", message_id, delivery_id, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (delivery_id) DO NOTHING"#,
    )
    .bind(&item.id)
    .bind(&item.user)
    .bind(&item.message_id)
    .bind(&item.delivery_id)
    .bind(body.to_string())
    .bind(item.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn inbox(
    pool: &PgPool,
    user: &str,
    unread_only: bool,
    f: &ListFilter,
) -> Result<Vec<InboxItem>, StoreError> {
    let rows = sqlx::query(
        r#"SELECT id, message_id, delivery_id, body, created_at, read_at FROM inbox
           WHERE "user" = $1 AND ($2::TEXT IS NULL OR id < $2) AND (NOT $3 OR read_at IS NULL)
           ORDER BY id DESC LIMIT $4"#,
    )
    .bind(user)
    .bind(&f.after)
    .bind(unread_only)
    .bind(f.limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.try_get::<String, _>(3)?).map_err(corrupt)?;
            Ok(InboxItem {
                id: r.try_get(0)?,
                user: user.to_string(),
                message_id: r.try_get(1)?,
                delivery_id: r.try_get(2)?,
                content: serde_json::from_value::<Content>(body["content"].clone())
                    .unwrap_or_default(),
                metadata: serde_json::from_value::<Map<String, Value>>(body["metadata"].clone())
                    .unwrap_or_default(),
                created_at: r.try_get(4)?,
                read_at: r.try_get(5)?,
            })
        })
        .collect()
}

#[async_trait]
impl Inbox for PgStore {
    async fn inbox_put(&self, item: InboxItem) -> Result<(), StoreError> {
        inbox_put(&self.pool, &item).await
    }
    async fn inbox_list(
        &self,
        user: &str,
        unread_only: bool,
        f: ListFilter,
    ) -> Result<Vec<InboxItem>, StoreError> {
        inbox(&self.pool, user, unread_only, &f).await
    }
    async fn inbox_mark_read(&self, user: &str, id: &str, now: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            r#"UPDATE inbox SET read_at = COALESCE(read_at, $3) WHERE id = $1 AND "user" = $2"#,
        )
        .bind(id)
        .bind(user)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }
}
