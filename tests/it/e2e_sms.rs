//! SMS through Aliyun and Twilio, against `herald simulate`: signatures and parameters are
//! accepted, every documented error code is classed as PROVIDERS.md lists it, receipts
//! confirm or fail deliveries.

use crate::utils::rig::{Rig, provider, sms, sms_providers, verify_template};
use herald::config::ProviderKind;
use herald::core::types::{Channel, ErrorClass};
use serde_json::{Value, json};

async fn sms_rig() -> Rig {
    Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        c.templates = vec![verify_template()];
        // Each code is checked on its own: the circuit must not carry one into the next.
        c.circuit.open_for = herald::config::Dur::millis(1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliyun_sends_signed_templates_and_its_receipt_marks_delivery() {
    let rig = sms_rig().await;
    let id = rig.send(sms("verify_code")).await;
    let m = rig.herald.wait_status(&id, "delivered").await;
    let d = &m["deliveries"][0];
    assert_eq!(d["provider"], "aliyun-main");
    assert_eq!(d["status"], "delivered");
    let reqs = rig.requests("aliyun").await;
    let accepted: Vec<&Value> = reqs.iter().filter(|r| r["accepted"] == true).collect();
    assert_eq!(accepted.len(), 1, "{reqs:#?}");
    let p = &accepted[0]["request"];
    assert_eq!(p["Action"], "SendSms");
    assert_eq!(p["TemplateCode"], "SMS_123456");
    assert_eq!(p["SignName"], "Herald");
    assert_eq!(p["PhoneNumbers"], "8613800138000");
    assert_eq!(p["OutId"], d["id"], "OutId is the delivery id");
    let tp: Value = serde_json::from_str(p["TemplateParam"].as_str().unwrap()).unwrap();
    assert_eq!(tp, json!({"code": "123456"}));
    assert_eq!(
        d["attempts"][0]["provider_message_id"],
        accepted[0]["response"]["BizId"]
    );

    // A handset that never gets it: the pushed report fails the delivery.
    let id = rig.send(json!({"to": {"phone": "+8613800134444"}, "template": "verify_code", "params": {"code": "1"}})).await;
    let m = rig.herald.wait_status(&id, "failed").await;
    assert_eq!(m["deliveries"][0]["status"], "failed");
    rig.herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_sends_text_and_signed_status_callbacks_mark_delivery() {
    let rig = Rig::start(|c, sim| c.providers = vec![sms_providers(sim).remove(1)]).await;
    let id = rig
        .send(json!({"to": {"phone": "+14155550100"}, "content": {"text": "Your code is 4242"}}))
        .await;
    let m = rig.herald.wait_status(&id, "delivered").await;
    let d = &m["deliveries"][0];
    assert_eq!(d["provider"], "twilio-backup");
    assert!(
        d["attempts"][0]["provider_message_id"]
            .as_str()
            .unwrap()
            .starts_with("SM")
    );
    let reqs = rig.requests("twilio").await;
    let p = &reqs.iter().find(|r| r["accepted"] == true).unwrap()["request"];
    assert_eq!(p["Body"], "Your code is 4242");
    assert_eq!(p["To"], "+14155550100");
    assert_eq!(p["From"], "+15005550006");
    assert_eq!(
        p["StatusCallback"],
        format!("{}/v1/receipts/twilio/twilio-backup", rig.herald.base)
    );

    let id = rig
        .send(json!({"to": {"phone": "+14155554444"}, "content": {"text": "x"}}))
        .await;
    let m = rig.herald.wait_status(&id, "failed").await;
    assert_eq!(m["deliveries"][0]["status"], "failed");
    // Its dead letter says who reported what: Twilio, an unreachable handset (30003), which
    // nothing retries on this channel — a recipient failure, not a transient one.
    let (_, dl) = rig.herald.get("/v1/dead-letters").await;
    let entry = dl["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["message_id"] == id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no dead letter for {id}: {dl}"));
    assert_eq!(entry["provider"], "twilio-backup", "{entry}");
    assert_eq!(entry["last_error"]["class"], "recipient", "{entry}");
    assert_eq!(entry["last_error"]["code"], "30003", "{entry}");

    // A callback without a valid signature is refused.
    let r = rig
        .http
        .post(format!(
            "{}/v1/receipts/twilio/twilio-backup",
            rig.herald.base
        ))
        .header("X-Twilio-Signature", "forged")
        .form(&[("MessageSid", "SMx"), ("MessageStatus", "delivered")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    rig.herald.stop().await;
}

/// For every code of a provider's table: fault the next call with it, send, and check the
/// first attempt's class and what followed.
async fn check_table(
    rig: &Rig,
    sim_provider: &str,
    provider_id: &str,
    table: &[(&str, ErrorClass)],
    other: &str,
) {
    for (code, class) in table {
        rig.fault(sim_provider, json!({"error_code": code, "count": 1}))
            .await;
        let id = rig.send(sms("verify_code")).await;
        let m = rig.settle(&id).await;
        let d = &m["deliveries"][0];
        let a = d["attempts"].as_array().unwrap();
        let first = &a[0];
        assert_eq!(first["provider"], provider_id, "{code}: {m:#}");
        assert_eq!(
            first["error"]["class"],
            class.as_str(),
            "{code} is {class}: {m:#}"
        );
        assert_eq!(first["error"]["code"], *code);
        match class {
            ErrorClass::Transient => {
                assert_eq!(m["status"], "delivered", "{code}: retried and sent: {m:#}");
                assert!(a.len() >= 2);
                assert_eq!(
                    a[1]["provider"], other,
                    "{code}: the retry goes to the healthy backup at once"
                );
            }
            ErrorClass::Recipient | ErrorClass::Rejected => {
                assert_eq!(m["status"], "failed", "{code}: not retried: {m:#}");
                assert_eq!(a.len(), 1, "{code}: not retried");
            }
            ErrorClass::Provider => {
                assert_eq!(
                    m["status"], "delivered",
                    "{code}: another provider used: {m:#}"
                );
                assert_eq!(d["provider"], other, "{code}");
            }
        }
        rig.clear_fault(sim_provider).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aliyun_error_code_is_classed_as_documented() {
    let rig = sms_rig().await;
    check_table(
        &rig,
        "aliyun",
        "aliyun-main",
        herald::providers::aliyun::ERRORS,
        "twilio-backup",
    )
    .await;
    rig.herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_twilio_error_code_is_classed_as_documented() {
    let rig = Rig::start(|c, sim| {
        let mut p = sms_providers(sim);
        p[0].priority = 2;
        p[1].priority = 1;
        c.providers = p;
        c.templates = vec![verify_template()];
        c.circuit.open_for = herald::config::Dur::millis(1);
    })
    .await;
    check_table(
        &rig,
        "twilio",
        "twilio-backup",
        herald::providers::twilio::ERRORS,
        "aliyun-main",
    )
    .await;
    rig.herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_faults_bad_number_outage_and_bad_credentials() {
    // A bad number is refused by the service itself: not retried, the delivery fails.
    let rig = Rig::start(|c, sim| {
        c.providers = vec![sms_providers(sim).remove(1)];
    })
    .await;
    let id = rig
        .send(json!({"to": {"phone": "+15005550001"}, "content": {"text": "x"}}))
        .await;
    let m = rig.settle(&id).await;
    assert_eq!(m["status"], "failed");
    assert_eq!(m["deliveries"][0]["attempts"][0]["error"]["code"], "21211");
    assert_eq!(m["deliveries"][0]["attempts"].as_array().unwrap().len(), 1);
    // An outage (503) is retried until the service is back.
    rig.fault("twilio", json!({"status": 503, "count": 2}))
        .await;
    let id = rig
        .send(json!({"to": {"phone": "+14155550100"}, "content": {"text": "x"}}))
        .await;
    let m = rig.settle(&id).await;
    assert_eq!(m["status"], "delivered", "{m:#}");
    let a = m["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(a[0]["error"]["class"], "transient");
    assert_eq!(a.len(), 3);
    rig.herald.stop().await;

    // Wrong credentials: the service refuses the signature; that provider is skipped.
    let rig = Rig::start(|c, sim| {
        let mut p = sms_providers(sim);
        p[0] = provider(
            "aliyun-main",
            Channel::Sms,
            ProviderKind::Aliyun,
            1,
            &format!("{sim}/aliyun"),
            &[
                ("access_key_id", "sim-ak"),
                ("access_key_secret", "wrong-secret"),
                ("receipt_token", "sim-receipt-token"),
            ],
            &[("sign_name", "Herald")],
        );
        c.providers = p;
        c.templates = vec![verify_template()];
    })
    .await;
    let id = rig.send(sms("verify_code")).await;
    let m = rig.settle(&id).await;
    assert_eq!(m["status"], "delivered", "{m:#}");
    let a = m["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(a[0]["error"]["code"], "SignatureDoesNotMatch");
    assert_eq!(a[0]["error"]["class"], "provider");
    assert_eq!(a[1]["provider"], "twilio-backup");
    rig.herald.stop().await;
}

/// Aliyun alone, its pushed receipts needing `?token=push-token-value` (the simulator's own
/// pushes carry none and are refused), polled for reports when `poll`.
async fn aliyun_with_token(poll: bool) -> Rig {
    Rig::start(move |c, sim| {
        let mut p = sms_providers(sim);
        if poll {
            p[0].options
                .insert("receipts".into(), toml::Value::String("poll".into()));
        }
        p[0].credentials.insert(
            "receipt_token".into(),
            herald::config::Secret::new("push-token-value"),
        );
        c.providers = vec![p.remove(0)];
        c.templates = vec![verify_template()];
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliyun_receipts_can_be_polled_and_pushes_are_deduplicated() {
    let rig = aliyun_with_token(true).await;
    let id = rig.send(sms("verify_code")).await;
    let m = rig.herald.wait_status(&id, "delivered").await;
    let reqs = rig.requests("aliyun").await;
    assert!(
        reqs.iter()
            .any(|r| r["request"]["Action"] == "QuerySendDetails" && r["accepted"] == true),
        "polled"
    );
    // The same push twice: applied once, answered {"code":0} both times.
    let d = &m["deliveries"][0];
    let report = json!([{"phone_number": "8613800138000", "success": false, "err_code": "X", "err_msg": "late",
                         "biz_id": d["attempts"][0]["provider_message_id"], "out_id": d["id"]}]);
    for _ in 0..2 {
        let url = format!(
            "{}/v1/receipts/aliyun/aliyun-main?token=push-token-value",
            rig.herald.base
        );
        let r: Value = rig
            .http
            .post(url)
            .json(&report)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["code"], 0);
    }
    let (_, m) = rig.herald.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(
        m["status"], "delivered",
        "a report after the final one changes nothing"
    );
    let r = rig
        .http
        .post(format!(
            "{}/v1/receipts/aliyun/aliyun-main?token=wrong",
            rig.herald.base
        ))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    rig.herald.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_with_a_missing_parameter_is_refused_at_send_time() {
    let rig = sms_rig().await;
    let (code, e) = rig
        .herald
        .send(json!({"to": {"phone": "+8613800138000"}, "template": "verify_code", "params": {}}))
        .await;
    assert_eq!(code, 422, "{e}");
    assert_eq!(e["errors"][0]["field"], "params");
    assert!(
        e["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{e}"
    );
    let (code, e) = rig
        .herald
        .send(json!({"to": {"phone": "+8613800138000"}, "template": "nope"}))
        .await;
    assert_eq!(
        (code, e["errors"][0]["field"].as_str()),
        (422, Some("template"))
    );
    // The template's channels are used when the message names none.
    let id = rig.send(sms("verify_code")).await;
    let (_, m) = rig.herald.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(m["deliveries"][0]["channel"], "sms");
    rig.herald.stop().await;
}

/// Without any `[limits]`, a phone number gets 3 SMS a minute: the fourth is refused at the
/// door (an OTP endpoint is not an SMS-pumping target by default); `critical` still goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_has_a_per_recipient_limit_by_default() {
    let rig = Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        c.limits = herald::config::LimitsConfig::default();
    })
    .await;
    let body = |prio: &str| json!({"to": {"phone": "+14155550123"}, "content": {"text": "code 1"}, "priority": prio});
    for _ in 0..3 {
        let (code, r) = rig.herald.send(body("normal")).await;
        assert_eq!(code, 202, "{r}");
    }
    let (code, r) = rig.herald.send(body("high")).await;
    assert_eq!(code, 429, "{r}");
    assert_eq!(r["code"], "recipient_rate_limited", "{r}");
    let (code, r) = rig.herald.send(body("critical")).await;
    assert_eq!(code, 202, "critical is exempt: {r}");
    rig.herald.stop().await;
}

/// A message a provider cannot carry (plain text for Aliyun, which sends approved templates
/// only) passes that provider by: it goes through the next one and the first one's circuit
/// and health are untouched, so a trickle of such messages cannot keep it out of service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_a_provider_cannot_carry_leave_its_circuit_alone() {
    let rig = Rig::start(|c, sim| c.providers = sms_providers(sim)).await;
    for i in 0..6 {
        let id = rig
            .send(json!({"to": {"phone": format!("+1415555{:04}", 100 + i)}, "content": {"text": "plain"}}))
            .await;
        let m = rig.herald.wait_status(&id, "delivered").await;
        assert_eq!(m["deliveries"][0]["provider"], "twilio-backup", "{m}");
        assert_eq!(m["deliveries"][0]["attempts"].as_array().unwrap().len(), 1);
    }
    let (_, p) = rig.herald.get("/v1/providers").await;
    let aliyun = p["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "aliyun-main")
        .cloned()
        .unwrap();
    assert_eq!(aliyun["circuit"], "closed", "{aliyun}");
    assert_eq!(aliyun["calls"], 0, "{aliyun}");
    // With only Aliyun, such a message fails as the message's fault, naming why.
    rig.herald.stop().await;
    let rig = Rig::start(|c, sim| c.providers = vec![sms_providers(sim).remove(0)]).await;
    let id = rig
        .send(json!({"to": {"phone": "+14155550999"}, "content": {"text": "plain"}}))
        .await;
    let m = rig.herald.wait_status(&id, "failed").await;
    let e = &m["deliveries"][0]["attempts"][0]["error"];
    assert_eq!(e["code"], "no_provider_can_carry", "{m}");
    assert_eq!(e["class"], "rejected");
    rig.herald.stop().await;
}

/// The same push receipt twice while the delivery is still `sent`: the first is applied, the
/// second is recognised as a repeat (not merely ignored because the first changed the
/// status), which the receipts counter shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_receipt_is_recognised_as_a_duplicate() {
    let rig = aliyun_with_token(false).await;
    let id = rig.send(sms("verify_code")).await;
    let m = rig.herald.wait_status(&id, "sent").await;
    let d = &m["deliveries"][0];
    let report = json!([{"phone_number": "8613800138000", "success": true, "err_code": "DELIVERED", "err_msg": "ok",
                         "biz_id": d["attempts"][0]["provider_message_id"], "out_id": d["id"]}]);
    let url = format!(
        "{}/v1/receipts/aliyun/aliyun-main?token=push-token-value",
        rig.herald.base
    );
    for _ in 0..2 {
        let r = rig.http.post(&url).json(&report).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    rig.herald.wait_status(&id, "delivered").await;
    let metrics = rig.herald.metrics().await;
    let count = |outcome: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("herald_receipts_total")
                    && l.contains(&format!("outcome=\"{outcome}\""))
                    && l.contains("provider=\"aliyun-main\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(count("applied"), 1.0, "{metrics}");
    assert_eq!(count("duplicate"), 1.0, "{metrics}");
    rig.herald.stop().await;
}
