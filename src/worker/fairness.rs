//! The dispatcher's bookkeeping for fair sharing among endpoints (see `core::fair`): calls in
//! flight per endpoint, which endpoints a claim must leave alone, and which of the claimed
//! deliveries go back because their endpoint already holds its share.

use crate::core::fair::{Load, Pass, may_take};
use crate::providers::Registry;
use crate::store::{Claimed, Lease};
use std::collections::HashMap;
use std::sync::Mutex;

/// Most endpoints named in one claim's exclusion list.
const MAX_EXCLUDED: usize = 256;

#[derive(Default)]
pub struct EndpointSlots {
    in_flight: Mutex<HashMap<String, usize>>,
}

impl EndpointSlots {
    fn loads(&self, providers: &Registry, now: i64) -> (Vec<(String, Load)>, usize) {
        let map = self.in_flight.lock().map(|m| m.clone()).unwrap_or_default();
        let active = map.len();
        let loads = map
            .into_iter()
            .map(|(k, n)| {
                let st = providers.endpoint_load(&k, now);
                let load = Load {
                    in_flight: n,
                    healthy: st.healthy,
                    callable: st.callable && (st.closed || n == 0),
                };
                (k, load)
            })
            .collect();
        (loads, active)
    }

    /// The endpoints whose work a claim in `pass` must not take: those at their share and
    /// those whose circuit lets nothing through.
    pub fn excluded(
        &self,
        providers: &Registry,
        concurrency: usize,
        pass: Pass,
        now: i64,
    ) -> Vec<String> {
        let (loads, active) = self.loads(providers, now);
        let mut out: Vec<String> = loads
            .into_iter()
            .filter(|(_, l)| !may_take(*l, concurrency, active, pass))
            .map(|(k, _)| k)
            .collect();
        for k in providers.uncallable_endpoints(now, MAX_EXCLUDED) {
            if out.len() >= MAX_EXCLUDED {
                break;
            }
            if !out.contains(&k) {
                out.push(k);
            }
        }
        out.truncate(MAX_EXCLUDED);
        out
    }

    /// Splits a claimed batch into what may be sent now (each with the endpoint it holds a
    /// slot of, taken here) and the leases to give back: deliveries whose endpoint reached
    /// its share within this batch.
    pub fn admit(
        &self,
        providers: &Registry,
        claimed: Vec<Claimed>,
        concurrency: usize,
        pass: Pass,
        now: i64,
    ) -> (Vec<(Claimed, Option<String>)>, Vec<Lease>) {
        let mut keep = Vec::with_capacity(claimed.len());
        let mut back = Vec::new();
        let Ok(mut map) = self.in_flight.lock() else {
            return (claimed.into_iter().map(|c| (c, None)).collect(), back);
        };
        for c in claimed {
            let Some(key) = providers.endpoint_of(c.channel, &c.to) else {
                keep.push((c, None));
                continue;
            };
            let n = map.get(&key).copied().unwrap_or(0);
            let active = map.len() + usize::from(n == 0);
            let st = providers.endpoint_load(&key, now);
            let load = Load {
                in_flight: n,
                healthy: st.healthy,
                callable: st.callable && (st.closed || n == 0),
            };
            if may_take(load, concurrency, active, pass) {
                *map.entry(key.clone()).or_insert(0) += 1;
                keep.push((c, Some(key)));
            } else {
                back.push(c.lease);
            }
        }
        (keep, back)
    }

    /// A call to `key` is over.
    pub fn done(&self, key: &str) {
        if let Ok(mut map) = self.in_flight.lock()
            && let Some(n) = map.get_mut(key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(key);
            }
        }
    }

    #[cfg(test)]
    pub fn in_flight(&self, key: &str) -> usize {
        self.in_flight
            .lock()
            .map(|m| m.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}
