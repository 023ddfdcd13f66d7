//! Reading a snapshot from SQLite and restoring one into it.

use super::archive::{Manifest, Part, PartWriter, read_part};
use super::catalog::{TABLES, column_list, select_sql};
use super::{BackupError, Restore, Snapshot, check_value, check_width};
use crate::store::sqlite as db;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use std::path::Path;

/// Dumps every table inside one read transaction (a consistent snapshot while the gateway
/// keeps writing: WAL readers see the database as of their first read).
pub fn dump(path: &Path, staging: &Path) -> Result<Snapshot, BackupError> {
    if !path.exists() {
        return Err(BackupError::Usage(format!(
            "no database at {}",
            path.display()
        )));
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(store)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(store)?;
    let schema = version(&conn)?;
    if schema != db::latest_version() {
        return Err(BackupError::Usage(format!(
            "{} is at schema version {schema}, this build writes {}; run `herald migrate` first",
            path.display(),
            db::latest_version()
        )));
    }
    let tx = conn.transaction().map_err(store)?;
    let started = crate::core::types::now_millis();
    let mut parts = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        let mut w = PartWriter::create(staging, t)?;
        let mut stmt = tx.prepare(&select_sql(t, false)).map_err(store)?;
        let mut rows = stmt.query([]).map_err(store)?;
        let mut values = Vec::with_capacity(t.columns.len());
        while let Some(r) = rows.next().map_err(store)? {
            values.clear();
            for (i, (c, _)) in t.columns.iter().enumerate() {
                values.push(match r.get_ref(i).map_err(store)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::from(n),
                    // Text is backed up as it is or not at all: rewriting it would change it.
                    ValueRef::Text(b) => match std::str::from_utf8(b) {
                        Ok(text) => Value::String(text.to_string()),
                        Err(e) => {
                            return Err(BackupError::Corrupt(format!(
                                "{}.{c} holds text that is not UTF-8 ({e}); nothing is backed up",
                                t.name
                            )));
                        }
                    },
                    other => {
                        return Err(BackupError::Corrupt(format!(
                            "{}.{c} holds a {:?}, not text or integer",
                            t.name,
                            other.data_type()
                        )));
                    }
                });
            }
            w.row(&values)?;
        }
        parts.push(w.finish()?);
    }
    tx.commit().map_err(store)?;
    Ok(Snapshot {
        source: "sqlite",
        schema,
        started_ms: started,
        parts,
    })
}

fn version(conn: &Connection) -> Result<i64, BackupError> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )
    .map_err(|e| BackupError::Usage(format!("not a Herald database: {e}")))
}

/// Restores staged parts into the SQLite file at `path` (created and migrated if needed), in
/// one transaction: all of it or nothing. Holds the database's lock file meanwhile, so it
/// refuses to run under a serving gateway.
pub fn load(
    path: &Path,
    staging: &Path,
    manifest: &Manifest,
    opts: &Restore,
) -> Result<(), BackupError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private_fs::dir(dir)?;
    }
    crate::private_fs::sqlite_files(path)?;
    let _lock = db::lock_file(path)?;
    let mut conn = db::connect(path)?;
    db::migrate(&mut conn)?;
    let tx = conn.transaction().map_err(store)?;
    let mut filled = Vec::new();
    for t in TABLES {
        let n: i64 = tx
            .query_row(&format!("SELECT COUNT(*) FROM \"{}\"", t.name), [], |r| {
                r.get(0)
            })
            .map_err(store)?;
        if n > 0 {
            filled.push(format!("{} ({n} rows)", t.name));
        }
    }
    if !filled.is_empty() {
        if !opts.force {
            return Err(BackupError::NotEmpty(filled.join(", ")));
        }
        for t in TABLES.iter().rev() {
            tx.execute(&format!("DELETE FROM \"{}\"", t.name), [])
                .map_err(store)?;
        }
    }
    for t in TABLES {
        let Some(part) = manifest.part(t.name) else {
            continue;
        };
        insert(&tx, staging, t, part)?;
    }
    if let Some(f) = &opts.finish {
        tx.execute(
            "UPDATE deliveries SET status = 'queued', due_at = ?1, lease_owner = NULL WHERE status = 'sending'",
            [f.now],
        )
        .map_err(store)?;
        tx.execute(
            "INSERT INTO audit (at, actor, action, target, before, after, reason) VALUES (?1, ?2, 'backup.restore', ?3, NULL, ?4, ?5)",
            rusqlite::params![f.now, f.actor, f.target, f.after, f.reason],
        )
        .map_err(store)?;
    }
    tx.commit().map_err(store)?;
    Ok(())
}

fn insert(
    tx: &rusqlite::Transaction<'_>,
    staging: &Path,
    t: &super::catalog::Table,
    part: &Part,
) -> Result<(), BackupError> {
    let marks = (1..=t.columns.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut stmt = tx
        .prepare(&format!(
            "INSERT INTO \"{}\" ({}) VALUES ({marks})",
            t.name,
            column_list(t)
        ))
        .map_err(store)?;
    for (n, row) in read_part(staging, part)?.enumerate() {
        let row = row?;
        check_width(t, n, &row)?;
        let params = row
            .iter()
            .zip(t.columns)
            .map(|(v, (c, kind))| {
                check_value(t.name, n, c, *kind, v)?;
                Ok(match v {
                    Value::Number(x) => rusqlite::types::Value::Integer(x.as_i64().unwrap_or(0)),
                    Value::String(s) => rusqlite::types::Value::Text(s.clone()),
                    _ => rusqlite::types::Value::Null,
                })
            })
            .collect::<Result<Vec<_>, BackupError>>()?;
        stmt.execute(rusqlite::params_from_iter(params))
            .map_err(store)?;
    }
    Ok(())
}

fn store(e: rusqlite::Error) -> BackupError {
    BackupError::Store(crate::store::StoreError::Sqlite(e))
}
