//! Bundles that no node death doubles or loses: three `herald serve` processes on one
//! PostgreSQL, 60 incidents for one person opened across them while their pages are held
//! for bundles, one node killed with -9 as the bundles are being made, and a bundle taken
//! by a "node" (the test) that never sends it. The person's inbox holds each incident in
//! exactly one message (counted), and every bundle was sent.

use crate::e2e_alerts::{am_alert, am_payload};
use crate::e2e_oncall_cluster::call;
use crate::utils::pg::fresh_db;
use crate::utils::process::HeraldProcess;
use herald::store::{BundleRow, Bundles};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const INCIDENTS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_while_bundles_are_made_leaves_each_incident_in_exactly_one() {
    let db = fresh_db().await;
    let extra = format!(
        "[storage]\nurl = \"{db}\"\n[oncall]\ntick = \"100ms\"\nlease = \"2s\"\n\
         bundle_window = {{ P0 = \"1s\" }}\nbundle_max_gap = \"3s\"\n\
         [[alert_routes]]\nid = \"db\"\nmatchers = ['team=\"db\"']\nescalation_policy = \"db-policy\"\n\
         channels = {{ P0 = [\"inbox\"] }}\n"
    );
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut procs = Vec::new();
    for d in &dirs {
        procs.push(HeraldProcess::start(d.path(), &extra).await);
    }
    let base = procs[1].base.clone();
    let (c, r) = call(
        &base,
        reqwest::Method::PUT,
        "/v1/contacts/ana",
        Some(json!({"name": "ana"})),
    )
    .await;
    assert_eq!(c, 201, "{r}");
    let (c, r) = call(
        &base,
        reqwest::Method::POST,
        "/v1/escalation-policies",
        Some(json!({"id": "db-policy", "name": "DB", "steps": [
            {"delay_seconds": 600, "targets": [{"type": "contact", "id": "ana"}]}]})),
    )
    .await;
    assert_eq!(c, 201, "{r}");

    // 60 incidents over about 6 s, taken in by the three nodes in turn; node 0 is killed
    // half-way, while the bundles of the first ones are being made.
    // The test plays a node that dies right after taking a bundle: it takes one through
    // the store itself and never sends it. The nodes must send it, once, after the lease.
    let store = herald::store::postgres::PgStore::open(&db, Duration::from_secs(10))
        .await
        .unwrap();
    let mut taken: Option<String> = None;
    let started = Instant::now();
    let mut ids = Vec::new();
    let mut killed = None;
    for n in 0..INCIDENTS {
        let mut p = am_payload(vec![am_alert(&format!("db{n:02}"), "firing", "critical")]);
        p["groupKey"] = json!(format!("{{}}/{{team=\"db\"}}:{{instance=\"db{n:02}\"}}"));
        let node = if killed.is_some() { 1 + n % 2 } else { n % 3 };
        let (c, r) = call(
            &procs[node].base,
            reqwest::Method::POST,
            "/v1/alerts/alertmanager",
            Some(p),
        )
        .await;
        assert_eq!(c, 200, "{r}");
        ids.push(r["incidents"][0].as_str().unwrap().to_string());
        if taken.is_none() && n > 5 {
            let now = herald::core::types::now_millis();
            let b = BundleRow {
                id: herald::core::types::new_id("bn"),
                person: "ana".into(),
                method: "inbox".into(),
                kind: "page".into(),
                address: None,
                reply_code: None,
                size: 0,
                message_id: None,
                created_at: now,
            };
            taken = store
                .take_bundle(b, now, 0)
                .await
                .unwrap()
                .map(|(b, _)| b.id);
        }
        if n == INCIDENTS / 2 {
            procs[0].kill9();
            killed = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every incident reaches ana's inbox, each in exactly one message.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (items, per) = loop {
        let (_, v) = call(
            &base,
            reqwest::Method::GET,
            "/v1/inbox/ana?limit=1000",
            None,
        )
        .await;
        let items = v["data"].as_array().cloned().unwrap_or_default();
        let mut per: HashMap<String, usize> = HashMap::new();
        for i in &items {
            let m = &i["metadata"];
            let listed: Vec<String> = match m["incidents"].as_array() {
                Some(l) => l
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                None => m["incident"]
                    .as_str()
                    .map(String::from)
                    .into_iter()
                    .collect(),
            };
            for id in listed {
                *per.entry(id).or_default() += 1;
            }
        }
        assert!(
            per.values().all(|n| *n == 1),
            "an incident came twice: {per:?}"
        );
        if per.len() == INCIDENTS {
            break (items, per);
        }
        assert!(
            Instant::now() < deadline,
            "ana has {} of {INCIDENTS} incidents",
            per.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(ids.iter().all(|i| per.contains_key(i)));
    // Every page of every incident went out in one bundle (none held, none dropped).
    for id in &ids {
        let (_, v) = call(
            &base,
            reqwest::Method::GET,
            &format!("/v1/incidents/{id}"),
            None,
        )
        .await;
        let pages: Vec<&Value> = v["pages"].as_array().unwrap().iter().collect();
        assert_eq!(pages.len(), 1, "{v}");
        let b = pages[0]["bundle_id"].as_str().unwrap_or("");
        assert!(!b.is_empty() && b != "-", "{id} not bundled: {v}");
    }
    let taken = taken.expect("the test took a bundle as a dying node would");
    let (b, rows) = store.get_bundle(&taken).await.unwrap().unwrap();
    assert!(
        b.message_id.as_deref().is_some_and(|m| m != "-"),
        "the dead taker's bundle was sent by a live node: {b:?}"
    );
    assert!(!rows.is_empty());
    eprintln!(
        "FIGURES storm cluster: 3 nodes, {INCIDENTS} incidents over {:.1} s, node killed at {:.1} s; ana got {} messages holding each incident once",
        started.elapsed().as_secs_f64(),
        killed.unwrap_or_default().as_secs_f64(),
        items.len()
    );
}
