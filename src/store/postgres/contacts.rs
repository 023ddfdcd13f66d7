//! Contacts on PostgreSQL.

use super::operations::{audit, entry};
use super::{PgStore, corrupt};
use crate::core::contact::{Contact, changed_fields};
use crate::store::*;
use async_trait::async_trait;
use serde_json::json;
use sqlx::Row;
use sqlx::postgres::PgRow;

/// The columns [`to_record`] reads, in order.
const COLUMNS: &str = "body, version, created_at, updated_at";

fn to_record(r: &PgRow) -> Result<ContactRecord, StoreError> {
    Ok(ContactRecord {
        contact: serde_json::from_str(&r.try_get::<String, _>(0)?).map_err(corrupt)?,
        version: r.try_get(1)?,
        created_at: r.try_get(2)?,
        updated_at: r.try_get(3)?,
    })
}

#[async_trait]
impl Contacts for PgStore {
    async fn get_contact(&self, id: &str) -> Result<Option<ContactRecord>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM contacts WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(to_record)
        .transpose()
    }

    async fn list_contacts(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<ContactRecord>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM contacts
             WHERE ($1::TEXT IS NULL OR id COLLATE \"C\" > $1) ORDER BY id COLLATE \"C\" LIMIT $2"
        )))
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(to_record)
        .collect()
    }

    async fn put_contact(
        &self,
        contact: Contact,
        expect: Expect,
        actor: &str,
        now: i64,
    ) -> Result<Option<ContactRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let before = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM contacts WHERE id = $1 FOR UPDATE"
        )))
        .bind(&contact.id)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(to_record)
        .transpose()?;
        let Some((version, created_at)) = crate::store::rules::versioned_write(
            expect,
            before.as_ref().map(|b| (b.version, b.created_at)),
            now,
        ) else {
            return Ok(None);
        };
        let body = serde_json::to_string(&contact).map_err(corrupt)?;
        let rec = ContactRecord {
            contact: contact.clone(),
            version,
            created_at,
            updated_at: now,
        };
        let written = match &before {
            // Two creators at once: the second finds the row made and stops here.
            None => sqlx::query(
                "INSERT INTO contacts (id, body, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&contact.id)
            .bind(&body)
            .bind(rec.version)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            Some(_) => sqlx::query(
                "UPDATE contacts SET body = $2, version = $3, updated_at = $4 WHERE id = $1",
            )
            .bind(&contact.id)
            .bind(&body)
            .bind(rec.version)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        };
        if written == 0 {
            return Ok(None);
        }
        let action = if before.is_some() {
            "contact.update"
        } else {
            "contact.create"
        };
        let changed = changed_fields(before.as_ref().map(|b| &b.contact), &contact);
        audit(
            &mut tx,
            &entry(
                now,
                actor,
                action,
                &contact.id,
                None,
                Some(json!({"changed": changed, "version": rec.version})),
                None,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(rec))
    }

    async fn delete_contact(&self, id: &str, actor: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM contacts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Ok(false);
        }
        audit(
            &mut tx,
            &entry(now, actor, "contact.delete", id, None, None, None),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
