//! Samples of durations and how they are summarized in the report.

use std::time::Duration;

/// Durations measured one by one, in the order they were taken.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn new() -> Samples {
        Samples(Vec::new())
    }

    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `q` quantile (0.0 to 1.0), nearest rank; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.0.clone();
        sorted.sort();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    pub fn p50(&self) -> Duration {
        self.quantile(0.50)
    }

    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    /// The samples taken from `range` (by position), for "first ten" and "last ten".
    pub fn slice(&self, range: std::ops::Range<usize>) -> Samples {
        let end = range.end.min(self.0.len());
        let start = range.start.min(end);
        Samples(self.0[start..end].to_vec())
    }

    pub fn first(&self) -> Option<Duration> {
        self.0.first().copied()
    }

    pub fn last(&self) -> Option<Duration> {
        self.0.last().copied()
    }
}

/// A duration for the report: microseconds under 1 ms, milliseconds under 10 s.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.1} s", us / 1e6)
    }
}

/// `a / b` as "12.3×"; "–" when `b` is zero.
pub fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 || !a.is_finite() || !b.is_finite() {
        "–".to_string()
    } else {
        format!("{:.2}×", a / b)
    }
}

/// How many times faster `fast` is than `slow`.
pub fn speedup(slow: Duration, fast: Duration) -> String {
    ratio(slow.as_secs_f64(), fast.as_secs_f64())
}

/// Bytes per second as MB/s and Gbit/s.
pub fn fmt_rate(bytes_per_s: f64) -> String {
    format!(
        "{:.0} MB/s ({:.2} Gbit/s)",
        bytes_per_s / 1e6,
        bytes_per_s * 8.0 / 1e9
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut s = Samples::new();
        for n in (1..=100).rev() {
            s.push(ms(n));
        }
        assert_eq!(s.p50(), ms(50));
        assert_eq!(s.p99(), ms(99));
        assert_eq!(s.quantile(1.0), ms(100));
        assert_eq!(Samples::new().p50(), Duration::ZERO);
    }

    #[test]
    fn slices_clamp() {
        let mut s = Samples::new();
        (1..=5).for_each(|n| s.push(ms(n)));
        assert_eq!(s.slice(3..10).len(), 2);
        assert_eq!(s.slice(7..9).len(), 0);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_duration(Duration::from_micros(250)), "250 µs");
        assert_eq!(fmt_duration(ms(12)), "12.00 ms");
        assert_eq!(speedup(ms(40), ms(2)), "20.00×");
        assert_eq!(ratio(1.0, 0.0), "–");
    }
}
