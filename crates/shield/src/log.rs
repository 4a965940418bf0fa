//! The decision log: one line per decision on stdout (the guest's console), counters per
//! decision and protocol, and the Prometheus text of those counters.
//!
//! Clients can cause decisions at will, so lines are rate limited (a burst of
//! `BURST`, then `PER_SECOND`); counters always count, and a line reports how many log lines
//! were dropped.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

const BURST: f64 = 200.0;
const PER_SECOND: f64 = 50.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    Inject,
}

impl Decision {
    const ALL: [Decision; 3] = [Decision::Allow, Decision::Deny, Decision::Inject];

    fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Inject => "inject",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Dns,
    Http,
    Tls,
    Tcp,
    Udp,
}

impl Proto {
    const ALL: [Proto; 5] = [Proto::Dns, Proto::Http, Proto::Tls, Proto::Tcp, Proto::Udp];

    fn as_str(self) -> &'static str {
        match self {
            Proto::Dns => "dns",
            Proto::Http => "http",
            Proto::Tls => "tls",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One decision about one client's query, connection or request.
pub struct Event<'a> {
    pub decision: Decision,
    pub client: Ipv4Addr,
    pub proto: Proto,
    pub name: Option<&'a str>,
    pub dst: SocketAddrV4,
    pub reason: &'a str,
}

impl Event<'_> {
    pub fn line(&self) -> String {
        format!(
            "{} client={} proto={} name={} dst={} reason={}",
            self.decision.as_str(),
            self.client,
            self.proto.as_str(),
            self.name.map(printable).unwrap_or_else(|| "-".into()),
            self.dst,
            printable(self.reason),
        )
    }
}

/// Names come from clients (SNI, Host): keep a log line one line of harmless characters.
fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(253)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-*:,".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    if out.is_empty() {
        out.push('-');
    }
    out
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct Log {
    counts: [[AtomicU64; 5]; 3],
    suppressed: AtomicU64,
    suppressed_reported: AtomicU64,
    active: AtomicU64,
    bucket: Mutex<Bucket>,
}

impl Default for Log {
    fn default() -> Log {
        Log {
            counts: Default::default(),
            suppressed: AtomicU64::new(0),
            suppressed_reported: AtomicU64::new(0),
            active: AtomicU64::new(0),
            bucket: Mutex::new(Bucket {
                tokens: BURST,
                last: Instant::now(),
            }),
        }
    }
}

/// Prints one `weft-shield: ` line. A console that fails is ignored: the shield keeps
/// filtering without its log rather than stopping its clients' traffic.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "weft-shield: {line}");
    let _ = out.flush();
}

