//! Voice through simulated Twilio: the call is placed with TwiML and a signed status callback
//! marks the delivery `delivered`; a busy line fails the call, and with `[degrade] voice =
//! ["sms"]` the message then goes by SMS.

use crate::utils::rig::{Rig, provider, sms_providers};
use herald::config::ProviderKind;
use herald::core::types::Channel;
use serde_json::json;

fn voice(sim: &str) -> herald::config::ProviderConfig {
    provider(
        "twilio-voice",
        Channel::Voice,
        ProviderKind::TwilioVoice,
        1,
        &format!("{sim}/twilio"),
        &[
            ("account_sid", "ACsim0000000000000000000000000000"),
            ("auth_token", "twilio-token-secret-value"),
        ],
        &[("from", "+15005550006"), ("language", "en-US")],
    )
}

#[tokio::test]
async fn a_call_is_placed_and_its_answer_marks_the_delivery_delivered() {
    let rig = Rig::start(|c, sim| c.providers = vec![voice(sim)]).await;
    let id = rig
        .send(
            json!({"to": {"phone": "+8613800138000"}, "channels": ["voice"], "priority": "critical",
                     "content": {"text": "P0: db01 is down & unreachable"}}),
        )
        .await;
    let m = rig.settle(&id).await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert_eq!(m["deliveries"][0]["provider"], "twilio-voice");
    let calls = rig.requests("twilio").await;
    assert_eq!(calls.len(), 1);
    let twiml = calls[0]["request"]["Twiml"].as_str().unwrap();
    assert!(twiml.contains("db01 is down &amp; unreachable"), "{twiml}");
    assert_eq!(calls[0]["request"]["MachineDetection"], "Enable");
    assert!(
        calls[0]["request"]["StatusCallback"]
            .as_str()
            .unwrap()
            .ends_with("/v1/receipts/twilio/twilio-voice")
    );
    // An invalid number is a recipient error at once.
    let id = rig
        .send(json!({"to": {"phone": "+15005550001"}, "channels": ["voice"], "content": {"text": "x"}}))
        .await;
    let m = rig.settle(&id).await;
    assert_eq!(
        m["deliveries"][0]["attempts"][0]["error"]["class"], "recipient",
        "{m}"
    );
}

#[tokio::test]
async fn a_busy_line_degrades_to_sms() {
    let rig = Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        c.providers.push(voice(sim));
        c.degrade.insert(Channel::Voice, vec![Channel::Sms]);
    })
    .await;
    let id = rig
        .send(
            json!({"to": {"phone": "+8613800130002"}, "channels": ["voice"],
                     "content": {"text": "P1: queue backlog"}}),
        )
        .await;
    let m = rig.settle(&id).await;
    let d = m["deliveries"].as_array().unwrap();
    assert_eq!(d[0]["channel"], "voice");
    assert_eq!(d[0]["status"], "failed", "{m}");
    assert_eq!(d[1]["channel"], "sms");
    assert_eq!(d[1]["status"], "delivered", "{m}");
}

fn vms(sim: &str, ivr: bool) -> herald::config::ProviderConfig {
    let mut opts = vec![];
    if ivr {
        opts = vec![
            ("called_show_number", "057188880000"),
            ("ivr_ack_code", "TTS_DACK"),
        ];
    }
    provider(
        "aliyun-vms",
        Channel::Voice,
        ProviderKind::AliyunVms,
        1,
        &format!("{sim}/aliyun"),
        &[
            ("access_key_id", "sim-ak"),
            ("access_key_secret", "sim-ak-secret-value"),
            ("receipt_token", "sim-receipt-token"),
        ],
        &opts,
    )
}

fn page_template(code: &str) -> herald::templates::TemplateConfig {
    herald::templates::TemplateConfig {
        id: "page".into(),
        channels: vec![Channel::Voice],
        voice: Some(herald::templates::SmsPart {
            text: Some("Incident {{ id }}: {{ what }}".into()),
            provider_templates: [("aliyun-vms".to_string(), code.to_string())]
                .into_iter()
                .collect(),
        }),
        sms: Some(herald::templates::SmsPart {
            text: Some("Incident {{ id }}: {{ what }}".into()),
            provider_templates: [("aliyun-main".to_string(), "SMS_123456".to_string())]
                .into_iter()
                .collect(),
        }),
        ..Default::default()
    }
}

fn page(phone: &str) -> serde_json::Value {
    json!({"to": {"phone": phone}, "template": "page", "priority": "critical",
           "params": {"id": "inc-7", "what": "db01 down"}})
}

