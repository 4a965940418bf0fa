//! The pure part of creating an instance's network: checking each requested interface
//! against rules R1-R3 and R7, and deriving what the guest is told (R6). Nothing here
//! touches the store or the host.

use std::net::Ipv4Addr;

use weft_model::names::{check_name, check_tap_name};
use weft_model::{derive_gateway, Ipv4Cidr, NetdevConfig, MAX_INTERFACES};

use crate::error::{texts, Error};
use crate::request::{InterfaceRequest, RelayRequest};

/// Where an interface's address and TAP device come from (R3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Pool,
    Own { cidr: Ipv4Cidr, tap: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedInterface {
    pub name: Option<String>,
    pub source: Source,
    pub autoconfig: bool,
    pub relay: Option<RelayRequest>,
}

/// The pool facts the rules check against.
pub struct PoolRules<'a> {
    pub addresses: Ipv4Cidr,
    pub tap_prefix: &'a str,
}

impl PoolRules<'_> {
    /// Whether a device name belongs to the pool: weft claims every name that starts with
    /// the pool's prefix, since its firewall matches them by that prefix.
    fn is_pool_device(&self, tap: &str) -> bool {
        tap.starts_with(self.tap_prefix)
    }
}

/// Checks the requested interfaces; an omitted list is one pool interface (R1).
pub fn plan_interfaces(
    requested: Option<&[InterfaceRequest]>,
    pool: &PoolRules<'_>,
) -> Result<Vec<PlannedInterface>, Error> {
    let default = [InterfaceRequest::default()];
    let requested = requested.unwrap_or(&default);
    if requested.is_empty() || requested.len() > MAX_INTERFACES {
        return Err(Error::bad_request(format!(
            "network_interfaces must hold 1 to {MAX_INTERFACES} interfaces, not {}",
            requested.len()
        )));
    }

    let mut planned: Vec<PlannedInterface> = Vec::with_capacity(requested.len());
    for (i, req) in requested.iter().enumerate() {
        let field = |f: &str| format!("network_interfaces[{i}].{f}");

        if let Some(name) = &req.name {
            check_name(name).map_err(|e| {
                Error::bad_request(format!("Invalid {} '{name}': it {e}", field("name")))
            })?;
            if planned.iter().any(|p| p.name.as_ref() == Some(name)) {
                return Err(Error::bad_request(format!(
                    "{} '{name}' is given to more than one interface",
                    field("name")
                )));
            }
        }

        let source = match (&req.ip, &req.tap_name) {
            (None, None) => Source::Pool,
            (Some(_), None) | (None, Some(_)) => return Err(Error::bad_request(texts::IP_AND_TAP)),
            (Some(ip), Some(tap)) => {
                let cidr: Ipv4Cidr = ip.parse().map_err(|e| {
                    Error::bad_request(format!("Invalid {} '{ip}': {e}", field("ip")))
                })?;
                check_tap_name(tap).map_err(|e| {
                    Error::bad_request(format!("Invalid {} '{tap}': it {e}", field("tap_name")))
                })?;
                if cidr.overlaps(&pool.addresses) {
                    return Err(Error::bad_request(texts::IP_FROM_POOL));
                }
                check_own_address(&cidr).map_err(|why| {
                    Error::bad_request(format!("Invalid {} '{ip}': {why}", field("ip")))
                })?;
                if pool.is_pool_device(tap) {
                    return Err(Error::bad_request(texts::TAP_FROM_POOL));
                }
                let reused = planned
                    .iter()
                    .any(|p| matches!(&p.source, Source::Own { tap: t, .. } if t == tap));
                if reused {
                    return Err(Error::bad_request(format!(
                        "{} '{tap}' is given to more than one interface",
                        field("tap_name")
                    )));
                }
                let same_ip = planned.iter().position(
                    |p| matches!(&p.source, Source::Own { cidr: c, .. } if c.addr() == cidr.addr()),
                );
                if let Some(j) = same_ip {
                    return Err(Error::bad_request(format!(
                        "Invalid {} '{ip}': the address is also given to network_interfaces[{j}]",
                        field("ip")
                    )));
                }
                Source::Own {
                    cidr,
                    tap: tap.clone(),
                }
            }
        };

        if let Some(relay) = &req.relay {
            check_name(&relay.name).map_err(|e| {
                Error::bad_request(format!(
                    "Invalid {} '{}': it {e}",
                    field("relay.name"),
                    relay.name
                ))
            })?;
        }

        planned.push(PlannedInterface {
            name: req.name.clone(),
            source,
            autoconfig: req.autoconfig.unwrap_or(true),
            relay: req.relay.clone(),
        });
    }
    Ok(planned)
}

