//! Backups (DESIGN "Backups and drills"): a consistent logical snapshot of Herald's tables,
//! one JSON-lines part per table plus a manifest (layout, row counts, SHA-256 of each part),
//! zstd-compressed and optionally age-encrypted. Being logical, a backup from SQLite restores
//! into PostgreSQL and back. `verify` restores into a scratch database and compares.

pub mod archive;
pub mod catalog;
pub mod chain;
mod incremental;
pub mod offsite;
mod postgres;
pub mod schedule;
mod sqlite;

pub use archive::{Manifest, Part};
pub use incremental::{create_auto, prune};

use crate::config::Backend;
use catalog::{Kind, Table};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("the backup is damaged: {0}")]
    Corrupt(String),
    #[error("{0} is encrypted: pass --identity with the age identity it was encrypted to")]
    Encrypted(String),
    #[error("identity: {0}")]
    Identity(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the target is not empty ({0}); pass --force to replace what is there")]
    NotEmpty(String),
    #[error("{0}")]
    Usage(String),
    #[error("verification failed: {0}")]
    Mismatch(String),
    #[error("off-site storage: {0}")]
    Offsite(String),
}

/// What a backend's dump returns.
pub struct Snapshot {
    pub source: &'static str,
    pub schema: i64,
    pub started_ms: i64,
    pub parts: Vec<Part>,
}

/// How to restore.
#[derive(Debug, Default)]
pub struct Restore {
    /// Replace what the target holds.
    pub force: bool,
    /// A real restore (not verify's scratch copy): requeue deliveries that were in flight
    /// when the snapshot was taken, and write the audit entry.
    pub finish: Option<Finish>,
}

#[derive(Debug)]
pub struct Finish {
    pub now: i64,
    pub actor: String,
    pub target: String,
    pub after: String,
    pub reason: String,
}

fn check_width(t: &Table, n: usize, row: &[Value]) -> Result<(), BackupError> {
    if row.len() == t.columns.len() {
        Ok(())
    } else {
        Err(BackupError::Corrupt(format!(
            "{} row {}: {} values for {} columns",
            t.name,
            n + 1,
            row.len(),
            t.columns.len()
        )))
    }
}

