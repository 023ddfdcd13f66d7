//! Many nodes on one PostgreSQL: three real `herald serve` processes share the work; one is
//! killed with -9 mid-flight; its leases are taken over, every accepted message is delivered,
//! and only its in-flight calls may repeat.

use crate::utils::Receiver;
use crate::utils::pg::fresh_db;
use crate::utils::process::{CONCURRENCY, HeraldProcess, KEY};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

async fn nodes(base: &str) -> Value {
    crate::utils::process::get_json(base, "/v1/nodes").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_survive_one_killed_mid_flight() {
    let db = fresh_db().await;
    let rx = Receiver::start().await;
    rx.delay(Duration::from_millis(30));
    let extra = format!("[storage]\nurl = \"{db}\"\n");
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut procs = Vec::new();
    for d in &dirs {
        procs.push(HeraldProcess::start(d.path(), &extra).await);
    }
    let http = crate::utils::http();
    let mut acked = HashSet::new();
    for b in 0..5 {
        let batch: Vec<Value> = (0..1000)
            .map(|i| json!({"to": {"webhook": rx.url}, "content": {"text": format!("{b}/{i}")}}))
            .collect();
        let base = &procs[b % 3].base;
        let r: Value = http
            .post(format!("{base}/v1/messages/batch"))
            .bearer_auth(KEY)
            .json(&json!({"messages": batch}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for x in r["results"].as_array().unwrap() {
            acked.insert(x["id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(acked.len(), 5000);
    let deadline = Instant::now() + Duration::from_secs(60);
    while rx.received().len() < 1000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let view = nodes(&procs[1].base).await;
    assert!(view["data"].is_array(), "/v1/nodes: {view}");
    let victim_id = view["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| {
            n["address"]
                .as_str()
                .is_some_and(|a| procs[0].base.ends_with(a))
        })
        .map(|n| n["id"].as_str().unwrap().to_string())
        .expect("the node to kill is listed in /v1/nodes");
    let in_flight_before = rx.started() as usize - rx.received().len();
    procs[0].kill9();
    let killed = Instant::now();
    let mut taken_over = None;
    while killed.elapsed() < Duration::from_secs(30) {
        let v = nodes(&procs[1].base).await;
        let n = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == victim_id.as_str())
            .cloned()
            .unwrap();
        if n["state"] == "dead" && n["leases"] == 0 {
            taken_over = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let taken_over = taken_over.expect("the dead node's leases were taken over");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counts = rx.counts();
        let missing = acked.iter().filter(|id| !counts.contains_key(*id)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of 5000 accepted messages never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dups = rx.counts().values().filter(|n| **n > 1).count();
    eprintln!(
        "FIGURES cluster: 3 nodes, 5000 messages, killed node held ~{in_flight_before} calls in flight, leases taken over after {} ms, all delivered, {dups} duplicates",
        taken_over.as_millis()
    );
    assert!(
        taken_over < Duration::from_secs(10),
        "taken over within 10 s"
    );
    assert!(
        dups <= CONCURRENCY,
        "duplicates only from the killed node's in-flight calls: {dups}"
    );
}

/// Limits that must hold across nodes: a DingTalk robot's 20 a minute, and an API key's rate,
/// with two nodes sharing one PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_hold_across_nodes() {
    use crate::utils::TestHerald;
    use crate::utils::rig::{provider, sim_args};
    use herald::config::ProviderKind;
    use herald::core::types::Channel;
    let db = fresh_db().await;
    let sim_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = format!("http://{}", sim_l.local_addr().unwrap());
    herald::simulate::spawn(sim_args(&sim, "http://127.0.0.1:9"), sim_l);
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let (db, sim) = (db.clone(), sim.clone());
        nodes.push(
            TestHerald::start_with(move |c| {
                c.storage.url = Some(db);
                c.providers = vec![provider(
                    "ops-dingtalk",
                    Channel::Chat,
                    ProviderKind::Dingtalk,
                    1,
                    &format!("{sim}/dingtalk"),
                    &[("secret", "SECdingtalk-secret-value")],
                    &[(
                        "url",
                        "https://oapi.dingtalk.com/robot/send?access_token=tok-1",
                    )],
                )];
            })
            .await,
        );
    }
    for i in 0..26 {
        let (code, r) = nodes[i % 2]
            .send(
                json!({"to": {"chat": "ops-dingtalk"}, "content": {"text": format!("alert {i}")}}),
            )
            .await;
        assert_eq!(code, 202, "{r}");
    }
    // Twenty go out; the other six are each claimed on one node or the other and put back
    // to wait for the shared budget.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut attempts = 0.0;
        let mut deferred = 0.0;
        for n in &nodes {
            attempts += n.metric_sum("herald_delivery_attempts_total").await;
            deferred += n.metric_sum("herald_deliveries_deferred_total").await;
        }
        if attempts >= 20.0 && deferred >= 6.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "in 20 s: {attempts} calls, {deferred} deferrals"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let v: Value = reqwest::get(format!("{sim}/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["dingtalk"]["refused"].as_u64().unwrap_or(0),
        0,
        "never pushed over its limit: {v}"
    );
    assert_eq!(
        v["dingtalk"]["accepted"], 20,
        "exactly the minute's budget, across both nodes: {v}"
    );

    let (_, k) = nodes[0]
        .call(
            reqwest::Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "shared", "role": "sender", "rate_limit": "5/min"})),
        )
        .await;
    let key = k["key"].as_str().unwrap().to_string();
    let mut ok = 0;
    for i in 0..10 {
        let (code, _) = nodes[i % 2]
            .call_as(
                &key,
                reqwest::Method::POST,
                "/v1/messages",
                Some(json!({"to": {"user": "u"}, "content": {"text": "x"}})),
            )
            .await;
        if code == 202 {
            ok += 1;
        }
    }
    assert_eq!(ok, 5, "the key's 5/min holds across both nodes");
    for n in nodes {
        n.stop().await;
    }
}

/// Nodes agree on time through the database: a node whose clock runs 4 s ahead (faketime)
/// does not declare a live node dead, and a message sent meanwhile is delivered once.
#[tokio::test]
async fn a_node_with_a_skewed_clock_declares_no_live_node_dead() {
    let rx = Receiver::start().await;
    let url = fresh_db().await;
    let extra = format!("[storage]\nurl = \"{url}\"\n");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = HeraldProcess::start(a_dir.path(), &extra).await;
    let b = HeraldProcess::start_custom(
        b_dir.path(),
        &["127.0.0.1"],
        "",
        &extra,
        "warn",
        &[
            "env",
            "FAKETIME_DONT_FAKE_MONOTONIC=1",
            "faketime",
            "-f",
            "+4s",
        ],
    )
    .await;
    // Both nodes registered first (a node is ready before its first heartbeat row is seen).
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let mut seen = true;
        for base in [&a.base, &b.base] {
            seen &= nodes(base).await["data"].as_array().map_or(0, |l| l.len()) == 2;
        }
        if seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut ids = Vec::new();
    while Instant::now() < deadline {
        for base in [&a.base, &b.base] {
            let view = nodes(base).await;
            let list = view["data"].as_array().cloned().unwrap_or_default();
            assert_eq!(list.len(), 2, "{view}");
            assert!(
                list.iter().all(|n| n["state"] == "alive"),
                "a live node was declared dead: {view}"
            );
        }
        let r = b
            .send(&json!({"to": {"webhook": rx.url}, "content": {"text": "x"}}))
            .await;
        ids.push(r["id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let until = Instant::now() + Duration::from_secs(20);
    while rx.received().len() < ids.len() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counts = rx.counts();
    for id in &ids {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "{id} delivered {:?} times",
            counts.get(id)
        );
    }
    drop((a, b));
}

/// Readiness follows the dispatcher's progress, not its existence: while another session
/// holds the deliveries table locked, storage still answers a ping but every claim hangs,
/// and `/readyz` turns 503 with `workers: stopped`; when the lock goes, it is ready again.
/// The same while every claim fails (the table renamed away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_whose_claims_hang_is_not_ready() {
    use crate::utils::TestHerald;
    use sqlx::Connection;
    let db = fresh_db().await;
    let node = {
        let db = db.clone();
        TestHerald::start_with(move |c| c.storage.url = Some(db)).await
    };
    let ready = |want: u16| {
        let node = &node;
        async move {
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                let (code, r) = node.get("/readyz").await;
                if code == want {
                    return r;
                }
                assert!(Instant::now() < deadline, "never {want}: {r}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    ready(200).await;
    let mut locker = sqlx::PgConnection::connect(&db).await.unwrap();
    let mut tx = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let r = ready(503).await;
    assert_eq!(r["checks"]["workers"]["status"], "stopped", "{r}");
    assert_eq!(r["checks"]["storage"]["status"], "ok", "{r}");
    tx.rollback().await.unwrap();
    let r = ready(200).await;
    assert_eq!(r["checks"]["workers"]["status"], "running", "{r}");
    // Claims that fail at once are no progress either: the loop goes round, the workers
    // are still reported stopped.
    sqlx::query("ALTER TABLE deliveries RENAME TO deliveries_away")
        .execute(&mut locker)
        .await
        .unwrap();
    let r = ready(503).await;
    assert_eq!(r["checks"]["workers"]["status"], "stopped", "{r}");
    assert_eq!(r["checks"]["storage"]["status"], "ok", "{r}");
    sqlx::query("ALTER TABLE deliveries_away RENAME TO deliveries")
        .execute(&mut locker)
        .await
        .unwrap();
    ready(200).await;
    node.stop().await;
}

/// The heartbeat check runs on one node at a time; killed with -9, its lease (5 s) passes to
/// another node, which still opens the incident of a heartbeat that went silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_heartbeat_opens_its_incident_after_the_checking_node_is_killed() {
    let db = fresh_db().await;
    let extra = format!(
        "[storage]\nurl = \"{db}\"\n[[alert_routes]]\nid = \"ops\"\nusers = [\"u-1\"]\n\
         [[heartbeats]]\nid = \"etl\"\ninterval = \"5s\"\ngrace = \"3s\"\nroute = \"ops\"\n"
    );
    let (da, db_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = HeraldProcess::start(da.path(), &extra).await;
    // A takes the checker's lease first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = HeraldProcess::start(db_dir.path(), &extra).await;
    let http = crate::utils::http();
    let r = http
        .post(format!("{}/v1/heartbeats/etl/ping", a.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pinged = Instant::now();
    a.kill9();
    let deadline = Instant::now() + Duration::from_secs(40);
    let opened = loop {
        let list = crate::utils::process::get_json(&b.base, "/v1/incidents").await;
        if let Some(i) = list["data"].as_array().and_then(|d| d.first()).cloned() {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no incident on the surviving node"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after = pinged.elapsed();
    assert_eq!(
        (opened["source"].as_str(), opened["service"].as_str()),
        (Some("heartbeat"), Some("etl")),
        "{opened}"
    );
    assert!(
        after >= Duration::from_secs(8),
        "not before interval + grace: {after:?}"
    );
    eprintln!(
        "heartbeat silent 8 s (interval 5 s + grace 3 s): incident opened on the surviving node {after:?} after the last ping"
    );
    // A ping to the surviving node resolves it.
    http.post(format!("{}/v1/heartbeats/etl/ping", b.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = crate::utils::process::get_json(&b.base, "/v1/incidents").await;
        if list["data"][0]["status"] == "resolved" {
            break;
        }
        assert!(Instant::now() < deadline, "not resolved: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
