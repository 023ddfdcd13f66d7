//! `Idempotency-Key`: same body → same reply, one delivery; other body → 422.

use crate::utils::{ADMIN, Receiver, TestHerald};
use serde_json::{Value, json};
use std::time::Duration;

async fn send_with_key(h: &TestHerald, key: &str, body: &Value) -> (u16, Value, bool) {
    let resp = h
        .http
        .post(h.url("/v1/messages"))
        .bearer_auth(ADMIN)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let replayed = resp.headers().get("idempotent-replayed").is_some();
    (resp.status().as_u16(), resp.json().await.unwrap(), replayed)
}

#[tokio::test]
async fn a_repeat_returns_the_same_id_and_delivers_once() {
    let rx = Receiver::start().await;
    let h = TestHerald::start().await;
    let body =
        json!({"to":{"webhook":rx.url},"content":{"text":"pay"},"metadata":{"a":"1","b":"2"}});
    let (c1, r1, rep1) = send_with_key(&h, "order-77", &body).await;
    assert_eq!((c1, rep1), (202, false));
    // The same document with keys in another order is the same body.
    let reordered =
        json!({"metadata":{"b":"2","a":"1"},"content":{"text":"pay"},"to":{"webhook":rx.url}});
    let (c2, r2, rep2) = send_with_key(&h, "order-77", &reordered).await;
    assert_eq!((c2, rep2), (202, true));
    assert_eq!(r1, r2);
    h.wait_status(r1["id"].as_str().unwrap(), "sent").await;
    let (_, r3, _) = send_with_key(&h, "order-77", &body).await;
    assert_eq!(r3["id"], r1["id"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 1, "delivered once");

    let other = json!({"to":{"webhook":rx.url},"content":{"text":"pay twice"}});
    let (c4, r4, _) = send_with_key(&h, "order-77", &other).await;
    assert_eq!(c4, 422);
    assert_eq!(r4["code"], "idempotency_mismatch");

    // Concurrent repeats land in one group commit and still yield one message.
    let body = json!({"to":{"user":"u"},"content":{"text":"c"}});
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (http, url, body) = (h.http.clone(), h.url("/v1/messages"), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(ADMIN)
                .header("idempotency-key", "burst")
                .json(&body)
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 1);
    let (code, bad, _) = send_with_key(&h, &"k".repeat(256), &body).await;
    assert_eq!(
        (code, bad["errors"][0]["field"].as_str()),
        (422, Some("Idempotency-Key"))
    );
    h.stop().await;
}

async fn batch_with_key(h: &TestHerald, key: Option<&str>, items: &Value) -> (u16, Value, bool) {
    let mut req = h
        .http
        .post(h.url("/v1/messages/batch"))
        .bearer_auth(ADMIN)
        .json(&json!({ "messages": items }));
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let replayed = resp.headers().contains_key("idempotent-replayed");
    (code, resp.json().await.unwrap(), replayed)
}

/// A client retrying a timed-out batch under the same `Idempotency-Key` gets the first reply
/// and sends nothing twice; another batch under that key is refused whole.
#[tokio::test]
async fn a_batch_retried_with_its_key_sends_nothing_twice() {
    let r = Receiver::start().await;
    let h = TestHerald::start().await;
    let items = json!([
        {"to": {"webhook": r.url}, "content": {"text": "one"}},
        {"to": {"phone": "not a phone"}, "content": {"text": "bad"}},
        {"to": {"webhook": r.url}, "content": {"text": "three"}},
    ]);
    let (code, first, replayed) = batch_with_key(&h, Some("batch-7"), &items).await;
    assert_eq!(code, 202, "{first}");
    assert!(!replayed);
    let (code, again, replayed) = batch_with_key(&h, Some("batch-7"), &items).await;
    assert_eq!(code, 202, "{again}");
    assert!(replayed, "a replay says so");
    for i in [0, 2] {
        assert_eq!(
            again["results"][i]["id"], first["results"][i]["id"],
            "item {i}"
        );
    }
    assert!(again["results"][1]["error"].is_object());
    // Another batch under the same key: nothing of it is stored.
    let other = json!([
        {"to": {"webhook": r.url}, "content": {"text": "new one"}},
        {"to": {"webhook": r.url}, "content": {"text": "new two"}},
    ]);
    let (code, refused, _) = batch_with_key(&h, Some("batch-7"), &other).await;
    assert_eq!(code, 422, "{refused}");
    assert_eq!(refused["code"], "idempotency_mismatch");
    // Exactly the two valid messages of the first batch were delivered, once each.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while r.received().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let texts: Vec<String> = r
        .received()
        .iter()
        .map(|x| x.json()["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts.contains(&"one".to_string()) && texts.contains(&"three".to_string()));
    h.stop().await;
}

/// An item's own `idempotency_key` works like a single send's header, across batches and
/// single sends.
#[tokio::test]
async fn batch_items_carry_their_own_keys() {
    let h = TestHerald::start().await;
    let msg = json!({"to": {"user": "u-9"}, "content": {"text": "hi"}});
    let mut keyed = msg.clone();
    keyed["idempotency_key"] = json!("order-42");
    let (code, a, _) = batch_with_key(&h, None, &json!([keyed.clone()])).await;
    assert_eq!(code, 202, "{a}");
    let (_, b, replayed) = batch_with_key(&h, None, &json!([keyed])).await;
    assert_eq!(b["results"][0]["id"], a["results"][0]["id"]);
    assert!(replayed);
    let (code, single, _) = send_with_key(&h, "order-42", &msg).await;
    assert_eq!(code, 202);
    assert_eq!(
        single["id"], a["results"][0]["id"],
        "the same key and body as a single send"
    );
    let mut bad = msg.clone();
    bad["idempotency_key"] = json!(7);
    let (_, c, _) = batch_with_key(&h, None, &json!([bad])).await;
    assert_eq!(
        c["results"][0]["error"]["errors"][0]["field"], "messages[0].idempotency_key",
        "{c}"
    );
    h.stop().await;
}
