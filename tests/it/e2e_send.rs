//! Sending through the inbox and webhook channels, retries, failover, scheduling, expiry.

use crate::utils::{Receiver, TestHerald};
use herald::config::{ProviderConfig, ProviderKind, Secret};
use herald::core::types::Channel;
use herald::providers::signing;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn inbox_message_is_sent_listed_and_marked_read() {
    let h = TestHerald::start().await;
    let (code, r) = h
        .send(json!({"to":{"user":"u-42"},"content":{"subject":"Hi","text":"hello"}}))
        .await;
    assert_eq!(code, 202, "{r}");
    assert_eq!(r["status"], "queued");
    assert_eq!(r["deliveries"][0]["channel"], "inbox");
    let id = r["id"].as_str().unwrap();
    let m = h.wait_status(id, "sent").await;
    assert_eq!(m["deliveries"][0]["provider"], "inbox");
    assert_eq!(m["deliveries"][0]["attempts"][0]["outcome"], "sent");

    let (_, inbox) = h.get("/v1/inbox/u-42?unread=true").await;
    let items = inbox["data"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["text"], "hello");
    assert_eq!(items[0]["message_id"], id);
    let item = items[0]["id"].as_str().unwrap();
    let (code, _) = h
        .call(Method::POST, &format!("/v1/inbox/u-42/{item}/read"), None)
        .await;
    assert_eq!(code, 200);
    let (_, inbox) = h.get("/v1/inbox/u-42?unread=true").await;
    assert!(inbox["data"].as_array().unwrap().is_empty());
    let (code, _) = h
        .call(Method::POST, "/v1/inbox/u-42/inb_nope/read", None)
        .await;
    assert_eq!(code, 404);
    h.stop().await;
}

