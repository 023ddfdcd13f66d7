//! Alert storms end to end over HTTP with the SMS simulator: 200 incidents for one on-call
//! person reach their phone as a handful of bundles and one reply acknowledges them all;
//! with a storm threshold they become one storm incident that escalates and ends by
//! itself; an inhibiting alert silences the pages of the alerts it inhibits.

use crate::e2e_alerts::am_payload;
use crate::e2e_oncall::{ANA, Setup, code_in, incident, reply, start, texts, to};
use crate::utils::rig::Rig;
use herald::config::Dur;
use herald::core::types::parse_rfc3339;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const INCIDENTS: usize = 200;

fn alert(name: &str, instance: &str, dc: &str, status: &str, severity: &str) -> Value {
    json!({"status": status,
           "labels": {"alertname": name, "team": "db", "instance": instance, "dc": dc, "severity": severity},
           "annotations": {"summary": format!("{name} on {instance}")},
           "startsAt": "2026-12-01T10:00:00.000Z",
           "endsAt": if status == "resolved" { "2026-12-01T10:05:00.000Z" } else { "0001-01-01T00:00:00Z" },
           "generatorURL": "http://prometheus.example/graph", "fingerprint": fingerprint(name, instance)})
}

/// A hex fingerprint for an alert name and instance (as Alertmanager's label hash).
fn fingerprint(name: &str, instance: &str) -> String {
    format!("{name}/{instance}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .rev()
        .take(16)
        .collect()
}

/// The first timeline entry of `kind` in an incident's view.
fn entry(v: &Value, kind: &str) -> Option<Value> {
    v["timeline"]
        .as_array()?
        .iter()
        .find(|e| e["kind"] == kind)
        .cloned()
}

/// Posts one alert as its own Alertmanager group; the incident it opened or updated.
async fn post(rig: &Rig, a: Value) -> String {
    let mut p = am_payload(vec![a.clone()]);
    p["groupKey"] = json!(format!(
        "{{}}/{{team=\"db\"}}:{{fp=\"{}\"}}",
        a["fingerprint"]
    ));
    let r = rig
        .http
        .post(rig.herald.url("/v1/alerts/alertmanager"))
        .bearer_auth("am-route-token-0123456789")
        .json(&p)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(code, 200, "{v}");
    v["incidents"][0].as_str().unwrap_or("").to_string()
}

/// Opens `n` incidents, one every `every`, a tenth of them P0 (critical), the rest P1.
async fn storm(rig: &Rig, n: usize, every: Duration) -> Vec<String> {
    let mut ids = Vec::new();
    for k in 0..n {
        let sev = if k % 10 == 0 { "critical" } else { "warning" };
        ids.push(
            post(
                rig,
                alert("InstanceDown", &format!("db{k:03}"), "fra", "firing", sev),
            )
            .await,
        );
        tokio::time::sleep(every).await;
    }
    ids
}

/// How many incidents an SMS speaks for: a bundle says `N incidents for you`, a page one.
fn incidents_in(text: &str) -> usize {
    text.split_once(" incidents for you")
        .and_then(|(head, _)| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(150);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn audit_actions(rig: &Rig) -> Vec<(String, String)> {
    let (_, v) = rig.herald.get("/v1/audit?limit=1000").await;
    v["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_string(),
                e["target"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn windows(c: &mut herald::config::Config, secs: u64) {
    for s in ["P0", "P1", "P2", "P3"] {
        c.oncall.bundle_window.insert(s.into(), Dur::secs(secs));
    }
    c.oncall.bundle_max_gap = Dur::secs(60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_incidents_reach_the_phone_as_a_handful_and_one_reply_acknowledges_them_all() {
    let rig = start(
        Setup {
            step_delay: 600,
            ..Setup::default()
        },
        |c| windows(c, 2),
    )
    .await;
    let t0 = Instant::now();
    let ids = storm(&rig, INCIDENTS, Duration::from_millis(100)).await;
    let opened_in = t0.elapsed();
    wait_for("every incident in an SMS to ana", async || {
        let t = to(&texts(&rig).await, ANA);
        t.iter().map(|b| incidents_in(b)).sum::<usize>() >= INCIDENTS
    })
    .await;
    // The first message went within the P0 window of the first incident (figure only).
    let v = incident(&rig, &ids[0]).await;
    let opened = parse_rfc3339(v["opened_at"].as_str().unwrap()).unwrap();
    let m = v["messages"].as_array().unwrap()[0]["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, m) = rig.herald.get(&format!("/v1/messages/{m}")).await;
    let first_ms = parse_rfc3339(m["created_at"].as_str().unwrap()).unwrap() - opened;
    let sms = to(&texts(&rig).await, ANA);
    assert_eq!(
        sms.iter().map(|b| incidents_in(b)).sum::<usize>(),
        INCIDENTS,
        "each incident in exactly one message: {sms:#?}"
    );
    assert!(sms.len() <= 6, "{} messages: {sms:#?}", sms.len());
    for b in sms.iter().filter(|b| incidents_in(b) > 1) {
        let head = b.lines().next().unwrap();
        assert!(
            head.contains("incidents for you (") && head.contains(" ×"),
            "{head}"
        );
        assert!(head.contains("came as one message"), "{head}");
    }
    // The most severe first: a bundle with a P0 in it lists one first.
    for b in sms
        .iter()
        .filter(|b| b.lines().next().unwrap().contains("P0 ×"))
    {
        assert!(b.lines().nth(1).unwrap().contains("[P0]"), "{b}");
    }
    let last = sms.last().unwrap();
    let code = code_in(last);
    assert!(
        last.contains(&format!(
            "Reply {code}a to acknowledge all {INCIDENTS} open"
        )),
        "{last}"
    );
    let (_, answer) = reply(&rig, "twilio", ANA, &format!("{code}a")).await;
    assert!(
        answer.contains(&format!("{INCIDENTS} incidents acknowledged by you")),
        "{answer}"
    );
    for id in &ids {
        let v = incident(&rig, id).await;
        assert_eq!(v["status"], "acknowledged", "{id}");
        assert_eq!(v["acknowledged_by"], "ana");
        let ack = entry(&v, "acknowledged").expect("acknowledged on the timeline");
        let reason = ack["detail"]["reason"].as_str().unwrap_or("");
        assert!(reason.contains(&format!("reply {code}a")), "{ack}");
    }
    // Pages sent alone plus pages sent inside bundles: each of the 200 once.
    let metrics = rig.herald.metrics().await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{method=\"sms\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(
        value("herald_pages_total") + value("herald_pages_bundled_total"),
        INCIDENTS as f64,
        "{metrics}"
    );
    assert!(value("herald_page_bundles_total") >= 1.0);
    eprintln!(
        "FIGURES storm bundling: {INCIDENTS} incidents opened in {:.1} s for one person reached the phone as {} SMS; first queued {first_ms} ms after the first incident opened (P0 window 2 s); one reply acknowledged all {INCIDENTS}",
        opened_in.as_secs_f64(),
        sms.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_threshold_one_storm_incident_takes_them_all_escalates_and_ends_by_itself() {
    let rig = start(
        Setup {
            step_delay: 600,
            ..Setup::default()
        },
        |c| {
            windows(c, 1);
            c.oncall.storm.threshold = 10;
            c.oncall.storm.window = Dur::secs(5);
        },
    )
    .await;
    let ids = storm(&rig, INCIDENTS, Duration::from_millis(50)).await;
    let first = incident(&rig, &ids[0]).await;
    let storm_id = first["grouped_into"].as_str().expect("grouped").to_string();
    for id in &ids {
        let v = incident(&rig, id).await;
        assert_eq!(v["grouped_into"], storm_id.as_str(), "{v}");
        // It pages no one itself: the first ones' pages, still held, were dropped.
        let msgs = v["messages"].as_array().unwrap();
        assert!(!msgs.iter().any(|m| m["kind"] == "page"), "{v}");
        let pages = v["pages"].as_array().unwrap();
        assert!(pages.iter().all(|p| p["bundle_id"] == "-"), "{v}");
    }
    let s = incident(&rig, &storm_id).await;
    assert_eq!(s["source"], "storm");
    assert_eq!(s["details"]["storm"]["count"], INCIDENTS as i64, "{s}");
    assert_eq!(s["severity"], "P0", "the most severe of them");
    assert!(
        s["title"].as_str().unwrap().contains("200 new incidents"),
        "{s}"
    );
    // Its escalation pages ana, about the storm only.
    wait_for("the storm paged", async || {
        !to(&texts(&rig).await, ANA).is_empty()
    })
    .await;
    let sms = to(&texts(&rig).await, ANA);
    assert!(
        sms.iter().all(|t| t.contains("Alert storm")),
        "only the storm is paged: {sms:#?}"
    );
    // The alerts stop: the storm ends by itself, audited.
    wait_for("the storm ended", async || {
        audit_actions(&rig)
            .await
            .contains(&("storm.end".to_string(), storm_id.clone()))
    })
    .await;
    assert!(
        audit_actions(&rig)
            .await
            .contains(&("storm.start".to_string(), storm_id.clone()))
    );
    let s = incident(&rig, &storm_id).await;
    assert!(entry(&s, "storm_ended").is_some(), "{s}");
    // A new incident after the storm is paged on its own.
    let after = post(
        &rig,
        alert("InstanceDown", "late", "fra", "firing", "critical"),
    )
    .await;
    wait_for("late paged on its own", async || {
        to(&texts(&rig).await, ANA)
            .iter()
            .any(|t| t.contains("InstanceDown on late"))
    })
    .await;
    assert!(incident(&rig, &after).await["grouped_into"].is_null());
    // Every alert resolves: each incident does, and so does the storm.
    for k in 0..INCIDENTS {
        let sev = if k % 10 == 0 { "critical" } else { "warning" };
        post(
            &rig,
            alert("InstanceDown", &format!("db{k:03}"), "fra", "resolved", sev),
        )
        .await;
    }
    wait_for("the storm resolved", async || {
        incident(&rig, &storm_id).await["status"] == "resolved"
    })
    .await;
    assert_eq!(incident(&rig, &storm_id).await["resolved_by"], "alerts");
}

#[tokio::test]
async fn an_inhibiting_alert_silences_the_pages_of_those_it_inhibits_while_it_fires() {
    // Steps far apart: a second page to ana can only come from a lifted inhibition.
    let long = Setup {
        step_delay: 600,
        ..Setup::default()
    };
    let rig = start(long, |c| {
        c.alert_routes[0].inhibit = vec![herald::core::alerts::inhibit::InhibitConfig {
            source_matchers: vec!["alertname=\"DatacenterDown\"".into()],
            target_matchers: vec!["alertname=\"InstanceDown\"".into()],
            equal: vec!["dc".into()],
        }];
    })
    .await;
    // An instance of `ber` is down first, and paged.
    let ber = post(
        &rig,
        alert("InstanceDown", "ber1", "ber", "firing", "critical"),
    )
    .await;
    wait_for("ber1 paged", async || {
        to(&texts(&rig).await, ANA)
            .iter()
            .any(|t| t.contains("ber1"))
    })
    .await;
    let fra_dc = post(
        &rig,
        alert("DatacenterDown", "fra", "fra", "firing", "critical"),
    )
    .await;
    let ber_dc = post(
        &rig,
        alert("DatacenterDown", "ber", "ber", "firing", "critical"),
    )
    .await;
    let fra1 = post(
        &rig,
        alert("InstanceDown", "fra1", "fra", "firing", "critical"),
    )
    .await;
    let ams1 = post(
        &rig,
        alert("InstanceDown", "ams1", "ams", "firing", "critical"),
    )
    .await;
    wait_for("the datacenters and ams1 paged", async || {
        let t = to(&texts(&rig).await, ANA).join("\n");
        t.contains("DatacenterDown on fra")
            && t.contains("DatacenterDown on ber")
            && t.contains("ams1")
    })
    .await;
    let v = incident(&rig, &fra1).await;
    assert_eq!(v["inhibited_by"], fra_dc.as_str(), "{v}");
    assert_eq!(v["page_state"], "none");
    assert!(
        entry(&v, "inhibited").is_some(),
        "visible as inhibited: {v}"
    );
    // Inhibited after it was paged: its escalation stops.
    let v = incident(&rig, &ber).await;
    assert_eq!(v["inhibited_by"], ber_dc.as_str(), "{v}");
    assert!(incident(&rig, &ams1).await["inhibited_by"].is_null());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = to(&texts(&rig).await, ANA).join("\n");
    assert!(
        !t.contains("fra1"),
        "fra1 is never paged while fra is down: {t}"
    );
    // The datacenter comes back but fra1 is still down: now it pages.
    post(
        &rig,
        alert("DatacenterDown", "fra", "fra", "resolved", "critical"),
    )
    .await;
    wait_for("fra1 paged", async || {
        to(&texts(&rig).await, ANA)
            .iter()
            .any(|t| t.contains("fra1"))
    })
    .await;
    let v = incident(&rig, &fra1).await;
    assert!(v["inhibited_by"].is_null(), "{v}");
    assert!(entry(&v, "uninhibited").is_some(), "{v}");
    // ber1, paged before its data centre went down, pages again when it comes back.
    post(
        &rig,
        alert("DatacenterDown", "ber", "ber", "resolved", "critical"),
    )
    .await;
    wait_for("ber1 paged again", async || {
        to(&texts(&rig).await, ANA)
            .iter()
            .filter(|t| t.contains("ber1"))
            .count()
            >= 2
    })
    .await;
}

#[tokio::test]
async fn a_bundle_of_pages_is_one_call_and_its_keypress_answers_every_incident() {
    // Calls to numbers ending 0007 press 4 (the simulator).
    let rig = start(
        Setup {
            ana_phone: "+15005550007",
            step_delay: 600,
            voice: true,
            ..Setup::default()
        },
        |c| windows(c, 1),
    )
    .await;
    let mut ids = Vec::new();
    for k in 0..3 {
        ids.push(
            post(
                &rig,
                alert(
                    "InstanceDown",
                    &format!("v{k}"),
                    "fra",
                    "firing",
                    "critical",
                ),
            )
            .await,
        );
    }
    wait_for("every incident acknowledged by the one call", async || {
        let mut all = true;
        for id in &ids {
            all &= incident(&rig, id).await["status"] == "acknowledged";
        }
        all
    })
    .await;
    let calls: Vec<Value> = rig
        .requests("twilio")
        .await
        .into_iter()
        .filter(|r| r["request"]["Twiml"].is_string())
        .collect();
    assert_eq!(calls.len(), 1, "one call for the bundle: {calls:#?}");
    let twiml = calls[0]["request"]["Twiml"].as_str().unwrap();
    assert!(
        twiml.contains("3 incidents for you") && twiml.contains("Press 4 to acknowledge all 3"),
        "{twiml}"
    );
    for id in &ids {
        let v = incident(&rig, id).await;
        let ack = entry(&v, "acknowledged").expect("acknowledged on the timeline");
        assert_eq!(ack["detail"]["reason"], "via voice: pressed 4", "{v}");
    }
}

#[tokio::test]
async fn a_page_dropped_before_it_went_out_brings_no_notices_either() {
    let rig = start(
        Setup {
            step_delay: 600,
            ..Setup::default()
        },
        |c| windows(c, 2),
    )
    .await;
    let id = post(
        &rig,
        alert("InstanceDown", "quiet", "fra", "firing", "critical"),
    )
    .await;
    wait_for("ana's page held", async || {
        incident(&rig, &id).await["pages"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    })
    .await;
    // Taken within the bundle window: ana's page is dropped, never sent.
    for action in ["acknowledge", "resolve"] {
        let (c, r) = rig
            .herald
            .call(
                reqwest::Method::POST,
                &format!("/v1/incidents/{id}/{action}"),
                Some(json!({"reason": "seen on the dashboard"})),
            )
            .await;
        assert_eq!(c, 200, "{r}");
    }
    let v = incident(&rig, &id).await;
    assert!(
        v["pages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["bundle_id"] == "-"),
        "{v}"
    );
    // Past every window (pages and notices held 2 s): nothing reached ana's phone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sms = to(&texts(&rig).await, ANA);
    assert!(
        sms.is_empty(),
        "ana was never paged, so told nothing: {sms:#?}"
    );
}
