//! Off-site copies: each backup file uploaded to S3-compatible object storage with its
//! SHA-256, listed, fetched back (the checksum checked before the file is written), and
//! pruned to the newest `keep` there too.

mod s3;
mod sigv4;

pub use s3::{Bucket, Object};

use super::{BackupError, is_backup_name};
use crate::config::OffsiteConfig;
use std::path::{Path, PathBuf};

/// Uploads the backup file at `path` under its own name; returns that name.
pub async fn push(cfg: &OffsiteConfig, path: &Path) -> Result<String, BackupError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .filter(|n| is_backup_name(n))
        .ok_or_else(|| {
            BackupError::Usage(format!("{} is not a Herald backup file", path.display()))
        })?;
    let bytes = tokio::fs::read(path).await?;
    let sha = sigv4::sha256_hex(&bytes);
    Bucket::new(cfg)?.put(&name, bytes, &sha).await?;
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

/// Downloads `name` into `dir` (mode 0600, written whole or not at all) after checking its
/// SHA-256 against the one it was uploaded with.
pub async fn fetch(cfg: &OffsiteConfig, name: &str, dir: &Path) -> Result<PathBuf, BackupError> {
    if !is_backup_name(name) || name.contains('/') {
        return Err(BackupError::Usage(format!(
            "`{name}` is not the name of a Herald backup"
        )));
    }
    let (bytes, expected) = Bucket::new(cfg)?.get(name).await?;
    let got = sigv4::sha256_hex(&bytes);
    match expected {
        Some(e) if e == got => {}
        Some(e) => {
            return Err(BackupError::Corrupt(format!(
                "the off-site copy {name} has SHA-256 {got}, but {e} was uploaded"
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
    Ok(out)
}

/// Deletes all but the newest `keep` backups there; returns the names deleted.
pub async fn prune(cfg: &OffsiteConfig) -> Result<Vec<String>, BackupError> {
    let all = list(cfg).await?;
    let bucket = Bucket::new(cfg)?;
    let extra = all.len().saturating_sub(cfg.keep);
    let mut gone = Vec::new();
    for o in all.into_iter().take(extra) {
        bucket.delete(&o.name).await?;
        gone.push(o.name);
    }
    Ok(gone)
}
