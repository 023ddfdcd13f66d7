//! The heartbeat checker: once a second, on the one node holding the `heartbeats` job
//! lease (a node killed with -9 loses it within the lease's 5 s and another takes over),
//! every silent heartbeat opens its incident and every heartbeat pinged again resolves
//! its own. Both are ordinary alert batches: repeats change nothing.

use crate::api::AppState;
use crate::core::types::{new_id, now_millis};
use crate::store::Ingested;
use std::time::Duration;

/// How long a checker's lease lasts without renewal.
const LEASE_MS: i64 = 5_000;

/// One pass: returns the incidents it opened or resolved.
pub async fn check(state: &AppState) -> Result<Vec<Ingested>, crate::store::StoreError> {
    if state.heartbeats.is_empty() {
        return Ok(vec![]);
    }
    let now = now_millis();
    let ids = state.heartbeats.iter().map(|h| h.cfg.id.clone()).collect();
    let pings = state.store.incidents.heartbeat_pings(ids, now).await?;
    let mut batches = Vec::new();
    for h in state.heartbeats.iter() {
        let Some((_, last)) = pings.iter().find(|(id, _)| *id == h.cfg.id) else {
            continue;
        };
        match h.silent_since(*last, now) {
            Some(since) => batches.push(h.batch(Some(since), *last, new_id("inc"), now)),
            // Alive: resolve its incident, if one is open (a read first: most ticks find none).
            None => {
                if state
                    .store
                    .incidents
                    .open_incident(&h.key())
                    .await?
                    .is_some()
                {
                    batches.push(h.batch(None, *last, new_id("inc"), now));
                }
            }
        }
    }
    if batches.is_empty() {
        return Ok(vec![]);
    }
    let done = state.store.incidents.ingest(batches).await?;
    let changed: Vec<Ingested> = done
        .into_iter()
        .filter(|d| *d != Ingested::Unchanged)
        .collect();
    if !changed.is_empty() {
        tracing::warn!(changes = ?changed, "heartbeats: incidents opened or resolved");
        state.pager_wake.notify_one();
    }
    Ok(changed)
}

pub async fn run(state: AppState) {
    if state.heartbeats.is_empty() {
        return;
    }
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        match state
            .store
            .cluster
            .take_job_lease("heartbeats", &state.node_id, now_millis(), LEASE_MS)
            .await
        {
            Ok(true) => {
                if let Err(e) = check(&state).await {
                    tracing::warn!(error = %e, "heartbeat check failed; it runs again in a second");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot take the heartbeat lease"),
        }
    }
}
