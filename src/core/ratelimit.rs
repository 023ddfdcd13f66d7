//! A token bucket for inbound limits per API key: `count` requests per `per`, refilled
//! continuously, bursts up to `count`. Pure: time is passed in.

use super::types::Millis;
use crate::config::Rate;

#[derive(Debug, Clone)]
pub struct Bucket {
    rate: Rate,
    tokens: f64,
    last: Millis,
}

/// What a refusal tells the caller (the `RateLimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub limit: u32,
    /// Seconds until a request is allowed again (at least 1).
    pub retry_after_s: u64,
    /// Seconds until the bucket is full again.
    pub reset_s: u64,
}

impl Bucket {
    pub fn new(rate: Rate, now: Millis) -> Self {
        Bucket {
            rate,
            tokens: rate.count as f64,
            last: now,
        }
    }

    fn per_ms(&self) -> f64 {
        self.rate.count as f64 / self.rate.per.as_millis().max(1) as f64
    }

    /// Takes one token; on success returns the tokens left.
    pub fn take(&mut self, now: Millis) -> Result<u32, Refusal> {
        let elapsed = (now - self.last).max(0) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms()).min(self.rate.count as f64);
        self.last = now.max(self.last);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(self.tokens.floor() as u32);
        }
        let wait_ms = (1.0 - self.tokens) / self.per_ms();
        let full_ms = (self.rate.count as f64 - self.tokens) / self.per_ms();
        Err(Refusal {
            limit: self.rate.count,
            retry_after_s: ((wait_ms / 1000.0).ceil() as u64).max(1),
            reset_s: ((full_ms / 1000.0).ceil() as u64).max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_beyond_the_rate_is_refused_then_refills() {
        let mut b = Bucket::new(Rate::parse("5/s").unwrap(), 0);
        for i in 0..5 {
            assert_eq!(b.take(0), Ok(4 - i));
        }
        let r = b.take(0).unwrap_err();
        assert_eq!(
            r,
            Refusal {
                limit: 5,
                retry_after_s: 1,
                reset_s: 1
            }
        );
        assert!(b.take(100).is_err(), "0.5 tokens after 100 ms");
        assert!(b.take(200).is_ok(), "one token after 200 ms");
        assert!(b.take(10_000).is_ok());
    }

    #[test]
    fn slow_rates_say_how_long_to_wait() {
        let mut b = Bucket::new(Rate::parse("2/min").unwrap(), 0);
        assert!(b.take(0).is_ok() && b.take(0).is_ok());
        let r = b.take(0).unwrap_err();
        assert_eq!(r.retry_after_s, 30);
        assert_eq!(r.reset_s, 60);
    }
}
