//! Node membership: heartbeat every `cluster.heartbeat`; any node marks nodes silent for
//! `cluster.dead_after` dead and gives their leases back to the queue (their late writes are
//! refused by the fence). On a clean stop the node says so.

use crate::config::ClusterConfig;
use crate::core::types::now_millis;
use crate::store::{Cluster, NodeView};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub async fn run(
    store: Arc<dyn Cluster>,
    id: String,
    address: String,
    cfg: ClusterConfig,
    stop: CancellationToken,
) {
    let started_at = now_millis();
    let view = |state: &str| NodeView {
        id: id.clone(),
        address: address.clone(),
        started_at,
        heartbeat_at: now_millis(),
        state: state.into(),
        leases: 0,
    };
    loop {
        // Only a node whose own beat was just recorded judges the others: one that cannot
        // reach storage (an outage) would otherwise, the moment storage returns, find its
        // own row stale, declare itself dead and give away calls it is still finishing.
        let beat = store.heartbeat(view("alive")).await;
        if let Err(e) = &beat {
            tracing::warn!(error = %e, "heartbeat failed");
        }
        let reaped = match beat {
            Ok(()) => {
                store
                    .reap_dead_nodes(now_millis(), cfg.dead_after.0.as_millis() as i64)
                    .await
            }
            Err(_) => Ok(vec![]),
        };
        match reaped {
            Ok(dead) => {
                for (node, freed) in dead {
                    tracing::warn!(
                        node,
                        freed,
                        "node silent too long: marked dead, its leases taken over"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot check other nodes"),
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(cfg.heartbeat.0) => {}
        }
    }
    let _ = store.heartbeat(view("stopped")).await;
}
