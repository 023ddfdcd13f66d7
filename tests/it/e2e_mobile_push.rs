//! FCM and APNs through `herald simulate`, which checks what Google and Apple check (the
//! RS256 grant and bearer token; TLS with HTTP/2 only, the ES256 provider token per
//! connection, every header): each documented error gets its class, gone tokens leave the
//! contact (audited), the OAuth token and the provider token are reused, not re-made.

use crate::utils::rig::{Rig, provider};
use herald::config::{ProviderConfig, ProviderKind};
use herald::core::types::Channel;
use reqwest::Method;
use serde_json::{Value, json};

fn fcm(sim: &str) -> ProviderConfig {
    let sa = herald::simulate::fcm::service_account(sim, "herald-sim").to_string();
    provider(
        "fcm",
        Channel::Push,
        ProviderKind::Fcm,
        1,
        &format!("{sim}/fcm"),
        &[("service_account_json", &sa)],
        &[],
    )
}

async fn contact(rig: &Rig, id: &str, push: Value) {
    let (code, r) = rig
        .herald
        .call(
            Method::PUT,
            &format!("/v1/contacts/{id}"),
            Some(json!({ "push": push })),
        )
        .await;
    assert!(code == 201 || code == 200, "{r}");
}

async fn stats(rig: &Rig, what: &str) -> u64 {
    let v: Value = rig
        .http
        .get(format!("{}/_sim/stats", rig.sim))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v[what]["accepted"].as_u64().unwrap_or(0)
}

