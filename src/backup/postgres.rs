//! Reading a snapshot from PostgreSQL and restoring one into it.

use super::archive::{Manifest, Part, PartWriter, read_part};
use super::catalog::{Kind, TABLES, Table, column_list, select_sql};
use super::{BackupError, Restore, Snapshot, check_value, check_width};
use crate::store::postgres as db;
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Executor, Row};
use std::path::Path;

/// Rows inserted per statement on restore (one UNNEST per column).
const CHUNK: usize = 2000;

/// A small pool on the URL's host (with several hosts, the one that takes writes: a restore
/// writes, and a dump wants the newest data).
async fn connect(url: &str) -> Result<PgPool, BackupError> {
    let mut hosts = crate::store::postgres::hosts::host_options(url)
        .map_err(|e| BackupError::Usage(format!("bad PostgreSQL URL: {e}")))?;
    let pick = if hosts.len() > 1 {
        crate::store::postgres::hosts::find_primary(&hosts)
            .await
            .ok_or_else(|| {
                BackupError::Store(crate::store::StoreError::Unavailable(
                    "none of the PostgreSQL hosts takes writes".into(),
                ))
            })?
    } else {
        0
    };
    let opts = hosts.swap_remove(pick);
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_with(opts)
        .await
        .map_err(|e| BackupError::Store(crate::store::StoreError::Unavailable(e.to_string())))
}

/// Dumps every table inside one `REPEATABLE READ, READ ONLY` transaction: one snapshot,
/// taken at its first query, while other nodes keep writing.
pub async fn dump(url: &str, staging: &Path) -> Result<Snapshot, BackupError> {
    let pool = connect(url).await?;
    let schema: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        .fetch_one(&pool)
        .await
        .map_err(|e| BackupError::Usage(format!("not a Herald database: {e}")))?;
    if schema != db::latest_version() {
        return Err(BackupError::Usage(format!(
            "the database is at schema version {schema}, this build writes {}; run `herald migrate` first",
            db::latest_version()
        )));
    }
    let mut tx = pool.begin().await.map_err(pg)?;
    tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(pg)?;
    let started = crate::core::types::now_millis();
    let mut parts = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        let mut w = PartWriter::create(staging, t)?;
        let sql = select_sql(t, true);
        // The SQL is built from the static catalogue, never from input.
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *tx);
        let mut values = Vec::with_capacity(t.columns.len());
        while let Some(r) = rows.try_next().await.map_err(pg)? {
            values.clear();
            for (i, (_, kind)) in t.columns.iter().enumerate() {
                values.push(match kind {
                    Kind::Text => r
                        .try_get::<Option<String>, _>(i)
                        .map_err(pg)?
                        .map(Value::String)
                        .unwrap_or(Value::Null),
                    Kind::Int => r
                        .try_get::<Option<i64>, _>(i)
                        .map_err(pg)?
                        .map(Value::from)
                        .unwrap_or(Value::Null),
                });
            }
            w.row(&values)?;
        }
        drop(rows);
        parts.push(w.finish()?);
    }
    tx.commit().await.map_err(pg)?;
    pool.close().await;
    Ok(Snapshot {
        source: "postgres",
        schema,
        started_ms: started,
        parts,
    })
}

/// Restores staged parts into PostgreSQL (migrated first) in one transaction.
pub async fn load(
    url: &str,
    staging: &Path,
    manifest: &Manifest,
    opts: &Restore,
) -> Result<(), BackupError> {
    let pool = connect(url).await?;
    db::migrate(&pool).await?;
    let mut tx = pool.begin().await.map_err(pg)?;
    let mut filled = Vec::new();
    for t in TABLES {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM \"{}\"",
            t.name
        )))
        .fetch_one(&mut *tx)
        .await
        .map_err(pg)?;
        if n > 0 {
            filled.push(format!("{} ({n} rows)", t.name));
        }
    }
    if !filled.is_empty() {
        if !opts.force {
            return Err(BackupError::NotEmpty(filled.join(", ")));
        }
        let all = TABLES
            .iter()
            .map(|t| format!("\"{}\"", t.name))
            .collect::<Vec<_>>()
            .join(", ");
        sqlx::query(sqlx::AssertSqlSafe(format!("TRUNCATE {all}")))
            .execute(&mut *tx)
            .await
            .map_err(pg)?;
    }
    for t in TABLES {
        let Some(part) = manifest.part(t.name) else {
            continue;
        };
        insert(&mut tx, staging, t, part).await?;
    }
    // Explicit audit ids were inserted: move the sequence past them.
    tx.execute(
        "SELECT setval(pg_get_serial_sequence('audit', 'id'), COALESCE((SELECT MAX(id) FROM audit), 0) + 1, false)",
    )
    .await
    .map_err(pg)?;
    if let Some(f) = &opts.finish {
        sqlx::query(
            "UPDATE deliveries SET status = 'queued', due_at = $1, lease_owner = NULL WHERE status = 'sending'",
        )
        .bind(f.now)
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
        sqlx::query(
            "INSERT INTO audit (at, actor, action, target, before, after, reason) VALUES ($1, $2, 'backup.restore', $3, NULL, $4, $5)",
        )
        .bind(f.now)
        .bind(&f.actor)
        .bind(&f.target)
        .bind(&f.after)
        .bind(&f.reason)
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)?;
    pool.close().await;
    Ok(())
}

enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    staging: &Path,
    t: &Table,
    part: &Part,
) -> Result<(), BackupError> {
    let casts = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, k))| match k {
            Kind::Text => format!("${}::text[]", i + 1),
            Kind::Int => format!("${}::int8[]", i + 1),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO \"{}\" ({}) SELECT * FROM UNNEST({casts})",
        t.name,
        column_list(t)
    );
    let fresh = || {
        t.columns
            .iter()
            .map(|(_, k)| match k {
                Kind::Text => Column::Text(Vec::with_capacity(CHUNK)),
                Kind::Int => Column::Int(Vec::with_capacity(CHUNK)),
            })
            .collect::<Vec<_>>()
    };
    let mut cols = fresh();
    let mut pending = 0usize;
    for (n, row) in read_part(staging, part)?.enumerate() {
        let row = row?;
        check_width(t, n, &row)?;
        for ((v, (c, kind)), col) in row.into_iter().zip(t.columns).zip(cols.iter_mut()) {
            check_value(t.name, n, c, *kind, &v)?;
            match (col, v) {
                (Column::Text(vs), Value::String(s)) => vs.push(Some(s)),
                (Column::Text(vs), _) => vs.push(None),
                (Column::Int(vs), Value::Number(x)) => vs.push(x.as_i64()),
                (Column::Int(vs), _) => vs.push(None),
            }
        }
        pending += 1;
        if pending == CHUNK {
            flush(tx, &sql, std::mem::replace(&mut cols, fresh())).await?;
            pending = 0;
        }
    }
    if pending > 0 {
        flush(tx, &sql, cols).await?;
    }
    Ok(())
}

async fn flush(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    sql: &str,
    cols: Vec<Column>,
) -> Result<(), BackupError> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
    for c in cols {
        q = match c {
            Column::Text(v) => q.bind(v),
            Column::Int(v) => q.bind(v),
        };
    }
    q.execute(&mut **tx).await.map_err(pg)?;
    Ok(())
}

fn pg(e: sqlx::Error) -> BackupError {
    BackupError::Store(crate::store::StoreError::Postgres(e.to_string()))
}
