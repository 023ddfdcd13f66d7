//! A circuit breaker per provider, with the statistics that make up its health: closed →
//! open on a failure rate over a sliding window or N consecutive failures, or at once on a
//! provider-class error (bad credentials) → half-open probes after a pause → closed again on
//! a successful probe. Pure: time is passed in.

use super::types::Millis;
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Outcomes kept for the failure rate (and latency percentiles: ten times as many).
    pub window: usize,
    /// Fewest outcomes in the window before the rate counts.
    pub min_calls: usize,
    /// Open when this share of the window failed.
    pub failure_rate: f64,
    /// Open after this many failures in a row.
    pub consecutive: u32,
    /// How long it stays open before a probe is let through.
    pub open_ms: i64,
    /// Calls let through at once while half-open.
    pub probes: u32,
    /// A probe with no outcome after this long is taken as lost (its call never came back):
    /// its slot is given to the next caller.
    pub probe_timeout_ms: i64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: 20,
            min_calls: 5,
            failure_rate: 0.5,
            consecutive: 3,
            open_ms: 5_000,
            probes: 1,
            probe_timeout_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    Open { until: Millis },
    HalfOpen { in_flight: u32 },
}

impl Circuit {
    pub fn name(&self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open { .. } => "open",
            Circuit::HalfOpen { .. } => "half_open",
        }
    }
}

