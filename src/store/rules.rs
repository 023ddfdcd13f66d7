//! Storage rules that both backends apply: one place, so SQLite and PostgreSQL cannot
//! drift apart. Pure functions; the backends only read and write what they return.

use super::{Accepted, Completion};
use crate::config::Rate;
use crate::core::next_step::Step;
use crate::core::types::{Channel, DeliveryStatus, Millis, Strategy};

/// The cut-offs of a retention pass at `now`.
pub fn cutoffs(now: Millis, r: &crate::config::RetentionConfig) -> super::Cutoffs {
    let ago = |d: &crate::config::Dur| now.saturating_sub(d.0.as_millis() as i64);
    super::Cutoffs {
        messages: ago(&r.messages),
        inbox: ago(&r.inbox),
        audit: ago(&r.audit),
        nodes: ago(&r.nodes),
        // A receipt row only deduplicates reports of a delivery still kept.
        receipts: ago(&r.messages),
        // Longer than the longest rate window (a day).
        rate_events: now.saturating_sub(2 * 86_400_000),
        batch: r.batch.max(1),
    }
}

/// Message statuses that are final: what retention may delete.
pub const FINISHED: &str = "'sent', 'delivered', 'failed', 'expired', 'cancelled'";

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// What a completion does to its delivery: the new status, when it is due again, and the
/// providers it must skip from now on (a provider-class error adds the one just called).
pub fn step_effect(
    x: &Completion,
    mut skip: Vec<String>,
) -> (DeliveryStatus, Option<Millis>, Vec<String>) {
    let (status, due) = match x.step {
        Step::Sent => (DeliveryStatus::Sent, None),
        Step::Retry { at, skip_provider } => {
            if let (true, Some(a)) = (skip_provider, &x.attempt)
                && !skip.contains(&a.provider)
            {
                skip.push(a.provider.clone());
            }
            (DeliveryStatus::Queued, Some(at))
        }
        Step::Expired => (DeliveryStatus::Expired, None),
        Step::Failed(_) => (DeliveryStatus::Failed, None),
        Step::Defer { at } => (DeliveryStatus::Queued, Some(at)),
    };
    (status, due, skip)
}

/// The dead-letter `last_error` column: the error and the provider that reported it (the
/// one called, or the one whose receipt failed the delivery).
pub fn last_error_json(provider: Option<&str>, e: &super::AttemptError) -> String {
    let mut v = serde_json::json!(e);
    if let Some(p) = provider {
        v["provider"] = serde_json::json!(p);
    }
    v.to_string()
}

/// Reads the column [`last_error_json`] wrote: the error and its provider.
pub fn parse_last_error(
    s: &str,
) -> Result<(super::AttemptError, Option<String>), serde_json::Error> {
    let v: serde_json::Value = serde_json::from_str(s)?;
    let provider = v["provider"].as_str().map(String::from);
    Ok((serde_json::from_value(v)?, provider))
}

/// How a delivery receipt's failure is classed. The provider accepted the message and its
/// carrier has given up, so nothing is retried on that channel: what the send-time table
/// calls `transient` (an unreachable handset) is, in a receipt, about the recipient.
pub fn receipt_class(send_class: crate::core::types::ErrorClass) -> crate::core::types::ErrorClass {
    use crate::core::types::ErrorClass as C;
    match send_class {
        C::Transient => C::Recipient,
        other => other,
    }
}

/// Delivery statuses a cancel stops (nothing was handed to a provider yet), as SQL.
pub const CANCELLABLE: &str = "'pending', 'queued'";

/// A replayed dead letter's failed deliveries, in channel order: the status each restarts
/// in and whether it is due now. With failover only the first failed channel is queued;
/// the others wait their turn again.
pub fn replay_status(strategy: Strategy, nth_failed: usize) -> (DeliveryStatus, bool) {
    if strategy == Strategy::Failover && nth_failed > 0 {
        (DeliveryStatus::Pending, false)
    } else {
        (DeliveryStatus::Queued, true)
    }
}

