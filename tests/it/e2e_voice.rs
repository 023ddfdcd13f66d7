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
