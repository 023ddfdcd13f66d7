//! The one pure function that decides what happens to a delivery after a provider call:
//! sent, retry at t (exponential backoff with full jitter, honouring `Retry-After`), another
//! provider now, expired at TTL, or failed for good.

use super::types::{ErrorClass, Millis};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub factor: u32,
    pub cap: Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            factor: 2,
            cap: Duration::from_secs(300),
            max_attempts: 10,
        }
    }
}

impl RetryPolicy {
    /// The upper bound of the backoff before try `tries + 1`: base × factor^(tries-1), capped.
    pub fn ceiling(&self, tries: u32) -> Duration {
        let exp = tries.saturating_sub(1).min(63);
        let mult = (self.factor as u128).saturating_pow(exp);
        let ms = (self.base.as_millis()).saturating_mul(mult);
        Duration::from_millis(ms.min(self.cap.as_millis()) as u64)
    }
}

/// What the provider call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Error {
        class: ErrorClass,
        retry_after: Option<Duration>,
    },
}

/// What is known about the delivery when its call returns.
#[derive(Debug, Clone, Copy)]
pub struct Attempted {
    /// Calls made for this delivery so far, this one included (since the last replay).
    pub tries: u32,
    pub now: Millis,
    pub expires_at: Millis,
    /// Whether the channel has another provider ready now besides the one just called.
    pub other_provider: bool,
    /// When a later channel is waiting: the time past which this one gives way to it.
    pub failover_at: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    Recipient,
    Rejected,
    NoProvider,
    AttemptsExhausted,
    /// The channel ran past `failover_after` while another channel waited.
    Deadline,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Recipient => "recipient",
            FailReason::Rejected => "rejected",
            FailReason::NoProvider => "no_provider",
            FailReason::AttemptsExhausted => "attempts_exhausted",
            FailReason::Deadline => "deadline",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Sent,
    /// Try again at `at`; `skip_provider` when the provider just called must not be used again.
    Retry {
        at: Millis,
        skip_provider: bool,
    },
    Expired,
    Failed(FailReason),
    /// Not tried: the provider's outbound budget is spent; wait until `at` (no try counted).
    Defer {
        at: Millis,
    },
}