/// The first attempt of a push message to `user` (waiting until there is one).
async fn first_attempt(rig: &Rig, user: &str) -> Value {
    let id = rig
        .send(json!({"to": {"user": user}, "channels": ["push"], "content": {"text": "x"}}))
        .await;
    let m = rig
        .herald
        .wait_message(&id, |m| {
            m["deliveries"][0]["attempts"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .await;
    rig.herald
        .call(Method::POST, &format!("/v1/messages/{id}/cancel"), None)
        .await;
    m["deliveries"][0]["attempts"][0].clone()
}

#[tokio::test]
async fn fcm_sends_with_one_cached_access_token_and_drops_gone_tokens() {
    let rig = Rig::start(|c, sim| c.providers = vec![fcm(sim)]).await;
    let h = &rig.herald;
    contact(
        &rig,
        "u-1",
        json!({"fcm": ["tok-phone-1", "tok-old-unregistered"]}),
    )
    .await;
    let id = rig
        .send(
            json!({"to": {"user": "u-1"}, "priority": "high", "ttl": "10m",
                     "metadata": {"collapse_key": "inc-42"},
                     "content": {"subject": "db01 down", "text": "disk full"}}),
        )
        .await;
    let m = h.wait_status(&id, "sent").await;
    let d = &m["deliveries"][0];
    assert_eq!(
        (d["channel"].as_str(), d["provider"].as_str()),
        (Some("push"), Some("fcm")),
        "{m}"
    );
    assert!(
        d["attempts"][0]["provider_message_id"]
            .as_str()
            .unwrap()
            .starts_with("projects/herald-sim/messages/"),
        "{m}"
    );
    assert_eq!(d["to"], "contact u-1: 2 FCM token(s)");
    let sent: Vec<Value> = rig
        .requests("fcm")
        .await
        .into_iter()
        .filter(|r| r["accepted"] == true)
        .collect();
    assert_eq!(sent.len(), 1);
    let msg = &sent[0]["request"]["message"];
    assert_eq!(msg["token"], "tok-phone-1");
    assert_eq!(
        msg["notification"],
        json!({"title": "db01 down", "body": "disk full"})
    );
    assert_eq!(msg["data"]["message_id"], id.as_str());
    assert_eq!(msg["android"]["priority"], "HIGH");
    assert_eq!(msg["android"]["collapse_key"], "inc-42");
    let ttl: u64 = msg["android"]["ttl"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!((590..=600).contains(&ttl), "{ttl}");
    assert_eq!(msg["apns"]["headers"]["apns-priority"], "10");

    // The unregistered token left the contact, audited as `system`.
    let (_, c) = h.get("/v1/contacts/u-1").await;
    assert_eq!(c["push"]["fcm"], json!(["tok-phone-1"]), "{c}");
    let (_, audit) = h.get("/v1/audit?limit=5").await;
    assert_eq!(
        (
            audit["data"][0]["action"].as_str(),
            audit["data"][0]["actor"].as_str()
        ),
        (Some("contact.update"), Some("system"))
    );

    // More sends use the same access token.
    for _ in 0..5 {
        let id = rig
            .send(json!({"to": {"user": "u-1"}, "content": {"text": "again"}}))
            .await;
        h.wait_status(&id, "sent").await;
    }
    assert_eq!(stats(&rig, "fcm_token").await, 1, "one grant for six sends");

    // Google stops taking the token: one refresh, then the send goes.
    rig.http
        .post(format!("{}/_sim/fcm/expire-tokens", rig.sim))
        .send()
        .await
        .unwrap();
    let id = rig
        .send(json!({"to": {"user": "u-1"}, "content": {"text": "after expiry"}}))
        .await;
    let m = h.wait_status(&id, "sent").await;
    assert_eq!(
        m["deliveries"][0]["attempts"].as_array().unwrap().len(),
        1,
        "{m}"
    );
    assert_eq!(stats(&rig, "fcm_token").await, 2);

    // The token endpoint down: the send fails cleanly as transient.
    rig.fault("fcm_token", json!({"status": 503})).await;
    rig.http
        .post(format!("{}/_sim/fcm/expire-tokens", rig.sim))
        .send()
        .await
        .unwrap();
    let a = first_attempt(&rig, "u-1").await;
    assert_eq!(
        (a["error"]["class"].as_str(), a["error"]["code"].as_str()),
        (Some("transient"), Some("fcm_token_unavailable")),
        "{a}"
    );
}

/// Every FCM error of PUSH.md §2.3, driven through the simulator, gets its class.
#[tokio::test]
async fn fcm_errors_get_their_classes_end_to_end() {
    let rig = Rig::start(|c, sim| c.providers = vec![fcm(sim)]).await;
    for (token, class, code) in [
        ("tok-a-bad", "recipient", "fcm_invalid_argument"),
        ("tok-b-other-project", "recipient", "fcm_sender_id_mismatch"),
        ("tok-c-unregistered", "recipient", "fcm_unregistered"),
        ("tok-d-quota", "transient", "fcm_quota_exceeded"),
        ("tok-e-quota-plain", "transient", "fcm_resource_exhausted"),
        ("tok-f-unavailable", "transient", "fcm_unavailable"),
        ("tok-g-internal", "transient", "fcm_internal"),
        ("tok-h-html502", "transient", "fcm_http_502"),
        // Last: a provider-class error opens the circuit.
        (
            "tok-i-third-party",
            "provider",
            "fcm_third_party_auth_error",
        ),
    ] {
        let user = format!("u-{}", &token[4..5]);
        contact(&rig, &user, json!({"fcm": [token]})).await;
        let a = first_attempt(&rig, &user).await;
        assert_eq!(
            (a["error"]["class"].as_str(), a["error"]["code"].as_str()),
            (Some(class), Some(code)),
            "{token}: {a}"
        );
        let (_, c) = rig.herald.get(&format!("/v1/contacts/{user}")).await;
        let kept = c["push"]["fcm"].as_array().unwrap().len();
        assert_eq!(
            kept == 0,
            class == "recipient",
            "{token}: removed only when gone: {c}"
        );
    }
    assert_eq!(
        stats(&rig, "fcm_token").await,
        1,
        "a 401 THIRD_PARTY_AUTH_ERROR is no reason to refresh"
    );
}

fn apns(apns: &herald::simulate::apns::ApnsState) -> ProviderConfig {
    let dir = tempfile::tempdir().unwrap().keep();
    let ca = dir.join("apns-ca.pem");
    std::fs::write(&ca, &apns.ca_pem).unwrap();
    provider(
        "apns",
        Channel::Push,
        ProviderKind::Apns,
        2,
        &apns.url,
        &[
            ("key_p8", herald::simulate::apns::SIM_KEY),
            ("key_id", "SIMKEY0001"),
            ("team_id", "SIMTEAM001"),
        ],
        &[
            ("topic", "com.example.herald"),
            ("sandbox_endpoint", &format!("{}/sandbox", apns.url)),
            ("ca_file", ca.to_str().unwrap()),
        ],
    )
}

fn device(prefix: &str, env: &str) -> Value {
    json!({"token": format!("{prefix}{}", "7".repeat(64 - prefix.len())), "environment": env})
}

async fn apns_info(rig: &Rig) -> Value {
    rig.http
        .get(format!("{}/_sim/apns", rig.sim))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn apns_over_http2_with_one_provider_token_and_gone_devices_dropped() {
    let rig = Rig::start_with_apns(|c, _, a| c.providers = vec![apns(a)]).await;
    let h = &rig.herald;
    contact(&rig, "u-1", json!({"apns": [device("ab", "production"), device("5a", "sandbox"), device("0410", "production")]})).await;
    let id = rig
        .send(
            json!({"to": {"user": "u-1"}, "priority": "critical", "ttl": "10m",
                     "metadata": {"collapse_key": "inc-42"},
                     "content": {"subject": "P0 db01", "text": "primary down"}}),
        )
        .await;
    let m = h.wait_status(&id, "sent").await;
    assert_eq!(m["deliveries"][0]["provider"], "apns", "{m}");
    let reqs = rig.requests("apns").await;
    let ok: Vec<&Value> = reqs.iter().filter(|r| r["accepted"] == true).collect();
    assert_eq!(ok.len(), 2, "production and sandbox devices: {reqs:?}");
    assert!(ok.iter().any(|r| {
        r["request"]["path"]
            .as_str()
            .unwrap()
            .starts_with("/sandbox/3/device/5a")
    }));
    let r = &ok[0]["request"];
    assert_eq!(r["version"], "HTTP/2.0");
    assert_eq!(r["headers"]["apns-topic"], "com.example.herald");
    assert_eq!(r["headers"]["apns-push-type"], "alert");
    assert_eq!(r["headers"]["apns-priority"], "10");
    assert_eq!(r["headers"]["apns-collapse-id"], "inc-42");
    assert_eq!(
        r["payload"]["aps"]["alert"],
        json!({"title": "P0 db01", "body": "primary down"})
    );
    assert_eq!(r["payload"]["aps"]["interruption-level"], "time-sensitive");
    let (_, c) = h.get("/v1/contacts/u-1").await;
    assert_eq!(
        c["push"]["apns"].as_array().unwrap().len(),
        2,
        "the unregistered device left: {c}"
    );

    // Many sends, one provider token.
    for i in 0..20 {
        let id = rig
            .send(json!({"to": {"user": "u-1"}, "content": {"text": format!("n{i}")}}))
            .await;
        h.wait_status(&id, "sent").await;
    }
    assert_eq!(apns_info(&rig).await["provider_tokens"], 1);

    // APNs calls the token expired: one new token, the send goes at once.
    rig.http
        .post(format!("{}/_sim/apns/expire", rig.sim))
        .send()
        .await
        .unwrap();
    let id = rig
        .send(json!({"to": {"user": "u-1"}, "content": {"text": "after expiry"}}))
        .await;
    let m = h.wait_status(&id, "sent").await;
    assert_eq!(
        m["deliveries"][0]["attempts"].as_array().unwrap().len(),
        1,
        "{m}"
    );
    assert_eq!(apns_info(&rig).await["provider_tokens"], 2);

    // The scripted reasons.
    for (prefix, class, code, dropped) in [
        ("0429", "transient", "apns_toomanyrequests", false),
        ("0500", "transient", "apns_internalservererror", false),
        ("0503", "transient", "apns_serviceunavailable", false),
        ("0400", "recipient", "apns_devicetokennotfortopic", true),
        ("e410", "recipient", "apns_expiredtoken", true),
    ] {
        let user = format!("u-{prefix}");
        contact(&rig, &user, json!({"apns": [device(prefix, "production")]})).await;
        let a = first_attempt(&rig, &user).await;
        assert_eq!(
            (a["error"]["class"].as_str(), a["error"]["code"].as_str()),
            (Some(class), Some(code)),
            "{prefix}: {a}"
        );
        let (_, c) = h.get(&format!("/v1/contacts/{user}")).await;
        assert_eq!(
            c["push"]["apns"].as_array().unwrap().is_empty(),
            dropped,
            "{prefix}: {c}"
        );
    }
    // A sandbox token sent as production is a bad device token.
    contact(&rig, "u-env", json!({"apns": [device("5a", "production")]})).await;
    let a = first_attempt(&rig, "u-env").await;
    assert_eq!(a["error"]["code"], "apns_baddevicetoken", "{a}");
}

#[tokio::test]
async fn the_apns_simulator_speaks_http2_over_tls_only_and_a_wrong_ca_is_a_provider_error() {
    let rig = Rig::start_with_apns(|c, _, a| {
        let mut p = apns(a);
        p.options.remove("ca_file");
        c.providers = vec![p];
    })
    .await;
    let info = apns_info(&rig).await;
    let url = info["url"].as_str().unwrap();
    let ca = reqwest::Certificate::from_pem(info["ca_pem"].as_str().unwrap().as_bytes()).unwrap();
    // HTTP/1.1 only: refused in the TLS handshake (no common application protocol).
    let h1 = reqwest::Client::builder()
        .http1_only()
        .tls_certs_only([ca.clone()])
        .build()
        .unwrap();
    assert!(
        h1.post(format!("{url}/3/device/{}", "a".repeat(64)))
            .send()
            .await
            .is_err()
    );
    // HTTP/2 with no token: APNs' own refusal.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let r = h2
        .post(format!("{url}/3/device/{}", "a".repeat(64)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["reason"],
        "MissingProviderToken"
    );
    let r = h2
        .get(format!("{url}/3/device/{}", "a".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // Herald without the simulator's certificate: a configuration error, not a retry loop.
    contact(&rig, "u-1", json!({"apns": [device("ab", "production")]})).await;
    let a = first_attempt(&rig, "u-1").await;
    assert_eq!(
        (a["error"]["class"].as_str(), a["error"]["code"].as_str()),
        (Some("provider"), Some("apns_tls_untrusted")),
        "{a}"
    );
}
