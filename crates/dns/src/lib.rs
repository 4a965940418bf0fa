//! The platform DNS resolver. It listens on the pool's gateway address, where the
//! guests of pool interfaces are told their nameserver is. It answers `<name>.internal` with
//! the primary address of the asking account's instance of that name, and forwards every other
//! question to the host's upstream resolvers. Who asks is known by source address: only the
//! addresses of instances are served.

mod answer;
mod serve;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use answer::answer;
pub use serve::Resolver;

/// The zone of instance names.
pub const ZONE: &str = "internal.";

/// What the resolver asks the controller.
#[async_trait::async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Whether `client` is an instance's address. The resolver serves nobody else, so that
    /// it is not an open resolver.
    async fn knows(&self, client: Ipv4Addr) -> bool;

    /// The primary address of instance `name` in the account of the instance with address
    /// `client`.
    async fn lookup(&self, client: Ipv4Addr, name: &str) -> Option<Ipv4Addr>;
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen (UDP and TCP), normally `<gateway>:53`.
    pub bind: SocketAddr,
    /// Resolvers to forward other questions to, tried in order.
    pub upstream: Vec<SocketAddr>,
    /// How long an upstream resolver gets to answer.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the resolver did, for metrics. Guests can trigger all of these, so they are counted,
/// never logged one by one.
#[derive(Debug, Default)]
pub struct Counters {
    pub internal: AtomicU64,
    pub forwarded: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
    pub malformed: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (name, value) pairs for a metrics endpoint.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("internal", get(&self.internal)),
            ("forwarded", get(&self.forwarded)),
            ("refused", get(&self.refused)),
            ("failed", get(&self.failed)),
            ("malformed", get(&self.malformed)),
        ]
    }
}

/// The nameservers of a resolv.conf, as upstream resolvers (port 53), leaving out `skip`
/// (the resolver's own address, which would loop).
pub fn upstream_from_resolv_conf(text: &str, skip: Ipv4Addr) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<std::net::IpAddr>().ok())
        .filter(|ip| *ip != std::net::IpAddr::V4(skip))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# x\nsearch example\nnameserver 192.0.2.53\nnameserver  10.100.255.254\n\
                    nameserver ::1\nnameserver bogus\n";
        let got = upstream_from_resolv_conf(text, "10.100.255.254".parse().unwrap());
        assert_eq!(
            got,
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
