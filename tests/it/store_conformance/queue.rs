//! Conformance, queue: accept, idempotency, claims by priority and lane, fences, outcomes in
//! groups, release, per-recipient limits.

use super::*;

pub async fn claims_highest_priority_first(s: Arc<dyn Store>) {
    let low: Vec<NewMessage> = (0..50)
        .map(|_| message(Priority::Low, &[Channel::Inbox], Strategy::Failover))
        .collect();
    s.accept(low).await.unwrap();
    let crit = message(Priority::Critical, &[Channel::Inbox], Strategy::Failover);
    let high = message(Priority::High, &[Channel::Inbox], Strategy::Failover);
    let (crit_id, high_id) = (crit.id.clone(), high.id.clone());
    s.accept(vec![high, crit]).await.unwrap();
    let got = s.claim(claim("a", 3, now_millis() + 1)).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|c| c.message_id.as_str()).collect();
    assert_eq!(ids[0], crit_id);
    assert_eq!(ids[1], high_id);
    assert_eq!(got[2].priority, Priority::Low);
    // Claimed work is not claimed twice while its lease holds.
    let again = s.claim(claim("b", 100, now_millis() + 1)).await.unwrap();
    assert_eq!(again.len(), 50 - 1);
}

pub async fn stale_fences_are_refused_and_expired_leases_reclaimed(s: Arc<dyn Store>) {
    let m = message(Priority::Normal, &[Channel::Webhook], Strategy::Failover);
    let id = m.id.clone();
    s.accept(vec![m]).await.unwrap();
    let now = now_millis() + 1;
    // A short lease that really runs out (PostgreSQL measures leases by its own clock).
    let mut short = claim("a", 10, now);
    short.lease_ms = 300;
    let first = s.claim(short).await.unwrap().pop().unwrap();
    assert_eq!(first.tries, 1);
    assert!(
        s.claim(claim("b", 10, now_millis()))
            .await
            .unwrap()
            .is_empty(),
        "not while the lease holds"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // The lease ran out; another worker takes the delivery over.
    let second = s
        .claim(claim("b", 10, now_millis()))
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(second.lease.delivery_id, first.lease.delivery_id);
    assert!(second.lease.fence > first.lease.fence);
    assert_eq!(second.tries, 2);
    // The first worker's late write is refused; the second one's is applied.
    let late = Completion {
        lease: first.lease.clone(),
        attempt: Some(attempt(first.lease.fence, "sent", None)),
        step: Step::Sent,
        now,
    };
    assert_eq!(s.complete(vec![late]).await.unwrap(), vec![false]);
    let ok = Completion {
        lease: second.lease.clone(),
        attempt: Some(attempt(second.lease.fence, "sent", None)),
        step: Step::Sent,
        now,
    };
    assert_eq!(s.complete(vec![ok.clone()]).await.unwrap(), vec![true]);
    assert_eq!(
        s.complete(vec![ok]).await.unwrap(),
        vec![false],
        "a completion applies once"
    );
    let v = s.get_message(&id).await.unwrap().unwrap();
    assert_eq!(v.status.as_str(), "sent");
    assert_eq!(
        v.deliveries[0].attempts.len(),
        1,
        "the stale attempt was not recorded"
    );
}

pub async fn release_gives_work_back_untried(s: Arc<dyn Store>) {
    s.accept(vec![message(
        Priority::Normal,
        &[Channel::Inbox],
        Strategy::Failover,
    )])
    .await
    .unwrap();
    let now = now_millis() + 1;
    let c = s.claim(claim("a", 10, now)).await.unwrap().pop().unwrap();
    assert_eq!(s.release(vec![c.lease.clone()]).await.unwrap(), 1);
    let again = s
        .claim(claim("b", 10, now_millis() + 1))
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(again.tries, 1, "a released claim does not count as a try");
}

pub async fn idempotency_keys_return_the_first_reply(s: Arc<dyn Store>) {
    let idem = |hash: &str| {
        Some(Idempotency {
            scope: "k".into(),
            key: "x".into(),
            body_hash: hash.into(),
        })
    };
    let mut a = message(Priority::Normal, &[Channel::Inbox], Strategy::Failover);
    a.idempotency = idem("h1");
    let mut b = message(Priority::Normal, &[Channel::Inbox], Strategy::Failover);
    b.idempotency = idem("h1");
    let mut c = message(Priority::Normal, &[Channel::Inbox], Strategy::Failover);
    c.idempotency = idem("h2");
    let out = s.accept(vec![a.clone(), b, c]).await.unwrap();
    let Accepted::New(first) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(out[1], Accepted::Existing(first.clone()));
    assert_eq!(out[2], Accepted::Mismatch);
    let mut other_scope = message(Priority::Normal, &[Channel::Inbox], Strategy::Failover);
    other_scope.idempotency = Some(Idempotency {
        scope: "k2".into(),
        key: "x".into(),
        body_hash: "h2".into(),
    });
    assert!(matches!(
        s.accept(vec![other_scope]).await.unwrap()[0],
        Accepted::New(_)
    ));
    // The stored hash of each key, in order; unknown keys and old ones are `None`.
    let since = now_millis() - 60_000;
    let hashes = s
        .idempotency_hashes("k", vec!["nope".into(), "x".into()], since)
        .await
        .unwrap();
    assert_eq!(hashes, vec![None, Some("h1".to_string())]);
    let later = s
        .idempotency_hashes("k", vec!["x".into()], now_millis() + 60_000)
        .await
        .unwrap();
    assert_eq!(later, vec![None], "outside the window");
    let listed = s
        .list_messages(ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
}

pub async fn storing_the_same_messages_twice_keeps_one_copy(s: Arc<dyn Store>) {
    let batch: Vec<NewMessage> = (0..3)
        .map(|_| {
            message(
                Priority::Normal,
                &[Channel::Webhook, Channel::Inbox],
                Strategy::Failover,
            )
        })
        .collect();
    let first = s.accept(batch.clone()).await.unwrap();
    assert!(
        first.iter().all(|a| matches!(a, Accepted::New(_))),
        "{first:?}"
    );
    let again = s.accept(batch.clone()).await.unwrap();
    assert!(
        again.iter().all(|a| matches!(a, Accepted::Existing(_))),
        "{again:?}"
    );
    let one = s.accept(vec![batch[0].clone()]).await.unwrap();
    assert!(matches!(one[0], Accepted::Existing(_)));
    assert_eq!(
        s.list_messages(ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        3
    );
    let claimed = s.claim(claim("a", 100, now_millis() + 1)).await.unwrap();
    assert_eq!(
        claimed.len(),
        3,
        "one due delivery per message (failover waits for the second)"
    );
    let v = s.get_message(&batch[1].id).await.unwrap().unwrap();
    assert_eq!(v.deliveries.len(), 2);
    assert_eq!(v.deliveries[1].status.public(), "queued");
}

/// A claim leaves alone the webhook deliveries of the origins it names (their endpoint holds
/// its share or its circuit is open) and takes everything else, in order.
pub async fn claims_skip_the_endpoints_named(s: Arc<dyn Store>) {
    let to = |url: &str| {
        let mut m = message(Priority::Normal, &[Channel::Webhook], Strategy::Failover);
        m.deliveries[0].to = url.into();
        m
    };
    let busy: Vec<NewMessage> = (0..5)
        .map(|i| to(&format!("http://busy.test:81/h{i}")))
        .collect();
    let other = to("http://busy.test:8/x"); // another port: another origin
    let like = to("http://bus_.test/x"); // `_` is not a wildcard
    let inbox = message(Priority::Normal, &[Channel::Inbox], Strategy::Failover);
    let keep: Vec<String> = [&other, &like, &inbox]
        .iter()
        .map(|m| m.id.clone())
        .collect();
    s.accept(busy).await.unwrap();
    s.accept(vec![other, like, inbox]).await.unwrap();
    let mut req = claim("a", 100, now_millis() + 1);
    req.skip_endpoints = vec!["http://busy.test:81".into(), "http://bus%.test".into()];
    let got = s.claim(req).await.unwrap();
    let mut ids: Vec<String> = got.iter().map(|c| c.message_id.clone()).collect();
    ids.sort();
    let mut want = keep.clone();
    want.sort();
    assert_eq!(ids, want, "only the named origins are left");
    // Without the list, the rest is claimed.
    let rest = s.claim(claim("a", 100, now_millis() + 1)).await.unwrap();
    assert_eq!(rest.len(), 5);
    assert!(
        rest.iter()
            .all(|c| c.to.starts_with("http://busy.test:81/"))
    );
}

/// Attempts are numbered 1, 2, 3 … whatever happened between them: a deferral (no call), a
/// release and a lease takeover all move the fence, never the attempt number.
pub async fn attempts_are_numbered_without_gaps(s: Arc<dyn Store>) {
    let m = message(Priority::Normal, &[Channel::Webhook], Strategy::Failover);
    let id = m.id.clone();
    s.accept(vec![m]).await.unwrap();
    let t0 = now_millis() + 1;
    // Claimed and deferred (its endpoint's circuit was open): no attempt.
    let c = s.claim(claim("a", 10, t0)).await.unwrap().pop().unwrap();
    let defer = Completion {
        lease: c.lease.clone(),
        attempt: None,
        step: Step::Defer { at: t0 },
        now: t0,
    };
    assert_eq!(s.complete(vec![defer]).await.unwrap(), vec![true]);
    // Claimed and released (over its share): no attempt.
    let c = s
        .claim(claim("a", 10, t0 + 1))
        .await
        .unwrap()
        .pop()
        .unwrap();
    s.release(vec![c.lease.clone()]).await.unwrap();
    // Two real calls, the worker naming them by its fence.
    let failed = || {
        Some(AttemptError {
            class: herald::core::types::ErrorClass::Transient,
            code: "http_503".into(),
            detail: "HTTP 503".into(),
        })
    };
    let c = s
        .claim(claim("a", 10, now_millis() + 2))
        .await
        .unwrap()
        .pop()
        .unwrap();
    let retry = Completion {
        lease: c.lease.clone(),
        attempt: Some(attempt(c.lease.fence, "error", failed())),
        step: Step::Retry {
            at: now_millis(),
            skip_provider: false,
        },
        now: now_millis(),
    };
    assert_eq!(s.complete(vec![retry]).await.unwrap(), vec![true]);
    let c = s
        .claim(claim("a", 10, now_millis() + 3))
        .await
        .unwrap()
        .pop()
        .unwrap();
    let sent = Completion {
        lease: c.lease.clone(),
        attempt: Some(attempt(c.lease.fence, "sent", None)),
        step: Step::Sent,
        now: now_millis(),
    };
    assert_eq!(s.complete(vec![sent]).await.unwrap(), vec![true]);
    let v = s.get_message(&id).await.unwrap().unwrap();
    let ns: Vec<i64> = v.deliveries[0].attempts.iter().map(|a| a.n).collect();
    assert_eq!(ns, vec![1, 2], "attempt numbers");
}

/// Per-recipient limits are checked where the message is stored: past the rate a message to
/// the same address is refused with how long to wait; another address is not affected.
pub async fn recipient_limits_refuse_past_the_rate(s: Arc<dyn Store>) {
    let rate = herald::config::Rate::parse("2/min").unwrap();
    let to = |addr: &str| {
        let mut m = message(Priority::Normal, &[Channel::Sms], Strategy::Failover);
        m.deliveries[0].to = addr.into();
        m.recipient_limits = vec![herald::core::message::RecipientLimit {
            channel: Channel::Sms,
            to: addr.into(),
            rates: vec![rate],
        }];
        m
    };
    for _ in 0..2 {
        assert!(matches!(
            s.accept(vec![to("+14155550001")]).await.unwrap()[0],
            Accepted::New(_)
        ));
    }
    match &s.accept(vec![to("+14155550001")]).await.unwrap()[0] {
        Accepted::RecipientLimited {
            channel,
            retry_after_ms,
        } => {
            assert_eq!(*channel, Channel::Sms);
            assert!(
                *retry_after_ms > 0 && *retry_after_ms <= 60_000,
                "{retry_after_ms}"
            );
        }
        other => panic!("not limited: {other:?}"),
    }
    assert!(matches!(
        s.accept(vec![to("+14155550002")]).await.unwrap()[0],
        Accepted::New(_)
    ));
}

/// Outcomes recorded together: a stale fence refuses only its own outcome; two deliveries
/// of one message finishing in the same batch leave the message with the status both make;
/// a failed failover channel in a batch queues the next one.
pub async fn a_batch_of_outcomes_applies_each_on_its_own(s: Arc<dyn Store>) {
    let all = message(
        Priority::Normal,
        &[Channel::Webhook, Channel::Inbox],
        Strategy::All,
    );
    let fo = message(
        Priority::Normal,
        &[Channel::Webhook, Channel::Inbox],
        Strategy::Failover,
    );
    let lone = message(Priority::Normal, &[Channel::Webhook], Strategy::Failover);
    let (all_id, fo_id, lone_id) = (all.id.clone(), fo.id.clone(), lone.id.clone());
    s.accept(vec![all, fo, lone]).await.unwrap();
    let claimed = s.claim(claim("a", 10, now_millis() + 1)).await.unwrap();
    assert_eq!(claimed.len(), 4);
    let now = now_millis();
    let batch: Vec<Completion> = claimed
        .iter()
        .map(|c| {
            let mut lease = c.lease.clone();
            let (attempt, step) = if c.message_id == fo_id {
                (
                    attempt(
                        1,
                        "error",
                        Some(AttemptError {
                            class: herald::core::types::ErrorClass::Recipient,
                            code: "410".into(),
                            detail: "gone".into(),
                        }),
                    ),
                    Step::Failed(FailReason::Recipient),
                )
            } else {
                (attempt(1, "sent", None), Step::Sent)
            };
            if c.message_id == lone_id {
                lease.fence += 7; // a worker whose lease was taken over
            }
            Completion {
                lease,
                attempt: Some(attempt),
                step,
                now,
            }
        })
        .collect();
    let applied = s.complete(batch.clone()).await.unwrap();
    for (c, ok) in claimed.iter().zip(&applied) {
        assert_eq!(*ok, c.message_id != lone_id, "{}", c.message_id);
    }
    let v = s.get_message(&all_id).await.unwrap().unwrap();
    assert_eq!(v.status.as_str(), "sent", "{v:?}");
    let v = s.get_message(&fo_id).await.unwrap().unwrap();
    assert_eq!(v.deliveries[0].status.as_str(), "failed", "{v:?}");
    assert_eq!(v.deliveries[1].status.as_str(), "queued", "{v:?}");
    let v = s.get_message(&lone_id).await.unwrap().unwrap();
    assert_eq!(
        v.deliveries[0].status.as_str(),
        "sending",
        "untouched: {v:?}"
    );
    assert!(v.deliveries[0].attempts.is_empty(), "{v:?}");
    // The same batch again: every fence is spent now.
    assert!(s.complete(batch).await.unwrap().iter().all(|ok| !ok));
}

/// A claim takes each lane's share in priority order and nothing more: with normal and low
/// both waiting, normal fills the bulk limit and low waits, its messages still `queued`.
pub async fn claims_take_exactly_the_lane_limits(s: Arc<dyn Store>) {
    let normal: Vec<NewMessage> = (0..60)
        .map(|_| message(Priority::Normal, &[Channel::Inbox], Strategy::Failover))
        .collect();
    let low: Vec<NewMessage> = (0..60)
        .map(|_| message(Priority::Low, &[Channel::Inbox], Strategy::Failover))
        .collect();
    let low_ids: Vec<String> = low.iter().map(|m| m.id.clone()).collect();
    s.accept(normal).await.unwrap();
    s.accept(low).await.unwrap();
    let mut req = claim("a", 40, now_millis() + 1);
    req.lane_limits = [40, 40, 30, 20];
    req.bulk_limit = 30;
    let got = s.claim(req).await.unwrap();
    assert_eq!(got.len(), 30, "the bulk limit");
    assert!(got.iter().all(|c| c.priority == Priority::Normal));
    for id in &low_ids[..5] {
        let v = s.get_message(id).await.unwrap().unwrap();
        assert_eq!(v.status.as_str(), "queued", "{v:?}");
    }
    let mut req = claim("a", 100, now_millis() + 1);
    req.lane_limits = [100, 100, 100, 20];
    req.bulk_limit = 100;
    let got = s.claim(req).await.unwrap();
    let lows = got.iter().filter(|c| c.priority == Priority::Low).count();
    assert_eq!(
        (got.len(), lows),
        (50, 20),
        "30 normal left, 20 low by its own limit"
    );
}

conformance!(
    claims_highest_priority_first,
    stale_fences_are_refused_and_expired_leases_reclaimed,
    release_gives_work_back_untried,
    idempotency_keys_return_the_first_reply,
    storing_the_same_messages_twice_keeps_one_copy,
    claims_skip_the_endpoints_named,
    attempts_are_numbered_without_gaps,
    recipient_limits_refuse_past_the_rate,
    a_batch_of_outcomes_applies_each_on_its_own,
    claims_take_exactly_the_lane_limits,
);