#[tokio::test]
async fn webhooks_are_signed_per_standard_webhooks_when_a_secret_is_set() {
    let rx = Receiver::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let h = TestHerald::start_with(|c| {
        c.providers.push(ProviderConfig {
            id: "signed".into(),
            channel: Channel::Webhook,
            kind: ProviderKind::Webhook,
            priority: 1,
            weight: 100,
            endpoint: None,
            timeout: None,
            rate_limit: None,
            credentials: [("secret".to_string(), Secret::new(secret))]
                .into_iter()
                .collect(),
            options: Default::default(),
        })
    })
    .await;
    let (code, r) = h
        .send(
            json!({"to":{"webhook":rx.url},"content":{"subject":"Disk full","text":"97%"},
                     "priority":"high","metadata":{"order_id":"A-1"}}),
        )
        .await;
    assert_eq!(code, 202, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let m = h.wait_status(&id, "sent").await;
    assert_eq!(m["deliveries"][0]["provider"], "signed");
    let got = rx.received();
    assert_eq!(got.len(), 1);
    let w = &got[0];
    assert_eq!(w.headers["webhook-id"], id);
    let ts: i64 = w.headers["webhook-timestamp"].parse().unwrap();
    assert!(signing::verify(
        &signing::key_bytes(secret),
        &id,
        ts,
        &w.body,
        &w.headers["webhook-signature"]
    ));
    assert!(!signing::verify(
        b"other-key",
        &id,
        ts,
        &w.body,
        &w.headers["webhook-signature"]
    ));
    let doc = w.json();
    assert_eq!(doc["id"], id);
    assert_eq!(doc["channel"], "webhook");
    assert_eq!(doc["priority"], "high");
    assert_eq!(doc["subject"], "Disk full");
    assert_eq!(doc["text"], "97%");
    assert_eq!(doc["metadata"]["order_id"], "A-1");
    assert!(doc["created_at"].as_str().unwrap().ends_with('Z'));
    h.stop().await;
}

#[tokio::test]
async fn transient_errors_are_retried_with_backoff_until_sent() {
    let rx = Receiver::start().await;
    rx.answer(503);
    let h = TestHerald::start().await;
    let (_, r) = h
        .send(json!({"to":{"webhook":rx.url},"content":{"text":"x"}}))
        .await;
    let id = r["id"].as_str().unwrap();
    let m = h
        .wait_message(id, |m| {
            m["deliveries"][0]["attempts"]
                .as_array()
                .is_some_and(|a| a.len() >= 2)
        })
        .await;
    assert_eq!(
        m["status"], "queued",
        "between retries the message waits: {m:#}"
    );
    let a = &m["deliveries"][0]["attempts"][0];
    assert_eq!(a["outcome"], "error");
    assert_eq!(a["error"]["class"], "transient");
    assert_eq!(a["error"]["code"], "provider_unavailable");
    rx.answer(200);
    let m = h.wait_status(id, "sent").await;
    let attempts = m["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.last().unwrap()["outcome"], "sent");
    assert_eq!(rx.received().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_rejected_channel_fails_over_to_the_next_and_skips_the_rest() {
    let rx = Receiver::start().await;
    rx.answer(400);
    let h = TestHerald::start().await;
    let (_, r) = h
        .send(json!({"to":{"webhook":rx.url,"user":"u-1"},"channels":["webhook","inbox"],"content":{"text":"x"}}))
        .await;
    assert_eq!(r["deliveries"][1]["status"], "queued");
    let m = h.wait_status(r["id"].as_str().unwrap(), "sent").await;
    assert_eq!(m["deliveries"][0]["status"], "failed");
    assert_eq!(
        m["deliveries"][0]["attempts"][0]["error"]["class"],
        "rejected"
    );
    assert_eq!(m["deliveries"][1]["status"], "sent");

    rx.answer(200);
    let (_, r) = h
        .send(json!({"to":{"webhook":rx.url,"user":"u-1"},"channels":["webhook","inbox"],"content":{"text":"y"}}))
        .await;
    let m = h.wait_status(r["id"].as_str().unwrap(), "sent").await;
    assert_eq!(m["deliveries"][0]["status"], "sent");
    assert_eq!(m["deliveries"][1]["status"], "skipped");
    assert!(
        m["deliveries"][1]["attempts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    h.stop().await;
}

#[tokio::test]
async fn strategy_all_sends_on_every_channel() {
    let rx = Receiver::start().await;
    let h = TestHerald::start().await;
    let (_, r) = h
        .send(json!({"to":{"webhook":rx.url,"user":"u-1"},"strategy":"all","content":{"text":"x"}}))
        .await;
    let m = h.wait_status(r["id"].as_str().unwrap(), "sent").await;
    let m = h
        .wait_message(m["id"].as_str().unwrap(), |m| {
            m["deliveries"][1]["status"] == "sent"
        })
        .await;
    assert_eq!(m["deliveries"][0]["status"], "sent");
    assert_eq!(m["deliveries"][1]["status"], "sent");
    h.stop().await;
}

#[tokio::test]
async fn scheduled_messages_wait_for_send_at_and_can_be_cancelled() {
    let h = TestHerald::start().await;
    let later = herald::core::types::rfc3339(herald::core::types::now_millis() + 3_600_000);
    let (code, r) = h
        .send(json!({"to":{"user":"u"},"content":{"text":"x"},"send_at":later}))
        .await;
    assert_eq!(code, 202);
    let id = r["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, m) = h.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(m["status"], "queued");
    assert_eq!(m["send_at"], later);
    let (code, m) = h
        .call(Method::POST, &format!("/v1/messages/{id}/cancel"), None)
        .await;
    assert_eq!(code, 200, "{m}");
    assert_eq!(m["status"], "cancelled");
    assert_eq!(m["deliveries"][0]["status"], "cancelled");
    let (_, audit) = h.get("/v1/audit").await;
    assert_eq!(audit["data"][0]["action"], "message.cancel");
    assert_eq!(audit["data"][0]["actor"], "admin");
    let (code, _) = h
        .call(Method::POST, "/v1/messages/msg_nope/cancel", None)
        .await;
    assert_eq!(code, 404);
    h.stop().await;
}

#[tokio::test]
async fn past_its_ttl_a_message_expires_and_is_never_sent_late() {
    let rx = Receiver::start().await;
    rx.answer(503);
    let h = TestHerald::start().await;
    let (_, r) = h
        .send(json!({"to":{"webhook":rx.url},"content":{"text":"x"},"ttl":"1s"}))
        .await;
    let id = r["id"].as_str().unwrap();
    let m = h.wait_status(id, "expired").await;
    assert_eq!(m["deliveries"][0]["status"], "expired");
    rx.answer(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.received().is_empty());
    let (_, dl) = h.get("/v1/dead-letters").await;
    assert!(
        dl["data"].as_array().unwrap().is_empty(),
        "expired is not a dead letter"
    );
    h.stop().await;
}

#[tokio::test]
async fn listing_pages_newest_first_with_a_cursor() {
    let h = TestHerald::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, r) = h
            .send(json!({"to":{"user":"u"},"content":{"text":format!("m{i}")}}))
            .await;
        ids.push(r["id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (_, p1) = h.get("/v1/messages?limit=2").await;
    let p1_ids: Vec<&str> = p1["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(p1_ids, vec![ids[4].as_str(), ids[3].as_str()]);
    let after = p1["next_after"].as_str().unwrap();
    let (_, p2) = h.get(&format!("/v1/messages?limit=2&after={after}")).await;
    assert_eq!(p2["data"][0]["id"], ids[2]);
    let (_, ch) = h.get("/v1/messages?channel=webhook").await;
    assert!(ch["data"].as_array().unwrap().is_empty());
    let (code, e) = h.get("/v1/messages?status=bogus").await;
    assert_eq!(
        (code, e["errors"][0]["field"].as_str()),
        (422, Some("status"))
    );
    h.stop().await;
}

#[tokio::test]
async fn inbox_stream_pushes_new_items_as_server_sent_events() {
    let h = TestHerald::start().await;
    let mut resp = h
        .http
        .get(h.url("/v1/inbox/u-7/stream"))
        .bearer_auth(crate::utils::ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (_, r) = h
        .send(json!({"to":{"user":"u-7"},"content":{"text":"live"}}))
        .await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("live") && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_secs(1), resp.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(seen.contains("event: inbox"), "{seen}");
    assert!(seen.contains(r["id"].as_str().unwrap()), "{seen}");
    h.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let h = TestHerald::start().await;
    let (code, _) = h.get("/healthz").await;
    assert_eq!(code, 200);
    let (code, r) = h.get("/readyz").await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["checks"]["storage"]["status"], "ok");
    let (_, r) = h
        .send(json!({"to":{"user":"u"},"content":{"text":"x"}}))
        .await;
    h.wait_status(r["id"].as_str().unwrap(), "sent").await;
    let text = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "herald_messages_accepted_total{priority=\"normal\"} 1",
        "herald_delivery_attempts_total{channel=\"inbox\",provider=\"inbox\",outcome=\"sent\"} 1",
        "herald_delivery_latency_seconds_count{channel=\"inbox\"} 1",
        "herald_queue_depth{state=\"sent\"} 1",
        "herald_dead_letters 0",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    let mut series = std::collections::HashSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("herald_"), "{line}");
        let key = line.rsplit_once(' ').unwrap().0;
        assert!(series.insert(key.to_string()), "duplicate series {key}");
    }
    h.stop().await;
}

/// A lane at its cap must not leave the dispatcher sleeping out its poll interval: it
/// claims again as soon as a call finishes.
#[tokio::test]
async fn a_full_lane_is_refilled_as_calls_finish_not_at_the_next_poll() {
    let h = TestHerald::start_with(|c| {
        c.dispatch.concurrency = 4; // the normal lane may hold 3
        c.dispatch.poll = herald::config::Dur::secs(30);
    })
    .await;
    let batch: Vec<serde_json::Value> = (0..30)
        .map(|i| json!({"to": {"user": "u"}, "content": {"text": format!("{i}")}}))
        .collect();
    let (code, r) = h
        .call(
            Method::POST,
            "/v1/messages/batch",
            Some(json!({"messages": batch})),
        )
        .await;
    assert_eq!(code, 202);
    let started = std::time::Instant::now();
    for x in r["results"].as_array().unwrap() {
        h.wait_status(x["id"].as_str().unwrap(), "sent").await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    h.stop().await;
}

/// `/v1/openapi.json` is open, is OpenAPI 3, and every operation it lists exists.
#[tokio::test]
async fn the_openapi_document_describes_routes_that_exist() {
    let h = TestHerald::start().await;
    let doc: serde_json::Value = h
        .http
        .get(h.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20);
    for (path, ops) in paths {
        let concrete = path
            .replace("{id}", "x1")
            .replace("{user}", "u1")
            .replace("{provider}", "p1");
        for method in ops.as_object().unwrap().keys() {
            if path.ends_with("/stream") {
                continue; // an endless response; its route is tested elsewhere
            }
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (code, body) = h.call(m, &concrete, None).await;
            let unrouted = code == 405 || (code == 404 && body["detail"] == "route not found");
            assert!(
                !unrouted,
                "{method} {path} is documented but not served: {code} {body}"
            );
        }
    }
    h.stop().await;
}
