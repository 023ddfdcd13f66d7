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