/// What a call says about the provider's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The provider did its job (sent, or refused the recipient or content: not its fault).
    Ok,
    /// Timeouts, connection errors, 5xx, 429.
    Failure,
    /// Bad credentials, signature, account: it will not get better by itself.
    Fatal,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    circuit: Circuit,
    recent: VecDeque<bool>,
    consecutive: u32,
    latencies: VecDeque<u32>,
    /// Outcomes of the last calls for the success rate shown to operators: unlike `recent`,
    /// not cleared when the circuit opens, so a provider failing 64 of 69 calls shows it.
    outcomes: VecDeque<bool>,
    pub calls: u64,
    pub failures: u64,
    /// When the last probe slot was taken.
    probe_since: Option<Millis>,
    /// When it last opened because of a provider-class error.
    pub fatal_at: Option<Millis>,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        Breaker {
            cfg,
            circuit: Circuit::Closed,
            recent: VecDeque::new(),
            consecutive: 0,
            latencies: VecDeque::new(),
            outcomes: VecDeque::new(),
            calls: 0,
            failures: 0,
            probe_since: None,
            fatal_at: None,
        }
    }

    /// The circuit as it stands at `now` (an open circuit whose pause is over is half-open).
    pub fn circuit(&self, now: Millis) -> Circuit {
        match self.circuit {
            Circuit::Open { until } if now >= until => Circuit::HalfOpen { in_flight: 0 },
            c => c,
        }
    }

    /// Whether a call may go through now, without taking a probe slot.
    pub fn permits(&self, now: Millis) -> bool {
        match self.circuit(now) {
            Circuit::Closed => true,
            Circuit::Open { .. } => false,
            Circuit::HalfOpen { in_flight } => in_flight < self.cfg.probes,
        }
    }

    /// Takes the right to call now (a probe slot when half-open).
    pub fn acquire(&mut self, now: Millis) -> bool {
        let c = self.circuit(now);
        match c {
            Circuit::Closed => true,
            Circuit::Open { .. } => false,
            Circuit::HalfOpen { in_flight } if in_flight < self.cfg.probes => {
                self.circuit = Circuit::HalfOpen {
                    in_flight: in_flight + 1,
                };
                self.probe_since = Some(now);
                true
            }
            Circuit::HalfOpen { .. }
                if self
                    .probe_since
                    .is_some_and(|t| now - t >= self.cfg.probe_timeout_ms) =>
            {
                // The probe in flight never reported back: take its slot.
                self.circuit = c;
                self.probe_since = Some(now);
                true
            }
            Circuit::HalfOpen { .. } => {
                self.circuit = c;
                false
            }
        }
    }

    /// Gives back a probe slot taken by [`Breaker::acquire`] for a call that was not made
    /// (a budget refused it, it was deferred, its task ended before calling).
    pub fn release(&mut self, now: Millis) {
        if let Circuit::HalfOpen { in_flight } = self.circuit(now)
            && in_flight > 0
        {
            self.circuit = Circuit::HalfOpen {
                in_flight: in_flight - 1,
            };
        }
    }

    /// When the circuit lets a probe through next (for work that must wait).
    pub fn reopens_at(&self) -> Option<Millis> {
        match self.circuit {
            Circuit::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Counts a call in the statistics only (success rate, latency), without moving the
    /// circuit: for a provider whose health is kept per endpoint.
    pub fn observe(&mut self, health: Health, latency_ms: u32) {
        self.calls += 1;
        let keep = self.cfg.window * 10;
        self.latencies.push_back(latency_ms);
        while self.latencies.len() > keep {
            self.latencies.pop_front();
        }
        let failed = health != Health::Ok;
        if failed {
            self.failures += 1;
        }
        self.outcomes.push_back(failed);
        while self.outcomes.len() > keep {
            self.outcomes.pop_front();
        }
    }

    pub fn record(&mut self, now: Millis, health: Health, latency_ms: u32) {
        self.observe(health, latency_ms);
        let failed = health != Health::Ok;
        self.recent.push_back(failed);
        while self.recent.len() > self.cfg.window {
            self.recent.pop_front();
        }
        let half_open = matches!(self.circuit(now), Circuit::HalfOpen { .. });
        if half_open {
            self.probe_since = None;
        }
        match health {
            Health::Ok => {
                self.consecutive = 0;
                if half_open {
                    self.circuit = Circuit::Closed;
                    self.recent.clear();
                }
            }
            Health::Fatal => {
                self.consecutive += 1;
                self.fatal_at = Some(now);
                self.open(now);
            }
            Health::Failure => {
                self.consecutive += 1;
                if half_open || self.consecutive >= self.cfg.consecutive || self.rate_tripped() {
                    self.open(now);
                }
            }
        }
    }

    fn open(&mut self, now: Millis) {
        self.circuit = Circuit::Open {
            until: now + self.cfg.open_ms,
        };
        self.recent.clear();
    }

    fn rate_tripped(&self) -> bool {
        let n = self.recent.len();
        n >= self.cfg.min_calls
            && (self.recent.iter().filter(|f| **f).count() as f64 / n as f64)
                >= self.cfg.failure_rate
    }

    /// Share of the last calls (up to ten windows) that went well (1 when there were none).
    pub fn success_rate(&self) -> f64 {
        let n = self.outcomes.len();
        if n == 0 {
            return 1.0;
        }
        1.0 - self.outcomes.iter().filter(|f| **f).count() as f64 / n as f64
    }

    /// Whether the last call failed or the circuit is not closed.
    pub fn troubled(&self, now: Millis) -> bool {
        self.circuit(now) != Circuit::Closed || self.outcomes.back().copied().unwrap_or(false)
    }

    /// When nothing has happened to it for a while and it is closed: safe to forget.
    pub fn forgettable(&self, now: Millis) -> bool {
        self.circuit(now) == Circuit::Closed && self.consecutive == 0
    }

    /// Latency percentile over recent calls, in milliseconds.
    pub fn latency(&self, p: f64) -> Option<u32> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut v: Vec<u32> = self.latencies.iter().copied().collect();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).copied()
    }

    /// `up`, `degraded` or `down` (the manual `disabled` is decided above this).
    pub fn state(&self, now: Millis) -> &'static str {
        match self.circuit(now) {
            Circuit::Open { .. } => "down",
            Circuit::HalfOpen { .. } => "degraded",
            Circuit::Closed
                if self.outcomes.len() >= self.cfg.min_calls && self.success_rate() < 0.9 =>
            {
                "degraded"
            }
            Circuit::Closed => "up",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig::default())
    }

    #[test]
    fn consecutive_failures_open_it_and_a_probe_closes_it() {
        let mut b = breaker();
        for t in 0..2 {
            b.record(t, Health::Failure, 10);
            assert_eq!(b.circuit(t), Circuit::Closed);
        }
        b.record(2, Health::Failure, 10);
        assert_eq!(b.circuit(3), Circuit::Open { until: 5_002 });
        assert!(!b.permits(4_000) && !b.acquire(4_000));
        assert_eq!(b.state(4_000), "down");
        // After the pause one probe goes through, a second waits.
        assert!(b.acquire(5_002));
        assert!(!b.acquire(5_003));
        b.record(5_100, Health::Ok, 10);
        assert_eq!(b.circuit(5_101), Circuit::Closed);
        assert_eq!(b.state(5_101), "up");
    }

    #[test]
    fn a_probe_not_made_is_given_back_and_a_lost_one_times_out() {
        let mut b = breaker();
        for t in 0..3 {
            b.record(t, Health::Failure, 1);
        }
        assert!(b.acquire(6_000), "the probe slot");
        assert!(!b.acquire(6_001), "only one probe at a time");
        b.release(6_002); // its budget refused the call
        assert!(b.acquire(6_003), "the slot is free again");
        // This probe never reports back: after the probe timeout its slot is taken over.
        assert!(!b.acquire(6_003 + 59_999));
        assert!(b.acquire(6_003 + 60_000));
        b.record(70_000, Health::Ok, 1);
        assert_eq!(b.circuit(70_001), Circuit::Closed);
        // Releasing a closed circuit changes nothing.
        b.release(70_002);
        assert_eq!(b.circuit(70_003), Circuit::Closed);
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let mut b = breaker();
        for t in 0..3 {
            b.record(t, Health::Failure, 1);
        }
        assert!(b.acquire(6_000));
        b.record(6_010, Health::Failure, 1);
        assert_eq!(b.circuit(6_011), Circuit::Open { until: 11_010 });
    }

    #[test]
    fn a_failure_rate_over_the_window_opens_it() {
        let mut b = breaker();
        // Alternating: never three in a row, but half fail.
        for t in 0..9 {
            b.record(
                t,
                if t % 2 == 0 {
                    Health::Failure
                } else {
                    Health::Ok
                },
                1,
            );
        }
        assert!(
            matches!(b.circuit(10), Circuit::Open { .. }),
            "{:?}",
            b.circuit(10)
        );
    }

    #[test]
    fn a_provider_error_opens_it_at_once() {
        let mut b = breaker();
        b.record(100, Health::Fatal, 1);
        assert!(matches!(b.circuit(101), Circuit::Open { .. }));
        assert_eq!(b.fatal_at, Some(100));
    }

    /// Opening the circuit clears the window that trips it, not the rate operators see
    /// (it stayed 1.0 after 64 failures in 69 calls).
    #[test]
    fn the_success_rate_survives_the_circuit_opening() {
        let mut b = breaker();
        let mut now = 0;
        for i in 0..69 {
            let h = if i % 14 == 13 {
                Health::Ok
            } else {
                Health::Failure
            };
            b.record(now, h, 1);
            now += 6_000; // past every open pause, so each call is let through
        }
        assert_eq!(b.calls, 69);
        assert_eq!(b.failures, 65);
        let rate = b.success_rate();
        assert!((rate - 4.0 / 69.0).abs() < 1e-9, "{rate}");
        assert_ne!(b.state(now - 5_999), "up");
    }

    #[test]
    fn observing_never_moves_the_circuit() {
        let mut b = breaker();
        for _ in 0..50 {
            b.observe(Health::Fatal, 3);
        }
        assert_eq!(b.circuit(1), Circuit::Closed);
        assert_eq!(b.success_rate(), 0.0);
        assert_eq!(b.failures, 50);
    }

    #[test]
    fn recipient_refusals_are_not_the_providers_fault() {
        let mut b = breaker();
        for t in 0..50 {
            b.record(t, Health::Ok, t as u32);
        }
        assert_eq!(b.circuit(60), Circuit::Closed);
        assert_eq!(b.success_rate(), 1.0);
        assert_eq!(b.latency(0.5), Some(25));
        assert_eq!(b.latency(0.99), Some(49));
    }

    #[test]
    fn exhaustively_the_circuit_only_moves_along_its_edges() {
        // Every sequence of 6 outcomes, checked step by step.
        let outcomes = [Health::Ok, Health::Failure, Health::Fatal];
        for code in 0..3usize.pow(6) {
            let mut b = breaker();
            let mut c = code;
            let mut now = 0;
            for _ in 0..6 {
                let h = outcomes[c % 3];
                c /= 3;
                let before = b.circuit(now);
                if b.acquire(now) {
                    b.record(now, h, 5);
                }
                let after = b.circuit(now);
                match (before, after) {
                    (Circuit::Closed, Circuit::HalfOpen { .. }) => {
                        panic!("closed never goes half-open directly")
                    }
                    (Circuit::Open { .. }, Circuit::Closed) => {
                        panic!("open never closes without a probe")
                    }
                    _ => {}
                }
                if h == Health::Fatal && !matches!(before, Circuit::Open { .. }) {
                    assert!(matches!(after, Circuit::Open { .. }));
                }
                now += 2_600;
            }
        }
    }
}
