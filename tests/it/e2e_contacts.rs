//! Contacts through the API: create, read, list, merge-patch, replace, delete, by role and
//! audited; a message to `to.user` takes the contact's addresses at accept time (email over a
//! real SMTP server, then the inbox); opt-outs skip with a reason; quiet hours hold a normal
//! message and not a critical one.

use crate::utils::rig::provider;
use crate::utils::smtp::{SmtpServer, mails, start_smtp};
use crate::utils::{ADMIN, TestHerald};
use herald::config::{ApiKeyConfig, ProviderKind, Secret};
use herald::core::types::{Channel, Role};
use reqwest::Method;
use serde_json::{Value, json};

const SENDER: &str = "contacts-sender-key-0123456789";
const VIEWER: &str = "contacts-viewer-key-0123456789";

async fn herald(smtp: &SmtpServer) -> TestHerald {
    let port = smtp.port;
    TestHerald::start_with(move |c| {
        let mut p = provider(
            "smtp-main",
            Channel::Email,
            ProviderKind::Smtp,
            1,
            "",
            &[],
            &[
                ("host", "127.0.0.1"),
                ("tls", "none"),
                ("from", "herald@herald.example"),
            ],
        );
        p.options
            .insert("port".into(), toml::Value::Integer(port as i64));
        c.providers = vec![p];
        for (name, key, role) in [
            ("app", SENDER, Role::Sender),
            ("dash", VIEWER, Role::Viewer),
        ] {
            c.api_keys.push(ApiKeyConfig {
                approver: false,
                name: name.into(),
                key: Secret::new(key),
                role,
                rate_limit: None,
            });
        }
    })
    .await
}

