//! Bundles on SQLite: held pages and notices, taken into bundles by one write (a held row
//! is taken only while it has no bundle, so each goes out in exactly one).

use super::SqliteStore;
use super::escalations::{PAGE, page};
use super::incidents::event;
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;

const BUNDLE: &str = "id, person, method, kind, address, reply_code, size, message_id, created_at";

/// Rows no bundle took yet.
const HELD: &str = "hold_until IS NOT NULL AND bundle_id IS NULL AND message_id IS NULL";

fn bundle(r: &Row<'_>) -> rusqlite::Result<BundleRow> {
    Ok(BundleRow {
        id: r.get(0)?,
        person: r.get(1)?,
        method: r.get(2)?,
        kind: r.get(3)?,
        address: r.get(4)?,
        reply_code: r.get(5)?,
        size: r.get(6)?,
        message_id: r.get(7)?,
        created_at: r.get(8)?,
    })
}

fn with_rows(c: &Connection, b: Option<BundleRow>) -> Result<Option<Bundle>, StoreError> {
    let Some(b) = b else { return Ok(None) };
    let rows = c
        .prepare_cached(&format!(
            "SELECT {PAGE} FROM pages WHERE bundle_id = ?1 ORDER BY created_at, key"
        ))?
        .query_map([&b.id], page)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((b, rows)))
}

