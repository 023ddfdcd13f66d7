//! Health per endpoint, for providers whose target comes from the message (webhooks): each
//! origin has its own circuit breaker, so a receiver that refuses connections opens only its
//! own circuit. Kept in memory per node, bounded: closed, quiet endpoints are forgotten first.

use crate::core::circuit::{Breaker, BreakerConfig, Health};
use crate::core::types::Millis;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most endpoints remembered at once; past it the quiet ones are dropped.
const MAX_TRACKED: usize = 10_000;
/// A call slower than this makes its endpoint count as unhealthy for fair sharing.
pub const SLOW_MS: u32 = 1_000;

struct Entry {
    breaker: Breaker,
    last_latency_ms: u32,
    last_used: Millis,
}

/// An endpoint whose circuit is not closed, as `GET /v1/providers` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndpointView {
    pub endpoint: String,
    pub circuit: &'static str,
    pub success_rate: f64,
    pub calls: u64,
    pub failures: u64,
}

/// An endpoint's health as fair sharing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointState {
    /// Closed, its last call went well and was not slow.
    pub healthy: bool,
    /// A call may go through now (closed, or a probe slot free).
    pub callable: bool,
    pub closed: bool,
}

pub struct Endpoints {
    cfg: BreakerConfig,
    map: Mutex<HashMap<String, Entry>>,
}

impl Endpoints {
    pub fn new(cfg: BreakerConfig) -> Self {
        Endpoints {
            cfg,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, key: &str, now: Millis, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut map = self.map.lock().ok()?;
        if !map.contains_key(key) {
            if map.len() >= MAX_TRACKED {
                let cfg_now = now;
                map.retain(|_, e| !e.breaker.forgettable(cfg_now));
                if map.len() >= MAX_TRACKED {
                    // Everything is troubled: drop the least recently used.
                    if let Some(oldest) = map
                        .iter()
                        .min_by_key(|(_, e)| e.last_used)
                        .map(|(k, _)| k.clone())
                    {
                        map.remove(&oldest);
                    }
                }
            }
            map.insert(
                key.to_string(),
                Entry {
                    breaker: Breaker::new(self.cfg),
                    last_latency_ms: 0,
                    last_used: now,
                },
            );
        }
        map.get_mut(key).map(f)
    }

    /// Whether a call to `key` may go through now (without taking a probe slot).
    pub fn permits(&self, key: &str, now: Millis) -> bool {
        self.with(key, now, |e| e.breaker.permits(now))
            .unwrap_or(true)
    }

    /// When `key` lets a call through next, if it does not now.
    pub fn ready_at(&self, key: &str, now: Millis) -> Millis {
        self.with(key, now, |e| {
            if e.breaker.permits(now) {
                now
            } else {
                e.breaker.reopens_at().unwrap_or(now + 1000)
            }
        })
        .unwrap_or(now)
    }

    /// Takes the right to call `key` now (a probe slot when half-open).
    pub fn acquire(&self, key: &str, now: Millis) -> bool {
        self.with(key, now, |e| {
            e.last_used = now;
            e.breaker.acquire(now)
        })
        .unwrap_or(true)
    }

    /// Gives back a probe slot taken for a call that was not made.
    pub fn release(&self, key: &str, now: Millis) {
        self.with(key, now, |e| e.breaker.release(now));
    }

    pub fn record(&self, key: &str, now: Millis, health: Health, latency_ms: u32) {
        self.with(key, now, |e| {
            e.last_used = now;
            e.last_latency_ms = latency_ms;
            e.breaker.record(now, health, latency_ms);
        });
    }

    /// What fair sharing needs to know of `key` now.
    pub fn load(&self, key: &str, now: Millis) -> EndpointState {
        self.with(key, now, |e| EndpointState {
            healthy: !e.breaker.troubled(now) && e.last_latency_ms < SLOW_MS,
            callable: e.breaker.permits(now),
            closed: e.breaker.circuit(now).name() == "closed",
        })
        .unwrap_or(EndpointState {
            healthy: true,
            callable: true,
            closed: true,
        })
    }

    /// Endpoints that may not be called now (circuit open, or its probe in flight), the
    /// most recently used first, at most `limit`: the dispatcher leaves their work unclaimed.
    pub fn uncallable(&self, now: Millis, limit: usize) -> Vec<String> {
        let Ok(map) = self.map.lock() else {
            return Vec::new();
        };
        let mut v: Vec<(&String, Millis)> = map
            .iter()
            .filter(|(_, e)| !e.breaker.permits(now))
            .map(|(k, e)| (k, e.last_used))
            .collect();
        v.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
        v.into_iter().take(limit).map(|(k, _)| k.clone()).collect()
    }

    /// Endpoints whose circuit is open or half-open, worst first (at most `limit`), and how
    /// many are tracked in all.
    pub fn troubled(&self, now: Millis, limit: usize) -> (Vec<EndpointView>, usize) {
        let Ok(map) = self.map.lock() else {
            return (Vec::new(), 0);
        };
        let mut out: Vec<EndpointView> = map
            .iter()
            .filter(|(_, e)| e.breaker.circuit(now).name() != "closed")
            .map(|(k, e)| EndpointView {
                endpoint: k.clone(),
                circuit: e.breaker.circuit(now).name(),
                success_rate: (e.breaker.success_rate() * 1000.0).round() / 1000.0,
                calls: e.breaker.calls,
                failures: e.breaker.failures,
            })
            .collect();
        out.sort_by(|a, b| {
            a.success_rate
                .total_cmp(&b.success_rate)
                .then_with(|| a.endpoint.cmp(&b.endpoint))
        });
        out.truncate(limit);
        (out, map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_endpoint_failing_leaves_the_others_closed() {
        let e = Endpoints::new(BreakerConfig::default());
        for t in 0..3 {
            assert!(e.acquire("http://dead:1", t));
            e.record("http://dead:1", t, Health::Failure, 1);
        }
        assert!(!e.permits("http://dead:1", 10));
        assert!(e.permits("http://alive:2", 10));
        let dead = e.load("http://dead:1", 10);
        assert!(!dead.healthy && !dead.callable && !dead.closed);
        let alive = e.load("http://alive:2", 10);
        assert!(alive.healthy && alive.callable && alive.closed);
        assert_eq!(e.uncallable(10, 10), vec!["http://dead:1".to_string()]);
        let (views, tracked) = e.troubled(10, 10);
        assert_eq!(tracked, 2);
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].endpoint, "http://dead:1");
        assert_eq!(views[0].circuit, "open");
    }

    #[test]
    fn a_slow_endpoint_is_not_healthy() {
        let e = Endpoints::new(BreakerConfig::default());
        e.record("http://slow:1", 0, Health::Ok, SLOW_MS + 1);
        assert!(!e.load("http://slow:1", 1).healthy);
        assert!(e.load("http://slow:1", 1).callable);
        e.record("http://slow:1", 2, Health::Ok, 5);
        assert!(e.load("http://slow:1", 3).healthy);
    }

    #[test]
    fn memory_is_bounded() {
        let e = Endpoints::new(BreakerConfig::default());
        for i in 0..(MAX_TRACKED + 50) {
            e.record(&format!("http://h{i}:1"), i as i64, Health::Ok, 1);
        }
        let (_, tracked) = e.troubled(0, 1);
        assert!(tracked <= MAX_TRACKED, "{tracked}");
    }
}
