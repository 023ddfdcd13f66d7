use super::*;
use proptest::prelude::{Just, ProptestConfig, any, prop, prop_assert, prop_oneof, proptest};
use proptest::strategy::Strategy as PropStrategy;
use serde_json::json;

fn ctx_parts() -> (HashSet<Channel>, HostPolicy) {
    let chans = [Channel::Inbox, Channel::Webhook].into_iter().collect();
    (chans, HostPolicy::new(&["*".into(), "127.0.0.1".into()]))
}

fn run(body: Value) -> Result<NewMessage, Vec<FieldError>> {
    run_for(body, None)
}

fn run_for(
    body: Value,
    contact: Option<&crate::core::contact::Contact>,
) -> Result<NewMessage, Vec<FieldError>> {
    let (mut chans, hosts) = ctx_parts();
    if contact.is_some_and(|c| c.id != "no-sms") {
        chans.extend([Channel::Sms, Channel::Email]);
    }
    let templates = crate::templates::Templates::new(&[]).unwrap();
    let chat_targets = std::collections::HashMap::new();
    let ctx = Context {
        now: 1_800_000_000_000,
        channels_available: &chans,
        hosts: &hosts,
        sender: "test",
        templates: &templates,
        chat_targets: &chat_targets,
        degrade: &Default::default(),
        recipient_limits: &Default::default(),
        contact,
    };
    let req = decode(body).map_err(|e| vec![e])?;
    validate(req, &ctx, None)
}

fn fields(body: Value) -> Vec<String> {
    match run(body) {
        Ok(m) => panic!("accepted: {m:?}"),
        Err(e) => e.into_iter().map(|f| f.field).collect(),
    }
}

#[test]
fn a_good_inbox_message_is_accepted_with_defaults() {
    let m = run(json!({"to":{"user":"u-42"},"content":{"text":"hi"}})).unwrap();
    assert_eq!(m.priority, Priority::Normal);
    assert_eq!(m.strategy, Strategy::Failover);
    assert_eq!(m.deliveries.len(), 1);
    assert_eq!(m.deliveries[0].channel, Channel::Inbox);
    assert_eq!(m.expires_at - m.created_at, 86_400_000);
}

#[test]
fn channels_follow_the_addresses_when_absent() {
    let m =
        run(json!({"to":{"user":"u","webhook":"https://h.example.com/x"},"content":{"text":"hi"}}))
            .unwrap();
    let chans: Vec<Channel> = m.deliveries.iter().map(|d| d.channel).collect();
    assert_eq!(chans, vec![Channel::Webhook, Channel::Inbox]);
}

