//! Chains on disk: when to take an incremental, how a chain is found and checked from its
//! newest file back to its full backup, and pruning that never deletes what a kept backup
//! still needs.

use super::chain::{self, IndexHeader};
use super::{BackupError, Created, Manifest, archive, create_after, list};
use crate::config::Backend;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The newest backup in `dir` with an index that still matches its file: what an
/// incremental is taken against.
fn chain_head(dir: &Path) -> Result<Option<(PathBuf, IndexHeader)>, BackupError> {
    let Some(newest) = list(dir)?.pop() else {
        return Ok(None);
    };
    let Some(head) = chain::index_header(&newest.path) else {
        return Ok(None);
    };
    let sha = chain::file_sha256(&newest.path)?;
    if head.sha256 != sha || head.layout != super::catalog::LAYOUT_VERSION {
        tracing::warn!(path = %newest.path.display(), "the newest backup does not match its index: taking a full backup");
        return Ok(None);
    }
    Ok(Some((newest.path, head)))
}

/// A backup that is an incremental when the newest backup in `dir` can be its parent and
/// the chain has fewer than `full_every` backups; a full one otherwise (`full_every` 1:
/// always full).
pub async fn create_auto(
    backend: &Backend,
    dir: &Path,
    encrypt_to: Option<&str>,
    full_every: u32,
) -> Result<Created, BackupError> {
    let d = dir.to_path_buf();
    let head = super::blocking(move || chain_head(&d)).await?;
    let parent = head.filter(|(_, h)| {
        let next = h.link.as_ref().map_or(1, |l| l.position + 1);
        next < full_every
    });
    create_after(backend, dir, encrypt_to, parent).await
}

/// Unpacks `path` and, for an incremental, every backup of its chain (found beside it, each
/// checked against the SHA-256 its child recorded), applying the changes in order. Returns
/// the folder with the full state and the manifest it matches (checked part by part).
pub fn resolve(
    path: &Path,
    identity: Option<&Path>,
    work: &Path,
) -> Result<(PathBuf, Manifest), BackupError> {
    // From the newest back to the full backup.
    let mut files: Vec<(PathBuf, Manifest, PathBuf)> = Vec::new();
    let mut at = path.to_path_buf();
    loop {
        if files.len() > 10_000 {
            return Err(BackupError::Corrupt("the chain does not end".into()));
        }
        let dir = work.join(format!("unpacked-{}", files.len()));
        let m = archive::unpack(&at, identity, &dir)?;
        let link = m.link.clone();
        files.push((at.clone(), m, dir));
        let Some(link) = link else { break };
        if link.parent.contains('/') || !super::is_backup_name(&link.parent) {
            return Err(BackupError::Corrupt(format!(
                "the parent `{}` is not a backup file name",
                link.parent.chars().take(200).collect::<String>()
            )));
        }
        let parent = at
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(&link.parent);
        if !parent.exists() {
            return Err(BackupError::Corrupt(format!(
                "{} needs {} (its chain), which is not beside it",
                at.display(),
                link.parent
            )));
        }
        let sha = chain::file_sha256(&parent)?;
        if sha != link.parent_sha256 {
            return Err(BackupError::Corrupt(format!(
                "the chain is broken: {} has SHA-256 {sha}, but {} was taken after a file with {}",
                link.parent,
                at.display(),
                link.parent_sha256
            )));
        }
        at = parent;
    }
    let Some((_, base, mut state)) = files.pop() else {
        return Err(BackupError::Corrupt("nothing to restore".into()));
    };
    let mut manifest = base;
    let mut step = 0;
    while let Some((_, m, changes)) = files.pop() {
        let out = work.join(format!("state-{step}"));
        chain::apply(&state, &changes, &m, &out)?;
        // Disk stays at about two states however long the chain.
        let _ = std::fs::remove_dir_all(&state);
        let _ = std::fs::remove_dir_all(&changes);
        state = out;
        manifest = m;
        step += 1;
    }
    Ok((state, manifest))
}

/// Deletes all but the newest `keep` backups in `dir`, except those a kept incremental still
/// needs (its parents back to the full backup), with their indexes; returns what it deleted.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let all = list(dir)?;
    let excess = all.len().saturating_sub(keep);
    let mut needed: HashSet<String> = HashSet::new();
    for b in all.iter().skip(excess) {
        let mut at = b.path.clone();
        // Bounded by the number of files: a chain cannot be longer.
        for _ in 0..all.len() {
            let Some(link) = chain::index_header(&at).and_then(|h| h.link) else {
                break;
            };
            if !needed.insert(link.parent.clone()) {
                break;
            }
            at = dir.join(&link.parent);
        }
    }
    let mut gone = Vec::new();
    for b in all.into_iter().take(excess) {
        let name = b
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if needed.contains(&name) {
            continue;
        }
        std::fs::remove_file(&b.path)?;
        let _ = std::fs::remove_file(chain::index_path(&b.path));
        gone.push(b.path);
    }
    Ok(gone)
}
