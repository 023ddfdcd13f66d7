//! `db-failover`: PostgreSQL's primary is lost and its replica takes over. Two throwaway
//! clusters, a primary and a streaming replica it commits to synchronously (so what was
//! acknowledged is on both); two Herald nodes with both hosts in `storage.url`. Under load
//! the primary crashes (immediate stop), the replica is promoted, the nodes find it and move
//! their pools there; accepts spool meanwhile and are replayed into the new primary.

use super::DrillArgs;
use super::harness::{Load, Work, settle};
use super::pg::Cluster;
use super::scenarios::{
    Drill, metric, readiness_until, sleep_until, time_until, waited, webhook_body,
};
use crate::core::types::now_millis;
use anyhow::{Result, bail};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, super::pg::PgError> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// Whether the primary reports a synchronous standby streaming from it.
async fn has_sync_standby(url: &str) -> bool {
    let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .connect(url)
        .await
    else {
        return false;
    };
    let states: Vec<String> =
        sqlx::query_scalar("SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    pool.close().await;
    states.iter().any(|s| s == "sync")
}

pub(super) async fn db_failover(w: &Work, a: &DrillArgs, d: &mut Drill) -> Result<()> {
    let (mut primary, replica) = blocking(|| {
        let p = Cluster::start()?;
        let r = p.replica()?;
        Ok((p, r))
    })
    .await?;
    // Synchronous commit to the replica, set on the primary's command line only (the
    // replica, once promoted, must not wait for a standby it does not have).
    primary.set_settings("-c synchronous_standby_names=* -c synchronous_commit=on");
    let primary = Arc::new(primary);
    let replica = Arc::new(replica);
    let p = primary.clone();
    blocking(move || {
        p.down();
        p.up()
    })
    .await?;
    let primary_url = primary.url();
    if time_until(Duration::from_secs(20), || has_sync_standby(&primary_url))
        .await
        .is_none()
    {
        bail!("the replica did not become a synchronous standby of the primary");
    }
    d.note(format!(
        "PostgreSQL primary on {} and a synchronous streaming replica on {}",
        primary.port(),
        replica.port()
    ));
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        primary.port(),
        replica.port()
    );
    d.extra("storage_url", url.clone());
    let (_sink, sink) = w.sink("0s").await?;
    let extra = format!("[storage]\nurl = \"{url}\"\n[dispatch]\nconcurrency = 32\n");
    let (_node_a, a_base) = w.serve("node-a", &extra).await?;
    let (_node_b, b_base) = w.serve("node-b", &extra).await?;
    let nodes = [a_base.clone(), b_base.clone()];
    d.note(format!("nodes a ({a_base}) and b ({b_base}) on both hosts"));
    let start = Instant::now();
    let load = Load::start(&w.http, nodes.to_vec(), a.rate, webhook_body(&sink));
    d.note(format!("load: {} webhooks/s over both nodes", a.rate));
    sleep_until(start, Duration::from_secs(3)).await;

    let p = primary.clone();
    tokio::task::spawn_blocking(move || p.down()).await?;
    let fault_ms = now_millis();
    let fault = Instant::now();
    d.note("primary crashed (immediate stop)");
    let detect = readiness_until(w, &a_base, false, Duration::from_secs(15)).await;
    d.report.detect_ms = detect;
    d.note(format!(
        "node a reports storage down after {}",
        waited(detect)
    ));

    // What a failover manager does: promote the replica.
    let r = replica.clone();
    blocking(move || r.promote()).await?;
    let promoted_ms = fault.elapsed().as_millis() as u64;
    d.extra("promoted_after_ms", promoted_ms);
    d.note("replica promoted");
    let mut followed = Vec::new();
    for base in &nodes {
        let t = readiness_until(w, base, true, Duration::from_secs(30)).await;
        followed.push(t);
        d.note(format!("{base} ready on the new primary ({})", waited(t)));
    }
    let ready_ms = fault.elapsed().as_millis() as u64;
    if followed.iter().any(Option::is_none) {
        d.note("a node did not follow the new primary within 30 s");
    } else {
        d.extra("nodes_ready_after_ms", ready_ms);
    }
    sleep_until(start, Duration::from_secs(12)).await;
    let (accepted, refused) = load.finish().await;
    let mut spooled = 0;
    for base in &nodes {
        spooled += metric(w, base, "herald_messages_spooled_total").await;
    }
    d.extra("spooled", spooled);
    d.note(format!(
        "load stopped: {} acknowledged ({spooled} spooled during the failover)",
        accepted.len()
    ));
    // Past the 60 s lease too: a claim committed as the primary crashed, whose answer never
    // came back, is sent when its lease expires: late, not lost.
    let fates = settle(&w.http, &b_base, &accepted, Duration::from_secs(90)).await;
    d.reckon(&fates, refused, Some(fault_ms));
    // Full service means both nodes on the new primary as well as deliveries caught up.
    if let Some(r) = d.report.recover_ms
        && followed.iter().all(Option::is_some)
    {
        d.report.recover_ms = Some(r.max(ready_ms));
    } else {
        d.report.recover_ms = None;
    }
    d.reckon_receiver(w, &sink, &fates).await;
    d.note("reckoned");
    Ok(())
}
