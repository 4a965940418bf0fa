//! The relay data path (R8): everything a relayed interface sends goes to its relay's guest,
//! and everything for it comes from there, in the kernel.
//!
//! - `netdev weft` (see `nft/relay.rs`) moves frames between the two TAP devices before any
//!   routing or local delivery, and keeps everything else away from the client's TAP.
//! - Permanent neighbour entries give `fwd` and the relay's route the guests' MACs without
//!   ARP (an own TAP in a bridge could not resolve through its port); a proxy entry makes the
//!   host answer ARP for the client on the relay's TAP, for a relay that has the client
//!   on-link.
//! - Policy routing (see `policy.rs`) sends what the host routes to the client to the relay.
//! - `ip weft` lets the relay forward from the client's address (`guests`) and masquerades
//!   that address on the uplink (`relayed`).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

use tracing::{debug, warn};
use weft_model::MacAddr;

use crate::{link, neigh, nft, policy, DeviceKind, HostNet, HostNetError};

/// One end of a relay: an interface's TAP device, its guest's address and MAC.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelayEnd {
    pub tap: String,
    pub addr: Ipv4Addr,
    pub mac: MacAddr,
    /// A pool interface, whose TAP's host side weft owns; else the user's own TAP device.
    pub pool: bool,
}

/// A relayed interface (`client`) and the interface of another instance that all of its
/// traffic passes through (`relay`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Relayed {
    pub client: RelayEnd,
    pub relay: RelayEnd,
    /// The nameserver the client reaches directly when `relay_dns` is false; `None` sends
    /// DNS through the relay like everything else.
    pub dns_direct: Option<Ipv4Addr>,
}

const RECORD_TAG: &str = "relay";

fn mac_hex(mac: MacAddr) -> String {
    mac.octets().iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_mac_hex(s: &str) -> Option<MacAddr> {
    if s.len() != 12 || !s.is_ascii() {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, byte) in mac.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(MacAddr(mac))
}

impl RelayEnd {
    fn record(&self) -> String {
        let kind = if self.pool { "pool" } else { "own" };
        format!("{} {} {} {kind}", self.tap, self.addr, mac_hex(self.mac))
    }

    fn parse<'a>(words: &mut impl Iterator<Item = &'a str>) -> Option<RelayEnd> {
        Some(RelayEnd {
            tap: words.next()?.to_string(),
            addr: Ipv4Addr::from_str(words.next()?).ok()?,
            mac: parse_mac_hex(words.next()?)?,
            pool: match words.next()? {
                "pool" => true,
                "own" => false,
                _ => return None,
            },
        })
    }
}

impl Relayed {
    /// A one-line description kept in the comment of the client's forwarding rule: at most
    /// 121 characters with the longest names, within nft's 128.
    pub(crate) fn record(&self) -> String {
        let dns = self.dns_direct.map_or("-".to_string(), |a| a.to_string());
        format!(
            "{RECORD_TAG} {} {} {dns}",
            self.client.record(),
            self.relay.record()
        )
    }

    pub(crate) fn from_record(record: &str) -> Option<Relayed> {
        let mut words = record.split(' ');
        if words.next()? != RECORD_TAG {
            return None;
        }
        let client = RelayEnd::parse(&mut words)?;
        let relay = RelayEnd::parse(&mut words)?;
        let dns_direct = match words.next()? {
            "-" => None,
            a => Some(Ipv4Addr::from_str(a).ok()?),
        };
        words.next().is_none().then_some(Relayed {
            client,
            relay,
            dns_direct,
        })
    }
}

