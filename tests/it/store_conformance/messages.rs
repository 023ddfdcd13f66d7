//! Conformance, messages: snapshots, cancel, failover to a dead letter and replay.

use super::*;

pub async fn failover_dead_letters_and_replay(s: Arc<dyn Store>) {
    let m = message(
        Priority::Normal,
        &[Channel::Webhook, Channel::Inbox],
        Strategy::Failover,
    );
    let id = m.id.clone();
    s.accept(vec![m]).await.unwrap();
    let now = now_millis() + 1;
    let rejected = || {
        Some(AttemptError {
            class: herald::core::types::ErrorClass::Rejected,
            code: "http_400".into(),
            detail: "HTTP 400".into(),
        })
    };
    let c = s.claim(claim("a", 10, now)).await.unwrap();
    assert_eq!(c.len(), 1, "failover: only the first channel is due");
    let done = Completion {
        lease: c[0].lease.clone(),
        attempt: Some(attempt(1, "error", rejected())),
        step: Step::Failed(FailReason::Rejected),
        now,
    };
    s.complete(vec![done]).await.unwrap();
    let c = s.claim(claim("a", 10, now + 1)).await.unwrap();
    assert_eq!(c[0].channel, Channel::Inbox, "the next channel is queued");
    let done = Completion {
        lease: c[0].lease.clone(),
        attempt: Some(attempt(1, "error", rejected())),
        step: Step::Failed(FailReason::Rejected),
        now,
    };
    s.complete(vec![done]).await.unwrap();
    assert_eq!(
        s.get_message(&id).await.unwrap().unwrap().status.as_str(),
        "failed"
    );
    let dl = s
        .dead_letters(ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dl[0].message_id, id);
    assert_eq!(dl[0].channel, Channel::Inbox);
    assert_eq!(
        s.replay(ReplaySelector::Ids(vec![id.clone()]), "op", now_millis())
            .await
            .unwrap(),
        1
    );
    let c = s.claim(claim("a", 10, now_millis() + 1)).await.unwrap();
    assert_eq!(
        c.len(),
        1,
        "replay restarts failover from the first failed channel"
    );
    assert_eq!(c[0].channel, Channel::Webhook);
    assert_eq!(c[0].tries, 1);
    assert!(
        s.dead_letters(ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty()
    );
    let audit = s.audit_list(10, None).await.unwrap();
    assert_eq!(audit[0].action, "dead_letters.replay");
    assert_eq!(audit[0].actor, "op");
}

/// Cancelling stops what is not sent yet: the message is `cancelled` and nothing of it is
/// claimed afterwards; an unknown id is `None`.
pub async fn cancel_stops_what_is_not_sent(s: Arc<dyn Store>) {
    let m = message(
        Priority::Normal,
        &[Channel::Webhook, Channel::Inbox],
        Strategy::All,
    );
    let id = m.id.clone();
    s.accept(vec![m]).await.unwrap();
    let v = s.cancel(&id, "op").await.unwrap().unwrap();
    assert_eq!(v.status.as_str(), "cancelled", "{v:?}");
    assert!(
        s.claim(claim("a", 10, now_millis() + 1))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.cancel("msg_unknown", "op").await.unwrap().is_none());
}

/// A message view is one snapshot: while deliveries complete, every view read shows the
/// message status its own deliveries add up to (never a finished message beside a delivery
/// still in flight), and a page of views carries every delivery and attempt.
pub async fn message_views_are_snapshots(s: Arc<dyn Store>) {
    let batch: Vec<NewMessage> = (0..40)
        .map(|_| {
            message(
                Priority::Normal,
                &[Channel::Webhook, Channel::Inbox],
                Strategy::All,
            )
        })
        .collect();
    s.accept(batch).await.unwrap();
    let claimed = s.claim(claim("a", 100, now_millis() + 1)).await.unwrap();
    assert_eq!(claimed.len(), 80);
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for c in claimed {
                let done = Completion {
                    lease: c.lease,
                    attempt: Some(attempt(1, "sent", None)),
                    step: Step::Sent,
                    now: now_millis(),
                };
                assert_eq!(s.complete(vec![done]).await.unwrap(), vec![true]);
            }
        })
    };
    let check = |v: &herald::store::MessageView| {
        let statuses: Vec<_> = v.deliveries.iter().map(|d| d.status).collect();
        assert_eq!(statuses.len(), 2, "{v:?}");
        assert_eq!(
            v.status,
            herald::core::progress::message_status(&statuses),
            "a torn view: {v:?}"
        );
    };
    let mut reads = 0;
    while !writer.is_finished() {
        let page = s
            .list_messages(ListFilter {
                limit: 40,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 40);
        page.iter().for_each(check);
        check(&s.get_message(&page[reads % 40].id).await.unwrap().unwrap());
        reads += 1;
    }
    writer.await.unwrap();
    let page = s
        .list_messages(ListFilter {
            limit: 40,
            ..Default::default()
        })
        .await
        .unwrap();
    for v in &page {
        check(v);
        assert_eq!(v.status.as_str(), "sent");
        assert!(v.deliveries.iter().all(|d| d.attempts.len() == 1), "{v:?}");
    }
}

conformance!(
    failover_dead_letters_and_replay,
    cancel_stops_what_is_not_sent,
    message_views_are_snapshots,
);
