//! Web Push through `herald simulate`'s push service, which checks every header and the
//! VAPID token and decrypts the body as a browser would: a contact's subscription gets the
//! message; a gone subscription is removed from the contact (audited); `sms → push → inbox`
//! degradation carries a message when SMS is down.

use crate::utils::rig::{Rig, provider, sms_providers};
use herald::config::ProviderKind;
use herald::core::types::Channel;
use herald::providers::webpush::vapid::VapidKey;
use reqwest::Method;
use serde_json::{Value, json};

fn webpush(key: &VapidKey) -> herald::config::ProviderConfig {
    let mut p = provider(
        "webpush",
        Channel::Push,
        ProviderKind::Webpush,
        1,
        "",
        &[("vapid_private_key", &key.private_b64())],
        &[("subject", "mailto:ops@herald.example")],
    );
    p.options.insert(
        "allowed_hosts".into(),
        toml::Value::Array(vec![toml::Value::String("127.0.0.1".into())]),
    );
    p
}

/// A browser's subscription at the simulated push service, made with Herald's public key.
async fn subscribe(rig: &Rig) -> Value {
    let (_, k) = rig.herald.get("/v1/push/vapid-public-key").await;
    let r = rig
        .http
        .post(format!("{}/webpush/subscribe", rig.sim))
        .json(&json!({"applicationServerKey": k["key"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn arrived(rig: &Rig, sub: &Value) -> Vec<Value> {
    let url = format!("{}/messages", sub["endpoint"].as_str().unwrap());
    let v: Value = rig
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_contacts_browser_gets_the_message_encrypted_and_a_gone_subscription_is_removed() {
    let key = VapidKey::generate();
    let k2 = VapidKey::from_private_b64(&key.private_b64()).unwrap();
    let rig = Rig::start(move |c, _| c.providers = vec![webpush(&k2)]).await;
    let h = &rig.herald;
    let (code, r) = h.get("/v1/push/vapid-public-key").await;
    assert_eq!(
        (code, r["key"].as_str()),
        (200, Some(key.public_b64().as_str()))
    );
    let sub = subscribe(&rig).await;
    let (code, r) = h
        .call(
            Method::PUT,
            "/v1/contacts/u-1",
            Some(json!({"name": "One"})),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    let (code, r) = h
        .call(
            Method::POST,
            "/v1/contacts/u-1/push-subscriptions",
            Some(sub.clone()),
        )
        .await;
    assert_eq!(code, 201, "{r}");

    let id = rig
        .send(
            json!({"to": {"user": "u-1"}, "priority": "high", "ttl": "10m",
                     "metadata": {"collapse_key": "inc-42"},
                     "content": {"subject": "db01 down", "text": "disk full on /var"}}),
        )
        .await;
    let m = h.wait_status(&id, "sent").await;
    assert_eq!(m["deliveries"][0]["channel"], "push", "{m}");
    assert_eq!(m["deliveries"][0]["provider"], "webpush");
    assert_eq!(
        m["deliveries"][0]["to"], "contact u-1: 1 web push subscription(s)",
        "a reader sees no subscription keys"
    );
    let got = arrived(&rig, &sub).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["decrypted"], true, "{got:?}");
    assert_eq!(got[0]["payload"]["title"], "db01 down");
    assert_eq!(got[0]["payload"]["body"], "disk full on /var");
    assert_eq!(got[0]["payload"]["id"], id.as_str());
    assert_eq!(got[0]["headers"]["urgency"], "high");
    assert_eq!(got[0]["headers"]["topic"], "inc-42");
    let ttl = got[0]["headers"]["ttl"].as_u64().unwrap();
    assert!(
        (590..=600).contains(&ttl),
        "TTL from the message's ttl: {ttl}"
    );

    // The browser unsubscribed: the push service answers 410, the subscription leaves the
    // contact (audited as `system`) and the push delivery fails as a recipient error.
    let r = rig
        .http
        .delete(sub["endpoint"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let id = rig
        .send(json!({"to": {"user": "u-1"}, "channels": ["push"], "content": {"text": "again"}}))
        .await;
    let m = h.wait_status(&id, "failed").await;
    let a = &m["deliveries"][0]["attempts"][0];
    assert_eq!(a["error"]["class"], "recipient", "{m}");
    assert_eq!(a["error"]["code"], "push_subscription_gone");
    let (_, c) = h.get("/v1/contacts/u-1").await;
    assert_eq!(c["push"]["webpush"], json!([]), "{c}");
    let (_, audit) = h.get("/v1/audit?limit=5").await;
    let last = &audit["data"][0];
    assert_eq!(
        (last["action"].as_str(), last["actor"].as_str()),
        (Some("contact.update"), Some("system"))
    );
    assert_eq!(last["after"]["changed"], json!(["push"]));
}

/// A push service that refuses Herald's token for one subscription (made with another VAPID
/// key) fails that delivery as a recipient error and leaves the circuit closed for others; a
/// throttling one is retried.
#[tokio::test]
async fn the_push_service_checks_the_vapid_key_and_throttling_is_retried() {
    let key = VapidKey::generate();
    let k2 = VapidKey::from_private_b64(&key.private_b64()).unwrap();
    let rig = Rig::start(move |c, _| c.providers = vec![webpush(&k2)]).await;
    let h = &rig.herald;
    // Subscribed with some other application's key.
    let other = VapidKey::generate();
    let r = rig
        .http
        .post(format!("{}/webpush/subscribe", rig.sim))
        .json(&json!({"applicationServerKey": other.public_b64()}))
        .send()
        .await
        .unwrap();
    let stranger: Value = r.json().await.unwrap();
    let mine = subscribe(&rig).await;
    for (user, sub) in [("u-x", &stranger), ("u-y", &mine)] {
        let (code, r) = h
            .call(
                Method::PUT,
                &format!("/v1/contacts/{user}"),
                Some(json!({"push": {"webpush": [sub]}})),
            )
            .await;
        assert_eq!(code, 201, "{r}");
    }
    let id = rig
        .send(json!({"to": {"user": "u-x"}, "channels": ["push"], "content": {"text": "x"}}))
        .await;
    let m = h.wait_status(&id, "failed").await;
    assert_eq!(
        m["deliveries"][0]["attempts"][0]["error"]["class"], "recipient",
        "{m}"
    );
    assert!(arrived(&rig, &stranger).await.is_empty());

    // The circuit stayed closed: the other contact's push goes at once.
    let id = rig
        .send(json!({"to": {"user": "u-y"}, "channels": ["push"], "content": {"text": "first"}}))
        .await;
    h.wait_status(&id, "sent").await;
    // A title and tag too large to fit are cut, never looped on.
    let id = rig
        .send(json!({"to": {"user": "u-y"}, "channels": ["push"],
                     "metadata": {"collapse_key": "k".repeat(5000)},
                     "content": {"subject": "s".repeat(990), "text": "t".repeat(9000)}}))
        .await;
    h.wait_status(&id, "sent").await;
    rig.fault("webpush", json!({"status": 429, "count": 1}))
        .await;
    let id = rig
        .send(json!({"to": {"user": "u-y"}, "channels": ["push"], "content": {"text": "y"}}))
        .await;
    let m = h.wait_status(&id, "sent").await;
    let attempts = m["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["error"]["class"], "transient", "{m}");
    assert_eq!(attempts.last().unwrap()["outcome"], "sent");
    let got = arrived(&rig, &mine).await;
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(got[1]["payload"]["tag"].as_str().map(str::len), Some(32));
    assert!(got[1]["payload"]["body"].as_str().unwrap().ends_with('…'));
}

/// An endpoint naming an address the provider's `allowed_hosts` does not allow is never
/// called (reqwest skips the resolver for IP literals; Herald checks them itself).
#[tokio::test]
async fn push_endpoints_at_unallowed_addresses_are_refused() {
    let key = VapidKey::generate();
    let k2 = VapidKey::from_private_b64(&key.private_b64()).unwrap();
    let rig = Rig::start(move |c, _| {
        let mut p = webpush(&k2);
        p.options
            .insert("allowed_hosts".into(), toml::Value::Array(vec![]));
        c.providers = vec![p];
    })
    .await;
    let h = &rig.herald;
    let sub = subscribe(&rig).await; // http://127.0.0.1:…
    let (code, r) = h
        .call(
            Method::PUT,
            "/v1/contacts/u-z",
            Some(json!({"push": {"webpush": [sub.clone()]}})),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    let id = rig
        .send(json!({"to": {"user": "u-z"}, "channels": ["push"], "content": {"text": "x"}}))
        .await;
    let m = h.wait_status(&id, "failed").await;
    assert_eq!(
        m["deliveries"][0]["attempts"][0]["error"]["code"], "ssrf_blocked",
        "{m}"
    );
    assert!(
        arrived(&rig, &sub).await.is_empty(),
        "nothing reached the address"
    );
}

/// `[degrade] sms = ["push", "inbox"]`: with every SMS provider failing, a contact with a
/// phone, a browser subscription and an inbox gets the message by push.
#[tokio::test]
async fn sms_degrades_to_push_then_inbox() {
    let key = VapidKey::generate();
    let k2 = VapidKey::from_private_b64(&key.private_b64()).unwrap();
    let rig = Rig::start(move |c, sim| {
        c.providers = sms_providers(sim);
        c.providers.push(webpush(&k2));
        c.degrade
            .insert(Channel::Sms, vec![Channel::Push, Channel::Inbox]);
    })
    .await;
    let h = &rig.herald;
    let sub = subscribe(&rig).await;
    let (code, r) = h
        .call(
            Method::PUT,
            "/v1/contacts/u-2",
            Some(json!({"phones": ["+8613800138000"], "push": {"webpush": [sub]}})),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    for p in ["aliyun", "twilio"] {
        rig.fault(p, json!({"status": 503})).await;
    }
    let id = rig
        .send(
            json!({"to": {"user": "u-2"}, "channels": ["sms"], "content": {"text": "code 123456"}}),
        )
        .await;
    let m = h
        .wait_message(&id, |m| m["deliveries"][1]["status"] == "sent")
        .await;
    let chans: Vec<&str> = m["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["channel"].as_str().unwrap())
        .collect();
    assert_eq!(chans, vec!["sms", "push", "inbox"], "{m}");
    assert_eq!(m["deliveries"][0]["status"], "failed");
    assert_eq!(m["deliveries"][2]["status"], "skipped");
    let got = arrived(&rig, &sub).await;
    assert_eq!(got[0]["payload"]["body"], "code 123456");
}
