//! The public status page: a provider outage shows as degraded within seconds of its
//! circuit opening and as operational after; posted incidents and their updates reach the
//! page, the Statuspage documents, the feed and the badges; with PostgreSQL stopped the page
//! keeps answering with its last snapshot, stamped with its age.

use crate::utils::TestHerald;
use crate::utils::pg::OwnCluster;
use crate::utils::rig::{Rig, sms, sms_providers, verify_template};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn text(h: &TestHerald, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let r = h.http.get(h.url(path)).send().await.unwrap();
    let code = r.status().as_u16();
    let headers = r.headers().clone();
    (code, r.text().await.unwrap(), headers)
}

async fn component(h: &TestHerald, id: &str) -> String {
    let (code, body, _) = text(h, "/status/api/v2/components.json").await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .map(|c| c["status"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no component {id} in {v}"))
}

/// Waits (30 s at most) for a component to reach a state; returns how long it took.
async fn wait_component(h: &TestHerald, id: &str, want: &str) -> Duration {
    let start = Instant::now();
    loop {
        let now = component(h, id).await;
        if now == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{id} stayed {now}, never {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_shows_as_degraded_and_then_operational_again() {
    let rig = Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        c.status.refresh = herald::config::Dur::millis(300);
        c.circuit.open_for = herald::config::Dur::secs(2);
        c.templates = vec![verify_template()];
        c.status.name = "Acme <Notifications>".into();
    })
    .await;
    let h = &rig.herald;
    let (code, page, headers) = text(h, "/status").await;
    assert_eq!(code, 200, "{page}");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(page.contains("Acme &lt;Notifications&gt;"), "escaped name");
    assert!(page.contains("All Systems Operational"), "{page}");
    assert!(!page.contains("<script"), "the page needs no script");
    assert_eq!(component(h, "sms").await, "operational");
    assert_eq!(component(h, "api").await, "operational");

    // Aliyun answers 503 until told otherwise: its circuit opens; Twilio carries the sends.
    rig.fault("aliyun", json!({"status": 503, "count": 1000}))
        .await;
    for _ in 0..4 {
        let id = rig.send(sms("verify_code")).await;
        assert_eq!(rig.settle(&id).await["status"], "delivered");
    }
    let (_, providers) = h.get("/v1/providers").await;
    let aliyun = providers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "aliyun-main")
        .unwrap()
        .clone();
    assert_eq!(aliyun["circuit"], "open", "{aliyun}");
    let took = wait_component(h, "sms", "degraded_performance").await;
    assert!(took < Duration::from_secs(30));
    let (_, page, _) = text(h, "/status").await;
    assert!(page.contains("Degraded performance"), "in words: {page}");
    let (_, summary, _) = text(h, "/status/api/v2/status.json").await;
    let v: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(v["status"]["indicator"], "minor", "{v}");
    let (_, badge, headers) = text(h, "/status/badge/sms.svg").await;
    assert_eq!(headers["content-type"], "image/svg+xml");
    assert!(badge.contains("degraded"), "{badge}");

    // The service is back: after open_for a probe goes through and the circuit closes.
    rig.clear_fault("aliyun").await;
    let start = Instant::now();
    loop {
        let id = rig.send(sms("verify_code")).await;
        rig.settle(&id).await;
        if component(h, "sms").await == "operational" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "never recovered");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, page, _) = text(h, "/status").await;
    assert!(page.contains("All Systems Operational"), "{page}");
    // Today's bar counted the minutes it saw (at least the first).
    let (_, summary, _) = text(h, "/status/api/v2/summary.json").await;
    let v: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(v["status"]["indicator"], "none", "{v}");
    assert!(v["page"]["updated_at"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_incidents_and_updates_reach_the_page_feed_and_documents() {
    let rig = Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        c.status.refresh = herald::config::Dur::millis(300);
    })
    .await;
    let h = &rig.herald;
    let (viewer, _) = h.api_key("vic", "viewer", false).await;
    let incident = json!({
        "title": "SMS to China delayed",
        "impact": "minor",
        "status": "investigating",
        "components": [{"id": "sms", "status": "partial_outage"}],
        "body": "Messages reach phones <late>; we are on it."
    });
    let (code, r) = h
        .call_as(
            &viewer,
            Method::POST,
            "/v1/status/incidents",
            Some(incident.clone()),
        )
        .await;
    assert_eq!(code, 403, "a viewer posts nothing: {r}");
    let mut bad = incident.clone();
    bad["components"][0]["id"] = json!("fax");
    let (code, r) = h
        .call(Method::POST, "/v1/status/incidents", Some(bad))
        .await;
    assert_eq!(code, 422, "{r}");
    assert!(r.to_string().contains("components[0].id"), "{r}");
    let mut bad = incident.clone();
    bad["impact"] = json!("apocalyptic");
    let (code, r) = h
        .call(Method::POST, "/v1/status/incidents", Some(bad))
        .await;
    assert_eq!(code, 422, "{r}");
    assert!(r.to_string().contains("impact"), "{r}");
    // An empty incident id names nothing: refused rather than stored as none.
    let mut bad = incident.clone();
    bad["incident_id"] = json!("");
    let (code, r) = h
        .call(Method::POST, "/v1/status/incidents", Some(bad))
        .await;
    assert_eq!(code, 422, "{r}");
    assert!(r.to_string().contains("incident_id"), "{r}");

    let (code, posted) = h
        .call(Method::POST, "/v1/status/incidents", Some(incident))
        .await;
    assert_eq!(code, 201, "{posted}");
    assert!(
        posted.get("incident_id").is_none(),
        "left out when none: {posted}"
    );
    let id = posted["id"].as_str().unwrap().to_string();
    // The page is rebuilt at once.
    assert_eq!(component(h, "sms").await, "partial_outage");
    let (_, page, _) = text(h, "/status").await;
    assert!(page.contains("SMS to China delayed"), "{page}");
    assert!(page.contains("&lt;late&gt;"), "escaped: {page}");
    assert!(page.contains("Partial outage"), "{page}");
    let (_, unresolved, _) = text(h, "/status/api/v2/incidents/unresolved.json").await;
    let v: Value = serde_json::from_str(&unresolved).unwrap();
    assert_eq!(v["incidents"][0]["id"], id.as_str(), "{v}");
    assert_eq!(v["incidents"][0]["impact"], "minor");
    assert_eq!(
        v["incidents"][0]["incident_updates"][0]["status"],
        "investigating"
    );

    let (code, r) = h
        .call(
            Method::POST,
            &format!("/v1/status/incidents/{id}/updates"),
            Some(json!({
                "status": "resolved",
                "body": "All delayed messages were delivered.",
                "components": [{"id": "sms", "status": "operational"}]
            })),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    let (code, _) = h
        .call(
            Method::POST,
            "/v1/status/incidents/st_nope/updates",
            Some(json!({"status": "resolved", "body": "x"})),
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(component(h, "sms").await, "operational");
    let (_, unresolved, _) = text(h, "/status/api/v2/incidents/unresolved.json").await;
    let v: Value = serde_json::from_str(&unresolved).unwrap();
    assert_eq!(v["incidents"], json!([]), "{v}");
    let (_, all, _) = text(h, "/status/api/v2/incidents.json").await;
    let v: Value = serde_json::from_str(&all).unwrap();
    assert_eq!(v["incidents"][0]["status"], "resolved", "{v}");
    assert_eq!(
        v["incidents"][0]["incident_updates"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (code, feed, headers) = text(h, "/status/history.atom").await;
    assert_eq!(code, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/atom+xml")
    );
    assert!(feed.contains("SMS to China delayed"), "{feed}");
    assert!(
        feed.contains("All delayed messages were delivered."),
        "{feed}"
    );
    // Both posts are in the audit log under the poster's name.
    let (_, log) = h.get("/v1/audit?limit=20").await;
    let actions: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.iter().filter(|a| a.starts_with("status.")).count() >= 2,
        "{actions:?}"
    );
    let (_, listed) = h.get("/v1/status/incidents").await;
    assert_eq!(listed["data"][0]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_stopped_the_page_serves_its_last_snapshot_and_its_age() {
    let pg = OwnCluster::start();
    let url = pg.url();
    let h = TestHerald::start_with(move |c| {
        c.storage.url = Some(url);
        c.status.refresh = herald::config::Dur::millis(300);
    })
    .await;
    let (code, r) = h
        .call(
            Method::POST,
            "/v1/status/incidents",
            Some(json!({
                "title": "Planned database upgrade",
                "impact": "none",
                "status": "investigating",
                "body": "We are upgrading the database."
            })),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    let (code, page, _) = text(&h, "/status").await;
    assert_eq!(code, 200);
    assert!(!page.contains("temporarily unavailable"), "{page}");

    pg.down();
    let start = Instant::now();
    let page = loop {
        let (code, page, _) = text(&h, "/status").await;
        assert_eq!(code, 200, "the page answers while storage is down: {page}");
        if page.contains("temporarily unavailable") {
            break page;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(page.contains("Planned database upgrade"), "{page}");
    assert!(page.contains(" ago)"), "stamped with its age: {page}");
    let (code, summary, _) = text(&h, "/status/api/v2/summary.json").await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(v["incidents"][0]["name"], "Planned database upgrade", "{v}");
    pg.up();
    let start = Instant::now();
    loop {
        let (_, page, _) = text(&h, "/status").await;
        if !page.contains("temporarily unavailable") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    h.stop().await;
}
