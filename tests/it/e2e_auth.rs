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
