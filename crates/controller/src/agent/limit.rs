//! Token buckets: how much a guest may make weftd read and parse per second.

use std::time::{Duration, Instant};

/// Holds up to `burst` tokens and gains `rate` per second.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            burst,
            rate,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + gained).min(self.burst);
        self.at = now;
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens, going into debt if need be; returns how long until the debt is paid
    /// off, which is how long the taker should wait.
    pub(crate) fn charge(&mut self, n: usize, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(5.0, 10.0, t0);
        assert_eq!((0..20).filter(|_| b.take(t0)).count(), 10);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..20).filter(|_| b.take(t1)).count(), 5);
        // Idle time fills it up to the burst, no more.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| b.take(t2)).count(), 10);
    }

    #[test]
    fn charging_past_the_burst_asks_to_wait() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000.0, 1000.0, t0);
        assert_eq!(b.charge(600, t0), Duration::ZERO);
        let wait = b.charge(600, t0);
        assert!(wait > Duration::from_millis(190) && wait < Duration::from_millis(210));
        // After waiting that long the debt is paid.
        assert_eq!(
            b.charge(0, t0 + wait + Duration::from_millis(1)),
            Duration::ZERO
        );
    }
}
