//! SQLite store: WAL, `synchronous=FULL`, one writer thread that commits every write queued
//! at that moment in one transaction (group commit), and a small pool of readers.

mod bundles;
mod cluster;
mod console;
mod contacts;
mod escalations;
mod inbox;
mod incidents;
mod keys;
mod messages;
mod oncall;
mod operations;
mod queue;
mod receipts;
mod retention;
mod settle;
mod status;
mod storms;

use super::*;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// A unit of work run inside the writer's transaction. It returns whether it failed (so its
/// savepoint is rolled back) and a function that answers its caller once the commit is known.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Jobs in one transaction at most: bounds the time a caller waits behind others.
const MAX_GROUP: usize = 2048;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "templates_receipts",
        include_str!("../../../migrations/sqlite/0002_templates_receipts.sql"),
    ),
    (
        3,
        "operators_flow",
        include_str!("../../../migrations/sqlite/0003_operators_flow.sql"),
    ),
    (
        4,
        "nodes",
        include_str!("../../../migrations/sqlite/0004_nodes.sql"),
    ),
    (
        5,
        "retention",
        include_str!("../../../migrations/sqlite/0005_retention.sql"),
    ),
    (
        6,
        "lean_queue",
        include_str!("../../../migrations/sqlite/0006_lean_queue.sql"),
    ),
    (
        7,
        "contacts",
        include_str!("../../../migrations/sqlite/0007_contacts.sql"),
    ),
    (
        8,
        "incidents",
        include_str!("../../../migrations/sqlite/0008_incidents.sql"),
    ),
    (
        9,
        "heartbeats",
        include_str!("../../../migrations/sqlite/0009_heartbeats.sql"),
    ),
    (
        10,
        "incident_tables_clustered",
        include_str!("../../../migrations/sqlite/0010_incident_tables_clustered.sql"),
    ),
    (
        11,
        "oncall_documents",
        include_str!("../../../migrations/sqlite/0011_oncall_documents.sql"),
    ),
    (
        12,
        "escalations",
        include_str!("../../../migrations/sqlite/0012_escalations.sql"),
    ),
    (
        13,
        "bundles_storms",
        include_str!("../../../migrations/sqlite/0013_bundles_storms.sql"),
    ),
    (
        14,
        "console",
        include_str!("../../../migrations/sqlite/0014_console.sql"),
    ),
];

pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::UnboundedSender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    _lock: Option<std::fs::File>,
}

/// Takes `<db>.lock` so that no second process writes the same database (a serving gateway,
/// a restore). Held while the returned file is open.
pub fn lock_file(path: &Path) -> Result<std::fs::File, StoreError> {
    let lock_path = path.with_extension("lock");
    let f = crate::private_fs::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot open {}: {e}", lock_path.display()))
        })?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(_) => Err(StoreError::Unavailable(format!(
            "{} is in use by another Herald process",
            path.display()
        ))),
    }
}

/// The schema version this build migrates to.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// A connection with Herald's settings (WAL, `synchronous=FULL`, foreign keys).
pub fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -16_000)?; // 16 MB page cache per connection
    // Every statement Herald runs stays prepared (the default keeps 16, fewer than it uses).
    conn.set_prepared_statement_cache_capacity(256);
    // One plan per statement whatever its bound values: without this, a statement whose
    // values could change the plan is compiled again on every run (the claim was, each time).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

/// Runs the migrations not yet applied; returns the versions applied now.
pub fn migrate(conn: &mut Connection) -> Result<Vec<i64>, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > known {
        return Err(StoreError::Migration(format!(
            "the database is at schema version {current}, newer than this build knows ({known}); upgrade Herald"
        )));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Migration(format!("{version}_{name}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, name, crate::core::types::now_millis()],
        )?;
        tx.commit()?;
        applied.push(*version);
    }
    Ok(applied)
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database. With `exclusive`, also takes a
    /// lock file so that no second gateway serves from the same file.
    pub fn open(path: &Path, exclusive: bool) -> Result<Arc<Self>, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private_fs::dir(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        crate::private_fs::sqlite_files(path).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", path.display()))
        })?;
        let lock = if exclusive {
            Some(lock_file(path)?)
        } else {
            None
        };
        let mut conn = connect(path)?;
        migrate(&mut conn)?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("herald-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer: {e}")))?;
        Ok(Arc::new(SqliteStore {
            path: path.to_path_buf(),
            writer: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            _lock: lock,
        }))
    }

    /// Runs `f` in the writer's next transaction; returns after the commit.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let failed = result.is_err();
            let reply: Reply = Box::new(move |commit| {
                let _ = tx.send(commit.and(result));
            });
            (failed, reply)
        });
        self.writer
            .send(job)
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.lock().map(|mut p| p.pop()) {
                Ok(Some(c)) => c,
                _ => connect(&path)?,
            };
            // One read transaction: every query of `f` sees the same snapshot.
            let result = match conn.unchecked_transaction() {
                Ok(tx) => {
                    let r = f(&tx);
                    drop(tx); // rolls back: nothing was written
                    r
                }
                Err(e) => Err(e.into()),
            };
            if let Ok(mut p) = pool.lock()
                && p.len() < 8
            {
                p.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("reader task failed: {e}")))?
    }
}