fn check_value(table: &str, n: usize, col: &str, kind: Kind, v: &Value) -> Result<(), BackupError> {
    let ok = match (kind, v) {
        (_, Value::Null) => true,
        (Kind::Text, Value::String(_)) => true,
        (Kind::Int, Value::Number(x)) => x.as_i64().is_some(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(BackupError::Corrupt(format!(
            "{table} row {}: `{col}` must be {}, found {v}",
            n + 1,
            match kind {
                Kind::Text => "text",
                Kind::Int => "an integer",
            }
        )))
    }
}

async fn dump(backend: &Backend, staging: &Path) -> Result<Snapshot, BackupError> {
    match backend {
        Backend::Sqlite(path) => {
            let (path, staging) = (path.clone(), staging.to_path_buf());
            blocking(move || sqlite::dump(&path, &staging)).await
        }
        Backend::Postgres(url) => postgres::dump(url, staging).await,
    }
}

async fn load(
    backend: &Backend,
    staging: &Path,
    manifest: &Manifest,
    opts: Restore,
) -> Result<(), BackupError> {
    match backend {
        Backend::Sqlite(path) => {
            let (path, staging, manifest) = (path.clone(), staging.to_path_buf(), manifest.clone());
            blocking(move || sqlite::load(&path, &staging, &manifest, &opts)).await
        }
        Backend::Postgres(url) => postgres::load(url, staging, manifest, &opts).await,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackupError::Io(std::io::Error::other(e.to_string())))?
}

/// A backup written by [`create`].
#[derive(Debug)]
pub struct Created {
    pub path: PathBuf,
    pub bytes: u64,
    pub manifest: Manifest,
    pub took: std::time::Duration,
}

/// File names: `herald-20261122T101530.123Z.tar.zst`, `.age` appended when encrypted; they
/// sort by time.
pub fn file_name(created_ms: i64, encrypted: bool) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(created_ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "herald-{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z.tar.zst{}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond(),
        if encrypted { ".age" } else { "" }
    )
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Takes a full backup of `backend` into `dir` (a live gateway may keep writing meanwhile),
/// with its row index beside it so that an incremental can follow.
pub async fn create(
    backend: &Backend,
    dir: &Path,
    encrypt_to: Option<&str>,
) -> Result<Created, BackupError> {
    create_after(backend, dir, encrypt_to, None).await
}

/// A backup relative to `parent` (a backup file in `dir` with its index): an incremental
/// holding what changed since; a full one when `parent` is `None`.
pub(crate) async fn create_after(
    backend: &Backend,
    dir: &Path,
    encrypt_to: Option<&str>,
    parent: Option<(PathBuf, chain::IndexHeader)>,
) -> Result<Created, BackupError> {
    let began = std::time::Instant::now();
    let recipient = encrypt_to.map(archive::parse_recipient).transpose()?;
    crate::private_fs::dir(dir)?;
    let staging = tempfile::Builder::new()
        .prefix(".herald-backup-")
        .tempdir_in(dir)?;
    let snap = dump(backend, staging.path()).await?;
    let link = parent.as_ref().map(|(_, head)| chain::Link {
        parent: head.backup.clone(),
        parent_sha256: head.sha256.clone(),
        base: head
            .link
            .as_ref()
            .map_or_else(|| head.backup.clone(), |l| l.base.clone()),
        position: head.link.as_ref().map_or(1, |l| l.position + 1),
    });
    let body = staging.path().join("index.body");
    let (st, parts, parent_index, b) = (
        staging.path().to_path_buf(),
        snap.parts.clone(),
        parent.as_ref().map(|(p, _)| chain::index_path(p)),
        body.clone(),
    );
    let diff = blocking(move || chain::diff(&st, &parts, parent_index.as_deref(), &b)).await?;
    let manifest = Manifest {
        format: archive::FORMAT.into(),
        layout: catalog::LAYOUT_VERSION,
        herald_version: env!("CARGO_PKG_VERSION").into(),
        source: snap.source.into(),
        source_schema: snap.schema,
        created_at: rfc3339(snap.started_ms),
        created_at_ms: snap.started_ms,
        tables: snap.parts,
        changes: if link.is_some() { diff } else { Vec::new() },
        link,
    };
    let path = dir.join(file_name(snap.started_ms, recipient.is_some()));
    let (p, m, s) = (path.clone(), manifest.clone(), staging.path().to_path_buf());
    let bytes = blocking(move || {
        let bytes = archive::write(&s, &m, &p, recipient.as_ref())?;
        let header = chain::IndexHeader {
            format: chain::INDEX_FORMAT.into(),
            backup: p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            sha256: chain::file_sha256(&p)?,
            layout: catalog::LAYOUT_VERSION,
            link: m.link.clone(),
        };
        chain::write_index(&p, &header, &s.join("index.body"))?;
        Ok(bytes)
    })
    .await?;
    drop(staging);
    Ok(Created {
        path,
        bytes,
        manifest,
        took: began.elapsed(),
    })
}

/// A backup file found in a folder.
#[derive(Debug)]
pub struct Listed {
    pub path: PathBuf,
    pub bytes: u64,
    pub encrypted: bool,
    /// Read from the file for unencrypted backups; `None` for encrypted ones or damaged files.
    pub manifest: Option<Manifest>,
}

pub(crate) fn is_backup_name(name: &str) -> bool {
    name.starts_with("herald-") && (name.ends_with(".tar.zst") || name.ends_with(".tar.zst.age"))
}

/// Backups in `dir`, oldest first (names sort by time).
pub fn list(dir: &Path) -> Result<Vec<Listed>, BackupError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if !is_backup_name(&name) {
            continue;
        }
        let path = e.path();
        let encrypted = name.ends_with(".age");
        let manifest = if encrypted {
            None
        } else {
            archive::read_manifest(&path, None).ok()
        };
        out.push(Listed {
            bytes: e.metadata()?.len(),
            path,
            encrypted,
            manifest,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The time of the newest backup in `dir` (from its name), if any.
pub fn newest_ms(dir: &Path) -> Option<i64> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            is_backup_name(&name).then(|| ms_from_name(&name)).flatten()
        })
        .max()
}

