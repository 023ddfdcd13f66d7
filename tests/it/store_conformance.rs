//! The behaviour every `Store` must have, written against `dyn Store` so each backend runs
//! the same suite.

use herald::core::message::{Content, Idempotency, NewDelivery, NewMessage};
use herald::core::next_step::{FailReason, Step};
use herald::core::types::{Channel, Priority, Strategy, new_id, now_millis};
use herald::store::sqlite::SqliteStore;
use herald::store::{
    Accepted, Attempt, AttemptError, ClaimRequest, Completion, ListFilter, ReplaySelector, Store,
};
use std::sync::Arc;

fn message(priority: Priority, channels: &[Channel], strategy: Strategy) -> NewMessage {
    let now = now_millis();
    NewMessage {
        id: new_id("msg"),
        priority,
        strategy,
        created_at: now,
        send_at: now,
        expires_at: now + 3_600_000,
        content: Content {
            text: Some("t".into()),
            ..Default::default()
        },
        template: None,
        params: None,
        metadata: Default::default(),
        deliveries: channels
            .iter()
            .map(|c| NewDelivery {
                id: new_id("dlv"),
                channel: *c,
                to: "u".into(),
                content: None,
            })
            .collect(),
        idempotency: None,
        sender: "test".into(),
        recipient_limits: vec![],
    }
}

fn claim(owner: &str, limit: usize, now: i64) -> ClaimRequest {
    ClaimRequest {
        owner: owner.into(),
        limit,
        lane_limits: [limit; 4],
        bulk_limit: limit,
        lease_ms: 30_000,
        now,
        skip_endpoints: vec![],
    }
}

fn attempt(n: i64, outcome: &'static str, error: Option<AttemptError>) -> Attempt {
    Attempt {
        n,
        provider: "p".into(),
        at: now_millis(),
        duration_ms: 1,
        outcome,
        error,
        provider_message_id: None,
    }
}

async fn postgres() -> (Arc<dyn Store>, ()) {
    let url = crate::utils::pg::fresh_db().await;
    let store: Arc<dyn Store> =
        herald::store::postgres::PgStore::open(&url, std::time::Duration::from_secs(10))
            .await
            .unwrap();
    (store, ())
}

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = SqliteStore::open(&dir.path().join("h.db"), true).unwrap();
    (store, dir)
}

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
    // Nothing more to do.
    let again = herald::worker::retention::run_once(s.as_ref(), &cfg)
        .await
        .unwrap();
    assert_eq!(again.total(), 0, "{again:?}");
}

/// A job lease belongs to one holder until it expires (by the store's clock), then to
/// whoever asks; its holder may renew it.
pub async fn job_leases_are_exclusive_until_they_expire(s: Arc<dyn Store>) {
    assert!(s.take_job_lease("j", "a", now_millis(), 300).await.unwrap());
    assert!(!s.take_job_lease("j", "b", now_millis(), 300).await.unwrap());
    assert!(
        s.take_job_lease("j", "a", now_millis(), 300).await.unwrap(),
        "renewed"
    );
    assert!(
        s.take_job_lease("other", "b", now_millis(), 300)
            .await
            .unwrap()
    );
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert!(
        s.take_job_lease("j", "b", now_millis(), 300).await.unwrap(),
        "expired"
    );
    assert!(!s.take_job_lease("j", "a", now_millis(), 300).await.unwrap());
}