#[tokio::test]
async fn an_aliyun_call_is_signed_reported_and_a_busy_line_degrades_to_sms() {
    let rig = Rig::start(|c, sim| {
        c.providers = sms_providers(sim);
        c.providers.push(vms(sim, false));
        c.templates = vec![page_template("TTS_100")];
        c.degrade.insert(Channel::Voice, vec![Channel::Sms]);
    })
    .await;
    let id = rig.send(page("+8613800138000")).await;
    let m = rig.settle(&id).await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert_eq!(m["deliveries"][0]["provider"], "aliyun-vms");
    let calls = rig.requests("aliyun_vms").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let r = &calls[0]["request"];
    assert_eq!(
        calls[0]["accepted"], true,
        "the simulator checked the signature: {calls:?}"
    );
    assert_eq!(r["Action"], "SingleCallByTts");
    assert_eq!(r["CalledNumber"], "13800138000");
    assert_eq!(r["TtsCode"], "TTS_100");
    let params: serde_json::Value = serde_json::from_str(r["TtsParam"].as_str().unwrap()).unwrap();
    assert_eq!(params, json!({"id": "inc-7", "what": "db01 down"}));
    assert!(r["OutId"].as_str().unwrap().len() <= 15);

    // Busy: the report fails the call and the message goes by SMS.
    let id = rig.send(page("+8613800130002")).await;
    let m = rig.settle(&id).await;
    let d = m["deliveries"].as_array().unwrap();
    assert_eq!(
        (d[0]["channel"].as_str(), d[0]["status"].as_str()),
        (Some("voice"), Some("failed")),
        "{m}"
    );
    assert_eq!(
        d[0]["reason"]["code"], "call_busy",
        "the report's reason is on the delivery: {m}"
    );
    assert_eq!(
        (d[1]["channel"].as_str(), d[1]["status"].as_str()),
        (Some("sms"), Some("delivered")),
        "{m}"
    );

    // A second call to the same callee within the minute waits for its slot: Aliyun's flow
    // control is never hit.
    let id = rig.send(page("+8613800138000")).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_, m) = rig.herald.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(m["deliveries"][0]["attempts"], json!([]), "{m}");
    assert_eq!(
        rig.requests("aliyun_vms").await.len(),
        2,
        "no third call was placed"
    );
}

#[tokio::test]
async fn a_key_pressed_on_a_call_is_noted_on_its_delivery() {
    let rig = Rig::start(|c, sim| {
        c.providers = vec![vms(sim, true), voice(sim)];
        c.providers[1].priority = 2;
        c.templates = vec![page_template("TTS_D100")];
    })
    .await;
    // Aliyun: an IvrCall; the callee presses 4 (acknowledge).
    let mut body = page("+8613800130006");
    body["metadata"] = json!({"voice_keypress": true});
    let id = rig.send(body).await;
    let m = rig.settle(&id).await;
    assert_eq!(m["status"], "delivered", "{m}");
    let r = &rig.requests("aliyun_vms").await[0]["request"];
    assert_eq!(r["Action"], "IvrCall", "{r}");
    assert_eq!(
        (r["StartCode"].as_str(), r["MenuKeyMap.1.Key"].as_str()),
        (Some("TTS_D100"), Some("4"))
    );
    let m = rig
        .herald
        .wait_message(&id, |m| m["deliveries"][0]["reason"]["code"] == "keypress")
        .await;
    assert_eq!(m["deliveries"][0]["reason"]["detail"], "pressed 4");

    // Twilio: the TwiML gathers a key; the callee presses 1.
    let id = rig
        .send(json!({"to": {"phone": "+15005550006"}, "channels": ["voice"], "content": {"text": "P0: page"},
                     "metadata": {"voice_keypress": true}}))
        .await;
    let m = rig
        .herald
        .wait_message(&id, |m| {
            m["deliveries"][0]["reason"]["code"] == "keypress" && m["status"] == "delivered"
        })
        .await;
    assert_eq!(m["deliveries"][0]["provider"], "twilio-voice", "{m}");
    let twiml = rig.requests("twilio").await[0]["request"]["Twiml"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(twiml.contains("<Gather numDigits=\"1\""), "{twiml}");
    assert!(
        twiml.contains("/v1/receipts/twilio/twilio-voice/keypress"),
        "{twiml}"
    );

    // An answering machine is recorded on the delivery.
    let id = rig
        .send(json!({"to": {"phone": "+15005550005"}, "channels": ["voice"], "content": {"text": "P1"}}))
        .await;
    let m = rig
        .herald
        .wait_message(&id, |m| {
            m["deliveries"][0]["reason"]["code"] == "answered_by_machine"
        })
        .await;
    assert_eq!(
        m["deliveries"][0]["reason"]["detail"],
        "Twilio AnsweredBy=machine_start"
    );
}