fn one_where(
    c: &Connection,
    sql_where: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Option<Bundle>, StoreError> {
    let b = c
        .prepare_cached(&format!(
            "SELECT {BUNDLE} FROM bundles WHERE {sql_where} ORDER BY created_at DESC LIMIT 1"
        ))?
        .query_row(args, bundle)
        .optional()?;
    with_rows(c, b)
}

fn take(
    c: &Connection,
    mut b: BundleRow,
    now: Millis,
    codes_since: Millis,
) -> Result<Option<Bundle>, StoreError> {
    // Pages of incidents that page no one any more are dropped, never sent.
    c.prepare_cached(&format!(
        "UPDATE pages SET bundle_id = '-' WHERE person = ?1 AND method = ?2 AND kind = 'page' AND {HELD}
           AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.id = pages.incident_id AND i.status = 'triggered'
                             AND i.grouped_into IS NULL AND i.inhibited_by IS NULL)"
    ))?
    .execute(params![b.person, b.method])?;
    let rows = c
        .prepare_cached(&format!(
            "UPDATE pages SET bundle_id = ?4
             WHERE person = ?1 AND method = ?2 AND kind = ?3 AND {HELD} AND COALESCE(not_before, 0) <= ?5
             RETURNING {PAGE}"
        ))?
        .query_map(params![b.person, b.method, b.kind, b.id, now], page)?
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut rows = rows.clone();
    rows.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
    b.size = rows.len() as i64;
    b.address = first.address.clone();
    b.reply_code = None;
    if b.kind == "page"
        && rows.len() > 1
        && let Some(a) = &b.address
    {
        let used: Vec<i64> = c
            .prepare_cached(
                "SELECT reply_code FROM pages WHERE address = ?1 AND created_at >= ?2 AND reply_code IS NOT NULL
                 UNION SELECT reply_code FROM bundles WHERE address = ?1 AND created_at >= ?2 AND reply_code IS NOT NULL",
            )?
            .query_map(params![a, codes_since], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        b.reply_code = Some(rules::reply_code(None, &used));
    }
    c.prepare_cached(&format!(
        "INSERT INTO bundles ({BUNDLE}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8)"
    ))?
    .execute(params![
        b.id,
        b.person,
        b.method,
        b.kind,
        b.address,
        b.reply_code,
        b.size,
        b.created_at
    ])?;
    if b.kind == "page" && rows.len() > 1 {
        for r in &rows {
            let detail =
                json!({"bundle": b.id, "person": b.person, "method": b.method, "size": b.size});
            event(c, &r.incident_id, now, "bundled", "system", detail)?;
        }
    }
    Ok(Some((b, rows)))
}

fn sent(c: &Connection, id: &str, message_id: &str, now: Millis) -> Result<(), StoreError> {
    let Some((b, rows)) = with_rows(
        c,
        c.prepare_cached(&format!("SELECT {BUNDLE} FROM bundles WHERE id = ?1"))?
            .query_row([id], bundle)
            .optional()?,
    )?
    else {
        return Ok(());
    };
    c.prepare_cached("UPDATE bundles SET message_id = ?2 WHERE id = ?1 AND message_id IS NULL")?
        .execute(params![id, message_id])?;
    // Refused (nobody to reach): nothing went out, nothing is recorded on the incidents.
    if message_id == "-" {
        return Ok(());
    }
    let kind = if b.kind == "page" { "page" } else { "notice" };
    for r in &rows {
        if rows.len() == 1 {
            c.prepare_cached("UPDATE pages SET message_id = ?2 WHERE key = ?1")?
                .execute(params![r.key, message_id])?;
        }
        c.prepare_cached(
            "INSERT OR IGNORE INTO incident_messages (incident_id, message_id, kind) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![r.incident_id, message_id, kind])?;
        if b.kind == "page" {
            c.prepare_cached(
                "UPDATE escalations SET first_page_at = COALESCE(first_page_at, ?2) WHERE incident_id = ?1",
            )?
            .execute(params![r.incident_id, now])?;
        }
    }
    Ok(())
}

#[async_trait]
impl Bundles for SqliteStore {
    async fn hold_notices(&self, notices: Vec<PageRow>) -> Result<(), StoreError> {
        self.write(move |c| {
            for p in notices {
                c.prepare_cached(&format!(
                    "INSERT OR IGNORE INTO pages ({PAGE})
                     VALUES (?1, ?2, -1, -1, -1, ?3, ?4, NULL, NULL, NULL, ?5, 'notice', ?6, ?7, ?8, NULL)"
                ))?
                .execute(params![
                    p.key, p.incident_id, p.person, p.method, p.created_at, p.note, p.not_before,
                    p.hold_until
                ])?;
            }
            Ok(())
        })
        .await
    }
    async fn held_pages(&self, limit: usize) -> Result<Vec<PageRow>, StoreError> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {PAGE} FROM pages WHERE {HELD} ORDER BY hold_until, key LIMIT ?1"
            ))?
            .query_map([limit as i64], page)?
            .collect::<Result<_, _>>()?)
        })
        .await
    }
    async fn bundles_since(&self, since: Millis) -> Result<Vec<BundleRow>, StoreError> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {BUNDLE} FROM bundles WHERE created_at >= ?1 ORDER BY created_at, id"
            ))?
            .query_map([since], bundle)?
            .collect::<Result<_, _>>()?)
        })
        .await
    }
    async fn take_bundle(
        &self,
        b: BundleRow,
        now: Millis,
        codes_since: Millis,
    ) -> Result<Option<Bundle>, StoreError> {
        self.write(move |c| take(c, b, now, codes_since)).await
    }
    async fn unsent_bundles(&self, before: Millis) -> Result<Vec<Bundle>, StoreError> {
        self.read(move |c| {
            let bs = c
                .prepare_cached(&format!(
                    "SELECT {BUNDLE} FROM bundles WHERE message_id IS NULL AND created_at < ?1
                     ORDER BY created_at LIMIT 100"
                ))?
                .query_map([before], bundle)?
                .collect::<Result<Vec<_>, _>>()?;
            bs.into_iter()
                .filter_map(|b| with_rows(c, Some(b)).transpose())
                .collect()
        })
        .await
    }
    async fn bundle_sent(&self, id: &str, message_id: &str, now: Millis) -> Result<(), StoreError> {
        let (id, m) = (id.to_string(), message_id.to_string());
        self.write(move |c| sent(c, &id, &m, now)).await
    }
    async fn bundle_for_reply(
        &self,
        address: &str,
        code: i64,
        since: Millis,
    ) -> Result<Option<Bundle>, StoreError> {
        let a = address.to_string();
        self.read(move |c| {
            one_where(
                c,
                "address = ?1 AND reply_code = ?2 AND created_at >= ?3",
                &[&a, &code, &since],
            )
        })
        .await
    }
    async fn bundle_of_message(&self, message_id: &str) -> Result<Option<Bundle>, StoreError> {
        let m = message_id.to_string();
        self.read(move |c| one_where(c, "message_id = ?1", &[&m]))
            .await
    }
    async fn get_bundle(&self, id: &str) -> Result<Option<Bundle>, StoreError> {
        let id = id.to_string();
        self.read(move |c| one_where(c, "id = ?1", &[&id])).await
    }
    async fn drop_held(&self, incident_id: &str) -> Result<u64, StoreError> {
        let id = incident_id.to_string();
        self.write(move |c| {
            Ok(c.prepare_cached(&format!(
                "UPDATE pages SET bundle_id = '-' WHERE incident_id = ?1 AND kind = 'page' AND {HELD}"
            ))?
            .execute([id])? as u64)
        })
        .await
    }
}
