//! On-call end to end over HTTP with the simulator: an Alertmanager alert opens an incident
//! whose route names an escalation policy; the schedule's person is paged at once, the next
//! step after its delay, the policy repeats; a reply by SMS (Twilio inbound, signed; Aliyun
//! SmsUp), a signed link or a key pressed during the call acknowledges; the others paged
//! are told; acknowledgement timeouts re-page; resolve stops everything.

use crate::e2e_alerts::{am_alert, am_payload};
use crate::utils::rig::{Rig, provider, sms_providers};
use herald::config::{Dur, ProviderKind, Secret};
use herald::core::alerts::routes::RouteConfig;
use herald::core::types::Channel;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const LINK_SECRET: &str = "link-secret-0123456789abcdef-0123456789";
pub const ANA: &str = "+15005550101";
pub const BEN: &str = "+15005550102";

pub fn oncall_route() -> RouteConfig {
    RouteConfig {
        id: "db".into(),
        matchers: vec!["team=\"db\"".into()],
        escalation_policy: Some("db-policy".into()),
        notify_resolved: true,
        token: Some(Secret::new("am-route-token-0123456789")),
        ..Default::default()
    }
}

pub struct Setup {
    pub step_delay: u64,
    pub repeat: u32,
    pub ana_phone: &'static str,
    pub voice: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            step_delay: 2,
            repeat: 1,
            ana_phone: ANA,
            voice: false,
        }
    }
}

