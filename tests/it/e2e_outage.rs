//! PostgreSQL stopped for 10 s under load: sends keep getting `202` (spooled); when it is
//! back every message is delivered. A node killed with a non-empty spool replays it on restart.

use crate::utils::Receiver;
use crate::utils::pg::OwnCluster;
use crate::utils::process::{HeraldProcess, KEY};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

async fn wait_delivered(rx: &Receiver, acked: &HashSet<String>, secs: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let counts = rx.counts();
        let missing = acked.iter().filter(|id| !counts.contains_key(*id)).count();
        if missing == 0 || Instant::now() > deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_are_spooled_while_postgres_is_down_and_delivered_after() {
    let pg = OwnCluster::start();
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("[storage]\nurl = \"{}\"\n", pg.url());
    let mut node = HeraldProcess::start(dir.path(), &extra).await;
    let http = crate::utils::http_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let (mut acked, mut spooled, mut refused) = (HashSet::new(), 0, 0);
    let start = Instant::now();
    let (mut stopped_at, mut restarted) = (None, false);
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(16) {
        if stopped_at.is_none() && start.elapsed() > Duration::from_secs(2) {
            pg.down();
            stopped_at = Some(Instant::now());
        }
        if !restarted && stopped_at.is_some_and(|t| t.elapsed() > Duration::from_secs(10)) {
            pg.up();
            restarted = true;
        }
        i += 1;
        let body = json!({"to": {"webhook": rx.url}, "content": {"text": format!("#{i}")}});
        match http
            .post(format!("{}/v1/messages", node.base))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 202 => {
                let v: Value = r.json().await.unwrap();
                if v["spooled"] == true {
                    spooled += 1;
                }
                acked.insert(v["id"].as_str().unwrap().to_string());
            }
            _ => refused += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(restarted);
    assert_eq!(refused, 0, "every send was answered 202 during the outage");
    assert!(
        spooled > 50,
        "sends during the outage were spooled: {spooled}"
    );
    let missing = wait_delivered(&rx, &acked, 90).await;
    assert_eq!(
        missing,
        0,
        "{missing} of {} accepted messages lost",
        acked.len()
    );
    eprintln!(
        "FIGURES storage outage: {} accepted, {spooled} spooled during 10 s without PostgreSQL, 0 lost",
        acked.len()
    );

    // A node killed while its spool holds messages replays them when it starts again.
    pg.down();
    let mut second = HashSet::new();
    for i in 0..20 {
        let body = json!({"to": {"webhook": rx.url}, "content": {"text": format!("after {i}")}});
        let v: Value = http
            .post(format!("{}/v1/messages", node.base))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["spooled"], true, "{v}");
        second.insert(v["id"].as_str().unwrap().to_string());
    }
    node.kill9();
    pg.up();
    let _node = HeraldProcess::start(dir.path(), &extra).await;
    assert_eq!(
        wait_delivered(&rx, &second, 60).await,
        0,
        "the spool was replayed at restart"
    );
}

/// A call in flight when PostgreSQL goes down: its outcome cannot be written at once. The
/// node keeps trying, so the message is `sent` soon after PostgreSQL is back — not only
/// when its 60 s lease expires — and the receiver sees it once, not twice. (Found by
/// `herald drill run storage-outage`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outcome_due_during_an_outage_is_recorded_when_storage_returns() {
    let pg = OwnCluster::start();
    let rx = Receiver::start().await;
    rx.delay(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("[storage]\nurl = \"{}\"\n", pg.url()); // lease: the default 60 s
    let node = HeraldProcess::start(dir.path(), &extra).await;
    let http = crate::utils::http();
    let v: Value = http
        .post(format!("{}/v1/messages", node.base))
        .bearer_auth(KEY)
        .json(&json!({"to": {"webhook": rx.url}, "content": {"text": "in flight"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    // Wait until the call is in flight, then take the database away under it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.started() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rx.started(), 1, "the webhook call began");
    pg.down();
    tokio::time::sleep(Duration::from_secs(8)).await; // the call ends during the outage
    pg.up();
    let back = Instant::now();
    let mut status = Value::Null;
    while back.elapsed() < Duration::from_secs(30) {
        if let Ok(r) = http
            .get(format!("{}/v1/messages/{id}", node.base))
            .bearer_auth(KEY)
            .send()
            .await
            && let Ok(m) = r.json::<Value>().await
        {
            status = m["status"].clone();
            if status == "sent" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, "sent",
        "recorded within 30 s of PostgreSQL's return (the lease is 60 s)"
    );
    assert_eq!(rx.counts().get(&id).copied(), Some(1), "sent once");
}

/// Alertmanager retries 5xx only: with PostgreSQL down an alert payload gets `503` with
/// `Retry-After` (nothing is claimed to be committed), and once it is back the retry opens
/// the incident — once, however many times the payload came.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_get_503_while_postgres_is_down_and_open_their_incident_after() {
    let pg = OwnCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[storage]\nurl = \"{}\"\n[[alert_routes]]\nid = \"all\"\nusers = [\"oncall\"]\n",
        pg.url()
    );
    let node = HeraldProcess::start(dir.path(), &extra).await;
    let http = crate::utils::http_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let payload = crate::e2e_alerts::am_payload(vec![crate::e2e_alerts::am_alert(
        "0a0b0c0d0e0f1011",
        "firing",
        "critical",
    )]);
    let post = || {
        http.post(format!("{}/v1/alerts/alertmanager", node.base))
            .bearer_auth(KEY)
            .json(&payload)
            .send()
    };
    pg.down();
    let t = Instant::now();
    let r = post().await.unwrap();
    let waited = t.elapsed();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 503, "storage down is worth a retry: {v}");
    assert!(headers.get("retry-after").is_some(), "Retry-After set");
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "a problem document"
    );
    assert_eq!(v["code"], "storage_unavailable", "{v}");
    // a second attempt while it is still down fares the same
    assert_eq!(post().await.unwrap().status().as_u16(), 503);
    pg.up();
    // Alertmanager's retries, bounded: the first one after PostgreSQL is back commits.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answer = 0;
    while Instant::now() < deadline {
        answer = post().await.map(|r| r.status().as_u16()).unwrap_or(0);
        if answer == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(answer, 200, "the retry is taken once PostgreSQL is back");
    // and Alertmanager's repeat changes nothing
    assert_eq!(post().await.unwrap().status().as_u16(), 200);
    let list: Value = http
        .get(format!("{}/v1/incidents", node.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "one incident: {list}");
    assert_eq!(data[0]["severity"], "P0");
    eprintln!(
        "FIGURES alerts with storage down: 503 after {waited:?}, incident opened on the first retry after"
    );
}
