//! Conformance, keys: API keys are found by their hash until revoked, listed without
//! revoked ones, and every change is audited.

use super::*;
use herald::core::types::Role;
use herald::store::ApiKeyRecord;

fn key(name: &str, hash: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        approver: false,
        id: new_id("key"),
        name: name.into(),
        role: Role::Sender,
        rate_limit: None,
        prefix: "hk_test".into(),
        key_hash: hash.into(),
        created_at: now_millis(),
    }
}

pub async fn keys_are_found_until_revoked_and_audited(s: Arc<dyn Store>) {
    let mut a = key("billing", "hash-a");
    a.rate_limit = Some(herald::config::Rate::parse("10/s").unwrap());
    let b = key("alerts", "hash-b");
    s.create_api_key(a.clone(), "admin").await.unwrap();
    s.create_api_key(b.clone(), "admin").await.unwrap();
    let found = s.find_api_key("hash-a").await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.name.as_str()),
        (a.id.as_str(), "billing")
    );
    assert_eq!(found.role, Role::Sender);
    assert_eq!(
        found.rate_limit, a.rate_limit,
        "the key's rate limit is kept"
    );
    assert!(s.find_api_key("hash-unknown").await.unwrap().is_none());
    let names: Vec<String> = s
        .list_api_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        s.revoke_api_key(&a.id, "admin", now_millis())
            .await
            .unwrap()
    );
    assert!(
        !s.revoke_api_key(&a.id, "admin", now_millis())
            .await
            .unwrap(),
        "a revoked key cannot be revoked again"
    );
    assert!(s.find_api_key("hash-a").await.unwrap().is_none());
    let left: Vec<String> = s
        .list_api_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(left, vec![b.id.clone()]);
    let actions: Vec<(String, String)> = s
        .audit_list(10, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.entry.action, e.entry.target))
        .collect();
    assert!(
        actions.contains(&("api_key.delete".into(), a.id.clone())),
        "{actions:?}"
    );
    assert_eq!(
        actions.len(),
        3,
        "two creations and one revocation: {actions:?}"
    );
}

conformance!(keys_are_found_until_revoked_and_audited);