#[test]
fn every_kind_of_bad_field_is_named() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"content":{"text":"x"}}), "to"),
        (json!({"to":{},"content":{"text":"x"}}), "to"),
        (
            json!({"to":{"phone":"12345"},"channels":["inbox"],"content":{"text":"x"}}),
            "to.phone",
        ),
        (
            json!({"to":{"email":"not-an-email","user":"u"},"channels":["inbox"],"content":{"text":"x"}}),
            "to.email",
        ),
        (
            json!({"to":{"user":"u"},"channels":["fax"],"content":{"text":"x"}}),
            "channels[0]",
        ),
        (
            json!({"to":{"user":"u"},"channels":["sms"],"content":{"text":"x"}}),
            "channels[0]",
        ),
        (
            json!({"to":{"user":"u"},"channels":["inbox","inbox"],"content":{"text":"x"}}),
            "channels[1]",
        ),
        (
            json!({"to":{"user":"u"},"channels":["webhook"],"content":{"text":"x"}}),
            "to.webhook",
        ),
        (json!({"to":{"user":"u"},"template":"nope"}), "template"),
        (json!({"to":{"user":"u"}}), "content"),
        (
            json!({"to":{"user":"u"},"content":{"text":"x"},"priority":"urgent"}),
            "priority",
        ),
        (
            json!({"to":{"user":"u"},"content":{"text":"x"},"priority":5}),
            "priority",
        ),
        (
            json!({"to":{"user":"u"},"content":{"text":"x"},"strategy":"some"}),
            "strategy",
        ),
        (
            json!({"to":{"user":"u"},"content":{"text":"x"},"ttl":"10"}),
            "ttl",
        ),
        (
            json!({"to":{"user":"u"},"content":{"text":"x"},"ttl":"0s"}),
            "ttl",
        ),
        (
            json!({"to":{"user":"u"},"content":{"text":"x"},"ttl":"90d"}),
            "ttl",
        ),
        (
            json!({"to":{"user":"u"},"content":{"text":"x"},"expires_at":"yesterday"}),
            "expires_at",
        ),
        (
            json!({"to":{"user":"u"},"content":{"text":"x"},"expires_at":"2000-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"to":{"user":"u"},"content":{"text":"x"},"send_at":"2026-13-01T00:00:00Z"}),
            "send_at",
        ),
        (
            json!({"to":{"user":"u"},"content":{"text":"x"},"colour":"red"}),
            "colour",
        ),
        (
            json!({"to":{"user":"u","fax":"1"},"content":{"text":"x"}}),
            "to.fax",
        ),
        (
            json!({"to":{"user":"u"},"content":{"text":7}}),
            "content.text",
        ),
        (
            json!({"to":{"user":"u b"},"content":{"text":"x"}}),
            "to.user",
        ),
        (
            json!({"to":{"webhook":"ftp://h.example.com/"},"content":{"text":"x"}}),
            "to.webhook",
        ),
        (
            json!({"to":{"webhook":"http://169.254.169.254/latest"},"content":{"text":"x"}}),
            "to.webhook",
        ),
        (
            json!({"to":{"webhook":"http://10.0.0.1/"},"content":{"text":"x"}}),
            "to.webhook",
        ),
        (
            json!({"to":{"webhook":"http://localhost/"},"content":{"text":"x"}}),
            "to.webhook",
        ),
        (
            json!({"to":{"webhook":"http://u:p@h.example.com/"},"content":{"text":"x"}}),
            "to.webhook",
        ),
        (
            json!({"to":{"webhook":"not a url"},"content":{"text":"x"}}),
            "to.webhook",
        ),
        (
            json!({"to":{"user":"u"},"content":{"subject":"a\nb"}}),
            "content.subject",
        ),
        (
            json!({"to":{"user":"u"},"content":{"text":"x"},"params":{"a":1}}),
            "params",
        ),
        (json!([1, 2, 3]), "body"),
        (json!("text"), "body"),
    ];
    for (body, field) in cases {
        let f = fields(body.clone());
        assert!(
            f.iter().any(|x| x == field),
            "{body} -> {f:?}, wanted {field}"
        );
    }
}

#[test]
fn phone_numbers_are_e164() {
    for ok in ["+8613800138000", "+14155550100", "+4915112345678"] {
        assert!(valid_phone(ok).is_ok(), "{ok}");
    }
    for bad in [
        "8613800138000",
        "+0123456789",
        "+1",
        "+1415555010012345",
        "+1 415 555",
        "+１２３４５６７８",
    ] {
        assert!(valid_phone(bad).is_err(), "{bad}");
    }
}

