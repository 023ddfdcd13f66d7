//! The retention job: every `[retention] every`, under the `retention` job lease (one node of
//! a cluster at a time), deletes what is past its keep-time in bounded batches until a pass
//! finds less than a batch left (at most 100 passes a run, so it never holds storage long).

use crate::config::RetentionConfig;
use crate::core::types::now_millis;
use crate::metrics::Metrics;
use crate::store::{Cluster, Purged, Retention, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One run: passes until done; returns what was deleted in all.
pub async fn run_once<S: Retention + ?Sized>(
    store: &S,
    cfg: &RetentionConfig,
) -> Result<Purged, StoreError> {
    let mut all = Purged::default();
    for _ in 0..100 {
        let cut = crate::store::rules::cutoffs(now_millis(), cfg);
        let p = store.purge(cut).await?;
        all.add(&p);
        if p.kinds().iter().all(|(_, n)| *n < cut.batch) {
            break;
        }
    }
    Ok(all)
}

pub async fn run<S: Retention + Cluster + ?Sized>(
    store: Arc<S>,
    cfg: RetentionConfig,
    node: String,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    if !cfg.enabled {
        return;
    }
    let every = cfg.every.0.max(Duration::from_secs(1));
    // The lease lasts a whole period, so one node runs the job once per period.
    let ttl = (every.as_millis() as i64).max(60_000);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match store
            .take_job_lease("retention", &node, now_millis(), ttl)
            .await
        {
            Ok(true) => match run_once(store.as_ref(), &cfg).await {
                Ok(p) => {
                    metrics.observe_retention(&p);
                    if p.total() > 0 {
                        tracing::info!(purged = ?p, "retention: old rows deleted");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "retention pass failed; it runs again later"),
            },
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot take the retention lease"),
        }
    }
}
