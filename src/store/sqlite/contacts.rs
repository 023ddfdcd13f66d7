//! Contacts on SQLite.

use super::operations::audit;
use super::{SqliteStore, corrupt};
use crate::core::contact::{Contact, changed_fields};
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;

const COLUMNS: &str = "body, version, created_at, updated_at";

fn record(r: &Row<'_>) -> rusqlite::Result<(String, i64, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_record(
    (body, version, created_at, updated_at): (String, i64, i64, i64),
) -> Result<ContactRecord, StoreError> {
    Ok(ContactRecord {
        contact: serde_json::from_str(&body).map_err(corrupt)?,
        version,
        created_at,
        updated_at,
    })
}

pub fn get(c: &Connection, id: &str) -> Result<Option<ContactRecord>, StoreError> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM contacts WHERE id = ?1"))?
        .query_row([id], record)
        .optional()?
        .map(to_record)
        .transpose()
}

fn list(
    c: &Connection,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ContactRecord>, StoreError> {
    let rows: Vec<_> = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM contacts WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2"
        ))?
        .query_map(params![after, limit as i64], record)?
        .collect::<Result<_, _>>()?;
    rows.into_iter().map(to_record).collect()
}

fn put(
    c: &Connection,
    contact: &Contact,
    expect: Expect,
    actor: &str,
    now: Millis,
) -> Result<Option<ContactRecord>, StoreError> {
    let before = get(c, &contact.id)?;
    let Some((version, created_at)) = crate::store::rules::versioned_write(
        expect,
        before.as_ref().map(|b| (b.version, b.created_at)),
        now,
    ) else {
        return Ok(None);
    };
    let body = serde_json::to_string(contact).map_err(corrupt)?;
    let rec = ContactRecord {
        contact: contact.clone(),
        version,
        created_at,
        updated_at: now,
    };
    c.prepare_cached(
        "INSERT INTO contacts (id, body, version, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET body = excluded.body, version = excluded.version,
                                        updated_at = excluded.updated_at",
    )?
    .execute(params![contact.id, body, rec.version, rec.created_at, now])?;
    let action = if before.is_some() {
        "contact.update"
    } else {
        "contact.create"
    };
    audit(
        c,
        &AuditEntry {
            id: 0,
            at: now,
            actor: actor.into(),
            action: action.into(),
            target: contact.id.clone(),
            before: None,
            after: Some(json!({
                "changed": changed_fields(before.as_ref().map(|b| &b.contact), contact),
                "version": rec.version,
            })),
            reason: None,
        },
    )?;
    Ok(Some(rec))
}

fn delete(c: &Connection, id: &str, actor: &str, now: Millis) -> Result<bool, StoreError> {
    if c.execute("DELETE FROM contacts WHERE id = ?1", [id])? == 0 {
        return Ok(false);
    }
    audit(
        c,
        &AuditEntry {
            id: 0,
            at: now,
            actor: actor.into(),
            action: "contact.delete".into(),
            target: id.into(),
            before: None,
            after: None,
            reason: None,
        },
    )?;
    Ok(true)
}

#[async_trait]
impl Contacts for SqliteStore {
    async fn get_contact(&self, id: &str) -> Result<Option<ContactRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |c| get(c, &id)).await
    }
    async fn list_contacts(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<ContactRecord>, StoreError> {
        self.read(move |c| list(c, after.as_deref(), limit)).await
    }
    async fn put_contact(
        &self,
        contact: Contact,
        expect: Expect,
        actor: &str,
        now: i64,
    ) -> Result<Option<ContactRecord>, StoreError> {
        let actor = actor.to_string();
        self.write(move |c| put(c, &contact, expect, &actor, now))
            .await
    }
    async fn delete_contact(&self, id: &str, actor: &str, now: i64) -> Result<bool, StoreError> {
        let (id, actor) = (id.to_string(), actor.to_string());
        self.write(move |c| delete(c, &id, &actor, now)).await
    }
}