/// A node silent past `dead_after` is declared dead and its leases freed for others; a node
/// that keeps beating is not.
pub async fn dead_nodes_are_reaped_and_their_leases_freed(s: Arc<dyn Store>) {
    let node = |id: &str| herald::store::NodeView {
        id: id.into(),
        address: "127.0.0.1:1".into(),
        started_at: now_millis(),
        heartbeat_at: now_millis(),
        state: "alive".into(),
        leases: 0,
    };
    s.heartbeat(node("n1")).await.unwrap();
    s.heartbeat(node("n2")).await.unwrap();
    s.accept(vec![message(
        Priority::Normal,
        &[Channel::Inbox],
        Strategy::Failover,
    )])
    .await
    .unwrap();
    let held = s.claim(claim("n1", 10, now_millis() + 1)).await.unwrap();
    assert_eq!(held.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    s.heartbeat(node("n2")).await.unwrap();
    let reaped = s.reap_dead_nodes(now_millis(), 300).await.unwrap();
    assert_eq!(reaped, vec![("n1".to_string(), 1)]);
    let taken = s.claim(claim("n2", 10, now_millis() + 1)).await.unwrap();
    assert_eq!(taken.len(), 1, "n1's lease was freed");
    assert!(taken[0].lease.fence > held[0].lease.fence);
    let views = s.nodes().await.unwrap();
    let state = |id: &str| views.iter().find(|n| n.id == id).map(|n| n.state.clone());
    assert_eq!(state("n1").as_deref(), Some("dead"));
    assert_eq!(state("n2").as_deref(), Some("alive"));
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

/// The inbox keeps items per user, newest first, lists the unread ones, and marks one read
/// once; another user's item cannot be marked through the wrong user.
pub async fn the_inbox_lists_and_marks_items_per_user(s: Arc<dyn Store>) {
    let item = |user: &str, n: i64| herald::store::InboxItem {
        id: format!("inb_{user}_{n}"),
        user: user.into(),
        message_id: new_id("msg"),
        delivery_id: new_id("dlv"),
        content: Content {
            text: Some(format!("n{n}")),
            ..Default::default()
        },
        metadata: Default::default(),
        created_at: now_millis() + n,
        read_at: None,
    };
    for n in 0..3 {
        s.inbox_put(item("u-a", n)).await.unwrap();
    }
    s.inbox_put(item("u-b", 0)).await.unwrap();
    let f = || ListFilter {
        status: None,
        channel: None,
        limit: 10,
        after: None,
    };
    let all = s.inbox_list("u-a", false, f()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].id, "inb_u-a_2", "newest first");
    assert!(
        s.inbox_mark_read("u-a", "inb_u-a_1", now_millis())
            .await
            .unwrap()
    );
    assert!(
        !s.inbox_mark_read("u-b", "inb_u-a_2", now_millis())
            .await
            .unwrap(),
        "not u-b's"
    );
    let unread = s.inbox_list("u-a", true, f()).await.unwrap();
    let ids: Vec<&str> = unread.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, vec!["inb_u-a_2", "inb_u-a_0"]);
    assert_eq!(s.inbox_list("u-b", false, f()).await.unwrap().len(), 1);
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
    let v = s.get_message(&single_id).await.unwrap().unwrap();
    assert_eq!(v.status.as_str(), "delivered", "{v:?}");
    assert!(
        s.awaiting_receipts("p", 0, now_millis() + 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing waits for a receipt any more"
    );
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

/// Runs every case of the suite against one backend: `$backend()` makes a fresh store.
macro_rules! conformance {
    ($backend:ident: $($case:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $case() {
                    let (store, _keep) = super::$backend().await;
                    super::$case(store).await;
                }
            )+
        }
    };
}

conformance!(sqlite:
    claims_highest_priority_first,
    stale_fences_are_refused_and_expired_leases_reclaimed,
    release_gives_work_back_untried,
    failover_dead_letters_and_replay,
    idempotency_keys_return_the_first_reply,
    storing_the_same_messages_twice_keeps_one_copy,
    claims_skip_the_endpoints_named,
    attempts_are_numbered_without_gaps,
    retention_deletes_only_what_is_old_and_finished,
    job_leases_are_exclusive_until_they_expire,
    dead_nodes_are_reaped_and_their_leases_freed,
    cancel_stops_what_is_not_sent,
    recipient_limits_refuse_past_the_rate,
    the_inbox_lists_and_marks_items_per_user,
    message_views_are_snapshots,
    receipts_apply_once_and_only_to_sent_deliveries,
    a_batch_of_outcomes_applies_each_on_its_own,
    claims_take_exactly_the_lane_limits,
);

conformance!(postgres:
    claims_highest_priority_first,
    stale_fences_are_refused_and_expired_leases_reclaimed,
    release_gives_work_back_untried,
    failover_dead_letters_and_replay,
    idempotency_keys_return_the_first_reply,
    storing_the_same_messages_twice_keeps_one_copy,
    claims_skip_the_endpoints_named,
    attempts_are_numbered_without_gaps,
    retention_deletes_only_what_is_old_and_finished,
    job_leases_are_exclusive_until_they_expire,
    dead_nodes_are_reaped_and_their_leases_freed,
    cancel_stops_what_is_not_sent,
    recipient_limits_refuse_past_the_rate,
    the_inbox_lists_and_marks_items_per_user,
    message_views_are_snapshots,
    receipts_apply_once_and_only_to_sent_deliveries,
    a_batch_of_outcomes_applies_each_on_its_own,
    claims_take_exactly_the_lane_limits,
);

#[tokio::test]
async fn a_second_process_cannot_open_the_same_database_for_serving() {
    let (s, dir) = sqlite().await;
    let err = SqliteStore::open(&dir.path().join("h.db"), true)
        .err()
        .unwrap();
    assert!(err.to_string().contains("in use"), "{err}");
    drop(s);
}

/// The backup catalogue and a freshly migrated PostgreSQL schema agree both ways (the
/// SQLite side is a unit test of `backup::catalog`).
#[tokio::test]
async fn the_backup_catalogue_matches_the_postgres_schema_both_ways() {
    use herald::backup::catalog::{LEFT_OUT, TABLES, table};
    let url = crate::utils::pg::fresh_db().await;
    let _store = herald::store::postgres::PgStore::open(&url, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::TEXT, column_name::TEXT FROM information_schema.columns WHERE table_schema = 'public'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut by_table: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (t, c) in rows {
        by_table.entry(t).or_default().push(c);
    }
    for t in by_table.keys() {
        assert!(
            table(t).is_some() || LEFT_OUT.contains(&t.as_str()),
            "table `{t}` is neither catalogued nor left out on purpose"
        );
    }
    for t in TABLES {
        let mut real = by_table.get(t.name).cloned().unwrap_or_default();
        let mut listed: Vec<String> = t.columns.iter().map(|(c, _)| c.to_string()).collect();
        real.sort();
        listed.sort();
        assert_eq!(listed, real, "columns of `{}`", t.name);
    }
}

/// Cluster rate slots (PostgreSQL: the budget nodes share) refuse past the rate and say how
/// long to wait.
#[tokio::test]
async fn postgres_rate_slots_refuse_over_the_rate() {
    let (s, _) = postgres().await;
    let rate = [herald::config::Rate::parse("2/min").unwrap()];
    assert_eq!(
        s.take_rate_slot("k", &rate, now_millis()).await.unwrap(),
        None
    );
    assert_eq!(
        s.take_rate_slot("k", &rate, now_millis()).await.unwrap(),
        None
    );
    let wait = s.take_rate_slot("k", &rate, now_millis()).await.unwrap();
    assert!(wait.is_some_and(|w| w > 0 && w <= 60_000), "{wait:?}");
    assert_eq!(
        s.take_rate_slot("other", &rate, now_millis())
            .await
            .unwrap(),
        None
    );
}
