//! `kill -9` of the real binary at two moments loses no message that got a 202: while
//! requests are being accepted, and while deliveries are in flight. SIGTERM drains cleanly.

use crate::utils::Receiver;
use crate::utils::process::{CONCURRENCY, HeraldProcess, KEY};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Waits until the receiver has every id in `acked`; returns those still missing.
async fn wait_all_delivered(rx: &Receiver, acked: &HashSet<String>, secs: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let counts = rx.counts();
        let missing: Vec<String> = acked
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `n` webhook messages to `url` in one batch request; returns the accepted ids.
async fn send_batch(base: &str, url: &str, n: usize) -> HashSet<String> {
    let batch: Vec<Value> = (0..n)
        .map(|i| json!({"to":{"webhook":url},"content":{"text":format!("#{i}")}}))
        .collect();
    let r: Value = crate::utils::http()
        .post(format!("{base}/v1/messages/batch"))
        .bearer_auth(KEY)
        .json(&json!({ "messages": batch }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

fn duplicates(rx: &Receiver) -> usize {
    rx.counts().values().filter(|n| **n > 1).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_while_accepting_loses_no_accepted_message() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = HeraldProcess::start(dir.path(), "").await;
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..16 {
        let (acked, stop, base, url) =
            (acked.clone(), stop.clone(), p.base.clone(), rx.url.clone());
        clients.push(tokio::spawn(async move {
            let http = crate::utils::http();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) && i < 100_000 {
                i += 1;
                let body = json!({"to":{"webhook":url},"content":{"text":format!("c{c} #{i}")}});
                let r = http
                    .post(format!("{base}/v1/messages"))
                    .bearer_auth(KEY)
                    .json(&body)
                    .send()
                    .await;
                if let Ok(r) = r
                    && r.status().as_u16() == 202
                    && let Ok(v) = r.json::<Value>().await
                {
                    acked
                        .lock()
                        .unwrap()
                        .insert(v["id"].as_str().unwrap().to_string());
                }
            }
        }));
    }
    // Kill once a good number of sends have been acknowledged, mid-stream.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 1500 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    p.kill9();
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 100,
        "the load never got going: {}",
        acked.len()
    );

    let _p2 = HeraldProcess::start(dir.path(), "").await;
    let missing = wait_all_delivered(&rx, &acked, 90).await;
    assert!(
        missing.is_empty(),
        "{} of {} accepted messages lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    let dups = duplicates(&rx);
    assert!(
        dups <= CONCURRENCY,
        "duplicates only for deliveries in flight at the kill; got {dups}"
    );
    eprintln!(
        "kill-9 while accepting: {} acknowledged, all delivered, {dups} duplicates",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_with_deliveries_in_flight_redelivers_them_after_restart() {
    let rx = Receiver::start().await;
    rx.delay(Duration::from_millis(400));
    let dir = tempfile::tempdir().unwrap();
    let mut p = HeraldProcess::start(dir.path(), "").await;
    let acked = send_batch(&p.base, &rx.url, 300).await;
    assert_eq!(acked.len(), 300);
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.started() < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_flight_at_kill = rx.started() as usize - rx.received().len();
    p.kill9();
    assert!(in_flight_at_kill > 0, "nothing was in flight at the kill");
    rx.delay(Duration::ZERO);

    let _p2 = HeraldProcess::start(dir.path(), "").await;
    let missing = wait_all_delivered(&rx, &acked, 90).await;
    assert!(missing.is_empty(), "{} lost", missing.len());
    let dups = duplicates(&rx);
    assert!(
        dups <= in_flight_at_kill.max(CONCURRENCY),
        "{dups} duplicates, {in_flight_at_kill} in flight at the kill"
    );
    eprintln!(
        "kill-9 in flight: {in_flight_at_kill} calls in flight, all 300 delivered, {dups} duplicates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_calls_in_flight_and_exits_cleanly() {
    let rx = Receiver::start().await;
    rx.delay(Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let mut p = HeraldProcess::start(dir.path(), "").await;
    let acked = send_batch(&p.base, &rx.url, 150).await;
    while rx.started() < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let code = tokio::task::spawn_blocking(move || {
        let c = p.terminate(Duration::from_secs(20));
        drop(p);
        c
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "SIGTERM exits 0 after draining");
    // Every call that had reached the receiver when the stop began was finished by the
    // stopping process (answered), not abandoned for the next run to repeat.
    let (started, answered) = (rx.started() as usize, rx.received().len());
    assert!(started >= 20, "{started}");
    assert_eq!(
        answered,
        started,
        "{} calls in flight were abandoned at SIGTERM",
        started - answered
    );
    let _p2 = HeraldProcess::start(dir.path(), "").await;
    let missing = wait_all_delivered(&rx, &acked, 60).await;
    assert!(missing.is_empty(), "{} lost", missing.len());
    assert_eq!(duplicates(&rx), 0, "a graceful stop duplicates nothing");
}
