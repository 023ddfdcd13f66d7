//! Scheduled backups inside `serve`: one node of a cluster at a time (the holder of the
//! `backup` job lease) takes a backup when the newest one in the folder is older than
//! `[backup] every`, then keeps the newest `keep`. The newest backup's time is exported as
//! `herald_backup_last_success_timestamp_seconds` for the backup-stale alert.

use crate::config::{Backend, BackupConfig};
use crate::core::types::now_millis;
use crate::metrics::Metrics;
use crate::store::Cluster;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Schedule {
    pub backend: Backend,
    pub every: Duration,
    pub keep: usize,
    pub dir: PathBuf,
    pub encrypt_to: Option<String>,
    pub offsite: Option<crate::config::OffsiteConfig>,
    pub full_every: u32,
}

impl Schedule {
    pub fn from_config(cfg: &BackupConfig, backend: Backend, dir: PathBuf) -> Option<Schedule> {
        Some(Schedule {
            backend,
            every: cfg.every?.0,
            keep: cfg.keep.max(1),
            dir,
            encrypt_to: cfg.encrypt_to.clone(),
            offsite: cfg.offsite.clone(),
            full_every: cfg.full_every,
        })
    }

    /// How often the job looks: often enough to be on time, never more than every 30 s.
    fn tick(&self) -> Duration {
        (self.every / 10).clamp(Duration::from_millis(200), Duration::from_secs(30))
    }
}

pub async fn run(
    s: Schedule,
    store: Arc<dyn Cluster>,
    node: String,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    metrics.backup_interval.set(s.every.as_secs() as i64);
    let mut newest = crate::backup::newest_ms(&s.dir);
    let tick = s.tick();
    let ttl = (tick.as_millis() as i64 * 3).max(60_000);
    loop {
        if let Some(ms) = crate::backup::newest_ms(&s.dir).or(newest) {
            newest = Some(ms);
            metrics.backup_last_success.set(ms / 1000);
        }
        let due = newest.is_none_or(|ms| now_millis() - ms >= s.every.as_millis() as i64);
        if due {
            match store
                .take_job_lease("backup", &node, now_millis(), ttl)
                .await
            {
                Ok(true) => {
                    if let Some(ms) = backup_once(&s, &metrics).await {
                        newest = Some(ms);
                        metrics.backup_last_success.set(ms / 1000);
                    }
                }
                Ok(false) => {} // another node backs up
                Err(e) => tracing::warn!(error = %e, "cannot take the backup lease"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

/// Takes one backup and prunes old ones; returns the new backup's time.
async fn backup_once(s: &Schedule, metrics: &Metrics) -> Option<i64> {
    match crate::backup::create_auto(&s.backend, &s.dir, s.encrypt_to.as_deref(), s.full_every)
        .await
    {
        Ok(c) => {
            metrics.backup_last_bytes.set(c.bytes as i64);
            metrics.backup_last_duration.set(c.took.as_secs_f64());
            tracing::info!(
                path = %c.path.display(),
                bytes = c.bytes,
                rows = c.manifest.rows(),
                incremental = c.manifest.link.as_ref().map(|l| l.position),
                took_ms = c.took.as_millis() as u64,
                "backup written"
            );
            let dir = s.dir.clone();
            let keep = s.keep;
            match tokio::task::spawn_blocking(move || crate::backup::prune(&dir, keep)).await {
                Ok(Ok(gone)) => {
                    for p in gone {
                        tracing::info!(path = %p.display(), "old backup deleted");
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot delete old backups"),
                Err(e) => tracing::warn!(error = %e, "cannot delete old backups"),
            }
            if let Some(o) = &s.offsite {
                copy_offsite(o, &c.path, metrics).await;
            }
            Some(c.manifest.created_at_ms)
        }
        Err(e) => {
            metrics.backup_failures.inc();
            tracing::error!(error = %e, "scheduled backup failed; will try again");
            None
        }
    }
}

/// Uploads the new backup and prunes the copies there. A failure is logged and counted; the
/// local backup stands, and the next one is uploaded as usual.
async fn copy_offsite(o: &crate::config::OffsiteConfig, path: &std::path::Path, metrics: &Metrics) {
    use crate::backup::offsite;
    match offsite::push(o, path).await {
        Ok(name) => {
            metrics.backup_offsite_last_success.set(now_millis() / 1000);
            tracing::info!(name, bucket = %o.bucket, "backup copied off-site");
            match offsite::prune(o).await {
                Ok(gone) => {
                    for name in gone {
                        tracing::info!(name, "old off-site copy deleted");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot prune off-site copies"),
            }
        }
        Err(e) => {
            metrics.backup_offsite_failures.inc();
            tracing::error!(error = %e, "cannot copy the backup off-site; will try with the next one");
        }
    }
}