fn ms_from_name(name: &str) -> Option<i64> {
    let stamp = name.strip_prefix("herald-")?.get(..19)?; // 20261122T101530.123
    let fmt = time::macros::format_description!(
        "[year][month][day]T[hour][minute][second].[subsecond digits:3]"
    );
    let t = time::PrimitiveDateTime::parse(stamp, &fmt).ok()?;
    Some((t.assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Checks a backup: it decrypts, every part's SHA-256 and row count match the manifest, and
/// a restore into a scratch SQLite database, dumped again, gives the same parts.
pub async fn verify(path: &Path, identity: Option<&Path>) -> Result<Manifest, BackupError> {
    let work = tempfile::Builder::new()
        .prefix("herald-verify-")
        .tempdir()?;
    let (p, id, w) = (
        path.to_path_buf(),
        identity.map(Path::to_path_buf),
        work.path().to_path_buf(),
    );
    let (unpacked, manifest) =
        blocking(move || incremental::resolve(&p, id.as_deref(), &w)).await?;
    check_layout(&manifest)?;
    let scratch = Backend::Sqlite(work.path().join("scratch.db"));
    load(&scratch, &unpacked, &manifest, Restore::default()).await?;
    let again = work.path().join("again");
    let snap = dump(&scratch, &again).await?;
    for part in &manifest.tables {
        let Some(got) = snap.parts.iter().find(|p| p.name == part.name) else {
            return Err(BackupError::Mismatch(format!(
                "{} was not restored",
                part.name
            )));
        };
        if got.rows != part.rows || got.sha256 != part.sha256 {
            return Err(BackupError::Mismatch(format!(
                "{}: restored {} rows (SHA-256 {}), the manifest has {} ({})",
                part.name, got.rows, got.sha256, part.rows, part.sha256
            )));
        }
    }
    Ok(manifest)
}

fn check_layout(m: &Manifest) -> Result<(), BackupError> {
    if m.layout != catalog::LAYOUT_VERSION {
        return Err(BackupError::Usage(format!(
            "the backup has table layout {}, this build restores layout {}",
            m.layout,
            catalog::LAYOUT_VERSION
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for p in &m.tables {
        let Some(t) = catalog::table(&p.name) else {
            return Err(BackupError::Corrupt(format!("unknown table `{}`", p.name)));
        };
        // The manifest is untrusted: a part is read from exactly `tables/<its table>.jsonl`,
        // once.
        if p.file != format!("tables/{}.jsonl", t.name) || !seen.insert(t.name) {
            return Err(BackupError::Corrupt(format!(
                "{}: the part `{}` is not where that table's rows are",
                t.name,
                p.file.chars().take(200).collect::<String>()
            )));
        }
        let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
        if p.columns != cols {
            return Err(BackupError::Corrupt(format!(
                "{}: columns {:?}, expected {:?}",
                p.name, p.columns, cols
            )));
        }
    }
    Ok(())
}

/// Restores a backup into `into` (`sqlite://PATH` or `postgres://…`), refusing a non-empty
/// target unless `force`. Deliveries that were in flight at the snapshot go back to the
/// queue; an audit entry records who restored what and why.
pub async fn restore(
    path: &Path,
    into: &str,
    identity: Option<&Path>,
    force: bool,
    actor: &str,
    reason: &str,
) -> Result<Manifest, BackupError> {
    let target = Backend::parse(into).map_err(BackupError::Usage)?;
    let work = tempfile::Builder::new()
        .prefix("herald-restore-")
        .tempdir()?;
    let (p, id, w) = (
        path.to_path_buf(),
        identity.map(Path::to_path_buf),
        work.path().to_path_buf(),
    );
    let (unpacked, manifest) =
        blocking(move || incremental::resolve(&p, id.as_deref(), &w)).await?;
    check_layout(&manifest)?;
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let after = serde_json::json!({
        "backup": file,
        "created_at": manifest.created_at,
        "source": manifest.source,
        "rows": manifest.rows(),
        "forced": force,
    });
    let finish = Finish {
        now: crate::core::types::now_millis(),
        actor: actor.to_string(),
        target: file,
        after: after.to_string(),
        reason: reason.to_string(),
    };
    load(
        &target,
        &unpacked,
        &manifest,
        Restore {
            force,
            finish: Some(finish),
        },
    )
    .await?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_reads_each_table_from_its_own_part_only() {
        let (tables, _) = catalog::TABLES.split_at(1);
        let t = &tables[0];
        let part = |file: &str| Part {
            name: t.name.into(),
            file: file.into(),
            columns: t.columns.iter().map(|(c, _)| c.to_string()).collect(),
            rows: 0,
            sha256: String::new(),
        };
        let manifest = |tables: Vec<Part>| Manifest {
            format: archive::FORMAT.into(),
            layout: catalog::LAYOUT_VERSION,
            herald_version: String::new(),
            source: "sqlite".into(),
            source_schema: 1,
            created_at: String::new(),
            created_at_ms: 0,
            tables,
            link: None,
            changes: Vec::new(),
        };
        let own = format!("tables/{}.jsonl", t.name);
        assert!(check_layout(&manifest(vec![part(&own)])).is_ok());
        for bad in [
            vec![part("../unpacked-1/tables/messages.jsonl")],
            vec![part("/etc/passwd")],
            vec![part(&own), part(&own)],
        ] {
            let e = check_layout(&manifest(bad)).unwrap_err().to_string();
            assert!(e.contains("not where that table's rows are"), "{e}");
        }
    }

    #[test]
    fn file_names_sort_by_time_and_read_back() {
        let a = file_name(1_795_000_000_123, false);
        let b = file_name(1_795_000_001_000, true);
        assert_eq!(a, "herald-20261118T110640.123Z.tar.zst");
        assert!(a < b);
        assert!(is_backup_name(&a) && is_backup_name(&b));
        assert_eq!(ms_from_name(&a), Some(1_795_000_000_123));
        assert_eq!(ms_from_name(&b), Some(1_795_000_001_000));
        assert!(!is_backup_name("herald-x.tar.zst.partial"));
    }

    #[test]
    fn values_are_checked_against_the_column_kind() {
        assert!(check_value("t", 0, "c", Kind::Int, &Value::from(5)).is_ok());
        assert!(check_value("t", 0, "c", Kind::Int, &Value::Null).is_ok());
        assert!(check_value("t", 0, "c", Kind::Int, &Value::from("5")).is_err());
        assert!(check_value("t", 0, "c", Kind::Int, &Value::from(1.5)).is_err());
        assert!(check_value("t", 0, "c", Kind::Text, &Value::from(5)).is_err());
        let e = check_value("messages", 2, "status", Kind::Text, &Value::Bool(true))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("messages row 3") && e.contains("`status`"),
            "{e}"
        );
    }
}
