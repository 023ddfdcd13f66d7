//! One bad webhook receiver slows only itself: each endpoint (origin) has its own circuit and
//! its own share of the dispatcher's calls.

use crate::utils::{Receiver, TestHerald};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn percentile(sorted: &[u128], p: f64) -> u128 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn batch(h: &TestHerald, url: &str, n: usize, priority: &str) {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"to": {"webhook": url}, "content": {"text": format!("n{i}")}, "priority": priority}))
        .collect();
    let (code, body) = h
        .call(
            reqwest::Method::POST,
            "/v1/messages/batch",
            Some(json!({ "messages": items })),
        )
        .await;
    assert_eq!(code, 202, "{body}");
}

/// Sends one message at a time to `url` and returns the latency of each until `sent`.
async fn healthy_latencies(h: &TestHerald, url: &str, n: usize) -> Vec<u128> {
    let mut out = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let (code, m) = h
            .send(json!({"to": {"webhook": url}, "content": {"text": format!("h{i}")}}))
            .await;
        assert_eq!(code, 202, "{m}");
        h.wait_status(m["id"].as_str().unwrap(), "sent").await;
        out.push(t.elapsed().as_millis());
    }
    out.sort_unstable();
    out
}

#[tokio::test]
async fn a_dead_endpoint_does_not_delay_a_healthy_one() {
    let h = TestHerald::start().await;
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{dead_port}/hook");
    batch(&h, &dead, 200, "normal").await;
    // Wait until the dead endpoint's own circuit has opened.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut opened = false;
    while Instant::now() < deadline && !opened {
        let (_, p) = h.get("/v1/providers").await;
        opened = p["data"]
            .as_array()
            .or(p.as_array())
            .into_iter()
            .flatten()
            .filter(|v| v["id"] == "webhook")
            .any(|v| {
                v["endpoints"]["not_closed"].as_array().is_some_and(|l| {
                    l.iter()
                        .any(|e| e["endpoint"] == format!("http://127.0.0.1:{dead_port}"))
                })
            });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(opened, "the dead endpoint's circuit never opened");
    let (_, providers) = h.get("/v1/providers").await;
    let live = Receiver::start().await;
    let lat = healthy_latencies(&h, &live.url, 30).await;
    eprintln!(
        "healthy endpoint beside 200 sends to a dead one: p50 {} ms, p99 {} ms, max {} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    assert_eq!(live.received().len(), 30);
    // The provider itself stays callable: its circuit is not the dead endpoint's.
    let webhook = providers
        .as_array()
        .or(providers["data"].as_array())
        .into_iter()
        .flatten()
        .find(|v| v["id"] == "webhook")
        .cloned()
        .unwrap();
    assert_eq!(webhook["circuit"], "closed", "{webhook}");
    h.stop().await;
}

#[tokio::test]
async fn a_slow_endpoint_holds_only_its_share() {
    let h = TestHerald::start_with(|c| {
        c.dispatch.concurrency = 8;
        c.webhook.timeout = herald::config::Dur::secs(30);
    })
    .await;
    let slow = Receiver::start().await;
    slow.delay(Duration::from_millis(1500));
    batch(&h, &slow.url, 60, "normal").await;
    let fast = Receiver::start().await;
    // Until its first calls finish the slow endpoint looks healthy and, alone, may take every
    // slot; once they have (1.5 s) it counts as slow. Watch it from then on while the fast
    // endpoint is served.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let watch_slow = async {
        let mut most = 0;
        for _ in 0..100 {
            let in_flight = slow.started() as usize - slow.received().len();
            most = most.max(in_flight);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        most
    };
    let (most, lat) = tokio::join!(watch_slow, healthy_latencies(&h, &fast.url, 10));
    eprintln!(
        "fast endpoint beside a 1.5 s one (concurrency 8): p50 {} ms, p99 {} ms; slow endpoint held at most {most} calls",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    assert_eq!(fast.received().len(), 10);
    // Slow calls count as unhealthy: at most half of 8 while others have work.
    assert!(most <= 4, "the slow endpoint held {most} of 8 slots");
    assert!(
        slow.received().len() < 60,
        "the fast endpoint waited for the whole slow backlog"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_lone_healthy_endpoint_uses_every_slot() {
    let h = TestHerald::start_with(|c| c.dispatch.concurrency = 8).await;
    let r = Receiver::start().await;
    r.delay(Duration::from_millis(300));
    batch(&h, &r.url, 40, "high").await; // `high` may use every slot
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while r.received().len() < 40 && Instant::now() < deadline {
        most = most.max(r.started() as usize - r.received().len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(r.received().len(), 40);
    assert_eq!(
        most, 8,
        "a lone endpoint may use all 8 slots, it held {most}"
    );
    h.stop().await;
}
