//! The whole chain with the real peers and a person answering: a Prometheus rule fires →
//! Alertmanager → Herald opens an incident on a route with an escalation policy → the
//! on-call person's phone (SMS simulator) gets the page with its reply code → they reply by
//! SMS (Twilio inbound, signed) → acknowledged → the rule ends → Alertmanager sends the
//! resolve → resolved. MTTA and MTTR are in `/metrics` and `/v1/incidents/stats`.

use crate::e2e_alertmanager::{alertmanager, binary, prometheus_core_only_rule, ready};
use crate::e2e_oncall::{reply, texts, wait_texts};
use crate::utils::process::free_port;
use crate::utils::rig::{Rig, sms_providers};
use herald::core::alerts::routes::RouteConfig;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

const PHONE: &str = "+15005550142";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_pages_the_on_call_person_whose_sms_reply_acknowledges_and_alertmanager_resolves() {
    let prometheus = binary("HERALD_TEST_PROMETHEUS", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        c.alert_routes = vec![RouteConfig {
            id: "sre".into(),
            matchers: vec!["team=\"sre\"".into()],
            escalation_policy: Some("sre".into()),
            notify_resolved: true,
            token: Some(herald::config::Secret::new(
                "am-bearer-token-0123456789abcdef",
            )),
            ..Default::default()
        }];
        c.oncall.tick = herald::config::Dur::millis(200);
    })
    .await;
    let h = &rig.herald;
    let (c, r) = h
        .call(
            Method::PUT,
            "/v1/contacts/sre-1",
            Some(json!({"name": "Sam", "phones": [PHONE]})),
        )
        .await;
    assert_eq!(c, 201, "{r}");
    let (c, r) = h
        .call(
            Method::POST,
            "/v1/schedules",
            Some(json!({"id": "sre-primary", "name": "SRE", "time_zone": "Europe/Berlin",
                        "layers": [{"rotation": "daily", "start": "2026-01-01T09:00", "participants": ["sre-1"]}]})),
        )
        .await;
    assert_eq!(c, 201, "{r}");
    let (c, r) = h
        .call(
            Method::POST,
            "/v1/escalation-policies",
            Some(json!({"id": "sre", "name": "SRE", "steps": [{"targets": [{"type": "schedule", "id": "sre-primary"}]}]})),
        )
        .await;
    assert_eq!(c, 201, "{r}");
    let herald = h.url("");
    let am_port = free_port();
    let _am = alertmanager(dir.path(), &herald, am_port, None);
    ready(&rig.http, &format!("http://127.0.0.1:{am_port}/-/ready")).await;
    let (c, _) = h
        .call(
            Method::PUT,
            "/v1/mode",
            Some(json!({"mode": "core_only", "reason": "chain test"})),
        )
        .await;
    assert_eq!(c, 200);
    let started = Instant::now();
    let _prom = prometheus_core_only_rule(&prometheus, dir.path(), &herald, am_port);

    let t = wait_texts(&rig, |t| {
        t.iter()
            .any(|(p, b)| p == PHONE && b.contains("to acknowledge"))
    })
    .await;
    let paged_after = started.elapsed();
    let page = &t.iter().find(|(p, _)| p == PHONE).unwrap().1;
    assert!(page.starts_with("[P0] #1 HeraldCoreOnly"), "{page}");
    let at = page.find("Reply ").unwrap() + 6;
    let code: String = page[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await; // someone reads it
    let (status, answer) = reply(&rig, "twilio", PHONE, &format!("{code}a")).await;
    assert_eq!(status, 200);
    assert!(answer.contains("acknowledged by you"), "{answer}");
    let (_, list) = h.get("/v1/incidents").await;
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    let (_, inc) = h.get(&format!("/v1/incidents/{id}")).await;
    assert_eq!(
        (inc["status"].as_str(), inc["acknowledged_by"].as_str()),
        (Some("acknowledged"), Some("sre-1")),
        "{inc}"
    );

    // The rule ends: Alertmanager sends the resolve, the incident resolves, Sam is told.
    let (c, _) = h
        .call(
            Method::PUT,
            "/v1/mode",
            Some(json!({"mode": "normal", "reason": "done"})),
        )
        .await;
    assert_eq!(c, 200);
    let ended = Instant::now();
    wait_texts(&rig, |t| {
        t.iter()
            .any(|(p, b)| p == PHONE && b.starts_with("Resolved: #1"))
    })
    .await;
    let resolved_after = ended.elapsed();
    let (_, inc) = h.get(&format!("/v1/incidents/{id}")).await;
    assert_eq!(inc["status"], "resolved", "{inc}");
    assert_eq!(inc["resolved_by"], "alertmanager", "{inc}");
    assert_eq!(texts(&rig).await.len(), 2, "one page, one resolved notice");

    let tta = h
        .metric_sum("herald_incident_time_to_acknowledge_seconds_sum")
        .await;
    let ttr = h
        .metric_sum("herald_incident_time_to_resolve_seconds_sum")
        .await;
    assert!(tta >= 1.0 && ttr > tta, "TTA {tta} s, TTR {ttr} s");
    let (_, stats) = h.get("/v1/incidents/stats").await;
    let p50 = stats["by_severity"]["P0"]["tta"]["p50_seconds"]
        .as_f64()
        .unwrap();
    assert!(
        (p50 - tta).abs() < 0.5,
        "stats agree with /metrics: {p50} vs {tta}: {stats}"
    );
    assert_eq!(stats["by_service"]["herald"]["ttr"]["count"], 1, "{stats}");
    eprintln!(
        "FIGURES alert→page chain: Prometheus start → SMS page {paged_after:?}; MTTA {tta:.1} s; rule end → resolved notice {resolved_after:?}; MTTR {ttr:.1} s"
    );
}
