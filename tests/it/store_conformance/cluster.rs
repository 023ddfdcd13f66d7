//! Conformance, cluster: job leases, dead nodes reaped, rate slots shared by nodes.

use super::*;

/// A job lease belongs to one holder until it expires (by the store's clock), then to
/// whoever asks; its holder may renew it.
pub async fn job_leases_are_exclusive_until_they_expire(s: Arc<dyn Store>) {
    assert!(s.take_job_lease("j", "a", now_millis(), 300).await.unwrap());
    assert!(!s.take_job_lease("j", "b", now_millis(), 300).await.unwrap());
    assert!(
        s.take_job_lease("j", "a", now_millis(), 300).await.unwrap(),
        "renewed"
    );
    assert!(
        s.take_job_lease("other", "b", now_millis(), 300)
            .await
            .unwrap()
    );
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert!(
        s.take_job_lease("j", "b", now_millis(), 300).await.unwrap(),
        "expired"
    );
    assert!(!s.take_job_lease("j", "a", now_millis(), 300).await.unwrap());
}

/// A node silent past `dead_after` is declared dead and its leases freed for others; a node
/// that keeps beating is not.
pub async fn dead_nodes_are_reaped_and_their_leases_freed(s: Arc<dyn Store>) {
    let node = |id: &str| herald::store::NodeView {
        id: id.into(),
        address: "127.0.0.1:1".into(),
        started_at: now_millis(),
        heartbeat_at: now_millis(),
        state: "alive".into(),
        leases: 0,
    };
    s.heartbeat(node("n1")).await.unwrap();
    s.heartbeat(node("n2")).await.unwrap();
    s.accept(vec![message(
        Priority::Normal,
        &[Channel::Inbox],
        Strategy::Failover,
    )])
    .await
    .unwrap();
    let held = s.claim(claim("n1", 10, now_millis() + 1)).await.unwrap();
    assert_eq!(held.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    s.heartbeat(node("n2")).await.unwrap();
    let reaped = s.reap_dead_nodes(now_millis(), 300).await.unwrap();
    assert_eq!(reaped, vec![("n1".to_string(), 1)]);
    let taken = s.claim(claim("n2", 10, now_millis() + 1)).await.unwrap();
    assert_eq!(taken.len(), 1, "n1's lease was freed");
    assert!(taken[0].lease.fence > held[0].lease.fence);
    let views = s.nodes().await.unwrap();
    let state = |id: &str| views.iter().find(|n| n.id == id).map(|n| n.state.clone());
    assert_eq!(state("n1").as_deref(), Some("dead"));
    assert_eq!(state("n2").as_deref(), Some("alive"));
}

/// Cluster rate slots (PostgreSQL: the budget nodes share) refuse past the rate and say how
/// long to wait.
#[tokio::test]
async fn postgres_rate_slots_refuse_over_the_rate() {
    let (s, _) = postgres().await;
    let rate = [herald::config::Rate::parse("2/min").unwrap()];
    assert_eq!(
        s.take_rate_slot("k", &rate, now_millis()).await.unwrap(),
        None
    );
    assert_eq!(
        s.take_rate_slot("k", &rate, now_millis()).await.unwrap(),
        None
    );
    let wait = s.take_rate_slot("k", &rate, now_millis()).await.unwrap();
    assert!(wait.is_some_and(|w| w > 0 && w <= 60_000), "{wait:?}");
    assert_eq!(
        s.take_rate_slot("other", &rate, now_millis())
            .await
            .unwrap(),
        None
    );
}

conformance!(
    job_leases_are_exclusive_until_they_expire,
    dead_nodes_are_reaped_and_their_leases_freed,
);