/// The status a delivery receipt gives its delivery.
pub fn receipt_status(delivered: bool) -> DeliveryStatus {
    if delivered {
        DeliveryStatus::Delivered
    } else {
        DeliveryStatus::Failed
    }
}

/// Whether a receipt reopens the channels of a failover message that were skipped when
/// this one was accepted: a carrier's "undeliverable" means the person was not reached, so
/// the next channel is tried as if the send had failed (then recomputed as usual; past the
/// message's TTL they expire instead).
pub fn receipt_reopens_failover(delivered: bool) -> bool {
    !delivered
}

/// Whether a receipt for a delivery Herald knows is applied: not when the same report was
/// seen before (`fresh` is false: its row was already stored), nor when the delivery is
/// not `sent` (only what a provider accepted can be confirmed or failed by its receipt).
pub fn receipt_refusal(fresh: bool, current: DeliveryStatus) -> Option<super::ReceiptOutcome> {
    if !fresh {
        Some(super::ReceiptOutcome::Duplicate)
    } else if current != DeliveryStatus::Sent {
        Some(super::ReceiptOutcome::Ignored)
    } else {
        None
    }
}

/// How many deliveries of priority `rank` (0 critical … 3 low) a claim may still take, given
/// what it took of each so far: within the claim's limit, the lane's, and — for `normal` and
/// `low` — their joint limit. Both backends claim rank by rank with this.
pub fn lane_want(req: &super::ClaimRequest, rank: usize, taken: &[usize; 4]) -> usize {
    let total: usize = taken.iter().sum();
    let lane = req.lane_limits[rank].saturating_sub(taken[rank]);
    let mut want = req.limit.saturating_sub(total).min(lane);
    if rank >= 2 {
        want = want.min(req.bulk_limit.saturating_sub(taken[2] + taken[3]));
    }
    want
}

/// Whether a completion gives its try back (a deferral made no call).
pub fn untried(x: &Completion) -> bool {
    matches!(x.step, Step::Defer { .. })
}

/// Given the creation times (newest first, at most `rate.count`) of recent messages to an
/// address within `rate.per` of `now`, the refusal for one more, if it is over the limit.
pub fn recipient_refusal(
    channel: Channel,
    recent_newest_first: &[Millis],
    rate: &Rate,
    now: Millis,
) -> Option<Accepted> {
    if recent_newest_first.len() < rate.count as usize {
        return None;
    }
    let oldest = recent_newest_first.last().copied().unwrap_or(now);
    Some(Accepted::RecipientLimited {
        channel,
        retry_after_ms: (oldest + rate.per.as_millis() as i64 - now).max(1),
    })
}

/// The timeline entries of occurrences written by one batch: one for those that fire and
/// one for those that resolve (counts and the first fingerprints), not one per alert.
pub fn occurrence_events(
    upserts: &[crate::core::incident::Occurrence],
) -> Vec<(&'static str, serde_json::Value)> {
    let mut out = Vec::new();
    for (kind, firing) in [("alerts_firing", true), ("alerts_resolved", false)] {
        let these: Vec<&str> = upserts
            .iter()
            .filter(|o| o.firing() == firing)
            .map(|o| o.fingerprint.as_str())
            .collect();
        if !these.is_empty() {
            let first: Vec<&str> = these.iter().take(20).copied().collect();
            out.push((
                kind,
                serde_json::json!({"count": these.len(), "fingerprints": first}),
            ));
        }
    }
    out
}

/// Sources of incidents that are never inhibited nor grouped into a storm: storms
/// themselves, drills and silent heartbeats (a dead man's switch must always page).
pub const TRIAGE_EXEMPT: [&str; 3] = ["storm", "drill", "heartbeat"];

/// Whether an incident of this source is never triaged.
pub fn triage_exempt(source: &str) -> bool {
    TRIAGE_EXEMPT.contains(&source)
}

