//! Bundles on PostgreSQL: a held row is taken by an `UPDATE … WHERE bundle_id IS NULL`, so
//! two nodes bundling the same person at once never both take it (the second waits on the
//! row, sees it taken, and skips it). Reply codes are chosen under the phone's lock.

use super::PgStore;
use super::escalations::{PAGE, code_for, page};
use super::incidents::event;
use crate::core::types::Millis;
use crate::store::*;
use async_trait::async_trait;
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};

const BUNDLE: &str = "id, person, method, kind, address, reply_code, size, message_id, created_at";

/// Rows no bundle took yet.
const HELD: &str = "hold_until IS NOT NULL AND bundle_id IS NULL AND message_id IS NULL";

fn bundle(r: &PgRow) -> Result<BundleRow, StoreError> {
    Ok(BundleRow {
        id: r.try_get(0)?,
        person: r.try_get(1)?,
        method: r.try_get(2)?,
        kind: r.try_get(3)?,
        address: r.try_get(4)?,
        reply_code: r.try_get(5)?,
        size: r.try_get(6)?,
        message_id: r.try_get(7)?,
        created_at: r.try_get(8)?,
    })
}

async fn rows_of(c: &mut PgConnection, id: &str) -> Result<Vec<PageRow>, StoreError> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {PAGE} FROM pages WHERE bundle_id = $1 ORDER BY created_at, key"
    )))
    .bind(id)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(page)
    .collect()
}

async fn with_rows(
    c: &mut PgConnection,
    b: Option<BundleRow>,
) -> Result<Option<Bundle>, StoreError> {
    let Some(b) = b else { return Ok(None) };
    let rows = rows_of(c, &b.id).await?;
    Ok(Some((b, rows)))
}

async fn take(
    c: &mut PgConnection,
    mut b: BundleRow,
    now: Millis,
    codes_since: Millis,
) -> Result<Option<Bundle>, StoreError> {
    // The incidents first (as answering and triage lock them, before their pages): the
    // timelines below never race, and no lock is taken in the other order.
    let ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT DISTINCT incident_id FROM pages WHERE person = $1 AND method = $2 AND kind = $3 AND {HELD}"
    )))
    .bind(&b.person)
    .bind(&b.method)
    .bind(&b.kind)
    .fetch_all(&mut *c)
    .await?;
    sqlx::query("SELECT 1 FROM incidents WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .execute(&mut *c)
        .await?;
    // Pages of incidents that page no one any more are dropped, never sent.
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE pages SET bundle_id = '-' WHERE person = $1 AND method = $2 AND kind = 'page' AND {HELD}
           AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.id = pages.incident_id AND i.status = 'triggered'
                             AND i.grouped_into IS NULL AND i.inhibited_by IS NULL)"
    )))
    .bind(&b.person)
    .bind(&b.method)
    .execute(&mut *c)
    .await?;
    let mut rows: Vec<PageRow> = sqlx::query(AssertSqlSafe(format!(
        "UPDATE pages SET bundle_id = $4
         WHERE person = $1 AND method = $2 AND kind = $3 AND {HELD} AND COALESCE(not_before, 0) <= $5
         RETURNING {PAGE}"
    )))
    .bind(&b.person)
    .bind(&b.method)
    .bind(&b.kind)
    .bind(&b.id)
    .bind(now)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(page)
    .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        return Ok(None);
    }
    rows.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
    b.size = rows.len() as i64;
    b.address = rows[0].address.clone();
    b.reply_code = None;
    if b.kind == "page"
        && rows.len() > 1
        && let Some(a) = b.address.clone()
    {
        // A code no page or bundle to the phone holds (`code_for` takes the phone's lock;
        // an id no page has means nothing is reused).
        b.reply_code = Some(code_for(c, &a, "", codes_since).await?);
    }
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO bundles ({BUNDLE}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8)"
    )))
    .bind(&b.id)
    .bind(&b.person)
    .bind(&b.method)
    .bind(&b.kind)
    .bind(&b.address)
    .bind(b.reply_code)
    .bind(b.size)
    .bind(b.created_at)
    .execute(&mut *c)
    .await?;
    if b.kind == "page" && rows.len() > 1 {
        for r in &rows {
            let detail =
                json!({"bundle": b.id, "person": b.person, "method": b.method, "size": b.size});
            event(c, &r.incident_id, now, "bundled", "system", detail).await?;
        }
    }
    Ok(Some((b, rows)))
}