impl HostNet {
    /// Sends all traffic of `r.client` through `r.relay`. Idempotent; it also repairs a
    /// partly installed relay. The pool's table must be installed (`setup_pool`), and for an
    /// own TAP this must happen before its guest starts. When a first attach fails, whatever
    /// it installed is taken back; when attaching an installed relay again fails, the relay
    /// stays as it was (the chains that keep the client on its relay change last, in one
    /// transaction), so that a running client never loses them.
    pub async fn attach_relayed(&self, r: &Relayed) -> Result<(), HostNetError> {
        check(r)?;
        let _guard = self.relay_lock.lock().await;

        // What was attached for the same client with another relay or settings goes first,
        // so that nothing of it stays behind unrecorded.
        let installed = self.relayed().await?;
        for old in &installed {
            let same_client = old.client.tap == r.client.tap || old.client.addr == r.client.addr;
            if same_client && old != r {
                self.remove_relayed(old).await?;
            }
        }

        let result = self.install_relayed(r).await;
        match &result {
            Err(_) if !installed.contains(r) => {
                if let Err(undo) = self.remove_relayed(r).await {
                    warn!(tap = %r.client.tap, error = %undo, "relay left partly installed");
                }
            }
            Err(_) => {}
            Ok(()) => {
                debug!(tap = %r.client.tap, relay = %r.relay.tap, "relayed interface attached")
            }
        }
        result
    }

    /// Takes back everything `attach_relayed` installed for `r`, and the relay's table when it
    /// was the relay's last client. Idempotent; keeps going past failures and reports every
    /// one of them as [`HostNetError::Many`]. A pool client is left without any network; an
    /// own TAP is left to the user's bridge again.
    pub async fn detach_relayed(&self, r: &Relayed) -> Result<(), HostNetError> {
        let _guard = self.relay_lock.lock().await;
        let result = self.remove_relayed(r).await;
        if result.is_ok() {
            debug!(tap = %r.client.tap, relay = %r.relay.tap, "relayed interface detached");
        }
        result
    }

    /// The relayed interfaces installed on the host, as they were attached, sorted.
    pub async fn relayed(&self) -> Result<Vec<Relayed>, HostNetError> {
        let mut found: Vec<_> = nft::netdev_comments()
            .await?
            .iter()
            .filter_map(|c| Relayed::from_record(c))
            .collect();
        found.sort();
        Ok(found)
    }

    async fn tap_index(&self, tap: &str) -> Result<u32, HostNetError> {
        let link = link::link_by_name(&self.handle, tap)
            .await?
            .ok_or_else(|| HostNetError::NoDevice(tap.to_string()))?;
        match link::kind_of(&link) {
            DeviceKind::Tap => Ok(link.header.index),
            kind => Err(HostNetError::NotTap {
                name: tap.to_string(),
                kind,
            }),
        }
    }

    async fn install_relayed(&self, r: &Relayed) -> Result<(), HostNetError> {
        let (c, rl) = (&r.client, &r.relay);
        let client = self.tap_index(&c.tap).await?;
        let relay = self.tap_index(&rl.tap).await?;
        let h = &self.handle;

        neigh::replace_permanent(h, relay, rl.addr, rl.mac).await?;
        neigh::replace_permanent(h, client, c.addr, c.mac).await?;
        neigh::add_proxy(h, relay, c.addr).await?;

        // A pool client keeps its route: the relay's ARP lookups for it and the direct
        // nameserver's answers use the main table, and proxy ARP answers only for an address
        // routed through another device than the one the request came in on.
        if c.pool {
            link::replace_host_route(h, client, &c.tap, c.addr).await?;
        }
        policy::replace_relay_route(h, relay, rl.addr).await?;

        let wanted = policy::wanted(c.addr, &rl.tap, relay, r.dns_direct);
        for rule in policy::rules(h).await? {
            if rule.to == c.addr && !wanted.contains(&rule) {
                policy::delete_rule(h, &rule).await?;
            }
        }
        for rule in &wanted {
            policy::add_rule(h, rule).await?;
        }

        nft::apply(&nft::attach_relayed(r, &r.record())).await?;

        // A pool client has the pool's whole network on-link and asks by ARP for the MAC of
        // any pool address it talks to (another instance, another client of the same
        // relay). Its frames go to the relay whatever their destination MAC, but without an
        // answer it would send none: the host answers for every address that it routes out
        // of another device, only once the chains above keep the client on its relay.
        if c.pool {
            crate::write_sysctl(&proxy_arp_key(&c.tap), "1")?;
        }
        Ok(())
    }

