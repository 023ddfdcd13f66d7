//! Operators in control: modes, provider switches (role-checked, with a reason, audited),
//! `[degrade]`, and flow control: per-key and per-recipient limits, load shedding.

use crate::utils::TestHerald;
use crate::utils::rig::{Rig, sms_providers, verify_template};
use herald::config::Rate;
use herald::core::types::Channel;
use reqwest::Method;
use serde_json::{Value, json};

async fn key(h: &TestHerald, role: &str) -> String {
    let (code, k) = h
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": format!("{role}-key"), "role": role})),
        )
        .await;
    assert_eq!(code, 201, "{k}");
    k["key"].as_str().unwrap().to_string()
}

fn msg(priority: &str) -> Value {
    json!({"to": {"user": "u-1"}, "priority": priority, "content": {"text": "x"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_refuse_what_they_must_and_every_switch_is_audited() {
    let h = TestHerald::start().await;
    let sender = key(&h, "sender").await;
    let operator = key(&h, "operator").await;
    for k in [&sender, &operator] {
        let (code, e) = h
            .call_as(
                k,
                Method::PUT,
                "/v1/mode",
                Some(json!({"mode": "read_only", "reason": "x"})),
            )
            .await;
        assert_eq!(
            (code, e["code"].as_str()),
            (403, Some("forbidden")),
            "only admin switches modes"
        );
    }
    let (code, e) = h
        .call(
            Method::PUT,
            "/v1/mode",
            Some(json!({"mode": "core_only", "reason": " "})),
        )
        .await;
    assert_eq!(
        (code, e["errors"][0]["field"].as_str()),
        (422, Some("reason"))
    );
    let (code, e) = h
        .call(
            Method::PUT,
            "/v1/mode",
            Some(json!({"mode": "sleepy", "reason": "x"})),
        )
        .await;
    assert_eq!(
        (code, e["errors"][0]["field"].as_str()),
        (422, Some("mode"))
    );

    let (code, m) = h
        .call(
            Method::PUT,
            "/v1/mode",
            Some(json!({"mode": "core_only", "reason": "SMS vendor incident #42"})),
        )
        .await;
    assert_eq!(code, 200, "{m}");
    let resp = h
        .http
        .post(h.url("/v1/messages"))
        .bearer_auth(&sender)
        .json(&msg("normal"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["code"], "degraded_mode");
    let (code, _) = h
        .call_as(&sender, Method::POST, "/v1/messages", Some(msg("critical")))
        .await;
    assert_eq!(code, 202, "critical goes through in core_only");
    let (code, _) = h
        .call_as(&sender, Method::POST, "/v1/messages", Some(msg("high")))
        .await;
    assert_eq!(code, 202);

    h.call(
        Method::PUT,
        "/v1/mode",
        Some(json!({"mode": "read_only", "reason": "storage migration"})),
    )
    .await;
    let (code, e) = h
        .call_as(&sender, Method::POST, "/v1/messages", Some(msg("critical")))
        .await;
    assert_eq!(
        (code, e["code"].as_str()),
        (503, Some("degraded_mode")),
        "read_only refuses all sends"
    );
    let (code, _) = h.call_as(&sender, Method::GET, "/v1/messages", None).await;
    assert_eq!(code, 200, "reads work in read_only");
    let (_, mode) = h.get("/v1/mode").await;
    assert_eq!(
        (mode["mode"].as_str(), mode["actor"].as_str()),
        (Some("read_only"), Some("admin"))
    );
    let (_, ready) = h.get("/readyz").await;
    assert_eq!(ready["checks"]["mode"]["status"], "read_only");
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("herald_mode{mode=\"read_only\"} 1"),
        "{metrics}"
    );

    h.call(
        Method::PUT,
        "/v1/mode",
        Some(json!({"mode": "normal", "reason": "done"})),
    )
    .await;
    let (code, _) = h
        .call_as(&sender, Method::POST, "/v1/messages", Some(msg("low")))
        .await;
    assert_eq!(code, 202);
    let (_, audit) = h.get("/v1/audit?limit=10").await;
    let switches: Vec<&Value> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "mode.set")
        .collect();
    assert_eq!(switches.len(), 3);
    assert_eq!(switches[2]["reason"], "SMS vendor incident #42");
    assert_eq!(switches[2]["actor"], "admin");
    assert_eq!(switches[2]["before"]["mode"], "normal");
    assert_eq!(switches[2]["after"]["mode"], "core_only");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_providers_are_skipped_and_a_dead_channel_degrades() {
    let rig = Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        c.templates = vec![verify_template()];
        c.degrade
            .insert(Channel::Sms, vec![Channel::Push, Channel::Inbox]);
    })
    .await;
    let h = &rig.herald;
    let sender = key(h, "sender").await;
    let operator = key(h, "operator").await;
    let (code, _) = h
        .call_as(
            &sender,
            Method::POST,
            "/v1/providers/aliyun-main/disable",
            Some(json!({"reason": "x"})),
        )
        .await;
    assert_eq!(code, 403, "a sender may not switch providers");
    let (code, p) = h
        .call_as(
            &operator,
            Method::POST,
            "/v1/providers/aliyun-main/disable",
            Some(json!({"reason": "vendor maintenance"})),
        )
        .await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["state"], "disabled");
    assert_eq!(p["disabled"]["reason"], "vendor maintenance");
    let (code, _) = h
        .call_as(
            &operator,
            Method::POST,
            "/v1/providers/nope/disable",
            Some(json!({"reason": "x"})),
        )
        .await;
    assert_eq!(code, 404);

    // SMS goes through the backup; the inbox fallback is not needed and shows `skipped`.
    let sms = json!({"to": {"phone": "+14155550100", "user": "u-9"}, "channels": ["sms"], "content": {"text": "hi"}});
    let id = rig.send(sms.clone()).await;
    let m = rig.settle(&id).await;
    assert_eq!(m["deliveries"][0]["provider"], "twilio-backup");
    assert_eq!(
        m["deliveries"][1]["channel"], "inbox",
        "degrade adds inbox (no push address, so not push)"
    );
    assert_eq!(m["deliveries"][1]["status"], "skipped");

    // With every SMS provider switched off, the channel is down: the message degrades.
    h.call_as(
        &operator,
        Method::POST,
        "/v1/providers/twilio-backup/disable",
        Some(json!({"reason": "vendor outage"})),
    )
    .await;
    let id = rig.send(sms.clone()).await;
    let m = h.wait_status(&id, "sent").await;
    assert_eq!(m["deliveries"][0]["status"], "failed");
    assert_eq!(
        m["deliveries"][0]["attempts"][0]["error"]["code"],
        "no_provider_available"
    );
    assert_eq!(m["deliveries"][1]["status"], "sent");

    h.call_as(
        &operator,
        Method::POST,
        "/v1/providers/aliyun-main/enable",
        Some(json!({"reason": "maintenance over"})),
    )
    .await;
    let (_, v) = h.get("/v1/providers").await;
    let states: Vec<(String, String)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().into(),
                p["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        states.contains(&("aliyun-main".into(), "up".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("twilio-backup".into(), "disabled".into())),
        "{states:?}"
    );
    let (_, audit) = h.get("/v1/audit?limit=20").await;
    let acts: Vec<(&str, &str, &str)> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("provider."))
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        acts,
        vec![
            ("provider.enable", "aliyun-main", "maintenance over"),
            ("provider.disable", "twilio-backup", "vendor outage"),
            ("provider.disable", "aliyun-main", "vendor maintenance"),
        ]
    );
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] != "provider.disable" || e["actor"] == "operator-key")
    );
    rig.herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_with_ratelimit_headers() {
    let h = TestHerald::start().await;
    let (_, k) = h
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "burst", "role": "sender", "rate_limit": "5/s"})),
        )
        .await;
    let key = k["key"].as_str().unwrap().to_string();
    let mut ok = 0;
    let mut limited = Vec::new();
    for _ in 0..20 {
        let r = h
            .http
            .post(h.url("/v1/messages"))
            .bearer_auth(&key)
            .json(&msg("normal"))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            202 => ok += 1,
            429 => limited.push(r),
            s => panic!("{s}"),
        }
    }
    assert!((5..=7).contains(&ok), "about 5 pass in a burst, got {ok}");
    let r = limited.pop().unwrap();
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(r.headers().get("ratelimit-limit").unwrap(), "5");
    assert_eq!(r.headers().get("ratelimit-remaining").unwrap(), "0");
    assert!(r.headers().get("ratelimit-reset").is_some());
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "rate_limited");
    let (code, _) = h
        .call(Method::POST, "/v1/messages", Some(msg("normal")))
        .await;
    assert_eq!(code, 202, "other keys are not affected");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_phone_twice_within_a_minute_is_refused_unless_critical() {
    let rig = Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        c.templates = vec![verify_template()];
        c.limits.recipient.insert(
            Channel::Sms,
            vec![
                Rate::parse("1/min").unwrap(),
                Rate::parse("10/day").unwrap(),
            ],
        );
    })
    .await;
    let body = json!({"to": {"phone": "+8613800138000"}, "template": "verify_code", "params": {"code": "1"}});
    rig.send(body.clone()).await;
    let r = rig
        .http
        .post(rig.herald.url("/v1/messages"))
        .bearer_auth(crate::utils::ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "recipient_rate_limited");
    // Another number is fine; a critical message to the same number is exempt.
    rig.send(json!({"to": {"phone": "+8613800138001"}, "template": "verify_code", "params": {"code": "1"}})).await;
    let mut crit = body.clone();
    crit["priority"] = json!("critical");
    rig.send(crit).await;
    rig.herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_sheds_low_then_normal_but_never_critical() {
    let h = TestHerald::start_with(|c| {
        c.dispatch.enabled = false;
        c.limits.max_queue = 10;
    })
    .await;
    let mut accepted_low = 0;
    for _ in 0..12 {
        let (code, _) = h.send(msg("low")).await;
        if code == 202 {
            accepted_low += 1;
        }
    }
    assert_eq!(accepted_low, 8, "low is shed from 80 % of max_queue");
    for _ in 0..2 {
        assert_eq!(h.send(msg("normal")).await.0, 202);
    }
    let r = h
        .http
        .post(h.url("/v1/messages"))
        .bearer_auth(crate::utils::ADMIN)
        .json(&msg("normal"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "normal is shed at max_queue");
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(
        h.send(msg("critical")).await.0,
        202,
        "critical is never shed"
    );
    assert_eq!(h.send(msg("high")).await.0, 202);
    h.stop().await;
}
