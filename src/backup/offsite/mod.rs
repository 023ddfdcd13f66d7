//! Off-site copies: each backup file uploaded to S3-compatible object storage with its
//! SHA-256, listed, fetched back (the checksum checked before the file is written), and
//! pruned to the newest `keep` there too.

mod s3;
mod sigv4;

pub use s3::{Bucket, Object};

use super::{BackupError, is_backup_name};
use crate::config::OffsiteConfig;
use std::path::{Path, PathBuf};

/// Uploads the backup file at `path` under its own name, after any backup of its chain
/// that the bucket lacks (an earlier upload failed): a copy there is always restorable.
/// Returns its name.
pub async fn push(cfg: &OffsiteConfig, path: &Path) -> Result<String, BackupError> {
    let bucket = Bucket::new(cfg)?;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut missing = Vec::new();
    let mut at = path.to_path_buf();
    for _ in 0..1000 {
        let Some(link) = super::chain::index_header(&at).and_then(|h| h.link) else {
            break;
        };
        if !is_backup_name(&link.parent) || link.parent.contains('/') {
            break;
        }
        if bucket.exists(&link.parent).await? {
            break;
        }
        at = dir.join(&link.parent);
        if !at.exists() {
            return Err(BackupError::Usage(format!(
                "{} needs {}, which is neither in the bucket nor beside it",
                path.display(),
                link.parent
            )));
        }
        missing.push(at.clone());
    }
    for m in missing.iter().rev() {
        push_one(&bucket, m).await?;
        tracing::info!(path = %m.display(), "a missing link of the chain copied off-site");
    }
    push_one(&bucket, path).await
}

async fn push_one(bucket: &Bucket, path: &Path) -> Result<String, BackupError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .filter(|n| is_backup_name(n))
        .ok_or_else(|| {
            BackupError::Usage(format!("{} is not a Herald backup file", path.display()))
        })?;
    let bytes = tokio::fs::read(path).await?;
    let sha = sigv4::sha256_hex(&bytes);
    let parent = super::chain::index_header(path)
        .and_then(|h| h.link)
        .map(|l| l.parent);
    bucket.put(&name, bytes, &sha, parent.as_deref()).await?;
    Ok(name)
}

/// The backups there, oldest first (names sort by time).
pub async fn list(cfg: &OffsiteConfig) -> Result<Vec<Object>, BackupError> {
    Ok(Bucket::new(cfg)?
        .list()
        .await?
        .into_iter()
        .filter(|o| is_backup_name(&o.name))
        .collect())
}

/// Downloads `name` into `dir`, and for an incremental every backup of its chain back to
/// the full one, each written (mode 0600, whole or not at all) only after its SHA-256
/// matched the one it was uploaded with. Returns the path of `name`.
pub async fn fetch(cfg: &OffsiteConfig, name: &str, dir: &Path) -> Result<PathBuf, BackupError> {
    let bucket = Bucket::new(cfg)?;
    let mut next = Some(name.to_string());
    let mut first = None;
    // Bounded: a chain is never longer than `[backup] full_every` (at most 1,000).
    for _ in 0..1000 {
        let Some(n) = next.take() else { break };
        let (path, parent) = fetch_one(&bucket, &n, dir).await?;
        first.get_or_insert(path);
        next = parent;
    }
    if let Some(n) = next {
        return Err(BackupError::Corrupt(format!(
            "the chain of `{name}` is longer than 1,000 backups (next: {n})"
        )));
    }
    first.ok_or_else(|| BackupError::Usage(format!("`{name}`: nothing fetched")))
}

async fn fetch_one(
    bucket: &Bucket,
    name: &str,
    dir: &Path,
) -> Result<(PathBuf, Option<String>), BackupError> {
    if !is_backup_name(name) || name.contains('/') {
        return Err(BackupError::Usage(format!(
            "`{name}` is not the name of a Herald backup"
        )));
    }
    let got = bucket.get(name).await?;
    let sha = sigv4::sha256_hex(&got.bytes);
    match &got.sha256 {
        Some(e) if *e == sha => {}
        Some(e) => {
            return Err(BackupError::Corrupt(format!(
                "the off-site copy {name} has SHA-256 {sha}, but {e} was uploaded"
            )));
        }
        None => {
            return Err(BackupError::Corrupt(format!(
                "the off-site copy {name} has no recorded SHA-256: it was not uploaded by Herald"
            )));
        }
    }
    let out = dir.join(name);
    let dir = dir.to_path_buf();
    let target = out.clone();
    let bytes = got.bytes;
    tokio::task::spawn_blocking(move || -> Result<(), BackupError> {
        use std::io::Write;
        crate::private_fs::dir(&dir)?;
        let partial = dir.join(format!(".{}.partial", std::process::id()));
        let mut f = crate::private_fs::create(&partial)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&partial, &target)?;
        Ok(())
    })
    .await
    .map_err(|e| BackupError::Io(std::io::Error::other(e)))??;
    Ok((out, got.parent))
}

/// Deletes all but the newest `keep` backups there; returns the names deleted.
/// A kept incremental's chain is kept too.
pub async fn prune(cfg: &OffsiteConfig) -> Result<Vec<String>, BackupError> {
    let all = list(cfg).await?;
    let bucket = Bucket::new(cfg)?;
    let extra = all.len().saturating_sub(cfg.keep);
    let names: std::collections::HashSet<&str> = all.iter().map(|o| o.name.as_str()).collect();
    let mut needed = std::collections::HashSet::new();
    for o in all.iter().skip(extra) {
        let mut at = o.name.clone();
        for _ in 0..all.len() {
            let Some(parent) = bucket.parent_of(&at).await? else {
                break;
            };
            if !names.contains(parent.as_str()) || !needed.insert(parent.clone()) {
                break;
            }
            at = parent;
        }
    }
    let mut gone = Vec::new();
    for o in all.into_iter().take(extra) {
        if needed.contains(&o.name) {
            continue;
        }
        bucket.delete(&o.name).await?;
        gone.push(o.name);
    }
    Ok(gone)
}