/// What triage says of an incident without looking further: what it decided before (grouped,
/// inhibited — decided once), or `Page` for one that is not triaged (no longer triggered,
/// its pages already handed over, exempt). `None`: triage it.
pub fn triage_settled(i: &super::IncidentRecord) -> Option<super::Triaged> {
    use super::Triaged;
    if let Some(s) = &i.grouped_into {
        return Some(Triaged::Grouped {
            storm: s.clone(),
            started: false,
        });
    }
    if let Some(b) = &i.inhibited_by {
        return Some(Triaged::Inhibited(b.clone()));
    }
    let open = i.status == crate::core::incident::Status::Triggered && i.page_state == "pending";
    (!open || triage_exempt(&i.source)).then_some(Triaged::Page)
}

/// A storm incident's title: its running count and scope.
pub fn storm_title(count: i64, scope: &str) -> String {
    let scope = match scope.strip_prefix("service:") {
        Some(s) => format!("service {s}"),
        None => "all services".into(),
    };
    format!("Alert storm: {count} new incidents in {scope}")
}

/// Marks as suppressed the batches that arrive (by their time, `at`) while a maintenance
/// window is on and whose first firing alert matches all of the window's matchers (they
/// would open an incident that pages no one). Applied inside the ingest transaction, so a
/// window committed on any node applies to every batch after it. A silent heartbeat (a dead
/// man's switch) is never suppressed: maintenance of what it watches is not a reason for
/// the watcher to go unheard.
pub fn suppress(windows: &[super::MaintenanceWindow], batches: &mut [super::AlertBatch]) {
    use crate::core::alerts::matchers::{Matcher, all_match};
    let on: Vec<(Millis, Millis, Vec<Matcher>)> = windows
        .iter()
        .map(|w| {
            let ms = w.matchers.iter().filter_map(|m| Matcher::parse(m).ok());
            (w.starts_at, w.ends_at, ms.collect::<Vec<_>>())
        })
        .filter(|(_, _, ms)| !ms.is_empty())
        .collect();
    if on.is_empty() {
        return;
    }
    for b in batches.iter_mut().filter(|b| b.open.source != "heartbeat") {
        let labels: std::collections::BTreeMap<String, String> = b
            .occurrences
            .iter()
            .find(|o| o.firing())
            .and_then(|o| serde_json::from_value(o.labels.clone()).ok())
            .unwrap_or_default();
        if on
            .iter()
            .any(|(from, to, ms)| *from <= b.at && b.at < *to && all_match(ms, &labels))
        {
            b.open.suppressed = true;
        }
    }
}

/// Checks that every migration file of a backend is registered, in order (for each
/// backend's tests).
/// The reply code a new page to a phone gets: the code that phone already has for the same
/// incident, else the smallest number from 1 its recent pages (`used`) do not hold.
pub fn reply_code(same_incident: Option<i64>, used: &[i64]) -> i64 {
    if let Some(c) = same_incident {
        return c;
    }
    (1..).find(|n| !used.contains(n)).unwrap_or(1)
}

/// `(state, step, pass, round, due)` an escalation move writes, given where the row stands
/// (a wait or the end keeps its place, and `None` keeps its due time).
pub fn escalation_target(
    to: super::EscalationMove,
    (step, pass, round): (i64, i64, i64),
) -> (&'static str, i64, i64, i64, Option<Millis>) {
    use super::EscalationMove;
    match to {
        EscalationMove::Next {
            step,
            pass,
            round,
            due,
        } => ("active", step, pass, round, Some(due)),
        EscalationMove::Wait { due } => ("waiting", step, pass, round, Some(due)),
        EscalationMove::Done => ("done", step, pass, round, None),
    }
}

#[cfg(test)]
mod reply_code_tests {
    use super::reply_code;