    async fn remove_relayed(&self, r: &Relayed) -> Result<(), HostNetError> {
        let (c, rl) = (&r.client, &r.relay);
        let h = &self.handle;
        let mut errors = Vec::new();
        let mut note = |result: Result<(), HostNetError>| {
            if let Err(e) = result {
                errors.push(e);
            }
        };

        // The data path first, so that no step below opens a way around the relay.
        note(nft::apply(&nft::detach_relayed(&c.tap)).await);
        match nft::table_exists().await {
            Ok(true) => note(nft::apply(&nft::remove_relayed_elements(r)).await),
            Ok(false) => {}
            Err(e) => note(Err(e)),
        }

        match policy::rules(h).await {
            Ok(rules) => {
                for rule in rules.iter().filter(|rule| rule.to == c.addr) {
                    note(policy::delete_rule(h, rule).await);
                }
            }
            Err(e) => note(Err(e)),
        }

        // Devices that are gone took their neighbours and routes with them.
        let client = link::link_by_name(h, &c.tap).await;
        let relay = link::link_by_name(h, &rl.tap).await;
        match client {
            Ok(Some(link)) => {
                let index = link.header.index;
                note(neigh::delete_entry(h, index, c.addr).await);
                if c.pool {
                    note(crate::write_sysctl(&proxy_arp_key(&c.tap), "0"));
                    note(link::delete_host_route(h, index, &c.tap, c.addr).await);
                }
            }
            Ok(None) => {}
            Err(e) => note(Err(e)),
        }
        let relay_index = match relay {
            Ok(link) => link.map(|l| l.header.index),
            Err(e) => {
                note(Err(e));
                None
            }
        };
        if let Some(index) = relay_index {
            note(neigh::delete_proxy(h, index, c.addr).await);
        }
        note(self.remove_unused_relay_tables(relay_index, rl.addr).await);

        HostNetError::collect(errors)
    }

    /// Removes the routes of relay tables that neither a rule nor an installed relay uses any
    /// more, with the neighbour entries of their gateways; `relay` is the relay just left,
    /// whose neighbour goes too when nothing uses it, even if its table's route was already
    /// gone.
    async fn remove_unused_relay_tables(
        &self,
        relay: Option<u32>,
        relay_addr: Ipv4Addr,
    ) -> Result<(), HostNetError> {
        let h = &self.handle;
        let records = self.relayed().await?;
        let taps: HashSet<&str> = records.iter().map(|r| r.relay.tap.as_str()).collect();
        let indexes = link::link_names(h, |name| taps.contains(name)).await?;
        let in_use: HashSet<(u32, Ipv4Addr)> = records
            .iter()
            .flat_map(|r| {
                let addr = r.relay.addr;
                let tap = &r.relay.tap;
                indexes
                    .iter()
                    .filter(move |(_, name)| *name == tap)
                    .map(move |(index, _)| (*index, addr))
            })
            .collect();
        let mut used: HashSet<u32> = policy::rules(h)
            .await?
            .into_iter()
            .filter(|rule| rule.priority == policy::RELAY_PRIORITY)
            .map(|rule| rule.table)
            .collect();
        used.extend(in_use.iter().map(|(index, _)| policy::relay_table(*index)));

        let mut errors = Vec::new();
        let mut gateways = HashSet::new();
        for route in policy::relay_routes(h).await? {
            if used.contains(&route.table) {
                continue;
            }
            if let Err(e) = policy::delete_relay_route(h, &route).await {
                errors.push(e);
            }
            if let (Some(gateway), Some(oif)) = (route.gateway, route.oif) {
                gateways.insert((oif, gateway));
            }
        }
        if let Some(index) = relay {
            gateways.insert((index, relay_addr));
        }
        for (index, addr) in gateways.difference(&in_use) {
            if let Err(e) = neigh::delete_entry(h, *index, *addr).await {
                errors.push(e);
            }
        }
        HostNetError::collect(errors)
    }
}

