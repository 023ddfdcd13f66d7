//! Conformance, retention: only what is old and finished is deleted.

use super::*;

/// Retention deletes finished messages (with their deliveries, attempts and dead letters),
/// old audit entries and old receipts in bounded batches, and nothing that is still pending
/// or recent.
pub async fn retention_deletes_only_what_is_old_and_finished(s: Arc<dyn Store>) {
    let day = 86_400_000i64;
    let old = now_millis() - 40 * day;
    let msgs: Vec<NewMessage> = (0..3)
        .map(|_| message(Priority::Normal, &[Channel::Inbox], Strategy::Failover))
        .collect();
    let ids: Vec<String> = msgs.iter().map(|m| m.id.clone()).collect();
    let pending = message(Priority::Normal, &[Channel::Webhook], Strategy::Failover);
    let pending_id = pending.id.clone();
    s.accept(msgs).await.unwrap();
    let claimed = s.claim(claim("a", 10, now_millis() + 1)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    s.accept(vec![pending]).await.unwrap();
    // Two finish long ago (one sent, one dead-lettered); one finishes now.
    for c in &claimed {
        let i = ids.iter().position(|id| *id == c.message_id).unwrap();
        let at = if i < 2 { old } else { now_millis() };
        let (outcome, step, error) = if i == 1 {
            (
                "error",
                Step::Failed(FailReason::Rejected),
                Some(AttemptError {
                    class: herald::core::types::ErrorClass::Rejected,
                    code: "x".into(),
                    detail: "x".into(),
                }),
            )
        } else {
            ("sent", Step::Sent, None)
        };
        let done = Completion {
            lease: c.lease.clone(),
            attempt: Some(attempt(1, outcome, error)),
            step,
            now: at,
        };
        assert_eq!(s.complete(vec![done]).await.unwrap(), vec![true]);
    }
    for at in [old, now_millis()] {
        s.audit(herald::store::AuditEntry {
            id: 0,
            at,
            actor: "op".into(),
            action: "mode.set".into(),
            target: "mode".into(),
            before: None,
            after: None,
            reason: None,
        })
        .await
        .unwrap();
        let _ = s
            .apply_receipt(herald::store::ReceiptReport {
                provider: "p".into(),
                delivery_id: None,
                provider_message_id: Some(format!("unknown-{at}")),
                dedupe_key: format!("k-{at}"),
                delivered: true,
                error: None,
                at,
            })
            .await
            .unwrap();
    }
    let cfg = herald::config::RetentionConfig {
        audit: herald::config::Dur::secs(30 * 86_400),
        batch: 1,
        ..Default::default()
    };
    // Batches of one: a run repeats passes until done.
    let purged = herald::worker::retention::run_once(s.as_ref(), &cfg)
        .await
        .unwrap();
    assert_eq!(purged.messages, 2, "{purged:?}");
    assert_eq!(purged.audit, 1, "{purged:?}");
    assert_eq!(
        purged.receipts, 0,
        "reports of unknown deliveries leave no rows: {purged:?}"
    );
    assert!(s.get_message(&ids[0]).await.unwrap().is_none());
    assert!(s.get_message(&ids[1]).await.unwrap().is_none());
    assert!(s.get_message(&ids[2]).await.unwrap().is_some(), "recent");
    assert!(
        s.get_message(&pending_id).await.unwrap().is_some(),
        "pending"
    );
    let dl = s
        .dead_letters(ListFilter {
            status: None,
            channel: None,
            limit: 10,
            after: None,
        })
        .await
        .unwrap();
    assert!(
        dl.iter().all(|d| d.message_id != ids[1]),
        "its dead letter went with it"
    );
    assert_eq!(s.audit_list(10, None).await.unwrap().len(), 1);
    // What is left of the audit chain still verifies, from the anchor the purge left.
    s.audit_seal().await.unwrap();
    let chain = s.audit_chain().await.unwrap();
    assert!(chain.first_seq > 1, "the purge moved the anchor on");
    let v = herald::core::audit_chain::verify(&chain.anchor, chain.first_seq, &chain.links);
    assert!(v.ok && v.checked == 1, "{v:?}");
    // Nothing more to do.
    let again = herald::worker::retention::run_once(s.as_ref(), &cfg)
        .await
        .unwrap();
    assert_eq!(again.total(), 0, "{again:?}");
}

conformance!(retention_deletes_only_what_is_old_and_finished,);
