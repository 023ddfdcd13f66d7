//! Conformance, contacts: created once, edited only from the version read, listed by id with
//! a cursor, deleted, every change audited by field (never by value); deliveries accepted as
//! skipped keep their note.

use super::*;
use herald::core::contact::Contact;
use herald::core::message::SkipNote;
use herald::core::types::DeliveryStatus;
use herald::store::Expect;

fn contact(id: &str) -> Contact {
    serde_json::from_value(serde_json::json!({
        "id": id, "name": "Li Wei", "time_zone": "Asia/Shanghai",
        "phones": ["+8613800138000"], "emails": ["li@example.com"],
    }))
    .unwrap()
}

pub async fn contacts_are_written_by_version_and_audited_by_field(s: Arc<dyn Store>) {
    let now = now_millis();
    let first = s
        .put_contact(contact("u-1"), Expect::Absent, "ops", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.version, first.created_at, first.updated_at),
        (1, now, now)
    );
    assert!(
        s.put_contact(contact("u-1"), Expect::Absent, "ops", now)
            .await
            .unwrap()
            .is_none(),
        "a second create of the same id is refused"
    );
    let mut edited = contact("u-1");
    edited.phones.push("+8613900139000".into());
    let second = s
        .put_contact(edited.clone(), Expect::Version(1), "ops", now + 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.version, second.created_at, second.updated_at),
        (2, now, now + 5)
    );
    assert!(
        s.put_contact(contact("u-1"), Expect::Version(1), "ops", now + 6)
            .await
            .unwrap()
            .is_none(),
        "an edit of a version that is no longer current is refused"
    );
    assert!(
        s.put_contact(contact("u-2"), Expect::Version(1), "ops", now)
            .await
            .unwrap()
            .is_none(),
        "an edit of a contact that does not exist is refused"
    );
    let got = s.get_contact("u-1").await.unwrap().unwrap();
    assert_eq!(got.contact, edited);
    assert_eq!(got.version, 2);
    // Any: replaces (or creates).
    let third = s
        .put_contact(contact("u-1"), Expect::Any, "ops", now + 7)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.version, 3);
    let made = s
        .put_contact(contact("u-3"), Expect::Any, "ops", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(made.version, 1);

    let audit = s.audit_list(10, None).await.unwrap();
    let mine: Vec<(String, String, String)> = audit
        .iter()
        .filter(|e| e.action.starts_with("contact."))
        .map(|e| (e.action.clone(), e.target.clone(), e.actor.clone()))
        .collect();
    assert_eq!(
        mine,
        vec![
            ("contact.create".into(), "u-3".into(), "ops".into()),
            ("contact.update".into(), "u-1".into(), "ops".into()),
            ("contact.update".into(), "u-1".into(), "ops".into()),
            ("contact.create".into(), "u-1".into(), "ops".into()),
        ]
    );
    let update = audit.iter().find(|e| e.action == "contact.update").unwrap();
    let text = serde_json::to_string(&update.after).unwrap();
    assert!(text.contains("\"phones\""), "{text}");
    assert!(
        !text.contains("+86139"),
        "the audit log names fields, not their values: {text}"
    );
}

pub async fn contacts_list_by_id_with_a_cursor_and_delete(s: Arc<dyn Store>) {
    for id in ["c", "a", "b", "B", "a.1"] {
        s.put_contact(contact(id), Expect::Absent, "ops", now_millis())
            .await
            .unwrap()
            .unwrap();
    }
    let ids = |v: Vec<herald::store::ContactRecord>| -> Vec<String> {
        v.into_iter().map(|r| r.contact.id).collect()
    };
    // Byte order on both backends.
    assert_eq!(
        ids(s.list_contacts(None, 3).await.unwrap()),
        vec!["B", "a", "a.1"]
    );
    assert_eq!(
        ids(s.list_contacts(Some("a.1".into()), 3).await.unwrap()),
        vec!["b", "c"]
    );
    assert!(s.delete_contact("b", "ops", now_millis()).await.unwrap());
    assert!(!s.delete_contact("b", "ops", now_millis()).await.unwrap());
    assert!(s.get_contact("b").await.unwrap().is_none());
    assert_eq!(ids(s.list_contacts(None, 10).await.unwrap()).len(), 4);
    let audit = s.audit_list(1, None).await.unwrap();
    assert_eq!(
        (audit[0].action.as_str(), audit[0].target.as_str()),
        ("contact.delete", "b")
    );
}

/// A delivery accepted as skipped (an opt-out) is stored `skipped` with its note, and the
/// failover starts at the next one.
pub async fn skipped_deliveries_keep_their_note(s: Arc<dyn Store>) {
    let mut m = message(
        Priority::Normal,
        &[Channel::Email, Channel::Inbox],
        Strategy::Failover,
    );
    m.deliveries[0].skip = Some(SkipNote {
        code: "opted_out_channel".into(),
        detail: "contact `u` opted out of channel `email`".into(),
    });
    let id = m.id.clone();
    let replies = s.accept(vec![m]).await.unwrap();
    let Accepted::New(reply) = &replies[0] else {
        panic!("{replies:?}")
    };
    let statuses: Vec<&str> = reply.deliveries.iter().map(|d| d.status.as_str()).collect();
    assert_eq!(statuses, vec!["skipped", "queued"]);
    let v = s.get_message(&id).await.unwrap().unwrap();
    assert_eq!(v.deliveries[0].status, DeliveryStatus::Skipped);
    let reason = v.deliveries[0].reason.as_ref().unwrap();
    assert_eq!(reason.code, "opted_out_channel");
    assert!(reason.detail.contains("email"));
    assert_eq!(v.deliveries[1].status, DeliveryStatus::Queued);
    assert!(v.deliveries[1].reason.is_none());
    let claimed = s.claim(claim("n1", 10, now_millis() + 1)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].channel, Channel::Inbox);
}

/// A message whose every delivery is skipped is over at once (`cancelled`), not queued forever.
pub async fn a_message_with_every_delivery_skipped_is_cancelled(s: Arc<dyn Store>) {
    let mut m = message(
        Priority::Normal,
        &[Channel::Email, Channel::Inbox],
        Strategy::Failover,
    );
    for d in &mut m.deliveries {
        d.skip = Some(SkipNote {
            code: "opted_out_category".into(),
            detail: "declined".into(),
        });
    }
    let id = m.id.clone();
    let replies = s
        .accept(vec![
            m.clone(),
            message(Priority::Low, &[Channel::Inbox], Strategy::All),
        ])
        .await
        .unwrap();
    let Accepted::New(reply) = &replies[0] else {
        panic!("{replies:?}")
    };
    assert_eq!(reply.status, "cancelled");
    let v = s.get_message(&id).await.unwrap().unwrap();
    assert_eq!(v.status, herald::core::types::MessageStatus::Cancelled);
    assert!(v.deliveries.iter().all(|d| d.reason.is_some()));
    let claimed = s.claim(claim("n1", 10, now_millis() + 1)).await.unwrap();
    assert_eq!(
        claimed.len(),
        1,
        "only the other message's delivery is claimable"
    );
}

conformance!(
    a_message_with_every_delivery_skipped_is_cancelled,
    contacts_are_written_by_version_and_audited_by_field,
    contacts_list_by_id_with_a_cursor_and_delete,
    skipped_deliveries_keep_their_note,
);
