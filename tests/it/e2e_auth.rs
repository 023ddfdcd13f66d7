//! API keys: created hashed and shown once, roles enforced, revocation, audit.

use crate::utils::TestHerald;
use herald::config::{ApiKeyConfig, Secret};
use herald::core::types::Role;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn keys_are_created_shown_once_enforced_by_role_and_revoked() {
    let h = TestHerald::start_with(|c| {
        c.api_keys.push(ApiKeyConfig {
            approver: false,
            name: "reader".into(),
            key: Secret::new("reader-key-0123456789abcdef"),
            role: Role::Viewer,
            rate_limit: None,
        })
    })
    .await;
    let (code, k) = h
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name":"billing","role":"sender"})),
        )
        .await;
    assert_eq!(code, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("hk_"));
    let id = k["id"].as_str().unwrap().to_string();

    let (_, list) = h.get("/v1/api-keys").await;
    let text = list.to_string();
    assert!(
        text.contains("billing") && !text.contains(&key),
        "the key is never shown again: {text}"
    );

    let msg = json!({"to":{"user":"u"},"content":{"text":"x"}});
    let (code, r) = h
        .call_as(&key, Method::POST, "/v1/messages", Some(msg.clone()))
        .await;
    assert_eq!(code, 202, "{r}");
    let (code, _) = h
        .call_as(
            &key,
            Method::GET,
            &format!("/v1/messages/{}", r["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(code, 200, "a sender may read");
    let (code, e) = h
        .call_as(
            &key,
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name":"x","role":"admin"})),
        )
        .await;
    assert_eq!((code, e["code"].as_str()), (403, Some("forbidden")));
    let (code, _) = h
        .call_as(
            &key,
            Method::POST,
            "/v1/dead-letters/replay",
            Some(json!({"all":true})),
        )
        .await;
    assert_eq!(code, 403, "replay needs operator");

    let (code, _) = h
        .call_as(
            "reader-key-0123456789abcdef",
            Method::POST,
            "/v1/messages",
            Some(msg.clone()),
        )
        .await;
    assert_eq!(code, 403, "a viewer may not send");
    let (code, _) = h
        .call_as(
            "reader-key-0123456789abcdef",
            Method::GET,
            "/v1/messages",
            None,
        )
        .await;
    assert_eq!(code, 200);

    let (code, e) = h
        .call(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name":"x","role":"root"})),
        )
        .await;
    assert_eq!(
        (code, e["errors"][0]["field"].as_str()),
        (422, Some("role"))
    );
    let (code, e) = h
        .call(Method::POST, "/v1/api-keys", Some(json!({"role":"viewer"})))
        .await;
    assert_eq!(
        (code, e["errors"][0]["field"].as_str()),
        (422, Some("name"))
    );

    let (code, _) = h
        .call(Method::DELETE, &format!("/v1/api-keys/{id}"), None)
        .await;
    assert_eq!(code, 204);
    let (code, _) = h
        .call_as(&key, Method::POST, "/v1/messages", Some(msg))
        .await;
    assert_eq!(code, 401, "revoked keys stop working at once on this node");
    let (code, _) = h
        .call(Method::DELETE, &format!("/v1/api-keys/{id}"), None)
        .await;
    assert_eq!(code, 404);

    let (_, audit) = h.get("/v1/audit?limit=10").await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["api_key.delete", "api_key.create"]);
    assert_eq!(audit["data"][0]["actor"], "admin");
    h.stop().await;
}

/// A key is known by its id, not its name: names are unique among live keys and `admin` is
/// reserved; a new key named like a revoked one shares neither its rate bucket nor its
/// idempotency keys.
#[tokio::test]
async fn identity_is_the_key_id_and_names_are_unique() {
    let h = TestHerald::start().await;
    let create = |name: &str| json!({"name": name, "role": "sender", "rate_limit": "2/min"});
    for reserved in ["admin", "Admin"] {
        let (code, r) = h
            .call(Method::POST, "/v1/api-keys", Some(create(reserved)))
            .await;
        assert_eq!(code, 422, "{reserved}: {r}");
    }
    let (code, first) = h
        .call(Method::POST, "/v1/api-keys", Some(create("svc")))
        .await;
    assert_eq!(code, 201, "{first}");
    let (code, r) = h
        .call(Method::POST, "/v1/api-keys", Some(create("svc")))
        .await;
    assert_eq!(code, 422, "a second live `svc`: {r}");
    let key1 = first["key"].as_str().unwrap().to_string();
    let send = |key: String| {
        let http = h.http.clone();
        let url = h.url("/v1/messages");
        async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .header("idempotency-key", "order-1")
                .json(&json!({"to": {"user": "u-1"}, "content": {"text": "hi"}}))
                .send()
                .await
                .unwrap();
            let code = r.status().as_u16();
            (code, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (code, m1) = send(key1.clone()).await;
    assert_eq!(code, 202);
    assert_eq!(send(key1.clone()).await.0, 202);
    assert_eq!(send(key1.clone()).await.0, 429, "over 2/min");
    let id = first["id"].as_str().unwrap();
    let (code, _) = h
        .call(Method::DELETE, &format!("/v1/api-keys/{id}"), None)
        .await;
    assert!(code == 200 || code == 204, "{code}");
    let (code, second) = h
        .call(Method::POST, "/v1/api-keys", Some(create("svc")))
        .await;
    assert_eq!(code, 201, "the name is free again: {second}");
    let (code, m2) = send(second["key"].as_str().unwrap().to_string()).await;
    assert_eq!(code, 202, "a fresh bucket: {m2}");
    assert_ne!(m2["id"], m1["id"], "its own idempotency keys");
    h.stop().await;
}