pub async fn start(s: Setup, tweak: impl FnOnce(&mut herald::config::Config)) -> Rig {
    let voice = s.voice;
    let rig = Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        if voice {
            c.providers.push(provider(
                "twilio-voice",
                Channel::Voice,
                ProviderKind::TwilioVoice,
                1,
                &format!("{sim}/twilio"),
                &[
                    ("account_sid", "ACsim0000000000000000000000000000"),
                    ("auth_token", "twilio-token-secret-value"),
                ],
                &[("from", "+15005550006"), ("language", "en-US")],
            ));
        }
        c.alert_routes = vec![oncall_route()];
        c.oncall.tick = Dur::millis(100);
        c.oncall.lease = Dur::secs(2);
        // Pages wait a little for others to the same person (bundles), as by default.
        for s in ["P0", "P1", "P2", "P3"] {
            c.oncall.bundle_window.insert(s.into(), Dur::millis(300));
        }
        c.oncall.public_url = c.server.public_url.clone();
        c.oncall.link_secret = Some(Secret::new(LINK_SECRET));
        tweak(c);
    })
    .await;
    let h = &rig.herald;
    for (id, phone) in [("ana", s.ana_phone), ("ben", BEN)] {
        let (code, r) = h
            .call(
                Method::PUT,
                &format!("/v1/contacts/{id}"),
                Some(json!({"name": id, "phones": [phone]})),
            )
            .await;
        assert_eq!(code, 201, "{r}");
    }
    let (code, r) = h
        .call(
            Method::POST,
            "/v1/schedules",
            Some(
                json!({"id": "primary", "name": "DB primary", "time_zone": "UTC",
                        "layers": [{"rotation": "weekly", "start": "2026-01-05T09:00",
                                    "participants": ["ana"]}]}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    let (code, r) = h
        .call(
            Method::POST,
            "/v1/escalation-policies",
            Some(
                json!({"id": "db-policy", "name": "DB", "repeat": s.repeat, "steps": [
                {"delay_seconds": s.step_delay, "targets": [{"type": "schedule", "id": "primary"}]},
                {"delay_seconds": s.step_delay, "targets": [{"type": "contact", "id": "ben"}]}]}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    rig
}

pub async fn fire(rig: &Rig, instance: &str) -> String {
    let r = rig
        .http
        .post(rig.herald.url("/v1/alerts/alertmanager"))
        .bearer_auth("am-route-token-0123456789")
        .json(&am_payload(vec![am_alert(instance, "firing", "critical")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    v["incidents"][0].as_str().unwrap().to_string()
}

/// `(to, body)` of every SMS the Twilio simulator took.
pub async fn texts(rig: &Rig) -> Vec<(String, String)> {
    rig.requests("twilio")
        .await
        .iter()
        .filter(|r| r["accepted"] == true)
        .filter(|r| r["request"]["Body"].is_string())
        .map(|r| {
            (
                r["request"]["To"].as_str().unwrap_or("").to_string(),
                r["request"]["Body"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub async fn wait_texts(
    rig: &Rig,
    pred: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    for _ in 0..400 {
        let t = texts(rig).await;
        if pred(&t) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("SMS never as expected: {:#?}", texts(rig).await);
}

pub fn to(t: &[(String, String)], phone: &str) -> Vec<String> {
    t.iter()
        .filter(|(p, _)| p == phone)
        .map(|(_, b)| b.clone())
        .collect()
}

fn pages(t: &[(String, String)], phone: &str) -> usize {
    to(t, phone)
        .iter()
        .filter(|b| b.contains("to acknowledge"))
        .count()
}

/// Replies from `from` through the simulator; `(Herald's status, its answer)`.
pub async fn reply(rig: &Rig, via: &str, from: &str, body: &str) -> (u64, String) {
    let (path, url) = match via {
        "twilio" => (
            "/_sim/twilio/reply",
            rig.herald.url("/v1/inbound/twilio-backup"),
        ),
        _ => (
            "/_sim/aliyun/reply",
            rig.herald
                .url("/v1/inbound/aliyun-main?token=sim-receipt-token"),
        ),
    };
    let v: Value = rig
        .http
        .post(format!("{}{path}", rig.sim))
        .json(&json!({"url": url, "from": from, "body": body}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        v["status"].as_u64().unwrap_or(0),
        v["answer"].as_str().unwrap_or("").to_string(),
    )
}

pub async fn incident(rig: &Rig, id: &str) -> Value {
    let (code, v) = rig.herald.get(&format!("/v1/incidents/{id}")).await;
    assert_eq!(code, 200, "{v}");
    v
}

pub fn code_in(body: &str) -> String {
    let at = body.find("Reply ").expect("a reply code") + 6;
    body[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect()
}

#[tokio::test]
async fn nobody_answers_step_one_at_once_step_two_after_its_delay_then_the_policy_repeats() {
    let rig = start(Setup::default(), |_| {}).await;
    let id = fire(&rig, "db01").await;
    let t = wait_texts(&rig, |t| pages(t, ANA) >= 1).await;
    assert_eq!(pages(&t, BEN), 0, "step 2 waits its delay: {t:?}");
    let first = &to(&t, ANA)[0];
    assert!(first.starts_with("[P0] #1 DiskFull"), "{first}");
    assert!(
        first.contains("Reply 1a to acknowledge, 1r to resolve"),
        "{first}"
    );
    assert!(first.contains("/a/"), "a link for a US number: {first}");
    let t = wait_texts(&rig, |t| pages(t, BEN) >= 1).await;
    assert_eq!(pages(&t, ANA), 1);
    // Repeat 1: the whole policy once more, then nobody more.
    wait_texts(&rig, |t| pages(t, ANA) >= 2 && pages(t, BEN) >= 2).await;
    let inc = incident(&rig, &id).await;
    for _ in 0..100 {
        if incident(&rig, &id).await["escalation"]["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let inc2 = incident(&rig, &id).await;
    assert_eq!(inc2["escalation"]["state"], "done", "{inc2}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let t = texts(&rig).await;
    assert_eq!((pages(&t, ANA), pages(&t, BEN)), (2, 2), "{t:?}");
    assert_eq!(inc["status"], "triggered");
    let keys: Vec<&str> = inc2["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    let steps: Vec<&Value> = inc2["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "escalated")
        .collect();
    assert_eq!(steps.len(), 4, "{inc2}");
    assert_eq!(steps[1]["detail"]["step"], 2);
    assert!(
        rig.herald
            .metric_sum("herald_escalation_fire_lag_seconds_count")
            .await
            >= 4.0
    );
}

#[tokio::test]
async fn an_sms_reply_acknowledges_stops_the_escalation_and_step_two_is_told() {
    let rig = start(Setup::default(), |_| {}).await;
    let id = fire(&rig, "db01").await;
    let t = wait_texts(&rig, |t| pages(t, BEN) >= 1).await;
    let code = code_in(&to(&t, ANA)[0]);
    let (status, answer) = reply(&rig, "twilio", ANA, &format!("{code}a")).await;
    assert_eq!(status, 200);
    assert!(
        answer.contains("<Message><Body>#1 acknowledged by you"),
        "{answer}"
    );
    let inc = incident(&rig, &id).await;
    assert_eq!(inc["status"], "acknowledged", "{inc}");
    assert_eq!(inc["acknowledged_by"], "ana");
    let ack = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "acknowledged")
        .unwrap();
    assert_eq!(ack["actor"], "ana");
    assert_eq!(ack["detail"]["reason"], format!("via sms: reply {code}a"));
    // Ben, paged by step 2, is told; nobody is paged again (the policy would repeat).
    let t = wait_texts(&rig, |t| {
        to(t, BEN)
            .iter()
            .any(|b| b.contains("acknowledged by ana (sms)"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let after = texts(&rig).await;
    assert_eq!(
        (pages(&after, ANA), pages(&after, BEN)),
        (1, 1),
        "{after:?}"
    );
    assert_eq!(after.len(), t.len(), "nothing more: {after:?}");
    let (_, audit) = rig.herald.get("/v1/audit").await;
    let entry = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "incident.acknowledge")
        .unwrap();
    assert_eq!(entry["actor"], "ana", "{audit}");
    assert_eq!(entry["after"]["via"], "sms");
    // MTTA is measured and in the stats.
    assert!(
        rig.herald
            .metric_sum("herald_incident_time_to_acknowledge_seconds_count")
            .await
            >= 1.0
    );
    let (code, stats) = rig.herald.get("/v1/incidents/stats").await;
    assert_eq!(code, 200, "{stats}");
    assert_eq!(stats["overall"]["tta"]["count"], 1, "{stats}");
    assert_eq!(
        stats["by_step"]["2"]["incidents"], 1,
        "acknowledged after step 2: {stats}"
    );
}

#[tokio::test]
async fn a_bare_reply_by_aliyun_smsup_acknowledges_the_newest_open_page() {
    let rig = start(
        Setup {
            ana_phone: "+8613800138000",
            step_delay: 30,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let id = fire(&rig, "db01").await;
    // A mainland number's SMS page carries no link.
    let t = wait_texts(&rig, |t| pages(t, "+8613800138000") >= 1).await;
    let text = &to(&t, "+8613800138000")[0];
    assert!(text.contains("Reply 1a") && !text.contains("/a/"), "{text}");
    let (status, answer) = reply(&rig, "aliyun", "+8613800138000", "a").await;
    assert_eq!(
        (status, answer.contains("\"code\":0")),
        (200, true),
        "{answer}"
    );
    let inc = incident(&rig, &id).await;
    assert_eq!(inc["status"], "acknowledged", "{inc}");
    assert_eq!(inc["acknowledged_by"], "ana");
    let page = inc["pages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["method"] == "sms")
        .unwrap()
        .clone();
    assert_eq!(page["address"], "+8613800138000");
}

#[tokio::test]
async fn replies_from_strangers_late_codes_and_noise_ack_nothing_and_answers_are_bounded() {
    let rig = start(
        Setup {
            step_delay: 30,
            ..Setup::default()
        },
        |c| c.oncall.replies_per_hour = 3,
    )
    .await;
    let id = fire(&rig, "db01").await;
    let t = wait_texts(&rig, |t| pages(t, ANA) >= 1).await;
    let code = code_in(&to(&t, ANA)[0]);
    // A number never paged: no answer at all.
    let (status, answer) = reply(&rig, "twilio", "+15005550199", &format!("{code}a")).await;
    assert_eq!(status, 200);
    assert!(!answer.contains("<Message>"), "{answer}");
    assert_eq!(incident(&rig, &id).await["status"], "triggered");
    // The incident resolves; its code then acknowledges nothing.
    let (c, _) = rig
        .herald
        .call(Method::POST, &format!("/v1/incidents/{id}/resolve"), None)
        .await;
    assert_eq!(c, 200);
    let (_, answer) = reply(&rig, "twilio", ANA, &format!("{code}a")).await;
    assert!(answer.contains("is resolved already"), "{answer}");
    let inc = incident(&rig, &id).await;
    assert_eq!(inc["status"], "resolved");
    assert!(inc["acknowledged_at"].is_null(), "{inc}");
    // Noise from a paged number: answered at most 3 times an hour.
    let mut answered = 0;
    for _ in 0..8 {
        let (_, a) = reply(&rig, "twilio", ANA, "hello?").await;
        if a.contains("<Message>") {
            answered += 1;
        }
    }
    assert_eq!(answered, 2, "3 an hour, one already spent on the late code");
    let (_, a) = reply(&rig, "twilio", "+15005550101", "9a").await;
    assert!(!a.contains("<Message>"), "bounded: {a}");
}

#[tokio::test]
async fn the_link_shows_on_get_acts_once_on_post_and_refuses_forged_expired_and_foreign_uses() {
    let rig = start(
        Setup {
            step_delay: 30,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let id = fire(&rig, "db01").await;
    let t = wait_texts(&rig, |t| pages(t, ANA) >= 1).await;
    let body = &to(&t, ANA)[0];
    let link = body
        .lines()
        .find(|l| l.contains("/a/"))
        .unwrap()
        .trim()
        .to_string();
    let plain = crate::utils::http();
    let r = plain.get(&link).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Acknowledge") && page.contains("DiskFull"),
        "{page}"
    );
    assert_eq!(
        incident(&rig, &id).await["status"],
        "triggered",
        "GET acts on nothing"
    );

    // Another incident's id in the form: refused.
    let r = plain
        .post(&link)
        .form(&[("action", "acknowledge"), ("incident", "inc_other")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = plain
        .post(&link)
        .form(&[("action", "acknowledge"), ("incident", id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let inc = incident(&rig, &id).await;
    assert_eq!(
        (inc["status"].as_str(), inc["acknowledged_by"].as_str()),
        (Some("acknowledged"), Some("ana"))
    );
    let r = plain
        .post(&link)
        .form(&[("action", "resolve")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 410, "works once");
    assert!(r.text().await.unwrap().contains("used already"));
    assert_eq!(incident(&rig, &id).await["status"], "acknowledged");

    // Forged: a token changed by one character; signed with another key.
    let base = link.split("/a/").next().unwrap();
    let token = link.split("/a/").nth(1).unwrap();
    let mut forged = token.to_string();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let other = herald::core::oncall::ack_link::make(
        b"another-secret-0123456789abcdef-0123",
        &herald::core::oncall::ack_link::Claims {
            i: id.clone(),
            p: "ana".into(),
            e: i64::MAX,
            n: "n1".into(),
        },
    );
    for t in [forged, other] {
        let r = plain
            .post(format!("{base}/a/{t}"))
            .form(&[("action", "resolve")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403);
        assert!(r.text().await.unwrap().contains("not valid"));
    }
    // Expired.
    let expired = herald::core::oncall::ack_link::make(
        LINK_SECRET.as_bytes(),
        &herald::core::oncall::ack_link::Claims {
            i: id.clone(),
            p: "ana".into(),
            e: 1,
            n: "n2".into(),
        },
    );
    let r = plain
        .get(format!("{base}/a/{expired}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 410);
    assert!(r.text().await.unwrap().contains("expired"));
    assert_eq!(incident(&rig, &id).await["status"], "acknowledged");
}

#[tokio::test]
async fn an_acknowledgement_that_times_out_pages_again_and_resolve_stops_every_page() {
    let rig = start(
        Setup {
            step_delay: 30,
            ..Setup::default()
        },
        |c| {
            c.oncall.ack_timeout.insert("P0".into(), Dur::secs(2));
        },
    )
    .await;
    let id = fire(&rig, "db01").await;
    wait_texts(&rig, |t| pages(t, ANA) >= 1).await;
    let (c, r) = rig
        .herald
        .call(
            Method::POST,
            &format!("/v1/incidents/{id}/acknowledge"),
            None,
        )
        .await;
    assert_eq!(c, 200, "{r}");
    // Two seconds on, still open: the step acknowledged pages again and the incident re-triggers.
    wait_texts(&rig, |t| pages(t, ANA) >= 2).await;
    let inc = incident(&rig, &id).await;
    assert_eq!(inc["status"], "triggered", "{inc}");
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "retriggered"),
        "{inc}"
    );
    assert_eq!(inc["escalation"]["round"], 1, "{inc}");
    let (c, _) = rig
        .herald
        .call(Method::POST, &format!("/v1/incidents/{id}/resolve"), None)
        .await;
    assert_eq!(c, 200);
    let t = wait_texts(&rig, |t| {
        to(t, ANA).iter().any(|b| b.starts_with("Resolved: #1"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        texts(&rig).await.len(),
        t.len(),
        "nothing after the resolve"
    );
    assert_eq!(incident(&rig, &id).await["escalation"]["state"], "done");
}

#[tokio::test]
async fn a_p0_page_calls_and_a_keypress_4_acknowledges() {
    let rig = start(
        Setup {
            ana_phone: "+15005550007",
            step_delay: 30,
            voice: true,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let id = fire(&rig, "db01").await;
    for _ in 0..200 {
        if incident(&rig, &id).await["status"] == "acknowledged" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let inc = incident(&rig, &id).await;
    assert_eq!(inc["status"], "acknowledged", "{inc}");
    assert_eq!(inc["acknowledged_by"], "ana");
    let ack = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "acknowledged")
        .unwrap();
    assert_eq!(ack["detail"]["reason"], "via voice: pressed 4");
    let calls: Vec<Value> = rig
        .requests("twilio")
        .await
        .into_iter()
        .filter(|r| r["request"]["Twiml"].is_string())
        .collect();
    assert_eq!(calls.len(), 1);
    let twiml = calls[0]["request"]["Twiml"].as_str().unwrap();
    assert!(
        twiml.contains("Press 4 to acknowledge, 6 to resolve") && twiml.contains("<Gather"),
        "{twiml}"
    );
}

#[tokio::test]
async fn escalate_pages_the_next_step_now_and_snooze_holds_it() {
    let rig = start(
        Setup {
            step_delay: 600,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let id = fire(&rig, "db01").await;
    wait_texts(&rig, |t| pages(t, ANA) >= 1).await;
    let (c, r) = rig
        .herald
        .call(
            Method::POST,
            &format!("/v1/incidents/{id}/escalate"),
            Some(json!({"reason": "ana is on a plane"})),
        )
        .await;
    assert_eq!(c, 202, "{r}");
    wait_texts(&rig, |t| pages(t, BEN) >= 1).await;
    let (c, r) = rig
        .herald
        .call(
            Method::POST,
            &format!("/v1/incidents/{id}/snooze"),
            Some(json!({"duration_seconds": 5})),
        )
        .await;
    assert_eq!(c, 422, "{r}");
    assert_eq!(r["errors"][0]["field"], "duration_seconds");
    let (c, r) = rig
        .herald
        .call(
            Method::POST,
            &format!("/v1/incidents/{id}/snooze"),
            Some(json!({"duration_seconds": 3600})),
        )
        .await;
    assert_eq!(c, 200, "{r}");
    let inc = incident(&rig, &id).await;
    assert_eq!(inc["status"], "acknowledged");
    assert_eq!(inc["escalation"]["state"], "waiting");
    let (_, audit) = rig.herald.get("/v1/audit").await;
    let e = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "incident.escalate")
        .unwrap();
    assert_eq!(e["reason"], "ana is on a plane", "{audit}");
    // A policy an open incident escalates by stays (the route names it too).
    let (c, r) = rig
        .herald
        .call(Method::DELETE, "/v1/escalation-policies/db-policy", None)
        .await;
    assert_eq!(c, 409, "{r}");
    let detail = r["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("alert route `db`") && detail.contains("1 open incident(s)"),
        "{r}"
    );
}

/// `herald drill run page` through a running gateway: `[drill]` targets from a config file.
fn drill(rig: &Rig, max_ack: &str) -> (bool, String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("drill.toml");
    std::fs::write(
        &cfg,
        format!("[drill]\nmax_time_to_page = \"10s\"\nmax_time_to_ack = \"{max_ack}\"\n"),
    )
    .unwrap();
    let report = dir.path().join("page.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["drill", "run", "page", "--policy", "db-policy", "--config"])
        .arg(&cfg)
        .arg("--report")
        .arg(&report)
        .env("HERALD_URL", &rig.herald.base)
        .env("HERALD_API_KEY", crate::utils::ADMIN)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap_or_default())
        .unwrap_or(Value::Null);
    (out.status.success(), text, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paging_drill_reports_its_figures_and_fails_when_nobody_answers_in_time() {
    let rig = start(
        Setup {
            step_delay: 30,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let r = rig
        .http
        .put(format!("{}/_sim/twilio/auto-reply", rig.sim))
        .json(&json!({"url": rig.herald.url("/v1/inbound/twilio-backup"), "delay_ms": 700}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let rig2 = &rig;
    let (ok, out, report) = tokio::task::block_in_place(|| drill(rig2, "30s"));
    assert!(ok, "{out}");
    assert!(out.contains("drill page: PASSED"), "{out}");
    let e = &report["extra"];
    assert_eq!(e["acknowledged_by"], "ana", "{report}");
    assert_eq!(e["steps_needed"], 1);
    assert_eq!(e["how"], "via sms: reply 1a");
    let tta = e["time_to_acknowledge_ms"].as_i64().unwrap();
    assert!(tta >= 700, "the simulated person waited 700 ms: {tta}");
    let t = texts(&rig).await;
    assert!(to(&t, ANA)[0].starts_with("[DRILL] [P1]"), "{t:?}");
    let id = e["incident"].as_str().unwrap();
    assert_eq!(
        incident(&rig, id).await["status"],
        "resolved",
        "the drill cleans up"
    );
    let (_, stats) = rig.herald.get("/v1/incidents/stats").await;
    assert_eq!(
        stats["overall"]["incidents"], 0,
        "drills are not in MTTA/MTTR: {stats}"
    );

    // Nobody answers within the target: the drill fails (exit 1) and says why.
    rig.http
        .delete(format!("{}/_sim/twilio/auto-reply", rig.sim))
        .send()
        .await
        .unwrap();
    let (ok, out, report) = tokio::task::block_in_place(|| drill(rig2, "2s"));
    assert!(!ok, "{out}");
    assert!(out.contains("[MISSED] time to acknowledge"), "{out}");
    assert_eq!(report["passed"], false);
}

#[tokio::test]
async fn paging_rules_hold_the_call_back_and_an_answer_before_it_cancels_it() {
    let rig = start(
        Setup {
            ana_phone: "+15005550107",
            step_delay: 60,
            voice: true,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let (c, r) = rig
        .herald
        .call(
            Method::PUT,
            "/v1/contacts/ana",
            Some(json!({"name": "ana", "phones": ["+15005550107"], "preferences": {"paging": [
                {"channel": "sms", "after_seconds": 0}, {"channel": "voice", "after_seconds": 30}]}})),
        )
        .await;
    assert_eq!(c, 200, "{r}");
    let id = fire(&rig, "db01").await;
    let t = wait_texts(&rig, |t| pages(t, "+15005550107") >= 1).await;
    let inc = incident(&rig, &id).await;
    let voice = inc["pages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["method"] == "voice")
        .unwrap()
        .clone();
    assert!(
        voice["message_id"].is_null(),
        "the call waits 30 s: {voice}"
    );
    assert!(
        voice["not_before"].is_string() && voice["bundle_id"].is_null(),
        "{voice}"
    );
    let code = code_in(&to(&t, "+15005550107")[0]);
    let (_, answer) = reply(&rig, "twilio", "+15005550107", &format!("{code}a")).await;
    assert!(answer.contains("acknowledged by you"), "{answer}");
    let inc = incident(&rig, &id).await;
    let voice = inc["pages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["method"] == "voice")
        .unwrap()
        .clone();
    assert_eq!(
        (voice["bundle_id"].as_str(), voice["message_id"].as_str()),
        (Some("-"), None),
        "nobody is called about an incident taken: {voice}"
    );
    let calls = rig
        .requests("twilio")
        .await
        .into_iter()
        .filter(|r| r["request"]["Twiml"].is_string())
        .count();
    assert_eq!(calls, 0);
}

#[tokio::test]
async fn escalating_a_policy_that_ran_out_pages_its_last_step_again_each_time() {
    let rig = start(
        Setup {
            step_delay: 1,
            repeat: 0,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let id = fire(&rig, "db01").await;
    wait_texts(&rig, |t| pages(t, BEN) >= 1).await;
    for _ in 0..100 {
        if incident(&rig, &id).await["escalation"]["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 2..=3 {
        let (c, r) = rig
            .herald
            .call(Method::POST, &format!("/v1/incidents/{id}/escalate"), None)
            .await;
        assert_eq!(c, 202, "{r}");
        wait_texts(&rig, |t| pages(t, BEN) >= n).await;
        for _ in 0..50 {
            if incident(&rig, &id).await["escalation"]["state"] == "done" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let inc = incident(&rig, &id).await;
    assert_eq!(inc["escalation"]["round"], 2, "{inc}");
    assert_eq!(
        pages(&texts(&rig).await, ANA),
        1,
        "only the last step again"
    );
}

#[tokio::test]
async fn after_stop_the_person_is_paged_on_another_channel() {
    let rig = start(
        Setup {
            step_delay: 1,
            repeat: 1,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let id = fire(&rig, "db01").await;
    wait_texts(&rig, |t| pages(t, ANA) >= 1).await;
    let (_, answer) = reply(&rig, "twilio", ANA, "STOP").await;
    assert!(answer.contains("no more SMS"), "{answer}");
    let (_, c) = rig.herald.get("/v1/contacts/ana").await;
    assert_eq!(
        c["preferences"]["opt_out"]["channels"],
        json!(["sms"]),
        "{c}"
    );
    // The second pass pages ana again: in her inbox, not by SMS.
    for _ in 0..100 {
        let inc = incident(&rig, &id).await;
        if inc["pages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["person"] == "ana" && p["pass"] == 1)
        {
            let second = inc["pages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["person"] == "ana" && p["pass"] == 1)
                .unwrap()
                .clone();
            assert_eq!(second["method"], "inbox", "{inc}");
            assert_eq!(pages(&texts(&rig).await, ANA), 1, "one SMS before STOP");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("ana was never paged a second time");
}
