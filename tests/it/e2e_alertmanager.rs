//! The real peers: Debian's Prometheus and Alertmanager binaries (installed by
//! `scripts/test.sh`) sending to Herald on loopback. A rule fires → one incident → the
//! on-call contact's phone (the SMS simulator) gets the page → the rule stops → the incident
//! resolves and the resolved notice arrives. An HA pair of Alertmanagers pages once; Herald
//! down while Alertmanager sends loses nothing (Alertmanager retries 5xx and failed
//! connections).

use crate::utils::process::free_port;
use crate::utils::rig::{Rig, sms_providers};
use herald::core::alerts::routes::RouteConfig;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "am-bearer-token-0123456789abcdef";

pub fn binary(env: &str, name: &str) -> String {
    let p = std::env::var(env).unwrap_or_else(|_| name.into());
    match Command::new(&p).arg("--version").output() {
        Ok(o) if o.status.success() => p,
        _ => panic!(
            "{name} not found: run ./scripts/test.sh (it installs Debian's {name}) or set {env}"
        ),
    }
}

/// A child process killed when dropped.
pub struct Peer(Child);
impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An Alertmanager sending every group to Herald at `herald` (1 s group wait and interval).
pub fn alertmanager(dir: &Path, herald: &str, web: u16, cluster: Option<(u16, u16)>) -> Peer {
    let bin = binary("HERALD_TEST_ALERTMANAGER", "prometheus-alertmanager");
    let cfg = dir.join(format!("am-{web}.yml"));
    std::fs::write(
        &cfg,
        format!(
            "route:\n  receiver: herald\n  group_by: ['alertname']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: herald\n    webhook_configs:\n      - url: {herald}/v1/alerts/alertmanager\n        send_resolved: true\n\
             \x20       http_config:\n          authorization:\n            type: Bearer\n            credentials: {TOKEN}\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.path={}",
            dir.join(format!("am-data-{web}")).display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match cluster {
        None => {
            cmd.arg("--cluster.listen-address=");
        }
        Some((own, peer)) => {
            cmd.arg(format!("--cluster.listen-address=127.0.0.1:{own}"))
                .arg(format!("--cluster.peer=127.0.0.1:{peer}"))
                .arg("--cluster.peer-timeout=1s");
        }
    }
    Peer(cmd.spawn().unwrap())
}

pub async fn ready(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never became ready");
}

async fn start(herald_l: tokio::net::TcpListener) -> Rig {
    let rig = Rig::start_at(herald_l, |c, sim, _| {
        c.providers = sms_providers(sim);
        c.alert_routes = vec![RouteConfig {
            id: "sre".into(),
            matchers: vec!["team=\"sre\"".into()],
            users: vec!["sre-1".into()],
            notify_resolved: true,
            token: Some(herald::config::Secret::new(TOKEN)),
            ..Default::default()
        }];
    })
    .await;
    let (code, r) = rig
        .herald
        .call(
            Method::PUT,
            "/v1/contacts/sre-1",
            Some(json!({"phones": ["+15005550142"]})),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    rig
}

async fn sms(rig: &Rig) -> Vec<String> {
    rig.requests("twilio")
        .await
        .iter()
        .filter(|r| r["accepted"] == true)
        .filter_map(|r| r["request"]["Body"].as_str().map(String::from))
        .collect()
}

async fn wait_sms(rig: &Rig, n: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let t = sms(rig).await;
        if t.len() >= n {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{n} SMS expected within {within:?}, got {:?}",
        sms(rig).await
    );
}

async fn incidents(rig: &Rig) -> Vec<Value> {
    let (_, l) = rig.herald.get("/v1/incidents").await;
    l["data"].as_array().cloned().unwrap_or_default()
}

/// Alerts pushed to an Alertmanager's API as Prometheus pushes them.
async fn push(http: &reqwest::Client, am: u16, instances: &[&str], resolved: &[&str]) {
    let now = herald::core::types::rfc3339(herald::core::types::now_millis());
    let body: Vec<Value> = instances
        .iter()
        .map(|i| {
            let mut a = json!({"labels": {"alertname": "QueueStuck", "team": "sre", "severity": "critical", "instance": i},
                               "annotations": {"summary": format!("queue stuck on {i}")},
                               "startsAt": "2026-12-01T09:00:00Z"});
            if resolved.contains(i) {
                a["endsAt"] = json!(now);
            }
            a
        })
        .collect();
    let r = http
        .post(format!("http://127.0.0.1:{am}/api/v2/alerts"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
}

/// Prometheus scraping Herald every second with one rule, `HeraldCoreOnly` (critical, team
/// sre), that fires while Herald is in `core_only` mode, sent to the Alertmanager on `am_port`.
pub fn prometheus_core_only_rule(bin: &str, dir: &Path, herald: &str, am_port: u16) -> Peer {
    let target = herald.trim_start_matches("http://").to_string();
    std::fs::write(
        dir.join("rules.yml"),
        "groups:\n  - name: herald-test\n    rules:\n      - alert: HeraldCoreOnly\n        expr: herald_mode{mode=\"core_only\"} == 1\n        for: 0s\n        labels: {severity: critical, team: sre}\n        annotations: {summary: \"Herald is in core_only mode\", runbook_url: \"https://runbooks.example/mode\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [rules.yml]\n\
             alerting:\n  alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]}}]\n\
             scrape_configs:\n  - {{job_name: herald, static_configs: [{{targets: ['{target}']}}]}}\n"
        ),
    )
    .unwrap();
    let prom_port = free_port();
    Peer(
        Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--rules.alert.resend-delay=2s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_rule_pages_through_alertmanager_and_its_end_resolves_the_incident() {
    let prometheus = binary("HERALD_TEST_PROMETHEUS", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    let rig = start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
    let herald = rig.herald.url("");
    let am_port = free_port();
    let _am = alertmanager(dir.path(), &herald, am_port, None);
    ready(&rig.http, &format!("http://127.0.0.1:{am_port}/-/ready")).await;
    // The rule fires while Herald is in core_only mode (a series Prometheus scrapes from
    // Herald itself, so the test can end it).
    let (code, r) = rig
        .herald
        .call(
            Method::PUT,
            "/v1/mode",
            Some(json!({"mode": "core_only", "reason": "alert chain test"})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    let started = Instant::now();
    let _prom = prometheus_core_only_rule(&prometheus, dir.path(), &herald, am_port);
    let texts = wait_sms(&rig, 1, Duration::from_secs(90)).await;
    let paged_after = started.elapsed();
    assert!(
        texts[0].starts_with("[P0] #1 HeraldCoreOnly: Herald is in core_only mode"),
        "{texts:?}"
    );
    let open = incidents(&rig).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (open[0]["status"].as_str(), open[0]["service"].as_str()),
        (Some("triggered"), Some("herald"))
    );
    eprintln!("alert chain: Prometheus start → page queued and sent in {paged_after:?}");

    // The rule stops firing: the incident resolves, the resolved notice arrives.
    let (code, _) = rig
        .herald
        .call(
            Method::PUT,
            "/v1/mode",
            Some(json!({"mode": "normal", "reason": "done"})),
        )
        .await;
    assert_eq!(code, 200);
    let stopped = Instant::now();
    let texts = wait_sms(&rig, 2, Duration::from_secs(90)).await;
    assert!(
        texts[1].starts_with("Resolved: #1 HeraldCoreOnly"),
        "{texts:?}"
    );
    eprintln!(
        "alert chain: rule ended → resolved notice in {:?}",
        stopped.elapsed()
    );
    let done = incidents(&rig).await;
    assert_eq!(
        (done.len(), done[0]["status"].as_str()),
        (1, Some("resolved")),
        "{done:?}"
    );
    assert_eq!(sms(&rig).await.len(), 2, "one page, one notice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_ha_pair_opens_one_incident_and_pages_once() {
    let dir = tempfile::tempdir().unwrap();
    let rig = start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
    let herald = rig.herald.url("");
    let (w1, w2, c1, c2) = (free_port(), free_port(), free_port(), free_port());
    let _a = alertmanager(dir.path(), &herald, w1, Some((c1, c2)));
    let _b = alertmanager(dir.path(), &herald, w2, Some((c2, c1)));
    ready(&rig.http, &format!("http://127.0.0.1:{w1}/-/ready")).await;
    ready(&rig.http, &format!("http://127.0.0.1:{w2}/-/ready")).await;
    // Prometheus sends every alert to both peers.
    for am in [w1, w2] {
        push(&rig.http, am, &["q1", "q2", "q3"], &[]).await;
    }
    wait_sms(&rig, 1, Duration::from_secs(60)).await;
    // One of the three resolves (sent to both peers).
    for am in [w1, w2] {
        push(&rig.http, am, &["q1", "q2", "q3"], &["q3"]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let inc = loop {
        let list = incidents(&rig).await;
        assert_eq!(list.len(), 1, "one incident for the pair: {list:?}");
        let (_, v) = rig
            .herald
            .get(&format!(
                "/v1/incidents/{}",
                list[0]["id"].as_str().unwrap()
            ))
            .await;
        let resolved = v["occurrences"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["status"] == "resolved")
            .count();
        if resolved == 1 {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the resolved alert never arrived: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(inc["status"], "triggered", "two still firing: {inc}");
    let firing = inc["occurrences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] == "firing")
        .count();
    assert_eq!(firing, 2, "{inc}");
    // Both peers had their say (group_interval 1 s, peer timeout 1 s): still one page.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sms(&rig).await.len(), 1, "paged once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_sent_while_herald_is_down_arrive_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let herald = format!("http://127.0.0.1:{port}");
    let am = free_port();
    let _am = alertmanager(dir.path(), &herald, am, None);
    let http = crate::utils::http();
    ready(&http, &format!("http://127.0.0.1:{am}/-/ready")).await;
    push(&http, am, &["q1"], &[]).await;
    // Alertmanager tries, fails to connect, and keeps retrying.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rig = start(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
    )
    .await;
    // Alertmanager may reach Herald before the test has made the contact, so the page is
    // checked on the incident (one page message), not on the phone.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let list = incidents(&rig).await;
        if let Some(i) = list.first() {
            let id = i["id"].as_str().unwrap_or_default().to_string();
            let (_, v) = rig.herald.get(&format!("/v1/incidents/{id}")).await;
            if v["messages"].as_array().is_some_and(|m| m.len() == 1) {
                assert_eq!(v["title"], "QueueStuck: queue stuck on q1", "{v}");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the alert sent while Herald was down never arrived: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(incidents(&rig).await.len(), 1);
}