/// Parses a `gateway` or `nameserver` override: a plain IPv4 unicast address.
pub fn parse_override(field: &str, value: Option<&str>) -> Result<Option<Ipv4Addr>, Error> {
    let Some(v) = value else { return Ok(None) };
    let addr: Ipv4Addr = v.parse().map_err(|_| {
        Error::bad_request(format!("Invalid {field} '{v}': expected an IPv4 address"))
    })?;
    if let Some(why) = not_unicast(addr) {
        return Err(Error::bad_request(format!("Invalid {field} '{v}': {why}")));
    }
    Ok(Some(addr))
}

/// Why an address cannot be a guest's or a gateway's, if it cannot.
fn not_unicast(addr: Ipv4Addr) -> Option<&'static str> {
    if addr.is_unspecified() {
        Some("the unspecified address cannot be used")
    } else if addr.is_broadcast() {
        Some("the broadcast address cannot be used")
    } else if addr.is_loopback() {
        Some("a loopback address cannot be used")
    } else if addr.is_multicast() {
        Some("a multicast address cannot be used")
    } else if addr.octets()[0] >= 240 {
        Some("a reserved (class E) address cannot be used")
    } else if addr.octets()[0] == 0 {
        Some("an address in 0.0.0.0/8 cannot be used")
    } else {
        None
    }
}

/// Checks that an own interface's address can be a host's address in its network.
fn check_own_address(cidr: &Ipv4Cidr) -> Result<(), &'static str> {
    if let Some(why) = not_unicast(cidr.addr()) {
        return Err(why);
    }
    if cidr.prefix() < 31 && cidr.addr() == cidr.network() {
        return Err("it is its network's own address, not a host address");
    }
    if cidr.prefix() < 31 && cidr.addr() == cidr.broadcast() {
        return Err("it is its network's broadcast address, not a host address");
    }
    Ok(())
}

/// One interface as the derivation rules see it.
#[derive(Clone, Copy, Debug)]
pub struct NetFacts {
    pub pool: bool,
    pub cidr: Option<Ipv4Cidr>,
    pub autoconfig: bool,
}

/// The gateway or nameserver the guest is told (R6): the override when given, else the last
/// usable address of the first pool interface's network, else of the primary's.
pub fn resolve_gateway(given: Option<Ipv4Addr>, ifaces: &[NetFacts]) -> Option<Ipv4Addr> {
    if given.is_some() {
        return given;
    }
    let basis = ifaces.iter().find(|i| i.pool).or(ifaces.first())?;
    let derived = derive_gateway(basis.cidr.as_ref()?)?;
    // The last usable address may be the instance's own (a /31's upper address, or an own
    // address such as x.x.x.254/24): then nothing else on that network can be its gateway.
    let own = ifaces
        .iter()
        .any(|i| i.cidr.is_some_and(|c| c.addr() == derived));
    (!own).then_some(derived)
}

/// What each NIC's `netdev.ip=` entry says (R7). The gateway goes to the first autoconfig
/// interface whose network holds it, so the guest ends with exactly one default route. When
/// it lies in the network of an interface without autoconfig, no interface is told (the app
/// configures that interface itself); when it lies in no interface's network (an override),
/// the primary interface is told, if it has autoconfig, and the guest routes it on-link. The
/// nameserver goes to every autoconfig interface.
pub fn netdev_configs(
    ifaces: &[NetFacts],
    gateway: Option<Ipv4Addr>,
    nameserver: Option<Ipv4Addr>,
) -> Vec<Option<NetdevConfig>> {
    let holds = |i: &NetFacts, gw: Ipv4Addr| i.cidr.is_some_and(|c| c.contains(gw));
    let gateway_at =
        gateway.and_then(
            |gw| match ifaces.iter().position(|i| holds(i, gw) && i.autoconfig) {
                Some(n) => Some(n),
                None if ifaces.iter().any(|i| holds(i, gw)) => None,
                None => ifaces.first().filter(|i| i.autoconfig).map(|_| 0),
            },
        );

    ifaces
        .iter()
        .enumerate()
        .map(|(n, i)| {
            i.autoconfig.then(|| NetdevConfig {
                cidr: i.cidr,
                gateway: if gateway_at == Some(n) { gateway } else { None },
                nameserver,
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
