//! Alerts in, incidents out, through the HTTP API with Alertmanager's and PagerDuty's own
//! payloads: one incident per group and route, pages through the message pipeline (SMS at
//! the simulator), repeats page nobody again, occurrences resolve the incident and the
//! resolved notice goes out; Events v2 trigger/acknowledge/resolve by dedup_key.

use crate::utils::rig::{Rig, sms_providers};
use herald::core::alerts::routes::RouteConfig;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

fn route(id: &str, matchers: &[&str]) -> RouteConfig {
    RouteConfig {
        id: id.into(),
        matchers: matchers.iter().map(|s| s.to_string()).collect(),
        users: vec!["oncall-1".into()],
        notify_resolved: true,
        token: Some(herald::config::Secret::new("am-route-token-0123456789")),
        routing_key: Some(herald::config::Secret::new(
            "pd-routing-key-0123456789abcdef",
        )),
        ..Default::default()
    }
}

pub fn am_alert(fp: &str, status: &str, severity: &str) -> Value {
    json!({"status": status,
           "labels": {"alertname": "DiskFull", "team": "db", "instance": fp, "severity": severity},
           "annotations": {"summary": format!("disk full on {fp}"), "runbook_url": "https://runbooks.example/disk"},
           "startsAt": "2026-12-01T10:00:00.000Z",
           "endsAt": if status == "resolved" { "2026-12-01T10:05:00.000Z" } else { "0001-01-01T00:00:00Z" },
           "generatorURL": "http://prometheus.example/graph", "fingerprint": fp})
}

pub fn am_payload(alerts: Vec<Value>) -> Value {
    let firing = alerts.iter().any(|a| a["status"] == "firing");
    json!({"version": "4", "groupKey": "{}/{team=\"db\"}:{alertname=\"DiskFull\"}",
           "truncatedAlerts": 0, "status": if firing { "firing" } else { "resolved" },
           "receiver": "herald", "groupLabels": {"alertname": "DiskFull"},
           "commonLabels": {"alertname": "DiskFull"}, "commonAnnotations": {},
           "externalURL": "http://alertmanager.example", "alerts": alerts})
}