    #[test]
    fn a_phone_keeps_its_code_per_incident_and_gets_the_smallest_free_one_otherwise() {
        assert_eq!(reply_code(None, &[]), 1);
        assert_eq!(reply_code(None, &[1, 2, 4]), 3);
        assert_eq!(reply_code(None, &[2, 3]), 1);
        assert_eq!(reply_code(Some(4), &[1, 2, 3, 4]), 4);
    }
}

#[cfg(test)]
pub fn assert_migrations_registered(dir: &str, registered: &[(i64, &str, &str)]) {
    let files = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|f| f.path().extension().is_some_and(|e| e == "sql"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(files, registered.len(), "every file in {dir} is registered");
    for (i, m) in registered.iter().enumerate() {
        assert_eq!(m.0, i as i64 + 1, "versions are 1, 2, 3…");
    }
}

/// What a versioned write (a contact, an on-call document) stores over what it finds —
/// `before` as (version, created_at) — when it `expect`s that state: the new version and
/// creation time, or `None` when what is stored does not match (both backends).
pub fn versioned_write(
    expect: super::Expect,
    before: Option<(i64, crate::core::types::Millis)>,
    now: crate::core::types::Millis,
) -> Option<(i64, crate::core::types::Millis)> {
    use super::Expect;
    let fits = match (expect, before) {
        (Expect::Absent, None) | (Expect::Any, _) => true,
        (Expect::Version(v), Some((version, _))) => version == v,
        _ => false,
    };
    fits.then(|| before.map_or((1, now), |(v, created)| (v + 1, created)))
}

/// The top-level fields of a JSON document that a write changes (what the audit log of an
/// on-call document keeps; the values stay in the document).
pub fn changed_keys(before: Option<&serde_json::Value>, after: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let old = before.and_then(|b| b.as_object()).unwrap_or(&empty);
    let new = after.as_object().unwrap_or(&empty);
    let mut keys: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(at: Millis, labels: serde_json::Value, status: &str) -> super::super::AlertBatch {
        use crate::core::incident::{Occurrence, Severity};
        super::super::AlertBatch {
            dedup_key: "k".into(),
            complete: true,
            occurrences: vec![Occurrence {
                fingerprint: "f".into(),
                starts_at: at,
                status: status.into(),
                ends_at: None,
                labels,
                annotations: serde_json::json!({}),
                generator_url: String::new(),
            }],
            open: super::super::NewIncident {
                id: "inc_1".into(),
                source: "alertmanager".into(),
                route: "r".into(),
                service: "s".into(),
                severity: Severity::P1,
                title: "t".into(),
                details: serde_json::json!({}),
                suppressed: false,
                notify_resolved: true,
            },
            at,
        }
    }

    fn window(from: Millis, to: Millis, matchers: &[&str]) -> super::super::MaintenanceWindow {
        super::super::MaintenanceWindow {
            id: "mw_1".into(),
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            starts_at: from,
            ends_at: to,
            reason: "r".into(),
            actor: "a".into(),
            created_at: 0,
        }
    }

    #[test]
    fn a_window_suppresses_what_it_matches_while_it_is_on() {
        let db = serde_json::json!({"team": "db", "alertname": "Down"});
        let web = serde_json::json!({"team": "web"});
        let ws = [window(100, 200, &["team=\"db\""])];
        let mut bs = vec![
            batch(150, db.clone(), "firing"),
            batch(150, web, "firing"),
            batch(99, db.clone(), "firing"),
            batch(200, db.clone(), "firing"),
            batch(150, db.clone(), "resolved"),
        ];
        suppress(&ws, &mut bs);
        let got: Vec<bool> = bs.iter().map(|b| b.open.suppressed).collect();
        // on at its start, off at its end; a batch with nothing firing has no labels to match
        assert_eq!(got, [true, false, false, false, false]);
    }

    #[test]
    fn a_window_without_usable_matchers_suppresses_nothing() {
        let mut bs = vec![batch(150, serde_json::json!({"a": "b"}), "firing")];
        suppress(
            &[window(0, 1_000, &[]), window(0, 1_000, &["not a matcher"])],
            &mut bs,
        );
        assert!(!bs[0].open.suppressed);
        suppress(&[window(0, 1_000, &["a=~\"b|c\""])], &mut bs);
        assert!(bs[0].open.suppressed);
        // a heartbeat's incident is heard even inside a window that matches it
        let mut hb = vec![batch(150, serde_json::json!({"a": "b"}), "firing")];
        hb[0].open.source = "heartbeat".into();
        suppress(&[window(0, 1_000, &["a=\"b\""])], &mut hb);
        assert!(!hb[0].open.suppressed);
    }

    #[test]
    fn the_limit_counts_what_is_in_the_window() {
        let rate = Rate::parse("2/min").unwrap();
        assert_eq!(
            recipient_refusal(Channel::Sms, &[1_000], &rate, 10_000),
            None
        );
        assert_eq!(
            recipient_refusal(Channel::Sms, &[5_000, 1_000], &rate, 10_000),
            Some(Accepted::RecipientLimited {
                channel: Channel::Sms,
                retry_after_ms: 51_000
            })
        );
    }

    #[test]
    fn lanes_are_wanted_in_order_within_every_limit() {
        let req = |limit, lanes: [usize; 4], bulk| super::super::ClaimRequest {
            owner: "n".into(),
            limit,
            lane_limits: lanes,
            bulk_limit: bulk,
            lease_ms: 1,
            now: 0,
            skip_endpoints: vec![],
        };
        // A full high lane does not stop normal and low from being claimed.
        let r = req(10, [5, 0, 8, 8], 6);
        assert_eq!(lane_want(&r, 1, &[2, 0, 0, 0]), 0);
        assert_eq!(lane_want(&r, 2, &[2, 0, 0, 0]), 6, "bulk cap");
        assert_eq!(lane_want(&r, 3, &[2, 0, 4, 0]), 2, "what bulk leaves");
        assert_eq!(lane_want(&r, 3, &[2, 0, 6, 0]), 0);
        assert_eq!(lane_want(&r, 0, &[0; 4]), 5, "the lane's own limit");
        assert_eq!(lane_want(&r, 2, &[5, 0, 0, 0]), 5, "the claim's limit");
        // Exhaustively: never over any limit.
        for limit in 0..6 {
            for bulk in 0..6 {
                let r = req(limit, [3, 2, 4, 3], bulk);
                let mut taken = [0usize; 4];
                for rank in 0..4 {
                    taken[rank] = lane_want(&r, rank, &taken);
                }
                assert!(taken.iter().sum::<usize>() <= limit);
                assert!(taken[2] + taken[3] <= bulk);
                for (t, cap) in taken.iter().zip(r.lane_limits) {
                    assert!(*t <= cap);
                }
            }
        }
    }

    #[test]
    fn a_replay_queues_the_first_failed_channel_and_with_all_every_one() {
        use DeliveryStatus as D;
        assert_eq!(replay_status(Strategy::Failover, 0), (D::Queued, true));
        assert_eq!(replay_status(Strategy::Failover, 1), (D::Pending, false));
        assert_eq!(replay_status(Strategy::Failover, 5), (D::Pending, false));
        assert_eq!(replay_status(Strategy::All, 0), (D::Queued, true));
        assert_eq!(replay_status(Strategy::All, 3), (D::Queued, true));
    }

    #[test]
    fn receipts_apply_once_and_only_to_sent_deliveries() {
        use super::super::ReceiptOutcome as O;
        use DeliveryStatus as D;
        assert_eq!(receipt_status(true), D::Delivered);
        assert_eq!(receipt_status(false), D::Failed);
        for s in [
            D::Pending,
            D::Queued,
            D::Sending,
            D::Sent,
            D::Delivered,
            D::Failed,
            D::Skipped,
            D::Expired,
            D::Cancelled,
        ] {
            assert_eq!(receipt_refusal(false, s), Some(O::Duplicate), "{s:?}");
            let want = if s == D::Sent { None } else { Some(O::Ignored) };
            assert_eq!(receipt_refusal(true, s), want, "{s:?}");
        }
    }

    #[test]
    fn receipt_failures_are_never_transient() {
        use crate::core::types::ErrorClass as C;
        assert_eq!(receipt_class(C::Transient), C::Recipient);
        for c in [C::Recipient, C::Provider, C::Rejected] {
            assert_eq!(receipt_class(c), c);
        }
    }

    #[test]
    fn last_errors_keep_their_provider() {
        let e = crate::store::AttemptError {
            class: crate::core::types::ErrorClass::Recipient,
            code: "30003".into(),
            detail: "d".into(),
        };
        let (back, p) = parse_last_error(&last_error_json(Some("twilio-a"), &e)).unwrap();
        assert_eq!(back, e);
        assert_eq!(p.as_deref(), Some("twilio-a"));
        let (_, none) = parse_last_error(&last_error_json(None, &e)).unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn versioned_writes_fit_only_what_they_expect() {
        use crate::store::Expect;
        let stored = Some((3, 10));
        assert_eq!(versioned_write(Expect::Absent, None, 99), Some((1, 99)));
        assert_eq!(versioned_write(Expect::Absent, stored, 99), None);
        assert_eq!(versioned_write(Expect::Any, stored, 99), Some((4, 10)));
        assert_eq!(versioned_write(Expect::Any, None, 99), Some((1, 99)));
        assert_eq!(
            versioned_write(Expect::Version(3), stored, 99),
            Some((4, 10))
        );
        assert_eq!(versioned_write(Expect::Version(2), stored, 99), None);
        assert_eq!(versioned_write(Expect::Version(1), None, 99), None);
    }

    #[test]
    fn changed_keys_name_what_differs() {
        let a = serde_json::json!({"name": "x", "layers": [1], "gone": true});
        let b = serde_json::json!({"name": "x", "layers": [2], "new": 1});
        assert_eq!(changed_keys(Some(&a), &b), ["gone", "layers", "new"]);
        assert_eq!(changed_keys(None, &a), ["gone", "layers", "name"]);
        assert!(changed_keys(Some(&a), &a).is_empty());
    }
}

#[cfg(test)]
mod triage_tests {
    use super::{triage_exempt, triage_settled};
    use crate::core::incident::{Severity, Status};
    use crate::store::{IncidentRecord, Triaged};

    fn incident(source: &str, status: Status, page_state: &str) -> IncidentRecord {
        IncidentRecord {
            id: "i".into(),
            number: 1,
            dedup_key: "k".into(),
            source: source.into(),
            route: "r".into(),
            service: "db".into(),
            severity: Severity::P0,
            status,
            title: "t".into(),
            details: serde_json::json!({}),
            opened_at: 0,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            resolved_by: None,
            page_state: page_state.into(),
            notice_state: "none".into(),
            updated_at: 0,
            grouped_into: None,
            inhibited_by: None,
        }
    }

    #[test]
    fn what_was_decided_stays_and_only_pending_triggered_alerts_are_triaged() {
        let fresh = incident("alertmanager", Status::Triggered, "pending");
        assert_eq!(triage_settled(&fresh), None);
        let mut g = fresh.clone();
        g.grouped_into = Some("s".into());
        let grouped = Triaged::Grouped {
            storm: "s".into(),
            started: false,
        };
        assert_eq!(triage_settled(&g), Some(grouped));
        let mut h = fresh.clone();
        h.inhibited_by = Some("dc".into());
        assert_eq!(triage_settled(&h), Some(Triaged::Inhibited("dc".into())));
        for (source, status, state) in [
            ("alertmanager", Status::Acknowledged, "pending"),
            ("alertmanager", Status::Resolved, "pending"),
            ("alertmanager", Status::Triggered, "paged"),
            ("storm", Status::Triggered, "pending"),
            ("drill", Status::Triggered, "pending"),
            ("heartbeat", Status::Triggered, "pending"),
        ] {
            let i = incident(source, status, state);
            assert_eq!(triage_settled(&i), Some(Triaged::Page), "{source} {state}");
        }
        assert!(triage_exempt("heartbeat") && !triage_exempt("events"));
    }
}

/// The audit chain's anchor as kept in `settings` (`<next seq>:<hash>` after a purge): the
/// `seq` the oldest entry left must carry and the hash it follows.
pub fn parse_audit_anchor(value: Option<&str>) -> (i64, String) {
    value
        .and_then(|v| v.split_once(':'))
        .and_then(|(n, h)| Some((n.parse().ok()?, h.to_string())))
        .filter(|(n, h): &(i64, String)| *n >= 1 && h.len() == 64)
        .unwrap_or((1, crate::core::audit_chain::GENESIS.to_string()))
}

/// What a switch's audit entry says it became.
pub fn switch_after(s: &super::ProviderSwitch) -> serde_json::Value {
    match s.until {
        Some(u) if s.disabled => {
            serde_json::json!({ "disabled": true, "until": crate::core::types::rfc3339(u) })
        }
        _ => serde_json::json!({ "disabled": s.disabled }),
    }
}

/// The switch that ends an expired one: enabled again by `system`, saying why.
pub fn switch_expired(provider: &str, reason: Option<&str>, now: i64) -> super::ProviderSwitch {
    super::ProviderSwitch {
        provider: provider.to_string(),
        disabled: false,
        reason: Some(match reason {
            Some(r) => format!("the switch expired (it was: {r})"),
            None => "the switch expired".to_string(),
        }),
        actor: "system".into(),
        at: now,
        until: None,
    }
}

/// The audit entry of a new approval request (or of an act done alone, break-glass).
pub fn approval_created(a: &super::ApprovalRecord) -> super::AuditEntry {
    super::AuditEntry {
        id: 0,
        at: a.created_at,
        actor: a.requester_name.clone(),
        action: if a.break_glass {
            "approval.break_glass".into()
        } else {
            "approval.request".into()
        },
        target: a.id.clone(),
        before: None,
        after: Some(serde_json::json!({ "action": a.action, "params": a.params })),
        reason: Some(a.reason.clone()),
    }
}

/// The audit entry of a decision on a request (`approved`, `rejected`, `expired`).
pub fn approval_decided(
    a: &super::ApprovalRecord,
    to: &str,
    by: &str,
    now: i64,
) -> super::AuditEntry {
    let action = match to {
        "approved" => "approval.approve",
        "rejected" => "approval.reject",
        _ => "approval.expire",
    };
    super::AuditEntry {
        id: 0,
        at: now,
        actor: by.to_string(),
        action: action.into(),
        target: a.id.clone(),
        before: Some(serde_json::json!({ "status": "pending" })),
        after: Some(serde_json::json!({ "status": to, "action": a.action })),
        reason: a.note.clone(),
    }
}

/// The `status_days` column a component state adds a minute to (`None`: operational).
pub fn status_column(state: &str) -> Option<&'static str> {
    match state {
        "degraded_performance" => Some("degraded"),
        "partial_outage" => Some("partial"),
        "major_outage" => Some("major"),
        "under_maintenance" => Some("maintenance"),
        _ => None,
    }
}

/// The audit entry of a status page post.
pub fn status_posted(
    action: &str,
    incident: &str,
    u: &super::StatusUpdate,
    title: Option<&str>,
) -> super::AuditEntry {
    super::AuditEntry {
        id: 0,
        at: u.created_at,
        actor: u.actor.clone(),
        action: action.into(),
        target: incident.into(),
        before: None,
        after: Some(serde_json::json!({ "status": u.status, "title": title })),
        reason: Some(u.body.clone()),
    }
}
