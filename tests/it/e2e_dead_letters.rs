//! A webhook answering 400 fails the message into the dead letters; replay after the fix
//! sends it, and the audit log holds the replay with its actor.

use crate::utils::{Receiver, TestHerald};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_rejected_webhook_is_dead_lettered_and_replayed_after_the_fix() {
    let rx = Receiver::start().await;
    rx.answer(400);
    let h = TestHerald::start().await;
    let (_, r) = h
        .send(json!({"to":{"webhook":rx.url},"content":{"text":"invoice"}}))
        .await;
    let id = r["id"].as_str().unwrap().to_string();
    let m = h.wait_status(&id, "failed").await;
    assert_eq!(m["deliveries"][0]["status"], "failed");
    assert_eq!(
        m["deliveries"][0]["attempts"].as_array().unwrap().len(),
        1,
        "rejected is not retried"
    );

    let (_, dl) = h.get("/v1/dead-letters?channel=webhook").await;
    assert_eq!(dl["data"][0]["message_id"], id);
    assert_eq!(dl["data"][0]["last_error"]["class"], "rejected");
    assert_eq!(dl["data"][0]["last_error"]["code"], "http_400");

    // An operator key replays it.
    let (_, k) = h
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name":"oncall","role":"operator"})),
        )
        .await;
    let key = k["key"].as_str().unwrap();
    rx.answer(200);
    let (code, r) = h
        .call_as(
            key,
            Method::POST,
            "/v1/dead-letters/replay",
            Some(json!({"ids":[id, "msg_unknown"]})),
        )
        .await;
    assert_eq!((code, r["replayed"].as_u64()), (200, Some(1)), "{r}");
    let m = h.wait_status(&id, "sent").await;
    let attempts = m["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "same id, new attempt: {m:#}");
    assert_eq!(attempts[1]["outcome"], "sent");
    assert_eq!(rx.received().len(), 1);
    let (_, dl) = h.get("/v1/dead-letters").await;
    assert!(dl["data"].as_array().unwrap().is_empty());

    let (_, audit) = h.get("/v1/audit").await;
    let replay = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "dead_letters.replay")
        .unwrap();
    assert_eq!(replay["actor"], "oncall");
    assert_eq!(replay["after"]["ids"][0], id);

    // Replay all of a channel; bad selectors are refused.
    rx.answer(400);
    let (_, r2) = h
        .send(json!({"to":{"webhook":rx.url},"content":{"text":"2"}}))
        .await;
    h.wait_status(r2["id"].as_str().unwrap(), "failed").await;
    rx.answer(200);
    let (_, r) = h
        .call(
            Method::POST,
            "/v1/dead-letters/replay",
            Some(json!({"all":true,"channel":"webhook"})),
        )
        .await;
    assert_eq!(r["replayed"], 1);
    h.wait_status(r2["id"].as_str().unwrap(), "sent").await;
    for bad in [
        json!({}),
        json!({"ids":[]}),
        json!({"all":true,"ids":["x"]}),
        json!({"all":true,"channel":"fax"}),
        json!({"every":true}),
    ] {
        let (code, e) = h
            .call(Method::POST, "/v1/dead-letters/replay", Some(bad.clone()))
            .await;
        assert_eq!(code, 422, "{bad} -> {e}");
    }
    h.stop().await;
}