impl Log {
    /// Counts the decision and prints its line unless the rate limit is reached.
    pub fn record(&self, event: &Event<'_>) {
        self.counts[event.decision as usize][event.proto as usize].fetch_add(1, Ordering::Relaxed);
        if self.take_token() {
            say(&event.line());
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a decision without a line: a repeat of one logged a moment ago.
    pub fn count_only(&self, event: &Event<'_>) {
        self.counts[event.decision as usize][event.proto as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn take_token(&self) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(bucket.last).as_secs_f64() * PER_SECOND;
        bucket.tokens = (bucket.tokens + refill).min(BURST);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Prints how many lines were dropped since the last report, if any.
    pub fn report_suppressed(&self) {
        let total = self.suppressed.load(Ordering::Relaxed);
        let before = self.suppressed_reported.swap(total, Ordering::Relaxed);
        if total > before {
            say(&format!("log suppressed={} lines", total - before));
        }
    }

    pub fn count(&self, decision: Decision, proto: Proto) -> u64 {
        self.counts[decision as usize][proto as usize].load(Ordering::Relaxed)
    }

    /// Counts an open connection until the guard is dropped.
    pub fn connection(&self) -> ActiveGuard<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(&self.active)
    }

    /// The counters on one line: `stats allow.dns=3 deny.tls=1 ... active=0 suppressed=0`.
    pub fn stats_line(&self) -> String {
        let mut line = String::from("stats");
        for decision in Decision::ALL {
            for proto in Proto::ALL {
                let _ = write!(
                    line,
                    " {}.{}={}",
                    decision.as_str(),
                    proto.as_str(),
                    self.count(decision, proto)
                );
            }
        }
        let _ = write!(
            line,
            " active={} suppressed={}",
            self.active.load(Ordering::Relaxed),
            self.suppressed.load(Ordering::Relaxed)
        );
        line
    }

    /// The counters in Prometheus' text format.
    pub fn metrics(&self) -> String {
        let mut text = String::from(
            "# HELP weft_shield_decisions_total Decisions of the shield by kind and protocol.\n\
             # TYPE weft_shield_decisions_total counter\n",
        );
        for decision in Decision::ALL {
            for proto in Proto::ALL {
                let _ = writeln!(
                    text,
                    "weft_shield_decisions_total{{decision=\"{}\",proto=\"{}\"}} {}",
                    decision.as_str(),
                    proto.as_str(),
                    self.count(decision, proto)
                );
            }
        }
        let _ = write!(
            text,
            "# HELP weft_shield_connections_active TCP connections open through the shield.\n\
             # TYPE weft_shield_connections_active gauge\n\
             weft_shield_connections_active {}\n\
             # HELP weft_shield_log_lines_suppressed_total Decision lines dropped by the rate limit.\n\
             # TYPE weft_shield_log_lines_suppressed_total counter\n\
             weft_shield_log_lines_suppressed_total {}\n",
            self.active.load(Ordering::Relaxed),
            self.suppressed.load(Ordering::Relaxed)
        );
        text
    }
}

pub struct ActiveGuard<'a>(&'a AtomicU64);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(name: Option<&'a str>, reason: &'a str) -> Event<'a> {
        Event {
            decision: Decision::Deny,
            client: Ipv4Addr::new(10, 0, 0, 2),
            proto: Proto::Tls,
            name,
            dst: "203.0.113.20:443".parse().unwrap(),
            reason,
        }
    }

    #[test]
    fn lines_have_the_documented_shape() {
        assert_eq!(
            event(Some("denied.test"), "name-not-allowed").line(),
            "deny client=10.0.0.2 proto=tls name=denied.test dst=203.0.113.20:443 \
             reason=name-not-allowed"
        );
        assert_eq!(
            event(None, "no-name").line(),
            "deny client=10.0.0.2 proto=tls name=- dst=203.0.113.20:443 reason=no-name"
        );
        let sneaky = event(Some("a.test\nweft-shield: allow x y"), "r").line();
        assert!(!sneaky.contains('\n'));
        assert!(
            sneaky.contains("name=a.test?weft-shield:?allow?x?y "),
            "{sneaky}"
        );
    }

    #[test]
    fn counts_and_renders_metrics() {
        let log = Log::default();
        log.record(&event(Some("a.test"), "x"));
        log.record(&event(Some("a.test"), "x"));
        assert_eq!(log.count(Decision::Deny, Proto::Tls), 2);
        assert_eq!(log.count(Decision::Allow, Proto::Tls), 0);
        {
            let _guard = log.connection();
            assert!(log.metrics().contains("weft_shield_connections_active 1\n"));
        }
        let metrics = log.metrics();
        assert!(
            metrics.contains("weft_shield_decisions_total{decision=\"deny\",proto=\"tls\"} 2\n")
        );
        assert!(metrics.contains("weft_shield_connections_active 0\n"));
        assert!(log.stats_line().contains(" deny.tls=2 "));
    }

    #[test]
    fn rate_limit_counts_what_it_drops() {
        let log = Log::default();
        for _ in 0..(BURST as usize + 50) {
            log.record(&event(Some("a.test"), "x"));
        }
        assert_eq!(log.count(Decision::Deny, Proto::Tls), BURST as u64 + 50);
        let dropped = log.suppressed.load(Ordering::Relaxed);
        assert!((40..=50).contains(&dropped), "{dropped}");
    }
}