async fn sent(
    c: &mut PgConnection,
    id: &str,
    message_id: &str,
    now: Millis,
) -> Result<(), StoreError> {
    let b = sqlx::query(AssertSqlSafe(format!(
        "SELECT {BUNDLE} FROM bundles WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    .as_ref()
    .map(bundle)
    .transpose()?;
    let Some((b, rows)) = with_rows(c, b).await? else {
        return Ok(());
    };
    sqlx::query("UPDATE bundles SET message_id = $2 WHERE id = $1 AND message_id IS NULL")
        .bind(id)
        .bind(message_id)
        .execute(&mut *c)
        .await?;
    // Refused (nobody to reach): nothing went out, nothing is recorded on the incidents.
    if message_id == "-" {
        return Ok(());
    }
    if rows.len() == 1 {
        sqlx::query("UPDATE pages SET message_id = $2 WHERE key = $1")
            .bind(&rows[0].key)
            .bind(message_id)
            .execute(&mut *c)
            .await?;
    }
    let mut ids: Vec<String> = rows.iter().map(|r| r.incident_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let kind = if b.kind == "page" { "page" } else { "notice" };
    sqlx::query(
        "INSERT INTO incident_messages (incident_id, message_id, kind)
         SELECT unnest($1::TEXT[]), $2, $3 ON CONFLICT DO NOTHING",
    )
    .bind(&ids)
    .bind(message_id)
    .bind(kind)
    .execute(&mut *c)
    .await?;
    if b.kind == "page" {
        sqlx::query(
            "UPDATE escalations SET first_page_at = COALESCE(first_page_at, $2)
             WHERE incident_id = ANY($1) AND first_page_at IS NULL",
        )
        .bind(&ids)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

impl PgStore {
    async fn bundle_where(
        &self,
        sql_where: &str,
        args: (&str, Option<i64>, Option<Millis>),
    ) -> Result<Option<Bundle>, StoreError> {
        let mut c = self.pool.acquire().await?;
        let b = sqlx::query(AssertSqlSafe(format!(
            "SELECT {BUNDLE} FROM bundles WHERE {sql_where} ORDER BY created_at DESC LIMIT 1"
        )))
        .bind(args.0)
        .bind(args.1)
        .bind(args.2)
        .fetch_optional(&mut *c)
        .await?
        .as_ref()
        .map(bundle)
        .transpose()?;
        with_rows(&mut c, b).await
    }
}

#[async_trait]
impl Bundles for PgStore {
    async fn hold_notices(&self, notices: Vec<PageRow>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for p in notices {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO pages ({PAGE})
                 VALUES ($1, $2, -1, -1, -1, $3, $4, NULL, NULL, NULL, $5, 'notice', $6, $7, $8, NULL)
                 ON CONFLICT (key) DO NOTHING"
            )))
            .bind(&p.key)
            .bind(&p.incident_id)
            .bind(&p.person)
            .bind(&p.method)
            .bind(p.created_at)
            .bind(&p.note)
            .bind(p.not_before)
            .bind(p.hold_until)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
    async fn held_pages(&self, limit: usize) -> Result<Vec<PageRow>, StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {PAGE} FROM pages WHERE {HELD} ORDER BY hold_until, key LIMIT $1"
        )))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(page)
        .collect()
    }
    async fn bundles_since(&self, since: Millis) -> Result<Vec<BundleRow>, StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {BUNDLE} FROM bundles WHERE created_at >= $1 ORDER BY created_at, id"
        )))
        .bind(since)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(bundle)
        .collect()
    }
    async fn take_bundle(
        &self,
        b: BundleRow,
        now: Millis,
        codes_since: Millis,
    ) -> Result<Option<Bundle>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let out = take(&mut tx, b, now, codes_since).await?;
        tx.commit().await?;
        Ok(out)
    }
    async fn unsent_bundles(&self, before: Millis) -> Result<Vec<Bundle>, StoreError> {
        let mut c = self.pool.acquire().await?;
        let bs: Vec<BundleRow> = sqlx::query(AssertSqlSafe(format!(
            "SELECT {BUNDLE} FROM bundles WHERE message_id IS NULL AND created_at < $1
             ORDER BY created_at LIMIT 100"
        )))
        .bind(before)
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(bundle)
        .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(bs.len());
        for b in bs {
            let rows = rows_of(&mut c, &b.id).await?;
            out.push((b, rows));
        }
        Ok(out)
    }
    async fn bundle_sent(&self, id: &str, message_id: &str, now: Millis) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sent(&mut tx, id, message_id, now).await?;
        tx.commit().await?;
        Ok(())
    }
    async fn bundle_for_reply(
        &self,
        address: &str,
        code: i64,
        since: Millis,
    ) -> Result<Option<Bundle>, StoreError> {
        self.bundle_where(
            "address = $1 AND reply_code = $2 AND created_at >= $3",
            (address, Some(code), Some(since)),
        )
        .await
    }
    async fn bundle_of_message(&self, message_id: &str) -> Result<Option<Bundle>, StoreError> {
        self.bundle_where(
            "message_id = $1 AND ($2::BIGINT IS NULL) AND ($3::BIGINT IS NULL)",
            (message_id, None, None),
        )
        .await
    }
    async fn drop_held(&self, incident_id: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query(AssertSqlSafe(format!(
            "UPDATE pages SET bundle_id = '-' WHERE incident_id = $1 AND kind = 'page' AND {HELD}"
        )))
        .bind(incident_id)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
    async fn get_bundle(&self, id: &str) -> Result<Option<Bundle>, StoreError> {
        self.bundle_where(
            "id = $1 AND ($2::BIGINT IS NULL) AND ($3::BIGINT IS NULL)",
            (id, None, None),
        )
        .await
    }
}