/// Runs a statement without results from the connection's cache of prepared statements.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn writer_loop(conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(jobs.len());
        if let Err(e) = run_cached(&conn, "BEGIN IMMEDIATE") {
            // The jobs are dropped unrun: each caller gets `Unavailable`.
            tracing::error!(error = %e, "cannot begin a write transaction");
            drop(jobs);
            continue;
        }
        // A job alone in its transaction needs no savepoint: if it fails, the transaction is
        // rolled back whole (most groups are one job; a savepoint copies every page it dirties).
        let alone = jobs.len() == 1;
        let mut alone_failed = false;
        for job in jobs {
            let sp = if alone {
                Err(rusqlite::Error::InvalidQuery)
            } else {
                run_cached(&conn, "SAVEPOINT job")
            };
            // A job that panics is rolled back alone; its caller gets an error (its reply
            // is dropped) and the writer goes on serving every other write.
            let (failed, reply) =
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&conn))) {
                    Ok(done) => done,
                    Err(_) => {
                        tracing::error!(
                            "a storage write panicked; it is rolled back and the writer goes on"
                        );
                        let none: Reply = Box::new(|_| {});
                        (true, none)
                    }
                };
            alone_failed = alone && failed;
            if sp.is_ok() {
                let end = if failed {
                    run_cached(&conn, "ROLLBACK TO job")
                        .and_then(|_| run_cached(&conn, "RELEASE job"))
                } else {
                    run_cached(&conn, "RELEASE job")
                };
                if let Err(e) = end {
                    tracing::error!(error = %e, "savepoint");
                }
            }
            replies.push(reply);
        }
        let commit = if alone_failed {
            // Its caller gets the job's own error (the reply carries it).
            run_cached(&conn, "ROLLBACK").map_err(StoreError::from)
        } else {
            run_cached(&conn, "COMMIT").map_err(StoreError::from)
        };
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies {
            reply(match &commit {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Operations, Queue};

    /// A write job that panics is rolled back alone: its caller gets an error and the writer
    /// goes on serving (it used to die, failing every later write).
    #[tokio::test]
    #[allow(clippy::panic)]
    async fn a_panicking_write_does_not_stop_the_writer() {
        let t = tempfile::tempdir().unwrap();
        let s = super::SqliteStore::open(&t.path().join("h.db"), false).unwrap();
        let r: Result<(), _> = s
            .write(|c| {
                c.execute_batch("INSERT INTO settings (key, value, actor, updated_at) VALUES ('x', 'y', 'a', 1)")?;
                panic!("a bug in a write job")
            })
            .await;
        assert!(r.is_err());
        s.ping().await.unwrap();
        assert_eq!(s.queue_depth().await.unwrap(), 0);
        let n: i64 = s
            .write(|c| {
                Ok(
                    c.query_row("SELECT COUNT(*) FROM settings WHERE key = 'x'", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .await
            .unwrap();
        assert_eq!(n, 0, "the panicked job's write was rolled back");
    }

    #[tokio::test]
    async fn a_failing_write_is_rolled_back_and_its_error_returned() {
        let t = tempfile::tempdir().unwrap();
        let s = super::SqliteStore::open(&t.path().join("h.db"), false).unwrap();
        let r: Result<(), _> = s
            .write(|c| {
                c.execute_batch("INSERT INTO settings (key, value, actor, updated_at) VALUES ('x', 'y', 'a', 1)")?;
                Err(crate::store::StoreError::Conflict("refused after writing".into()))
            })
            .await;
        assert!(
            matches!(r, Err(crate::store::StoreError::Conflict(_))),
            "{r:?}"
        );
        let n: i64 = s
            .write(|c| {
                Ok(
                    c.query_row("SELECT COUNT(*) FROM settings WHERE key = 'x'", [], |r| {
                        r.get(0)
                    })?,
                )
            })
            .await
            .unwrap();
        assert_eq!(n, 0, "nothing of the failed job stays");
    }

    #[test]
    fn every_migration_file_is_registered() {
        crate::store::rules::assert_migrations_registered(
            concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"),
            super::MIGRATIONS,
        );
    }
}
