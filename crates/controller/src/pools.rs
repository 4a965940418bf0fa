//! The host's address and TAP device pools. The store is the truth: the pools are rebuilt
//! from it at start and kept in step with every create and delete.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use weft_model::Ipv4Cidr;

use crate::error::Error;

pub struct Pools {
    cidr: Ipv4Cidr,
    /// The last usable instance address: the one before the gateway (the gateway is the
    /// network's last usable address). The first is the network's first host address.
    last: u32,
    tap_prefix: String,
    tap_count: u32,
    used_addrs: BTreeSet<u32>,
    used_taps: BTreeSet<u32>,
    /// Every address from the first up to this one (excluded) is used, so the search for
    /// the lowest free one starts here instead of walking past every lease each time.
    next_addr: u32,
    /// The same for TAP devices, from 0.
    next_tap: u32,
}

/// One pool interface's share of the pools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub tap: String,
}

impl Pools {
    pub fn new(cidr: Ipv4Cidr, tap_prefix: &str, tap_count: u32) -> Pools {
        let network = u32::from(cidr.network());
        let broadcast = u32::from(cidr.broadcast());
        Pools {
            cidr,
            last: broadcast - 2,
            tap_prefix: tap_prefix.to_string(),
            tap_count,
            used_addrs: BTreeSet::new(),
            used_taps: BTreeSet::new(),
            next_addr: network + 1,
            next_tap: 0,
        }
    }

    /// The pool's TAP index of a device name, if it is one of the pool's devices.
    pub fn tap_index(&self, tap: &str) -> Option<u32> {
        let n: u32 = tap.strip_prefix(&self.tap_prefix)?.parse().ok()?;
        (n < self.tap_count).then_some(n)
    }

    /// Marks a lease found in the store as taken.
    pub fn mark_used(&mut self, addr: Ipv4Addr, tap: &str) {
        self.used_addrs.insert(u32::from(addr));
        if let Some(n) = self.tap_index(tap) {
            self.used_taps.insert(n);
        }
    }

    /// Takes the lowest free address and TAP device.
    pub fn lease(&mut self) -> Result<Lease, Error> {
        let addr = (self.next_addr..=self.last)
            .find(|a| !self.used_addrs.contains(a))
            .ok_or_else(|| Error::conflict(format!("address pool {} is exhausted", self.cidr)))?;
        let tap = (self.next_tap..self.tap_count)
            .find(|n| !self.used_taps.contains(n))
            .ok_or_else(|| {
                Error::conflict(format!(
                    "TAP device pool {}0..{} is exhausted",
                    self.tap_prefix,
                    self.tap_count - 1
                ))
            })?;
        self.used_addrs.insert(addr);
        self.used_taps.insert(tap);
        self.next_addr = addr + 1;
        self.next_tap = tap + 1;
        Ok(Lease {
            addr: Ipv4Addr::from(addr),
            tap: format!("{}{tap}", self.tap_prefix),
        })
    }

    /// Gives a lease back; releasing what is not leased is harmless.
    pub fn release(&mut self, lease: &Lease) {
        let addr = u32::from(lease.addr);
        if self.used_addrs.remove(&addr) {
            self.next_addr = self.next_addr.min(addr);
        }
        if let Some(n) = self.tap_index(&lease.tap) {
            if self.used_taps.remove(&n) {
                self.next_tap = self.next_tap.min(n);
            }
        }
    }

    pub fn leased(&self) -> usize {
        self.used_addrs.len()
    }

    /// The interface CIDR of a pool address: the address with the pool's prefix.
    pub fn cidr_of(&self, addr: Ipv4Addr) -> Ipv4Cidr {
        Ipv4Cidr::new(addr, self.cidr.prefix()).expect("pool prefix is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn leases_skip_network_gateway_and_broadcast() {
        let mut pools = Pools::new("192.0.2.0/29".parse().unwrap(), "t", 8);
        let addrs: Vec<String> = std::iter::from_fn(|| pools.lease().ok())
            .map(|l| l.addr.to_string())
            .collect();
        // .0 network, .6 gateway, .7 broadcast.
        assert_eq!(
            addrs,
            [
                "192.0.2.1",
                "192.0.2.2",
                "192.0.2.3",
                "192.0.2.4",
                "192.0.2.5"
            ]
        );
        assert!(pools
            .lease()
            .unwrap_err()
            .message
            .contains("address pool 192.0.2.0/29"));
    }

    #[test]
    fn tap_exhaustion_is_named_and_release_reuses() {
        let mut pools = Pools::new("10.100.0.0/16".parse().unwrap(), "weft-tap", 2);
        let a = pools.lease().unwrap();
        let _b = pools.lease().unwrap();
        assert!(pools
            .lease()
            .unwrap_err()
            .message
            .contains("TAP device pool weft-tap0..1"));
        pools.release(&a);
        assert_eq!(pools.lease().unwrap(), a);
    }

    #[test]
    fn a_released_lower_lease_is_the_next_one() {
        let mut pools = Pools::new("10.0.0.0/24".parse().unwrap(), "t", 16);
        let leases: Vec<Lease> = (0..5).map(|_| pools.lease().unwrap()).collect();
        pools.release(&leases[1]);
        assert_eq!(pools.lease().unwrap(), leases[1]);
        let next = pools.lease().unwrap();
        assert_eq!(next.addr.to_string(), "10.0.0.6");
        assert_eq!(next.tap, "t5");
    }

    proptest! {
        #[test]
        fn never_hands_out_twice(ops in proptest::collection::vec(any::<(bool, u8)>(), 1..200)) {
            let mut pools = Pools::new("10.0.0.0/27".parse().unwrap(), "p", 20);
            let mut held: Vec<Lease> = Vec::new();
            for (take, pick) in ops {
                if take || held.is_empty() {
                    if let Ok(lease) = pools.lease() {
                        prop_assert!(!held.iter().any(|h| h.addr == lease.addr || h.tap == lease.tap));
                        held.push(lease);
                    } else {
                        prop_assert!(held.len() == 20 || held.len() == 29);
                    }
                } else {
                    let lease = held.swap_remove(pick as usize % held.len());
                    pools.release(&lease);
                }
                prop_assert_eq!(pools.leased(), held.len());
            }
        }
    }
}
