//! Conformance, on-call documents: schedules and escalation policies are kept apart by kind,
//! created once, edited only from the version read, listed by id with a cursor, deleted,
//! and every change audited with the fields it changed.

use super::*;
use herald::store::{DocKind, Expect};
use serde_json::json;

pub async fn documents_are_written_by_version_and_audited(s: Arc<dyn Store>) {
    let now = now_millis();
    let body = json!({"name": "Primary", "time_zone": "UTC", "layers": []});
    let first = s
        .put_doc(
            DocKind::Schedule,
            "sch-1",
            body.clone(),
            Expect::Absent,
            "ops",
            now,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.version, first.created_at, first.updated_at),
        (1, now, now)
    );
    assert!(
        s.put_doc(
            DocKind::Schedule,
            "sch-1",
            body.clone(),
            Expect::Absent,
            "ops",
            now
        )
        .await
        .unwrap()
        .is_none(),
        "a second create is refused"
    );
    // The same id as a policy is another document.
    assert!(
        s.put_doc(
            DocKind::Policy,
            "sch-1",
            json!({"steps": []}),
            Expect::Absent,
            "ops",
            now
        )
        .await
        .unwrap()
        .is_some()
    );
    let edited = json!({"name": "Primary", "time_zone": "Europe/Berlin", "layers": [1]});
    let second = s
        .put_doc(
            DocKind::Schedule,
            "sch-1",
            edited.clone(),
            Expect::Version(1),
            "eve",
            now + 5,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.version, second.created_at, second.updated_at),
        (2, now, now + 5)
    );
    assert!(
        s.put_doc(
            DocKind::Schedule,
            "sch-1",
            body.clone(),
            Expect::Version(1),
            "ops",
            now + 9
        )
        .await
        .unwrap()
        .is_none(),
        "an edit of an old version is refused"
    );
    let got = s
        .get_doc(DocKind::Schedule, "sch-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.body, got.version), (edited, 2));
    assert_eq!(
        s.get_doc(DocKind::Policy, "sch-1")
            .await
            .unwrap()
            .unwrap()
            .body,
        json!({"steps": []})
    );
    let audit = s.audit_list(10, None).await.unwrap();
    let mine: Vec<(&str, &str, Option<&serde_json::Value>)> = audit
        .iter()
        .filter(|e| e.target == "sch-1")
        .map(|e| (e.action.as_str(), e.actor.as_str(), e.after.as_ref()))
        .collect();
    assert_eq!(mine.len(), 3, "{mine:?}");
    assert_eq!(mine[0].0, "schedule.update", "newest first: {mine:?}");
    assert_eq!(mine[0].1, "eve");
    assert_eq!(
        mine[0].2,
        Some(&json!({"changed": ["layers", "time_zone"], "version": 2}))
    );
    assert_eq!(mine[1].0, "escalation_policy.create");
    assert_eq!(mine[2].0, "schedule.create");
}

pub async fn documents_list_by_id_with_a_cursor_and_delete(s: Arc<dyn Store>) {
    let now = now_millis();
    for id in ["c", "a", "b", "B"] {
        s.put_doc(
            DocKind::Policy,
            id,
            json!({"n": id}),
            Expect::Any,
            "ops",
            now,
        )
        .await
        .unwrap()
        .unwrap();
    }
    s.put_doc(DocKind::Schedule, "x", json!({}), Expect::Any, "ops", now)
        .await
        .unwrap();
    let ids = |v: Vec<herald::store::DocRecord>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list_docs(DocKind::Policy, None, 10).await.unwrap()),
        ["B", "a", "b", "c"],
        "by id, byte order, one kind only"
    );
    assert_eq!(
        ids(s
            .list_docs(DocKind::Policy, Some("a".into()), 2)
            .await
            .unwrap()),
        ["b", "c"]
    );
    assert!(
        s.delete_doc(DocKind::Policy, "b", "ops", now)
            .await
            .unwrap()
    );
    assert!(
        !s.delete_doc(DocKind::Policy, "b", "ops", now)
            .await
            .unwrap()
    );
    assert!(
        !s.delete_doc(DocKind::Policy, "x", "ops", now)
            .await
            .unwrap(),
        "a schedule is not deleted as a policy"
    );
    assert!(s.get_doc(DocKind::Policy, "b").await.unwrap().is_none());
    let last = &s.audit_list(1, None).await.unwrap()[0];
    assert_eq!(
        (last.action.as_str(), last.target.as_str()),
        ("escalation_policy.delete", "b")
    );
}

conformance!(
    documents_are_written_by_version_and_audited,
    documents_list_by_id_with_a_cursor_and_delete,
);
