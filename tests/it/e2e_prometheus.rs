//! The operator's pack stays true: `promtool check rules` passes on the shipped rules and
//! `promtool check metrics` on a live `/metrics` (after traffic, so every family has series),
//! and every metric the rules use is one Herald exports.

use crate::utils::TestHerald;
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};

fn promtool() -> String {
    let p = std::env::var("HERALD_TEST_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    match Command::new(&p).arg("--version").output() {
        Ok(o) if o.status.success() => p,
        _ => panic!(
            "promtool not found: run ./scripts/test.sh (it installs Debian's prometheus) or set HERALD_TEST_PROMTOOL"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_rules_and_live_metrics_pass_promtool() {
    let tool = promtool();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml");
    let out = Command::new(&tool)
        .args(["check", "rules", rules])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let h = TestHerald::start_with(|c| {
        c.alert_routes = vec![herald::core::alerts::routes::RouteConfig {
            id: "ops".into(),
            escalation_policy: Some("ops".into()),
            ..Default::default()
        }];
        c.oncall.tick = herald::config::Dur::millis(100);
        // The page goes out within a moment (a P3 would wait 5 minutes for a bundle).
        c.oncall
            .bundle_window
            .insert("P3".into(), herald::config::Dur::millis(200));
    })
    .await;
    // An incident paged by a policy and acknowledged (the on-call families get series).
    let (c, _) = h
        .call(
            reqwest::Method::PUT,
            "/v1/contacts/u",
            Some(json!({"name": "u"})),
        )
        .await;
    assert_eq!(c, 201);
    let policy = json!({"id": "ops", "name": "Ops", "steps": [{"targets": [{"type": "contact", "id": "u"}]}]});
    let (c, r) = h
        .call(
            reqwest::Method::POST,
            "/v1/escalation-policies",
            Some(policy),
        )
        .await;
    assert_eq!(c, 201, "{r}");
    let alert = json!({"version": "4", "groupKey": "g", "status": "firing", "receiver": "herald",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
        "alerts": [{"status": "firing", "labels": {"alertname": "X", "severity": "info"}, "annotations": {},
                    "startsAt": "2026-12-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "", "fingerprint": "f1"}]});
    let (c, r) = h
        .call(
            reqwest::Method::POST,
            "/v1/alerts/alertmanager",
            Some(alert),
        )
        .await;
    assert_eq!(c, 200, "{r}");
    let inc = r["incidents"][0].as_str().unwrap().to_string();
    h.wait_metric("herald_pages_total", 1.0).await;
    let (c, r) = h
        .call(
            reqwest::Method::POST,
            &format!("/v1/incidents/{inc}/acknowledge"),
            None,
        )
        .await;
    assert_eq!(c, 200, "{r}");
    let (_, r) = h
        .send(json!({"to": {"user": "u"}, "content": {"text": "x"}}))
        .await;
    h.wait_status(r["id"].as_str().unwrap(), "sent").await;
    h.send(json!({"to": {}, "content": {"text": "x"}})).await;
    // An alert payload refused (the rules watch those).
    let (code, _) = h
        .call(
            reqwest::Method::POST,
            "/v1/alerts/alertmanager",
            Some(json!({"version": "3"})),
        )
        .await;
    assert_eq!(code, 422);
    let text = h.metrics().await;
    let mut child = Command::new(&tool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every herald_ metric a rule or the Grafana dashboard names exists in the exposition.
    let yaml = std::fs::read_to_string(rules).unwrap();
    let dashboard = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/herald-dashboard.json"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard).unwrap()).unwrap();
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    for (what, source) in [("the rules", yaml), ("the dashboard", exprs.join("\n"))] {
        for word in source.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("herald_") {
                let family = word
                    .strip_suffix("_bucket")
                    .or_else(|| word.strip_suffix("_total"))
                    .unwrap_or(word);
                assert!(
                    text.contains(&format!("# TYPE {word} "))
                        || text.contains(&format!("# TYPE {family} "))
                        || text.contains(&format!("{word}{{"))
                        || text.contains(&format!("{word} ")),
                    "{what} name {word}, which /metrics does not export"
                );
            }
        }
    }
    h.stop().await;
}