/// The sysctl that makes the host answer ARP on `tap` for addresses routed elsewhere.
fn proxy_arp_key(tap: &str) -> String {
    format!("net/ipv4/conf/{tap}/proxy_arp")
}

/// Refuses a relay that would point an interface at itself or use names no device can have.
fn check(r: &Relayed) -> Result<(), HostNetError> {
    let bad = |why: String| Err(HostNetError::InvalidRelay(why));
    for end in [&r.client, &r.relay] {
        if !link::valid_ifname(&end.tap) {
            return bad(format!("'{}' is not an interface name", end.tap));
        }
    }
    if r.client.tap == r.relay.tap {
        return bad(format!("{} cannot relay through itself", r.client.tap));
    }
    if r.client.addr == r.relay.addr {
        return bad(format!(
            "{} and {} have the same address {}",
            r.client.tap, r.relay.tap, r.client.addr
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn longest() -> Relayed {
        let end = |tap: &str, last| RelayEnd {
            tap: tap.into(),
            addr: Ipv4Addr::new(255, 255, 255, last),
            mac: MacAddr([0x12, 0xb1, 0xff, 0xff, 0xff, last]),
            pool: false,
        };
        Relayed {
            client: end("abcdefghijklmno", 254),
            relay: end("ponmlkjihgfedcb", 253),
            dns_direct: Some(Ipv4Addr::new(255, 255, 255, 255)),
        }
    }

    #[test]
    fn records_fit_a_comment_and_read_back() {
        let r = longest();
        assert!(r.record().len() <= 128, "{}", r.record().len());
        assert_eq!(Relayed::from_record(&r.record()), Some(r.clone()));

        let pool = Relayed {
            client: RelayEnd {
                tap: "wtap0".into(),
                addr: Ipv4Addr::new(10, 100, 0, 2),
                mac: MacAddr::for_pool_address(Ipv4Addr::new(10, 100, 0, 2)),
                pool: true,
            },
            dns_direct: None,
            ..r
        };
        assert_eq!(
            pool.record(),
            "relay wtap0 10.100.0.2 12b00a640002 pool ponmlkjihgfedcb 255.255.255.253 \
             12b1fffffffd own -"
        );
        assert_eq!(Relayed::from_record(&pool.record()), Some(pool));
    }

    #[test]
    fn other_comments_are_not_records() {
        for bad in [
            "",
            "relay",
            "relay wtap0 10.100.0.2 12b00a640002 pool",
            "relay wtap0 10.100.0.2 12b00a64000 pool wtap1 10.100.0.3 12b00a640003 pool -",
            "relay wtap0 10.100.0.2 12b00a640002 both wtap1 10.100.0.3 12b00a640003 pool -",
            "relay wtap0 10.100.0.2 12b00a640002 pool wtap1 10.100.0.3 12b00a640003 pool - x",
            "other wtap0 10.100.0.2 12b00a640002 pool wtap1 10.100.0.3 12b00a640003 pool -",
        ] {
            assert_eq!(Relayed::from_record(bad), None, "{bad}");
        }
    }

    #[test]
    fn check_refuses_self_relays() {
        let mut r = longest();
        assert!(check(&r).is_ok());
        r.relay.tap = r.client.tap.clone();
        assert!(check(&r).is_err());
        let mut r = longest();
        r.relay.addr = r.client.addr;
        assert!(check(&r).is_err());
        let mut r = longest();
        r.client.tap = "a/b".into();
        assert!(check(&r).is_err());
    }
}
