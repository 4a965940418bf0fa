//! The addresses this shield's DNS gave out for each allowed name, so that a TCP connection
//! can be checked: its destination must be one the name resolved to, whatever the client
//! writes in SNI or Host.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients connect some time after resolving and often cache answers past their TTL; an
/// answer stays valid for at least this long.
pub const MIN_KEEP: Duration = Duration::from_secs(300);
/// And at most this long, whatever TTL the upstream gave.
pub const MAX_KEEP: Duration = Duration::from_secs(86400);

const MAX_NAMES: usize = 4096;
const MAX_ADDRS_PER_NAME: usize = 64;

#[derive(Default)]
pub struct Resolved {
    names: Mutex<HashMap<String, HashMap<Ipv4Addr, Instant>>>,
}

impl Resolved {
    /// Remembers that `name` resolved to these addresses with these TTLs (seconds).
    pub fn remember(&self, name: &str, answers: &[(Ipv4Addr, u32)]) {
        self.remember_at(name, answers, Instant::now());
    }

    fn remember_at(&self, name: &str, answers: &[(Ipv4Addr, u32)], now: Instant) {
        if answers.is_empty() {
            return;
        }
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if !names.contains_key(name) && names.len() >= MAX_NAMES {
            names.retain(|_, addrs| {
                addrs.retain(|_, until| *until > now);
                !addrs.is_empty()
            });
            if names.len() >= MAX_NAMES {
                // Still full of live answers: forget the one that expires first.
                let first = names
                    .iter()
                    .min_by_key(|(_, addrs)| addrs.values().max().copied())
                    .map(|(name, _)| name.clone());
                if let Some(first) = first {
                    names.remove(&first);
                }
            }
        }
        let addrs = names.entry(name.to_string()).or_default();
        for &(ip, ttl) in answers {
            let keep = Duration::from_secs(u64::from(ttl)).clamp(MIN_KEEP, MAX_KEEP);
            let until = now + keep;
            if addrs.len() >= MAX_ADDRS_PER_NAME && !addrs.contains_key(&ip) {
                addrs.retain(|_, u| *u > now);
                if addrs.len() >= MAX_ADDRS_PER_NAME {
                    continue;
                }
            }
            let entry = addrs.entry(ip).or_insert(until);
            *entry = (*entry).max(until);
        }
    }

    /// Whether this shield's DNS answered `name` with `ip`, and that answer still holds.
    pub fn resolves_to(&self, name: &str, ip: Ipv4Addr) -> bool {
        self.resolves_to_at(name, ip, Instant::now())
    }

    fn resolves_to_at(&self, name: &str, ip: Ipv4Addr, now: Instant) -> bool {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names
            .get(name)
            .and_then(|addrs| addrs.get(&ip))
            .is_some_and(|until| *until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    const B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);

    #[test]
    fn remembers_answers_for_their_ttl_with_bounds() {
        let resolved = Resolved::default();
        let now = Instant::now();
        resolved.remember_at("a.test", &[(A, 10), (B, 100_000_000)], now);

        assert!(resolved.resolves_to_at("a.test", A, now));
        assert!(!resolved.resolves_to_at("b.test", A, now));
        assert!(!resolved.resolves_to_at("a.test", Ipv4Addr::new(1, 2, 3, 4), now));

        // A short TTL is kept for MIN_KEEP, a huge one only for MAX_KEEP.
        let later = now + MIN_KEEP - Duration::from_secs(1);
        assert!(resolved.resolves_to_at("a.test", A, later));
        assert!(!resolved.resolves_to_at("a.test", A, now + MIN_KEEP));
        assert!(resolved.resolves_to_at("a.test", B, now + MAX_KEEP - Duration::from_secs(1)));
        assert!(!resolved.resolves_to_at("a.test", B, now + MAX_KEEP));
    }

    #[test]
    fn stays_bounded() {
        let resolved = Resolved::default();
        let now = Instant::now();
        for i in 0..(MAX_NAMES + 10) {
            resolved.remember_at(&format!("n{i}.test"), &[(A, 60)], now);
        }
        assert_eq!(resolved.names.lock().unwrap().len(), MAX_NAMES);
        assert!(resolved.resolves_to_at(&format!("n{}.test", MAX_NAMES + 9), A, now));

        let many: Vec<_> = (0..200u32).map(|i| (Ipv4Addr::from(i), 60)).collect();
        resolved.remember_at("wide.test", &many, now);
        assert_eq!(
            resolved.names.lock().unwrap()["wide.test"].len(),
            MAX_ADDRS_PER_NAME
        );
    }
}