/// Decides the next step. `jitter` is a uniform draw in `[0, 1)`: the caller supplies the
/// randomness so this stays pure.
pub fn next_step(policy: &RetryPolicy, a: Attempted, outcome: &Outcome, jitter: f64) -> Step {
    let class = match outcome {
        Outcome::Sent => return Step::Sent,
        Outcome::Error { class, .. } => *class,
    };
    let attempts_left = a.tries < policy.max_attempts;
    match class {
        ErrorClass::Recipient => Step::Failed(FailReason::Recipient),
        ErrorClass::Rejected => Step::Failed(FailReason::Rejected),
        ErrorClass::Provider if a.other_provider && attempts_left => {
            if a.now >= a.expires_at {
                Step::Expired
            } else {
                Step::Retry {
                    at: a.now,
                    skip_provider: true,
                }
            }
        }
        ErrorClass::Provider => Step::Failed(FailReason::NoProvider),
        ErrorClass::Transient if !attempts_left => Step::Failed(FailReason::AttemptsExhausted),
        // Another provider is ready: go there now rather than wait out a backoff.
        ErrorClass::Transient if a.other_provider => {
            if a.now >= a.expires_at {
                Step::Expired
            } else {
                Step::Retry {
                    at: a.now,
                    skip_provider: false,
                }
            }
        }
        ErrorClass::Transient => {
            let ceiling = policy.ceiling(a.tries).as_millis() as f64;
            let mut delay = (ceiling * jitter.clamp(0.0, 1.0)) as i64;
            if let Outcome::Error {
                retry_after: Some(ra),
                ..
            } = outcome
            {
                delay = delay.max(ra.as_millis().min(i64::MAX as u128) as i64);
            }
            let at = a.now.saturating_add(delay);
            if at >= a.expires_at {
                Step::Expired
            } else if a.failover_at.is_some_and(|d| at >= d) {
                Step::Failed(FailReason::Deadline)
            } else {
                Step::Retry {
                    at,
                    skip_provider: false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;

    fn attempted(tries: u32, ttl_ms: i64, other: bool) -> Attempted {
        Attempted {
            tries,
            now: NOW,
            expires_at: NOW + ttl_ms,
            other_provider: other,
            failover_at: None,
        }
    }

    fn err(class: ErrorClass, ra: Option<u64>) -> Outcome {
        Outcome::Error {
            class,
            retry_after: ra.map(Duration::from_secs),
        }
    }

    #[test]
    fn backoff_ceiling_doubles_from_one_second_to_five_minutes() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=12).map(|t| p.ceiling(t).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(p.ceiling(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn exhaustively_every_class_try_count_and_circumstance() {
        let p = RetryPolicy::default();
        let day = 86_400_000;
        for class in ErrorClass::ALL {
            for tries in 1..=p.max_attempts + 1 {
                for ra in [None, Some(0), Some(30), Some(3600 * 48)] {
                    for other in [false, true] {
                        for ttl in [-1, 0, 500, 10_000, day] {
                            for jitter in [0.0, 0.5, 0.999_999] {
                                let a = attempted(tries, ttl, other);
                                let step = next_step(&p, a, &err(*class, ra), jitter);
                                check(&p, a, *class, ra, jitter, step);
                            }
                        }
                    }
                }
            }
        }
    }

    fn check(
        p: &RetryPolicy,
        a: Attempted,
        class: ErrorClass,
        ra: Option<u64>,
        jitter: f64,
        step: Step,
    ) {
        let ctx = format!(
            "{class:?} tries={} ra={ra:?} other={} ttl={} j={jitter} -> {step:?}",
            a.tries,
            a.other_provider,
            a.expires_at - a.now
        );
        let left = a.tries < p.max_attempts;
        match class {
            ErrorClass::Recipient => assert_eq!(step, Step::Failed(FailReason::Recipient), "{ctx}"),
            ErrorClass::Rejected => assert_eq!(step, Step::Failed(FailReason::Rejected), "{ctx}"),
            ErrorClass::Provider => {
                if !(a.other_provider && left) {
                    assert_eq!(step, Step::Failed(FailReason::NoProvider), "{ctx}");
                } else if a.now >= a.expires_at {
                    assert_eq!(step, Step::Expired, "{ctx}");
                } else {
                    assert_eq!(
                        step,
                        Step::Retry {
                            at: a.now,
                            skip_provider: true
                        },
                        "{ctx}"
                    );
                }
            }
            ErrorClass::Transient => {
                if !left {
                    assert_eq!(step, Step::Failed(FailReason::AttemptsExhausted), "{ctx}");
                    return;
                }
                if a.other_provider {
                    let want = if a.now >= a.expires_at {
                        Step::Expired
                    } else {
                        Step::Retry {
                            at: a.now,
                            skip_provider: false,
                        }
                    };
                    assert_eq!(step, want, "another ready provider is tried at once: {ctx}");
                    return;
                }
                match step {
                    Step::Retry { at, skip_provider } => {
                        assert!(!skip_provider, "{ctx}");
                        assert!(at < a.expires_at, "never scheduled past the TTL: {ctx}");
                        let delay = (at - a.now) as u128;
                        let ceiling = p.ceiling(a.tries).as_millis();
                        let floor = ra.map(|s| s as u128 * 1000).unwrap_or(0);
                        assert!(delay <= ceiling.max(floor), "{ctx}");
                        assert!(delay >= floor, "Retry-After honoured: {ctx}");
                    }
                    Step::Expired => {
                        let min_delay = ra.map(|s| s as i64 * 1000).unwrap_or(0);
                        let max_delay = (p.ceiling(a.tries).as_millis() as i64).max(min_delay);
                        assert!(
                            a.now + max_delay >= a.expires_at,
                            "expired only when the retry would land past the TTL: {ctx}"
                        );
                    }
                    other => panic!("unexpected {other:?}: {ctx}"),
                }
            }
        }
    }

    #[test]
    fn sent_is_sent_whatever_else_holds() {
        let p = RetryPolicy::default();
        for tries in [1, 10, 11] {
            assert_eq!(
                next_step(&p, attempted(tries, -5, false), &Outcome::Sent, 0.3),
                Step::Sent
            );
        }
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_window() {
        let p = RetryPolicy::default();
        let a = attempted(4, 86_400_000, false);
        let at = |j| match next_step(&p, a, &err(ErrorClass::Transient, None), j) {
            Step::Retry { at, .. } => at - NOW,
            s => panic!("{s:?}"),
        };
        assert_eq!(at(0.0), 0);
        assert_eq!(at(0.5), 4_000);
        assert!(at(0.999_999) >= 7_999);
    }

    #[test]
    fn a_channel_past_its_failover_deadline_gives_way() {
        let p = RetryPolicy::default();
        let mut a = attempted(5, 86_400_000, false);
        a.failover_at = Some(NOW + 1_000);
        // Backoff ceiling at try 5 is 16 s: with jitter 0.5 the retry would land past the deadline.
        assert_eq!(
            next_step(&p, a, &err(ErrorClass::Transient, None), 0.5),
            Step::Failed(FailReason::Deadline)
        );
        // Jitter 0 retries at once, before the deadline.
        assert!(matches!(
            next_step(&p, a, &err(ErrorClass::Transient, None), 0.0),
            Step::Retry { .. }
        ));
    }

    #[test]
    fn retry_after_is_honoured_even_above_the_cap() {
        let p = RetryPolicy::default();
        let a = attempted(1, 86_400_000, false);
        assert_eq!(
            next_step(&p, a, &err(ErrorClass::Transient, Some(600)), 0.0),
            Step::Retry {
                at: NOW + 600_000,
                skip_provider: false
            }
        );
    }
}
