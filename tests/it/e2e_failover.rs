//! Failover with the simulators: a failing primary SMS provider is skipped within a few calls
//! and probed back when it heals; a recipient error moves a message to its next channel; a
//! backlog of `low` does not delay `critical`. Figures are printed for the issue note.

use crate::utils::rig::{Rig, sms_providers, verify_template};
use crate::utils::smtp::{mails, start_smtp};
use crate::utils::{Receiver, TestHerald};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn sms_to(i: usize) -> Value {
    json!({"to": {"phone": format!("+86138{:08}", 10_000_000 + i)}, "template": "verify_code", "params": {"code": "1"}})
}

async fn circuit(rig: &Rig, id: &str) -> (String, String) {
    let (_, v) = rig.herald.get("/v1/providers").await;
    let p = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap()
        .clone();
    (
        p["circuit"].as_str().unwrap().to_string(),
        p["state"].as_str().unwrap().to_string(),
    )
}

/// Sends steadily while the primary fails and heals; returns the figures.
/// Calls the primary (Aliyun) accepted so far.
async fn accepted_by_primary(rig: &Rig) -> usize {
    rig.requests("aliyun")
        .await
        .iter()
        .filter(|r| r["accepted"] == true)
        .count()
}

async fn outage_scenario(fault: Value, timeout: Option<herald::config::Dur>) -> Value {
    let rig = Rig::start(move |c, sim| {
        let mut p = sms_providers(sim);
        p[0].timeout = timeout;
        c.providers = p;
        c.templates = vec![verify_template()];
    })
    .await;
    let start = Instant::now();
    let mut ids = Vec::new();
    let (mut faulted_at, mut opened_at, mut healed_at, mut back_at) = (None, None, None, None);
    let mut during_outage_sent = 0usize;
    let mut accepted_at_heal = usize::MAX;
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(45) {
        ids.push(rig.send(sms_to(i)).await);
        i += 1;
        let t = start.elapsed();
        if faulted_at.is_none() && t > Duration::from_millis(500) {
            rig.fault("aliyun", fault.clone()).await;
            faulted_at = Some(Instant::now());
        }
        let (c, _) = circuit(&rig, "aliyun-main").await;
        if faulted_at.is_some() && opened_at.is_none() && c == "open" {
            opened_at = Some(Instant::now());
        }
        if opened_at.is_some() && healed_at.is_none() && t > Duration::from_millis(3_500) {
            accepted_at_heal = accepted_by_primary(&rig).await;
            rig.clear_fault("aliyun").await;
            healed_at = Some(Instant::now());
        }
        // Back in service: the circuit closed again and the primary took calls after the heal
        // (not merely those it took before the fault).
        if let (Some(_), None) = (healed_at, back_at)
            && c == "closed"
            && accepted_by_primary(&rig).await > accepted_at_heal
        {
            back_at = Some(Instant::now());
        }
        if faulted_at.is_some() && healed_at.is_none() {
            during_outage_sent += 1;
        }
        if back_at.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every message arrives: none lost.
    let mut by_provider = std::collections::HashMap::<String, usize>::new();
    for id in &ids {
        let m = rig.settle(id).await;
        assert_eq!(m["status"], "delivered", "{m:#}");
        *by_provider
            .entry(m["deliveries"][0]["provider"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let faulted = faulted_at.expect("the fault was injected");
    let opened = opened_at.expect("the primary's circuit opened");
    let healed = healed_at.expect("the primary healed");
    let back = back_at.expect("the primary came back into service within the run");
    let failed_calls = rig
        .requests("aliyun")
        .await
        .iter()
        .filter(|r| r["accepted"] != true)
        .count();
    let figures = json!({
        "messages": ids.len(),
        "lost": 0,
        "by_provider": by_provider,
        "failover_ms": opened.duration_since(faulted).as_millis(),
        "primary_failed_calls": failed_calls,
        "sent_during_outage": during_outage_sent,
        "back_in_service_ms": back.duration_since(healed).as_millis(),
    });
    assert!(
        opened.duration_since(faulted) < Duration::from_secs(5),
        "{figures}"
    );
    assert!(
        failed_calls <= 20,
        "the circuit opens within a few calls: {figures}"
    );
    assert!(
        back.duration_since(healed) < Duration::from_secs(30),
        "{figures}"
    );
    rig.herald.stop().await;
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_answering_503_is_skipped_and_probed_back() {
    let f = outage_scenario(json!({"status": 503}), None).await;
    eprintln!("FIGURES primary 503: {f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_timing_out_is_skipped_and_probed_back() {
    let f = outage_scenario(
        json!({"status": 503, "latency_ms": 2000}),
        Some(herald::config::Dur::millis(300)),
    )
    .await;
    eprintln!("FIGURES primary timeout: {f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_error_on_sms_moves_the_message_to_email() {
    let smtp = start_smtp(false);
    let port = smtp.port as i64;
    let rig = Rig::start(move |c, sim| {
        let mut p = sms_providers(sim);
        p.push(crate::utils::rig::provider(
            "smtp-main",
            herald::core::types::Channel::Email,
            herald::config::ProviderKind::Smtp,
            1,
            "",
            &[],
            &[
                ("host", "127.0.0.1"),
                ("tls", "none"),
                ("from", "alerts@herald.example"),
            ],
        ));
        p[2].options
            .insert("port".into(), toml::Value::Integer(port));
        c.providers = p;
    })
    .await;
    let id = rig
        .send(json!({"to": {"phone": "+15005550001", "email": "ops@example.com"}, "channels": ["sms", "email"],
                     "content": {"subject": "Login code", "text": "Your code is 4242"}}))
        .await;
    let m = rig.herald.wait_status(&id, "sent").await;
    assert_eq!(m["deliveries"][0]["channel"], "sms");
    assert_eq!(m["deliveries"][0]["status"], "failed");
    let a = m["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(a.last().unwrap()["error"]["class"], "recipient", "{m:#}");
    assert_eq!(m["deliveries"][1]["channel"], "email");
    assert_eq!(m["deliveries"][1]["status"], "sent");
    assert_eq!(mails(&smtp.out).len(), 1);
    rig.herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_low_never_delays_critical() {
    // Every call takes 2 s; 8 slots. A backlog of normal and low arrives first and fills what
    // bulk traffic may hold (6 of 8); pages sent after it must start at once, in the slots
    // kept for critical and high, not when the first bulk calls end.
    let rx = Receiver::start().await;
    rx.delay(Duration::from_secs(2));
    let h = TestHerald::start_with(|c| c.dispatch.concurrency = 8).await;
    for prio in ["normal", "low"] {
        let batch: Vec<Value> = (0..40).map(|i| json!({"to": {"webhook": rx.url}, "priority": prio, "content": {"text": format!("bulk {prio} {i}")}})).collect();
        let (code, _) = h
            .call(
                reqwest::Method::POST,
                "/v1/messages/batch",
                Some(json!({"messages": batch})),
            )
            .await;
        assert_eq!(code, 202);
    }
    // Wait until bulk holds its slots.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.started() < 6 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bulk_started = rx.arrivals()[0].0;
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for i in 0..2 {
        let (_, r) = h.send(json!({"to": {"webhook": rx.url}, "priority": "critical", "content": {"text": format!("page {i}")}})).await;
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        h.wait_status(id, "sent").await;
    }
    let arrivals = rx.arrivals();
    let pages: Vec<_> = arrivals
        .iter()
        .filter(|(_, b)| b["priority"] == "critical")
        .collect();
    assert_eq!(pages.len(), 2);
    let bulk_in_first_round = arrivals
        .iter()
        .filter(|(t, b)| {
            b["priority"] != "critical"
                && t.duration_since(bulk_started) < Duration::from_millis(1_500)
        })
        .count();
    eprintln!(
        "FIGURES priority: pages started {} ms after sending; bulk calls in flight beside them: {bulk_in_first_round}",
        pages
            .iter()
            .map(|(t, _)| t.duration_since(t0).as_millis())
            .max()
            .unwrap_or(0)
    );
    assert!(
        bulk_in_first_round <= 6,
        "bulk took {bulk_in_first_round} of 8 slots"
    );
    for (t, _) in &pages {
        assert!(
            t.duration_since(bulk_started) < Duration::from_millis(1_900),
            "a page waited for a bulk call to end"
        );
    }
    h.stop().await;
}