#[test]
fn emails_are_checked() {
    for ok in [
        "ops@example.com",
        "a.b+tag@sub.example.co",
        "用户@例子.公司",
    ] {
        assert!(valid_email(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "a",
        "a@",
        "@b.com",
        "a@b",
        "a b@c.com",
        "a@b..com",
        "a@-b.com",
        ".a@b.com",
        "a@b.com\n",
    ] {
        assert!(valid_email(bad).is_err(), "{bad:?}");
    }
}

fn arb_json() -> impl PropStrategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("sms"),
            Just("inbox"),
            Just("webhook"),
            Just("+8613800138000"),
            Just("u-1"),
            Just("http://127.0.0.1:1/x"),
            Just("10m"),
            Just("2026-11-23T08:00:00Z"),
            Just("critical"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let keys = prop_oneof![
            Just("to".to_string()),
            Just("phone".to_string()),
            Just("user".to_string()),
            Just("webhook".to_string()),
            Just("channels".to_string()),
            Just("content".to_string()),
            Just("text".to_string()),
            Just("subject".to_string()),
            Just("ttl".to_string()),
            Just("priority".to_string()),
            Just("metadata".to_string()),
            Just("push".to_string()),
            Just("send_at".to_string()),
            Just("expires_at".to_string()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever arrives, the validator answers: accepted, or errors that each name a field.
    #[test]
    fn validator_never_panics_and_always_names_a_field(body in arb_json()) {
        match run(body) {
            Ok(m) => {
                prop_assert!(!m.deliveries.is_empty());
                prop_assert!(m.expires_at > m.send_at);
            }
            Err(errs) => {
                prop_assert!(!errs.is_empty());
                for e in errs {
                    prop_assert!(!e.field.is_empty());
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }
}

/// A contact's addresses fill what the request left out; channels chosen only for them are
/// left out where no provider or the content does not suit; explicit addresses win.
#[test]
fn a_contact_fills_addresses_and_its_channels_bend_to_the_content() {
    let contact: crate::core::contact::Contact = serde_json::from_value(json!({
        "id": "u-9", "phones": ["+8613800138000"], "emails": ["nine@example.com"],
        "preferences": {"opt_out": {"channels": ["email"]}}
    }))
    .unwrap();
    let chans = |m: &NewMessage| -> Vec<(Channel, String, bool)> {
        m.deliveries
            .iter()
            .map(|d| (d.channel, d.to.clone(), d.skip.is_some()))
            .collect()
    };
    let m = run_for(
        json!({"to": {"user": "u-9"}, "content": {"subject": "s", "text": "t"}}),
        Some(&contact),
    )
    .unwrap();
    assert_eq!(
        chans(&m),
        vec![
            (Channel::Sms, "+8613800138000".into(), false),
            (Channel::Email, "nine@example.com".into(), true),
            (Channel::Inbox, "u-9".into(), false),
        ]
    );
    // Without a subject the email is left out rather than refused.
    let m = run_for(
        json!({"to": {"user": "u-9"}, "content": {"text": "t"}}),
        Some(&contact),
    )
    .unwrap();
    assert_eq!(chans(&m).len(), 2);
    // An explicit address wins over the contact's, and is not the contact's (no opt-out).
    let m = run_for(
        json!({"to": {"user": "u-9", "email": "else@example.com"}, "channels": ["email"],
               "content": {"subject": "s", "text": "t"}}),
        Some(&contact),
    )
    .unwrap();
    assert_eq!(
        chans(&m),
        vec![(Channel::Email, "else@example.com".into(), false)]
    );
    // No provider for the contact's channels: only the inbox, no error.
    let mut bare = contact.clone();
    bare.id = "no-sms".into();
    let m = run_for(
        json!({"to": {"user": "no-sms"}, "content": {"subject": "s", "text": "t"}}),
        Some(&bare),
    )
    .unwrap();
    assert_eq!(chans(&m), vec![(Channel::Inbox, "no-sms".into(), false)]);
}

/// Quiet hours move `send_at`; an explicit `expires_at` is checked against the time asked for
/// (not refused because the quiet hours outlast it): the message then expires unsent.
#[test]
fn quiet_hours_do_not_refuse_an_explicit_expiry() {
    // ctx.now is 2027-01-15T08:00:00Z.
    let contact: crate::core::contact::Contact = serde_json::from_value(json!({
        "id": "q-1", "preferences": {"quiet_hours": {"start": "07:00", "end": "09:00"}}
    }))
    .unwrap();
    let m = run_for(
        json!({"to": {"user": "q-1"}, "content": {"text": "t"}, "expires_at": "2027-01-15T08:10:00Z"}),
        Some(&contact),
    )
    .unwrap();
    assert_eq!(m.send_at, 1_800_003_600_000, "held until 09:00");
    assert_eq!(m.expires_at, 1_800_000_600_000, "the sender's expiry stays");
    let m = run_for(
        json!({"to": {"user": "q-1"}, "content": {"text": "t"}, "ttl": "10m"}),
        Some(&contact),
    )
    .unwrap();
    assert_eq!(
        m.expires_at - m.send_at,
        600_000,
        "a ttl counts from the release"
    );
}
