//! Inbox items on SQLite.

use super::{SqliteStore, corrupt};
use crate::core::message::Content;
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{Connection, params};
use serde_json::{Map, Value, json};

pub fn inbox_put(c: &Connection, item: &InboxItem) -> Result<(), StoreError> {
    let body = json!({ "content": item.content, "metadata": item.metadata });
    c.prepare_cached(
        "INSERT OR IGNORE INTO inbox (id, user, message_id, delivery_id, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![item.id, item.user, item.message_id, item.delivery_id, body.to_string(), item.created_at])?;
    Ok(())
}

pub fn inbox_mark_read(
    c: &Connection,
    user: &str,
    id: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    Ok(c.execute(
        "UPDATE inbox SET read_at = COALESCE(read_at, ?3) WHERE id = ?1 AND user = ?2",
        params![id, user, now],
    )? > 0)
}

pub fn inbox(
    c: &Connection,
    user: &str,
    unread_only: bool,
    f: &ListFilter,
) -> Result<Vec<InboxItem>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, message_id, delivery_id, body, created_at, read_at FROM inbox
         WHERE user = ?1 AND (?2 IS NULL OR id < ?2) AND (?3 = 0 OR read_at IS NULL)
         ORDER BY id DESC LIMIT ?4",
    )?;
    let rows: Vec<(String, String, String, String, i64, Option<i64>)> = stmt
        .query_map(
            params![user, f.after, unread_only as i64, f.limit as i64],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, message_id, delivery_id, body, created_at, read_at)| {
            let body: Value = serde_json::from_str(&body).map_err(corrupt)?;
            Ok(InboxItem {
                id,
                user: user.to_string(),
                message_id,
                delivery_id,
                content: serde_json::from_value::<Content>(body["content"].clone())
                    .unwrap_or_default(),
                metadata: serde_json::from_value::<Map<String, Value>>(body["metadata"].clone())
                    .unwrap_or_default(),
                created_at,
                read_at,
            })
        })
        .collect()
}

#[async_trait]
impl Inbox for SqliteStore {
    async fn inbox_put(&self, item: InboxItem) -> Result<(), StoreError> {
        self.write(move |c| inbox_put(c, &item)).await
    }
    async fn inbox_list(
        &self,
        user: &str,
        unread_only: bool,
        f: ListFilter,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let user = user.to_string();
        self.read(move |c| inbox(c, &user, unread_only, &f)).await
    }
    async fn inbox_mark_read(&self, user: &str, id: &str, now: i64) -> Result<bool, StoreError> {
        let (user, id) = (user.to_string(), id.to_string());
        self.write(move |c| inbox_mark_read(c, &user, &id, now))
            .await
    }
}
