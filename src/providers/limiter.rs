//! Outbound rate limits per provider: a sliding-window log per limit, so a robot's
//! "20 per minute" is never exceeded. Work over the limit waits in the queue.

use crate::config::Rate;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug)]
pub struct Limiter {
    windows: Mutex<Vec<(Rate, VecDeque<i64>)>>,
}

impl Limiter {
    pub fn new(rates: &[Rate]) -> Self {
        Limiter {
            windows: Mutex::new(rates.iter().map(|r| (*r, VecDeque::new())).collect()),
        }
    }

    /// The limits this limiter enforces.
    pub fn rates(&self) -> Vec<Rate> {
        self.windows
            .lock()
            .map(|w| w.iter().map(|(r, _)| *r).collect())
            .unwrap_or_default()
    }

    /// Whether a slot is free at `now_ms`, without taking it.
    pub fn peek(&self, now_ms: i64) -> Result<(), Duration> {
        let Ok(windows) = self.windows.lock() else {
            return Ok(());
        };
        let mut wait = 0i64;
        for (rate, log) in windows.iter() {
            let span = rate.per.as_millis() as i64;
            let live: Vec<&i64> = log.iter().filter(|t| **t > now_ms - span).collect();
            if live.len() >= rate.count as usize
                && let Some(oldest) = live.first()
            {
                wait = wait.max(**oldest + span - now_ms + 1);
            }
        }
        if wait > 0 {
            Err(Duration::from_millis(wait as u64))
        } else {
            Ok(())
        }
    }

    /// Takes one slot at `now_ms`, or says how long until one frees.
    pub fn try_acquire(&self, now_ms: i64) -> Result<(), Duration> {
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        let mut wait = 0i64;
        for (rate, log) in windows.iter_mut() {
            let span = rate.per.as_millis() as i64;
            while log.front().is_some_and(|t| *t <= now_ms - span) {
                log.pop_front();
            }
            if log.len() >= rate.count as usize
                && let Some(oldest) = log.front()
            {
                wait = wait.max(oldest + span - now_ms + 1);
            }
        }
        if wait > 0 {
            return Err(Duration::from_millis(wait as u64));
        }
        for (_, log) in windows.iter_mut() {
            log.push_back(now_ms);
        }
        Ok(())
    }
}

/// Per-recipient limits of providers that enforce their own (Aliyun VMS: a callee is called
/// at most 1/min, 5/h, 20/day): one sliding-window log per (provider, recipient), on this
/// node. Idle logs are dropped when the map grows large.
#[derive(Debug, Default)]
pub struct RecipientLimits {
    logs: Mutex<std::collections::HashMap<String, Limiter>>,
}

/// Most recipients remembered before idle ones are dropped.
const MAX_RECIPIENTS: usize = 100_000;

impl RecipientLimits {
    /// Takes a slot for `to` under `rates` at `now_ms`, or says how long until one frees.
    pub fn try_acquire(&self, key: &str, rates: &[Rate], now_ms: i64) -> Result<(), Duration> {
        let Ok(mut logs) = self.logs.lock() else {
            return Ok(());
        };
        if logs.len() >= MAX_RECIPIENTS && !logs.contains_key(key) {
            logs.retain(|_, l| l.peek(now_ms).is_err());
        }
        logs.entry(key.to_string())
            .or_insert_with(|| Limiter::new(rates))
            .try_acquire(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_limited_each_on_their_own() {
        let r = RecipientLimits::default();
        let rates = [Rate::parse("1/min").unwrap(), Rate::parse("5/h").unwrap()];
        assert!(r.try_acquire("vms:+1", &rates, 0).is_ok());
        assert_eq!(
            r.try_acquire("vms:+1", &rates, 1_000),
            Err(Duration::from_millis(59_001))
        );
        assert!(
            r.try_acquire("vms:+2", &rates, 1_000).is_ok(),
            "another callee"
        );
        for i in 1..5 {
            assert!(r.try_acquire("vms:+1", &rates, i * 60_001).is_ok());
        }
        let w = r.try_acquire("vms:+1", &rates, 5 * 60_001).unwrap_err();
        assert!(
            w > Duration::from_secs(50 * 60),
            "the hour's budget is spent: {w:?}"
        );
    }

    #[test]
    fn never_more_than_the_rate_in_any_window() {
        let l = Limiter::new(&[Rate::parse("20/min").unwrap(), Rate::parse("5/s").unwrap()]);
        let mut sent = Vec::new();
        let mut t = 0i64;
        while t < 180_000 {
            match l.try_acquire(t) {
                Ok(()) => sent.push(t),
                Err(w) => assert!(w.as_millis() > 0),
            }
            t += 37;
        }
        for (i, s) in sent.iter().enumerate() {
            let in_minute = sent[i..].iter().take_while(|x| **x < s + 60_000).count();
            assert!(in_minute <= 20, "{in_minute} within a minute from {s}");
            let in_second = sent[i..].iter().take_while(|x| **x < s + 1_000).count();
            assert!(in_second <= 5);
        }
        assert_eq!(
            sent.len(),
            60,
            "the full budget is used: 20 in each of 3 minutes"
        );
    }

    #[test]
    fn tells_how_long_to_wait() {
        let l = Limiter::new(&[Rate::parse("2/s").unwrap()]);
        assert!(l.try_acquire(0).is_ok());
        assert!(l.try_acquire(100).is_ok());
        let w = l.try_acquire(200).unwrap_err();
        assert_eq!(w.as_millis(), 801);
        assert!(l.try_acquire(1001).is_ok());
    }
}
