//! Conformance, receipts: a delivery report applies once, and only to sent deliveries.

use super::*;

/// Delivery receipts: found by the provider's message id or by our delivery id (only for
/// the provider that sent it); applied once; only to a `sent` delivery; a failed receipt
/// moves a failover message on to its next channel; unknown reports change nothing.
pub async fn receipts_apply_once_and_only_to_sent_deliveries(s: Arc<dyn Store>) {
    use herald::store::{ReceiptOutcome, ReceiptReport};
    let report =
        |dedupe: &str, dlv: Option<&str>, pmid: Option<&str>, delivered: bool| ReceiptReport {
            provider: "p".into(),
            delivery_id: dlv.map(String::from),
            provider_message_id: pmid.map(String::from),
            dedupe_key: dedupe.into(),
            delivered,
            error: (!delivered).then(|| AttemptError {
                class: herald::core::types::ErrorClass::Recipient,
                code: "UNDELIV".into(),
                detail: "handset off".into(),
            }),
            at: now_millis(),
        };
    let m = message(
        Priority::Normal,
        &[Channel::Sms, Channel::Email],
        Strategy::Failover,
    );
    let id = m.id.clone();
    let single = message(Priority::Normal, &[Channel::Sms], Strategy::Failover);
    let single_id = single.id.clone();
    s.accept(vec![m, single]).await.unwrap();
    let claimed = s.claim(claim("a", 10, now_millis() + 1)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let mut dlv_single = String::new();
    for (i, c) in claimed.into_iter().enumerate() {
        if c.message_id == single_id {
            dlv_single = c.lease.delivery_id.clone();
        }
        let mut a = attempt(1, "sent", None);
        a.provider_message_id = Some(if c.message_id == id { "biz-1" } else { "biz-2" }.into());
        let done = Completion {
            lease: c.lease,
            attempt: Some(a),
            step: Step::Sent,
            now: now_millis() + i as i64,
        };
        assert_eq!(s.complete(vec![done]).await.unwrap(), vec![true]);
    }
    let waiting = s
        .awaiting_receipts("p", 0, now_millis() + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    assert!(
        s.awaiting_receipts("other", 0, now_millis() + 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        s.apply_receipt(report("x", None, Some("biz-unknown"), true))
            .await
            .unwrap(),
        ReceiptOutcome::Unknown
    );
    let mut foreign = report("y", Some(&dlv_single), None, true);
    foreign.provider = "q".into();
    assert_eq!(
        s.apply_receipt(foreign).await.unwrap(),
        ReceiptOutcome::Unknown,
        "another provider cannot confirm p's delivery"
    );

    // A failed receipt fails the SMS; failover queues the email.
    match s
        .apply_receipt(report("r1", None, Some("biz-1"), false))
        .await
        .unwrap()
    {
        ReceiptOutcome::Applied { delivered, .. } => assert!(!delivered),
        other => panic!("{other:?}"),
    }
    let v = s.get_message(&id).await.unwrap().unwrap();
    assert_eq!(v.deliveries[0].status.as_str(), "failed", "{v:?}");
    let why = v.deliveries[0]
        .reason
        .as_ref()
        .map(|r| (r.code.as_str(), r.detail.as_str()));
    assert_eq!(
        why,
        Some(("UNDELIV", "handset off")),
        "the report's reason is kept: {v:?}"
    );
    assert_eq!(v.deliveries[1].status.as_str(), "queued", "{v:?}");
    let next = s.claim(claim("a", 10, now_millis() + 1)).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].channel, Channel::Email);
    assert_eq!(
        s.apply_receipt(report("r1", None, Some("biz-1"), false))
            .await
            .unwrap(),
        ReceiptOutcome::Duplicate
    );
    assert_eq!(
        s.apply_receipt(report("r1-late", None, Some("biz-1"), true))
            .await
            .unwrap(),
        ReceiptOutcome::Ignored,
        "a failed delivery is not confirmed later"
    );

    // By our delivery id: confirmed.
    match s
        .apply_receipt(report("r2", Some(&dlv_single), None, true))
        .await
        .unwrap()
    {
        ReceiptOutcome::Applied {
            delivery_id,
            delivered,
        } => {
            assert_eq!(delivery_id, dlv_single);
            assert!(delivered);
        }
        other => panic!("{other:?}"),
    }
    // A note about a call (a key pressed) lands on its delivery without settling anything.
    let note = |code: &str| herald::store::DeliveryReason {
        code: code.into(),
        detail: "pressed 1".into(),
    };
    assert_eq!(
        s.note_delivery("p", "biz-2", note("keypress"), now_millis())
            .await
            .unwrap(),
        Some((dlv_single.clone(), single_id.clone()))
    );
    assert_eq!(
        s.note_delivery("q", "biz-2", note("keypress"), now_millis())
            .await
            .unwrap(),
        None,
        "only the provider that made the delivery"
    );
    assert_eq!(
        s.note_delivery("p", "biz-unknown", note("keypress"), now_millis())
            .await
            .unwrap(),
        None
    );
    let v = s.get_message(&single_id).await.unwrap().unwrap();
    assert_eq!(
        v.deliveries[0].reason.as_ref().map(|r| r.code.as_str()),
        Some("keypress"),
        "{v:?}"
    );
    assert_eq!(v.status.as_str(), "delivered", "{v:?}");
    assert!(
        s.awaiting_receipts("p", 0, now_millis() + 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing waits for a receipt any more"
    );
}

/// Only SMS is polled for delivery reports: a webhook, email or inbox delivery sent through
/// a provider is not listed as awaiting one (nor indexed as such).
pub async fn only_sms_deliveries_await_receipts(s: Arc<dyn Store>) {
    let msgs: Vec<NewMessage> = [
        Channel::Sms,
        Channel::Webhook,
        Channel::Email,
        Channel::Inbox,
    ]
    .iter()
    .map(|c| message(Priority::Normal, &[*c], Strategy::Failover))
    .collect();
    let sms_id = msgs[0].id.clone();
    s.accept(msgs).await.unwrap();
    let claimed = s.claim(claim("a", 10, now_millis() + 1)).await.unwrap();
    assert_eq!(claimed.len(), 4);
    let done: Vec<Completion> = claimed
        .into_iter()
        .map(|c| Completion {
            lease: c.lease,
            attempt: Some(attempt(1, "sent", None)),
            step: Step::Sent,
            now: now_millis(),
        })
        .collect();
    assert_eq!(s.complete(done).await.unwrap(), vec![true; 4]);
    let waiting = s
        .awaiting_receipts("p", 0, now_millis() + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let v = s.get_message(&sms_id).await.unwrap().unwrap();
    assert_eq!(waiting[0].delivery_id, v.deliveries[0].id);
}

conformance!(
    receipts_apply_once_and_only_to_sent_deliveries,
    only_sms_deliveries_await_receipts,
);