async fn post_am(rig: &Rig, body: Value) -> (u16, Value) {
    let r = rig
        .http
        .post(rig.herald.url("/v1/alerts/alertmanager"))
        .bearer_auth("am-route-token-0123456789")
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn sms_texts(rig: &Rig) -> Vec<String> {
    rig.requests("twilio")
        .await
        .iter()
        .filter(|r| r["accepted"] == true)
        .filter_map(|r| r["request"]["Body"].as_str().map(String::from))
        .collect()
}

async fn wait_texts(rig: &Rig, n: usize) -> Vec<String> {
    for _ in 0..600 {
        let t = sms_texts(rig).await;
        if t.len() >= n {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} SMS expected, got {:?}", sms_texts(rig).await);
}

async fn start() -> Rig {
    let rig = Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        c.alert_routes = vec![route("db", &["team=\"db\""])];
    })
    .await;
    let (code, r) = rig
        .herald
        .call(
            Method::PUT,
            "/v1/contacts/oncall-1",
            Some(json!({"name": "On call", "phones": ["+15005550123"]})),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    rig
}

#[tokio::test]
async fn an_alertmanager_group_opens_one_incident_pages_once_and_resolves_by_occurrence() {
    let rig = start().await;
    let h = &rig.herald;
    let three = |third: &str| {
        am_payload(vec![
            am_alert("db01", "firing", "critical"),
            am_alert("db02", "firing", "critical"),
            am_alert("db03", third, "critical"),
        ])
    };
    let (code, r) = post_am(&rig, three("firing")).await;
    assert_eq!(code, 200, "{r}");
    let id = r["incidents"][0].as_str().unwrap().to_string();
    let texts = wait_texts(&rig, 1).await;
    assert!(
        texts[0].starts_with("[P0] #1 DiskFull: disk full on db01"),
        "{texts:?}"
    );
    assert!(
        texts[0].contains("runbook: https://runbooks.example/disk"),
        "{texts:?}"
    );

    // The same group again (an HA peer, a retry, repeat_interval): nobody is paged again.
    let (code, _) = post_am(&rig, three("firing")).await;
    assert_eq!(code, 200);
    // One of three resolves: still open, two firing.
    let (code, _) = post_am(&rig, three("resolved")).await;
    assert_eq!(code, 200);
    let (_, inc) = h.get(&format!("/v1/incidents/{id}")).await;
    assert_eq!(inc["status"], "triggered", "{inc}");
    assert_eq!(inc["severity"], "P0");
    let firing = inc["occurrences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] == "firing")
        .count();
    assert_eq!(firing, 2, "{inc}");
    assert_eq!(inc["messages"].as_array().unwrap().len(), 1, "{inc}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sms_texts(&rig).await.len(), 1, "paged once");

    // All resolve: the incident resolves and the resolved notice arrives.
    let (code, _) = post_am(
        &rig,
        am_payload(vec![
            am_alert("db01", "resolved", "critical"),
            am_alert("db02", "resolved", "critical"),
            am_alert("db03", "resolved", "critical"),
        ]),
    )
    .await;
    assert_eq!(code, 200);
    let texts = wait_texts(&rig, 2).await;
    assert!(texts[1].starts_with("Resolved: #1 DiskFull"), "{texts:?}");
    let (_, inc) = h.get(&format!("/v1/incidents/{id}")).await;
    assert_eq!(
        (inc["status"].as_str(), inc["resolved_by"].as_str()),
        (Some("resolved"), Some("alertmanager")),
        "{inc}"
    );
    let kinds: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.starts_with(&["opened"])
            && kinds.contains(&"paged")
            && kinds.contains(&"resolved_notice"),
        "{kinds:?}"
    );

    // A new firing of the same group is a new incident.
    let (_, r) = post_am(&rig, am_payload(vec![json!({"status": "firing", "labels": {"alertname": "DiskFull", "team": "db", "instance": "db01", "severity": "warning"},
        "annotations": {}, "startsAt": "2026-12-01T11:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "db01"})])).await;
    assert_ne!(r["incidents"][0].as_str().unwrap(), id);
    let (_, list) = h.get("/v1/incidents?status=triggered").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["data"][0]["number"], 2);
    assert_eq!(list["data"][0]["severity"], "P2");
    let (_, list) = h.get("/v1/incidents?limit=1").await;
    assert_eq!(list["next_after"], "2");
    let (_, older) = h.get("/v1/incidents?after=2").await;
    assert_eq!(older["data"][0]["number"], 1);
}

#[tokio::test]
async fn bad_alert_payloads_get_a_problem_naming_the_field_and_are_counted() {
    let rig = start().await;
    let (code, r) = post_am(
        &rig,
        json!({"version": "3", "groupKey": "g", "status": "firing", "alerts": []}),
    )
    .await;
    assert_eq!(code, 422, "{r}");
    assert_eq!(r["errors"][0]["field"], "version", "{r}");
    let mut bad = am_payload(vec![am_alert("db01", "firing", "critical")]);
    bad["alerts"][0]["startsAt"] = json!("yesterday");
    let (code, r) = post_am(&rig, bad).await;
    assert_eq!(
        (code, r["errors"][0]["field"].as_str()),
        (422, Some("alerts[0].startsAt")),
        "{r}"
    );
    let (code, _) = post_am(&rig, json!({"version": "4"})).await;
    assert_eq!(code, 422);
    // A wrong key: 401, counted too.
    let r = rig
        .http
        .post(rig.herald.url("/v1/alerts/alertmanager"))
        .bearer_auth("nope")
        .json(&am_payload(vec![]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        rig.herald
            .metric_sum("herald_alert_payloads_refused_total")
            .await
            >= 4.0
    );
}

#[tokio::test]
async fn events_v2_trigger_acknowledge_resolve_move_one_incident() {
    let rig = start().await;
    let h = &rig.herald;
    let post = |body: Value| {
        let rig = &rig;
        async move {
            let r = rig
                .http
                .post(rig.herald.url("/v1/alerts/events"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap())
        }
    };
    let key = "pd-routing-key-0123456789abcdef";
    let trigger = json!({"routing_key": key, "event_action": "trigger", "dedup_key": "grafana-42",
        "payload": {"summary": "API latency high", "source": "grafana", "severity": "error"},
        "links": [{"href": "https://grafana.example/d/1", "text": "dashboard"}]});
    let (code, r) = post(trigger.clone()).await;
    assert_eq!(code, 202, "{r}");
    assert_eq!(
        r,
        json!({"status": "success", "message": "Event processed", "dedup_key": "grafana-42"})
    );
    let (code, _) = post(trigger).await;
    assert_eq!(code, 202, "a repeated trigger is deduplicated");
    let (_, list) = h.get("/v1/incidents").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    let inc = &list["data"][0];
    assert_eq!(
        (inc["severity"].as_str(), inc["source"].as_str()),
        (Some("P1"), Some("events"))
    );
    let id = inc["id"].as_str().unwrap().to_string();
    let (code, _) =
        post(json!({"routing_key": key, "event_action": "acknowledge", "dedup_key": "grafana-42"}))
            .await;
    assert_eq!(code, 202);
    let (_, v) = h.get(&format!("/v1/incidents/{id}")).await;
    assert_eq!(v["status"], "acknowledged");
    let (code, _) =
        post(json!({"routing_key": key, "event_action": "resolve", "dedup_key": "grafana-42"}))
            .await;
    assert_eq!(code, 202);
    let (_, v) = h.get(&format!("/v1/incidents/{id}")).await;
    assert_eq!(v["status"], "resolved");
    // Without a dedup_key a trigger gets one made.
    let (_, r) = post(json!({"routing_key": key, "event_action": "trigger",
        "payload": {"summary": "x", "source": "zabbix", "severity": "info"}}))
    .await;
    assert!(r["dedup_key"].as_str().is_some_and(|d| !d.is_empty()));
    // Bad input: PagerDuty's error shape.
    let (code, r) = post(json!({"routing_key": key, "event_action": "trigger", "payload": {"source": "x", "severity": "loud"}})).await;
    assert_eq!(code, 400);
    assert_eq!(
        (r["status"].as_str(), r["message"].as_str()),
        (Some("invalid event"), Some("Event object is invalid"))
    );
    assert!(r["errors"].as_array().unwrap().len() >= 2, "{r}");
    let (code, r) =
        post(json!({"routing_key": "unknown", "event_action": "resolve", "dedup_key": "k"})).await;
    assert_eq!(code, 400, "{r}");
}

#[tokio::test]
async fn operators_acknowledge_and_resolve_incidents_with_a_reason() {
    let rig = start().await;
    let h = &rig.herald;
    let (_, r) = post_am(
        &rig,
        am_payload(vec![am_alert("db01", "firing", "warning")]),
    )
    .await;
    let id = r["incidents"][0].as_str().unwrap().to_string();
    let (code, v) = h
        .call(
            Method::POST,
            &format!("/v1/incidents/{id}/acknowledge"),
            Some(json!({"reason": "looking"})),
        )
        .await;
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("acknowledged")),
        "{v}"
    );
    let (code, v) = h
        .call(
            Method::POST,
            &format!("/v1/incidents/{id}/acknowledge"),
            None,
        )
        .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (409, Some("incident_state")),
        "{v}"
    );
    let (code, v) = h
        .call(
            Method::POST,
            &format!("/v1/incidents/{id}/resolve"),
            Some(json!({"reason": "disk cleaned"})),
        )
        .await;
    assert_eq!((code, v["status"].as_str()), (200, Some("resolved")), "{v}");
    let (_, audit) = h.get("/v1/audit?limit=2").await;
    assert_eq!(audit["data"][0]["action"], "incident.resolve");
    assert_eq!(audit["data"][0]["reason"], "disk cleaned");
    let (code, _) = h
        .call(Method::POST, "/v1/incidents/inc_nope/resolve", None)
        .await;
    assert_eq!(code, 404);
    let (code, v) = h.get("/v1/incidents?severity=P9").await;
    assert_eq!(
        (code, v["errors"][0]["field"].as_str()),
        (422, Some("severity"))
    );
    // The P2 page went by email, which no provider here sends: the contact's inbox took it.
    let (_, inbox) = h.get("/v1/inbox/oncall-1").await;
    assert!(!inbox["data"].as_array().unwrap().is_empty(), "{inbox}");
}

#[tokio::test]
async fn a_silent_heartbeat_opens_an_incident_and_a_ping_resolves_it() {
    use herald::core::alerts::heartbeats::HeartbeatConfig;
    let rig = Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        c.alert_routes = vec![route("db", &["team=\"db\""])];
        c.heartbeats = vec![HeartbeatConfig {
            id: "nightly-backup".into(),
            interval: herald::config::Dur::secs(1),
            grace: herald::config::Dur::secs(1),
            severity: "P0".into(),
            route: "db".into(),
            watchdog: vec!["alertname=\"Watchdog\"".into()],
        }];
    })
    .await;
    let h = &rig.herald;
    h.call(
        Method::PUT,
        "/v1/contacts/oncall-1",
        Some(json!({"phones": ["+15005550123"]})),
    )
    .await;
    let (code, r) = h
        .call(Method::POST, "/v1/heartbeats/nightly-backup/ping", None)
        .await;
    assert_eq!(code, 200, "{r}");
    let (code, _) = h
        .call(Method::POST, "/v1/heartbeats/unknown/ping", None)
        .await;
    assert_eq!(code, 404);
    // Alertmanager's Watchdog counts as a ping and pages no one.
    for _ in 0..3 {
        let wd = json!({"status": "firing", "labels": {"alertname": "Watchdog", "team": "db"}, "annotations": {},
            "startsAt": "2026-12-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "wd"});
        let (code, r) = post_am(&rig, am_payload(vec![wd])).await;
        assert_eq!(code, 200, "{r}");
        assert_eq!(r["incidents"], json!([]), "{r}");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let (_, hb) = h.get("/v1/heartbeats").await;
    assert_eq!(hb["data"][0]["status"], "ok", "{hb}");
    // Silent past interval + grace: an incident, and the page.
    let texts = wait_texts(&rig, 1).await;
    assert!(
        texts[0].starts_with("[P0] #1 Heartbeat nightly-backup is silent"),
        "{texts:?}"
    );
    let (_, list) = h.get("/v1/incidents").await;
    assert_eq!(
        (
            list["data"][0]["source"].as_str(),
            list["data"][0]["status"].as_str()
        ),
        (Some("heartbeat"), Some("triggered"))
    );
    let (_, hb) = h.get("/v1/heartbeats").await;
    assert_eq!(hb["data"][0]["status"], "silent", "{hb}");
    // A ping resolves it.
    h.call(Method::POST, "/v1/heartbeats/nightly-backup/ping", None)
        .await;
    let texts = wait_texts(&rig, 2).await;
    assert!(
        texts[1].starts_with("Resolved: #1 Heartbeat nightly-backup"),
        "{texts:?}"
    );
    let (_, list) = h.get("/v1/incidents").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["status"], "resolved");
}

#[tokio::test]
async fn alerts_during_a_maintenance_window_open_suppressed_incidents_that_page_no_one() {
    let rig = start().await;
    let h = &rig.herald;
    let later = herald::core::types::rfc3339(herald::core::types::now_millis() + 3_600_000);
    let (code, w) = h
        .call(Method::POST, "/v1/maintenance-windows",
              Some(json!({"matchers": ["team=\"db\"", "instance=~\"db0[12]\""], "ends_at": later, "reason": "db upgrade"})))
        .await;
    assert_eq!(code, 201, "{w}");
    let (code, e) = h
        .call(Method::POST, "/v1/maintenance-windows",
              Some(json!({"matchers": ["team="], "starts_at": later, "ends_at": "2020-01-01T00:00:00Z", "reason": ""})))
        .await;
    assert_eq!(code, 422, "{e}");
    let fields: Vec<&str> = e["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["field"].as_str())
        .collect();
    assert_eq!(fields, ["ends_at", "reason"], "{e}");
    let (_, r) = post_am(
        &rig,
        am_payload(vec![am_alert("db01", "firing", "critical")]),
    )
    .await;
    let id = r["incidents"][0].as_str().unwrap().to_string();
    let (_, inc) = h.get(&format!("/v1/incidents/{id}")).await;
    assert_eq!(
        (inc["status"].as_str(), inc["page_state"].as_str()),
        (Some("triggered"), Some("none")),
        "{inc}"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(sms_texts(&rig).await.is_empty(), "suppressed: nobody paged");
    // Another instance is outside the window's matchers: paged.
    let mut other = am_payload(vec![am_alert("db09", "firing", "critical")]);
    other["groupKey"] = json!("{}:{instance=\"db09\"}");
    post_am(&rig, other).await;
    wait_texts(&rig, 1).await;
    let (_, list) = h.get("/v1/maintenance-windows").await;
    assert_eq!(list["data"][0]["reason"], "db upgrade");
    let wid = w["id"].as_str().unwrap();
    let (code, _) = h
        .call(
            Method::DELETE,
            &format!("/v1/maintenance-windows/{wid}"),
            None,
        )
        .await;
    assert_eq!(code, 204);
    let (code, _) = h
        .call(
            Method::DELETE,
            &format!("/v1/maintenance-windows/{wid}"),
            None,
        )
        .await;
    assert_eq!(code, 404);
    let (_, audit) = h.get("/v1/audit?limit=5").await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"maintenance.create") && actions.contains(&"maintenance.delete"),
        "{actions:?}"
    );
}