fn fields(r: &Value) -> Vec<String> {
    r["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn contacts_are_managed_by_role_validated_by_field_and_audited() {
    let smtp = start_smtp(false);
    let h = herald(&smtp).await;
    let li = json!({"id": "u-42", "name": "Li Wei", "locale": "zh-CN",
                    "time_zone": "Asia/Shanghai", "emails": ["li@example.com"]});
    let (code, r) = h
        .call_as(SENDER, Method::POST, "/v1/contacts", Some(li.clone()))
        .await;
    assert_eq!(code, 403, "a sender may not write contacts: {r}");
    let (code, r) = h.call(Method::POST, "/v1/contacts", Some(li.clone())).await;
    assert_eq!(code, 201, "{r}");
    assert_eq!(
        (r["id"].as_str(), r["version"].as_i64()),
        (Some("u-42"), Some(1))
    );
    assert!(r["created_at"].as_str().unwrap().ends_with('Z'));
    let (code, r) = h.call(Method::POST, "/v1/contacts", Some(li.clone())).await;
    assert_eq!((code, r["code"].as_str()), (409, Some("contact_exists")));

    // Every bad field is named.
    let bad = json!({"id": "u 1", "time_zone": "Mars/Base", "phones": ["123"],
                     "push": {"webpush": [{"endpoint": "https://p.example/x",
                                           "keys": {"p256dh": "AAAA", "auth": "AAAA"}}]},
                     "preferences": {"quiet_hours": {"start": "22:00", "end": "22:00"}}});
    let (code, r) = h.call(Method::POST, "/v1/contacts", Some(bad)).await;
    assert_eq!(code, 422, "{r}");
    assert_eq!(
        fields(&r),
        vec![
            "id",
            "time_zone",
            "phones[0]",
            "push.webpush[0].keys.p256dh",
            "push.webpush[0].keys.auth",
            "preferences.quiet_hours.end"
        ]
    );
    let (code, r) = h
        .call(
            Method::POST,
            "/v1/contacts",
            Some(json!({"id": "u-1", "nickname": "x"})),
        )
        .await;
    assert_eq!(code, 422, "unknown fields are refused: {r}");
    let (code, r) = h
        .call(
            Method::POST,
            "/v1/contacts",
            Some(json!({"id": "u-1", "phones": "+8613800138000"})),
        )
        .await;
    assert_eq!((code, fields(&r)), (422, vec!["phones".to_string()]), "{r}");

    // Readers: sender yes, viewer no.
    let (code, r) = h
        .call_as(SENDER, Method::GET, "/v1/contacts/u-42", None)
        .await;
    assert_eq!((code, r["name"].as_str()), (200, Some("Li Wei")));
    let (code, _) = h
        .call_as(VIEWER, Method::GET, "/v1/contacts/u-42", None)
        .await;
    assert_eq!(code, 403);
    let (code, _) = h.get("/v1/contacts/nobody").await;
    assert_eq!(code, 404);

    // Merge patch: null removes, objects merge, the id cannot change.
    let (code, r) = h
        .call(
            Method::PATCH,
            "/v1/contacts/u-42",
            Some(json!({"locale": null, "preferences": {"opt_out": {"channels": ["email"]}}})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["version"], 2);
    assert!(r.get("locale").is_none(), "{r}");
    assert_eq!(r["preferences"]["opt_out"]["channels"], json!(["email"]));
    assert_eq!(r["name"], "Li Wei");
    let (code, r) = h
        .call(
            Method::PATCH,
            "/v1/contacts/u-42",
            Some(json!({"id": "u-43"})),
        )
        .await;
    assert_eq!((code, fields(&r)), (422, vec!["id".to_string()]), "{r}");
    let (code, r) = h
        .call(
            Method::PATCH,
            "/v1/contacts/u-42",
            Some(json!({"emails": ["not-an-email"]})),
        )
        .await;
    assert_eq!(
        (code, fields(&r)),
        (422, vec!["emails[0]".to_string()]),
        "{r}"
    );
    let (code, _) = h
        .call(
            Method::PATCH,
            "/v1/contacts/nobody",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(code, 404);

    // PUT replaces whole (201 when new), and what a read returns may be sent back.
    let (_, now) = h.get("/v1/contacts/u-42").await;
    let (code, r) = h.call(Method::PUT, "/v1/contacts/u-42", Some(now)).await;
    assert_eq!((code, r["version"].as_i64()), (200, Some(3)), "{r}");
    let (code, _) = h
        .call(
            Method::PUT,
            "/v1/contacts/u-7",
            Some(json!({"name": "Seven"})),
        )
        .await;
    assert_eq!(code, 201);

    // A browser's subscription, registered by the app's backend (a sender key).
    let p256dh = format!("B{}", "A".repeat(86)); // 65 bytes, first 0x04
    let sub = json!({"endpoint": "https://push.example/s/1", "expirationTime": null,
                     "keys": {"p256dh": p256dh, "auth": "AAAAAAAAAAAAAAAAAAAAAA"}});
    let (code, r) = h
        .call_as(
            SENDER,
            Method::POST,
            "/v1/contacts/u-7/push-subscriptions",
            Some(sub.clone()),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    assert_eq!(
        r["push"]["webpush"][0]["endpoint"],
        "https://push.example/s/1"
    );
    // The same endpoint again replaces it rather than adding a second.
    let (_, r) = h
        .call_as(
            SENDER,
            Method::POST,
            "/v1/contacts/u-7/push-subscriptions",
            Some(sub),
        )
        .await;
    assert_eq!(r["push"]["webpush"].as_array().unwrap().len(), 1);
    let (code, r) = h
        .call_as(
            SENDER,
            Method::POST,
            "/v1/contacts/u-7/push-subscriptions",
            Some(json!({"endpoint": "https://push.example/s/2", "keys": {"p256dh": "x", "auth": "y"}})),
        )
        .await;
    assert_eq!(
        (code, fields(&r)),
        (
            422,
            vec!["keys.p256dh".to_string(), "keys.auth".to_string()]
        )
    );

    // Listing with a cursor.
    let (_, page) = h.get("/v1/contacts?limit=1").await;
    assert_eq!(page["data"][0]["id"], "u-42");
    assert_eq!(page["next_after"], "u-42");
    let (_, page) = h.get("/v1/contacts?limit=1&after=u-42").await;
    assert_eq!(page["data"][0]["id"], "u-7");
    let (code, _) = h.get("/v1/contacts?limit=0").await;
    assert_eq!(code, 422);

    let (code, _) = h.call(Method::DELETE, "/v1/contacts/u-7", None).await;
    assert_eq!(code, 204);
    let (code, _) = h.call(Method::DELETE, "/v1/contacts/u-7", None).await;
    assert_eq!(code, 404);

    let (_, audit) = h.get("/v1/audit?limit=50").await;
    let actions: Vec<(String, String)> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("contact."))
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["target"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(actions.len(), 7, "{actions:?}");
    assert_eq!(
        actions[0],
        ("contact.delete".to_string(), "u-7".to_string())
    );
    assert!(
        !audit.to_string().contains("li@example.com"),
        "values stay out of the audit log"
    );
    let _ = ADMIN;
    h.stop().await;
}

#[tokio::test]
async fn a_message_to_a_contact_takes_its_addresses_at_accept_and_its_preferences() {
    let smtp = start_smtp(false);
    let h = herald(&smtp).await;
    let (code, r) = h
        .call(
            Method::POST,
            "/v1/contacts",
            Some(json!({"id": "u-1", "emails": ["first@example.com"],
                         "preferences": {"opt_out": {"categories": ["marketing"]}}})),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    // Default channels: the contact's email (a provider exists), then the inbox.
    let (code, r) = h
        .send(json!({"to": {"user": "u-1"}, "content": {"subject": "Hi", "text": "hello"}}))
        .await;
    assert_eq!(code, 202, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let chans: Vec<&str> = r["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["channel"].as_str().unwrap())
        .collect();
    assert_eq!(chans, vec!["email", "inbox"]);
    // An edit after the accept does not change the accepted message.
    let (code, _) = h
        .call(
            Method::PATCH,
            "/v1/contacts/u-1",
            Some(json!({"emails": ["second@example.com"]})),
        )
        .await;
    assert_eq!(code, 200);
    let m = h.wait_status(&id, "sent").await;
    assert_eq!(m["deliveries"][0]["to"], "first@example.com");
    assert_eq!(m["deliveries"][0]["status"], "sent");
    assert_eq!(
        m["deliveries"][1]["status"], "skipped",
        "failover: the email was enough"
    );
    let got = mails(&smtp.out);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].to_string().contains("first@example.com"),
        "{}",
        got[0]
    );

    // A category the contact declined: every delivery skipped, with its reason.
    let (code, r) = h
        .send(
            json!({"to": {"user": "u-1"}, "content": {"subject": "Sale", "text": "50% off"},
                     "metadata": {"category": "marketing"}}),
        )
        .await;
    assert_eq!(code, 202, "{r}");
    let statuses: Vec<&str> = r["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["skipped", "skipped"]);
    let (_, m) = h
        .get(&format!("/v1/messages/{}", r["id"].as_str().unwrap()))
        .await;
    assert_eq!(m["status"], "cancelled");
    assert_eq!(m["deliveries"][0]["reason"]["code"], "opted_out_category");
    let (code, r) = h
        .send(json!({"to": {"user": "u-1"}, "content": {"subject": "x", "text": "x"}, "metadata": {"category": 7}}))
        .await;
    assert_eq!(
        (code, fields(&r)),
        (422, vec!["metadata.category".to_string()]),
        "{r}"
    );

    // A channel opt-out: the email is skipped with its reason and the inbox carries it;
    // a critical message passes the channel opt-out.
    let (code, _) = h
        .call(
            Method::PATCH,
            "/v1/contacts/u-1",
            Some(json!({"preferences": {"opt_out": {"channels": ["email"]}}})),
        )
        .await;
    assert_eq!(code, 200);
    let (_, r) = h
        .send(json!({"to": {"user": "u-1"}, "content": {"subject": "Hi", "text": "again"}}))
        .await;
    let m = h.wait_status(r["id"].as_str().unwrap(), "sent").await;
    assert_eq!(m["deliveries"][0]["status"], "skipped");
    assert_eq!(m["deliveries"][0]["reason"]["code"], "opted_out_channel");
    assert!(
        m["deliveries"][0]["attempts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(m["deliveries"][1]["channel"], "inbox");
    assert_eq!(m["deliveries"][1]["status"], "sent");
    let (_, r) = h
        .send(json!({"to": {"user": "u-1"}, "priority": "critical",
                     "content": {"subject": "Down", "text": "db01 is down"}}))
        .await;
    let m = h.wait_status(r["id"].as_str().unwrap(), "sent").await;
    assert_eq!(
        m["deliveries"][0]["status"], "sent",
        "critical passes a channel opt-out"
    );
    assert_eq!(mails(&smtp.out).len(), 2);
    // Text alone does not suit an email: the contact's email is left out, the inbox kept.
    let (code, r) = h
        .send(json!({"to": {"user": "u-1"}, "content": {"text": "short"}}))
        .await;
    assert_eq!(code, 202, "{r}");
    assert_eq!(
        r["deliveries"],
        json!([{"channel": "inbox", "status": "queued"}])
    );
    // Named explicitly, the email must have its subject.
    let (code, _) = h
        .send(json!({"to": {"user": "u-1"}, "channels": ["email"], "content": {"text": "short"}}))
        .await;
    assert_eq!(code, 422);
    // A user with no contact stays an inbox address, as before.
    let (_, r) = h
        .send(json!({"to": {"user": "u-none"}, "content": {"text": "x"}}))
        .await;
    assert_eq!(
        r["deliveries"],
        json!([{"channel": "inbox", "status": "queued"}])
    );
    h.stop().await;
}

/// Quiet hours around the present instant in the contact's own zone: a normal message waits
/// for their end (`send_at` moved there, its TTL counted from it), a critical one goes now.
#[tokio::test]
async fn quiet_hours_hold_a_normal_message_until_they_end_and_never_a_critical_one() {
    let smtp = start_smtp(false);
    let h = herald(&smtp).await;
    let zone = "Europe/Berlin";
    let tz = jiff::tz::TimeZone::get(zone).unwrap();
    let now = jiff::Timestamp::now().to_zoned(tz);
    // A window from an hour ago to two hours ahead, local time.
    let hhmm = |z: &jiff::Zoned| format!("{:02}:{:02}", z.hour(), z.minute());
    let start = now
        .checked_sub(jiff::SignedDuration::from_hours(1))
        .unwrap();
    let end = now
        .checked_add(jiff::SignedDuration::from_hours(2))
        .unwrap();
    let (code, r) = h
        .call(
            Method::POST,
            "/v1/contacts",
            Some(json!({"id": "night-owl", "time_zone": zone, "emails": ["owl@example.com"],
                         "preferences": {"quiet_hours": {"start": hhmm(&start), "end": hhmm(&end)}}})),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    let (code, r) = h
        .send(json!({"to": {"user": "night-owl"}, "ttl": "10m", "content": {"subject": "FYI", "text": "later"}}))
        .await;
    assert_eq!(code, 202, "{r}");
    let (_, m) = h
        .get(&format!("/v1/messages/{}", r["id"].as_str().unwrap()))
        .await;
    let send_at: jiff::Timestamp = m["send_at"].as_str().unwrap().parse().unwrap();
    let expires: jiff::Timestamp = m["expires_at"].as_str().unwrap().parse().unwrap();
    let wait = send_at.duration_since(jiff::Timestamp::now()).as_secs();
    assert!(
        (6_000..=7_300).contains(&wait),
        "held until the end of quiet hours: {wait} s ({m})"
    );
    assert_eq!(
        expires.duration_since(send_at).as_secs(),
        600,
        "the TTL counts from then"
    );
    assert_eq!(m["status"], "queued");
    let (_, r) = h
        .send(json!({"to": {"user": "night-owl"}, "priority": "critical",
                     "content": {"subject": "Down", "text": "now"}}))
        .await;
    let m = h.wait_status(r["id"].as_str().unwrap(), "sent").await;
    assert_eq!(m["deliveries"][0]["channel"], "email");
    assert_eq!(mails(&smtp.out).len(), 1, "only the critical one went");
    h.stop().await;
}
