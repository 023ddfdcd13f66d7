//! How a message moves on once one of its deliveries changes: which waiting channel is
//! activated next (failover), which are skipped or expire, the message status as the sum of
//! its deliveries, and whether it becomes a dead letter. Pure logic.

use super::types::{DeliveryStatus as D, MessageStatus as M, Strategy};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// Position of the pending delivery to queue now.
    pub activate: Option<usize>,
    /// Pending deliveries no longer needed (an earlier channel succeeded).
    pub skip: Vec<usize>,
    /// Pending deliveries past the message's TTL.
    pub expire: Vec<usize>,
}

/// `deliveries` are the statuses in channel order, after the latest change.
pub fn progress(strategy: Strategy, deliveries: &[D]) -> Progress {
    let mut p = Progress::default();
    let pending: Vec<usize> = deliveries
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == D::Pending)
        .map(|(i, _)| i)
        .collect();
    if pending.is_empty() {
        return p;
    }
    let success = deliveries.iter().any(|s| s.is_success());
    let expired = deliveries.contains(&D::Expired);
    let active = deliveries
        .iter()
        .any(|s| matches!(s, D::Queued | D::Sending));
    if success && strategy == Strategy::Failover {
        p.skip = pending;
    } else if expired {
        p.expire = pending;
    } else if !active {
        p.activate = pending.first().copied();
    }
    p
}

/// The message status as the sum of its deliveries.
pub fn message_status(deliveries: &[D]) -> M {
    let any = |f: &dyn Fn(D) -> bool| deliveries.iter().any(|s| f(*s));
    if any(&|s| !s.is_terminal()) {
        return if any(&|s| s == D::Sending || s.is_success()) {
            M::Sending
        } else {
            M::Queued
        };
    }
    if any(&|s| s == D::Delivered) {
        M::Delivered
    } else if any(&|s| s == D::Sent) {
        M::Sent
    } else if any(&|s| s == D::Failed) {
        M::Failed
    } else if any(&|s| s == D::Expired) {
        M::Expired
    } else {
        M::Cancelled
    }
}

/// A message fails into the dead-letter list when every delivery is over and none succeeded
/// and at least one failed.
pub fn is_dead_letter(deliveries: &[D]) -> bool {
    message_status(deliveries) == M::Failed
}

/// Statuses a new message's deliveries start with; `skipped[i]`: delivery `i` is not to be
/// made (failover then starts at the first one that is).
pub fn initial(strategy: Strategy, skipped: &[bool]) -> Vec<D> {
    let first = skipped.iter().position(|s| !s);
    skipped
        .iter()
        .enumerate()
        .map(|(i, skip)| match (strategy, skip) {
            (_, true) => D::Skipped,
            (Strategy::All, false) => D::Queued,
            (Strategy::Failover, false) if Some(i) == first => D::Queued,
            _ => D::Pending,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [D; 9] = [
        D::Pending,
        D::Queued,
        D::Sending,
        D::Sent,
        D::Delivered,
        D::Failed,
        D::Expired,
        D::Cancelled,
        D::Skipped,
    ];

    #[test]
    fn failover_activates_the_next_channel_only_after_a_failure() {
        let s = [D::Failed, D::Pending, D::Pending];
        assert_eq!(progress(Strategy::Failover, &s).activate, Some(1));
        let s = [D::Sending, D::Pending];
        assert_eq!(progress(Strategy::Failover, &s), Progress::default());
        let s = [D::Sent, D::Pending, D::Pending];
        assert_eq!(progress(Strategy::Failover, &s).skip, vec![1, 2]);
        let s = [D::Expired, D::Pending];
        assert_eq!(progress(Strategy::Failover, &s).expire, vec![1]);
    }

    #[test]
    fn status_is_the_sum_of_deliveries() {
        assert_eq!(message_status(&[D::Queued, D::Pending]), M::Queued);
        assert_eq!(message_status(&[D::Sending]), M::Sending);
        assert_eq!(message_status(&[D::Sent, D::Sending]), M::Sending);
        assert_eq!(message_status(&[D::Failed, D::Sent]), M::Sent);
        assert_eq!(message_status(&[D::Sent, D::Skipped]), M::Sent);
        assert_eq!(message_status(&[D::Delivered, D::Failed]), M::Delivered);
        assert_eq!(message_status(&[D::Failed, D::Failed]), M::Failed);
        assert_eq!(message_status(&[D::Failed, D::Expired]), M::Failed);
        assert_eq!(message_status(&[D::Expired, D::Cancelled]), M::Expired);
        assert_eq!(message_status(&[D::Cancelled, D::Skipped]), M::Cancelled);
    }

    #[test]
    fn exhaustively_over_pairs_and_triples() {
        for a in ALL {
            for b in ALL {
                for c in ALL {
                    let s = [a, b, c];
                    for strategy in Strategy::ALL {
                        let p = progress(*strategy, &s);
                        // Only pending deliveries are ever touched, each at most once.
                        let mut touched: Vec<usize> =
                            p.skip.iter().chain(&p.expire).copied().collect();
                        touched.extend(p.activate);
                        for i in &touched {
                            assert_eq!(s[*i], D::Pending, "{s:?} {p:?}");
                        }
                        let n = touched.len();
                        touched.sort();
                        touched.dedup();
                        assert_eq!(n, touched.len(), "{s:?} {p:?}");
                        // Never two active channels under failover because of us.
                        if p.activate.is_some() {
                            assert!(!s.iter().any(|x| matches!(x, D::Queued | D::Sending)));
                        }
                    }
                    let st = message_status(&s);
                    assert_eq!(is_dead_letter(&s), st == M::Failed);
                    if s.iter().any(|x| x.is_success()) {
                        assert!(matches!(st, M::Sent | M::Delivered | M::Sending), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn initial_states() {
        assert_eq!(
            initial(Strategy::Failover, &[false; 3]),
            vec![D::Queued, D::Pending, D::Pending]
        );
        assert_eq!(
            initial(Strategy::All, &[false; 2]),
            vec![D::Queued, D::Queued]
        );
        // Skipped deliveries (a contact's opt-out): failover starts at the first kept one.
        assert_eq!(
            initial(Strategy::Failover, &[true, false, false]),
            vec![D::Skipped, D::Queued, D::Pending]
        );
        assert_eq!(
            initial(Strategy::Failover, &[false, true, false]),
            vec![D::Queued, D::Skipped, D::Pending]
        );
        assert_eq!(
            initial(Strategy::All, &[true, false]),
            vec![D::Skipped, D::Queued]
        );
        assert_eq!(
            initial(Strategy::Failover, &[true, true]),
            vec![D::Skipped; 2]
        );
        assert_eq!(message_status(&[D::Skipped, D::Skipped]), M::Cancelled);
    }
}
