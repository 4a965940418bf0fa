//! Source-based policy routing and ARP settings for guests with more than one addressed NIC,
//! kept free of any system call.
//!
//! Several NICs often share one network (pool interfaces are all in the pool's network). The
//! main table then sends every packet to that network out of the first NIC, even an answer
//! from another NIC's address, and a host that accepts each address only from its own TAP
//! drops it. So each addressed NIC gets a table of its own, holding its network route and a
//! default route, and a rule sends packets from its address to that table: answers leave
//! through the NIC that owns their source address.

use std::net::Ipv4Addr;

use weft_model::Ipv4Cidr;

use crate::plan::{Assignment, DefaultRoute, Nic};

/// The table of the NIC of `netdev.ip` entry `n` is `TABLE_BASE + n`.
pub const TABLE_BASE: u32 = 100;
/// The rule for the address of entry `n` has priority `RULE_PRIORITY_BASE + n`: before the
/// main table's rule (32766), after the local table's (0).
pub const RULE_PRIORITY_BASE: u32 = 1000;

/// A default route of a source table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableGateway {
    pub gateway: Ipv4Addr,
    /// The gateway lies outside the NIC's network.
    pub onlink: bool,
}

/// The routing table, and the rule selecting it, of one addressed NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceTable {
    pub table: u32,
    pub priority: u32,
    pub nic: Nic,
    /// The NIC's address: the rule matches packets from it, and it is the routes' source.
    pub addr: Ipv4Addr,
    /// The NIC's network, host bits clear; `None` for a /32, which has no network route.
    pub network: Option<Ipv4Cidr>,
    pub default: Option<TableGateway>,
}

/// The source tables to set up: one per NIC with an address, and none at all unless at least
/// two NICs have (distinct) addresses, since one NIC needs no choosing.
///
/// A table's default route goes via the gateway of the NIC's own entry when it carries one.
/// Failing that, via the main table's gateway when the NIC's network holds it too: in a pool
/// every TAP answers on the gateway address, and answers to the outside world from this
/// NIC's address must leave through this NIC as well.
pub fn source_tables(assigned: &[Assignment], main: Option<&DefaultRoute>) -> Vec<SourceTable> {
    let mut tables: Vec<SourceTable> = Vec::new();
    for a in assigned {
        let Some(cidr) = a.config.cidr else { continue };
        // The same address on a second NIC cannot have a rule of its own: the first keeps it.
        if tables.iter().any(|t| t.addr == cidr.addr()) {
            continue;
        }
        let Ok(entry) = u32::try_from(a.entry) else {
            continue;
        };
        let own = a.config.gateway.map(|gateway| TableGateway {
            gateway,
            onlink: !cidr.contains(gateway),
        });
        let shared = main
            .filter(|route| !route.onlink && cidr.contains(route.gateway))
            .map(|route| TableGateway {
                gateway: route.gateway,
                onlink: false,
            });
        tables.push(SourceTable {
            table: TABLE_BASE + entry,
            priority: RULE_PRIORITY_BASE + entry,
            nic: a.nic.clone(),
            addr: cidr.addr(),
            network: (cidr.prefix() < 32).then(|| cidr.network_cidr()),
            default: own.or(shared),
        });
    }
    if tables.len() < 2 {
        tables.clear();
    }
    tables
}

/// The `/proc/sys` settings, relative to `/proc/sys`, that make a NIC answer ARP only for its
/// own addresses and ask only with them:
///
/// - `arp_ignore=1`: answer a request only when the address asked for is on the NIC it came
///   in on. By default any NIC answers for every address of the guest, so a host asking on
///   one TAP could learn the wrong NIC's MAC for an address.
/// - `arp_announce=2`: a request names as its sender an address of the NIC it leaves through.
///
/// `arp_filter` stays off: with `arp_ignore=1` it adds nothing for addresses on other NICs,
/// and it would drop requests from senders the guest has no route back to.
pub fn arp_sysctls(ifname: &str) -> Vec<(String, &'static str)> {
    ["arp_ignore", "arp_announce"]
        .into_iter()
        .zip(["1", "2"])
        .map(|(key, value)| (format!("net/ipv4/conf/{ifname}/{key}"), value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::{BootArgs, NetdevConfig};

    fn nic(index: u32, name: &str) -> Nic {
        Nic {
            index,
            name: name.into(),
            mac: None,
            loopback: false,
        }
    }

    fn assignment(entry: usize, nic_index: u32, cidr: &str, gateway: Option<&str>) -> Assignment {
        Assignment {
            entry,
            nic: nic(nic_index, &format!("eth{entry}")),
            config: NetdevConfig {
                cidr: (!cidr.is_empty()).then(|| cidr.parse().unwrap()),
                gateway: gateway.map(|g| g.parse().unwrap()),
                nameserver: None,
            },
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn one_addressed_nic_needs_no_source_tables() {
        let a = vec![
            assignment(0, 2, "10.100.0.2/16", Some("10.100.255.254")),
            assignment(1, 3, "", None),
        ];
        let main = crate::plan::default_route(&a);
        assert_eq!(source_tables(&a, main.as_ref()), vec![]);
        assert_eq!(source_tables(&[], None), vec![]);
    }

    #[test]
    fn pool_nics_in_one_network_each_get_a_table_and_a_rule() {
        // As weft renders four pool interfaces: only the first entry carries the gateway.
        let a = vec![
            assignment(0, 2, "10.100.0.2/16", Some("10.100.255.254")),
            assignment(1, 3, "10.100.0.3/16", None),
            assignment(2, 4, "10.100.0.4/16", None),
            assignment(3, 5, "10.100.0.5/16", None),
        ];
        let main = crate::plan::default_route(&a).unwrap();
        assert_eq!(main.nic.name, "eth0");
        let tables = source_tables(&a, Some(&main));
        assert_eq!(tables.len(), 4);
        for (n, t) in tables.iter().enumerate() {
            assert_eq!(t.table, 100 + n as u32);
            assert_eq!(t.priority, 1000 + n as u32);
            assert_eq!(t.nic.name, format!("eth{n}"));
            assert_eq!(t.addr, ip(&format!("10.100.0.{}", n + 2)));
            assert_eq!(t.network, Some("10.100.0.0/16".parse().unwrap()));
            assert_eq!(
                t.default,
                Some(TableGateway {
                    gateway: ip("10.100.255.254"),
                    onlink: false
                })
            );
        }
    }

    #[test]
    fn a_table_routes_via_its_own_gateway_or_none() {
        let a = vec![
            assignment(0, 2, "10.100.0.2/16", Some("10.100.255.254")),
            // Entry 1 has autoconfig off: no NIC, no table, but the numbering keeps its place.
            assignment(2, 4, "172.30.5.2/24", Some("192.168.9.1")),
            assignment(3, 5, "192.168.7.2/24", None),
            assignment(4, 6, "203.0.113.9/32", None),
        ];
        let main = crate::plan::default_route(&a);
        let tables = source_tables(&a, main.as_ref());
        let got: Vec<(u32, u32, &str, Option<TableGateway>)> = tables
            .iter()
            .map(|t| (t.table, t.priority, t.nic.name.as_str(), t.default.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    100,
                    1000,
                    "eth0",
                    Some(TableGateway {
                        gateway: ip("10.100.255.254"),
                        onlink: false
                    })
                ),
                (
                    102,
                    1002,
                    "eth2",
                    Some(TableGateway {
                        gateway: ip("192.168.9.1"),
                        onlink: true
                    })
                ),
                // Neither its own gateway nor the main one in its network.
                (103, 1003, "eth3", None),
                (104, 1004, "eth4", None),
            ]
        );
        assert_eq!(tables[1].network, Some("172.30.5.0/24".parse().unwrap()));
        assert_eq!(tables[3].network, None, "a /32 has no network route");
    }

    #[test]
    fn an_onlink_main_gateway_is_not_shared() {
        let a = vec![
            assignment(0, 2, "10.0.0.2/24", None),
            assignment(1, 3, "10.0.0.3/24", Some("192.168.1.1")),
        ];
        let main = crate::plan::default_route(&a).unwrap();
        assert!(main.onlink);
        let tables = source_tables(&a, Some(&main));
        assert_eq!(tables[0].default, None);
        assert_eq!(
            tables[1].default,
            Some(TableGateway {
                gateway: ip("192.168.1.1"),
                onlink: true
            })
        );
    }

    #[test]
    fn a_duplicate_address_gets_no_second_rule() {
        let a = vec![
            assignment(0, 2, "10.0.0.2/24", None),
            assignment(1, 3, "10.0.0.2/24", None),
            assignment(2, 4, "10.0.0.4/24", None),
        ];
        let tables: Vec<u32> = source_tables(&a, None).iter().map(|t| t.table).collect();
        assert_eq!(tables, vec![100, 102]);

        let twins = vec![
            assignment(0, 2, "10.0.0.2/24", None),
            assignment(1, 3, "10.0.0.2/24", None),
        ];
        assert_eq!(source_tables(&twins, None), vec![]);
    }

    #[test]
    fn entries_match_the_command_line_order() {
        // The table number follows the netdev.ip entry, whatever the NIC's kernel index.
        let args = BootArgs::parse(
            "netdev.ip= netdev.ip=10.1.0.2/24:: netdev.ip=10.2.0.2/24:: \
             weft.macs=12:b0:00:00:00:01,12:b0:00:00:00:02,12:b0:00:00:00:03 --",
        )
        .unwrap();
        let nics = vec![
            Nic {
                index: 7,
                name: "eth0".into(),
                mac: Some("12:b0:00:00:00:03".parse().unwrap()),
                loopback: false,
            },
            Nic {
                index: 9,
                name: "eth1".into(),
                mac: Some("12:b0:00:00:00:02".parse().unwrap()),
                loopback: false,
            },
        ];
        let m = crate::plan::match_entries(&args, &nics);
        let tables = source_tables(&m.assigned, None);
        let got: Vec<(u32, u32, &str)> = tables
            .iter()
            .map(|t| (t.table, t.nic.index, t.nic.name.as_str()))
            .collect();
        assert_eq!(got, vec![(101, 9, "eth1"), (102, 7, "eth0")]);
    }

    #[test]
    fn arp_settings_are_per_interface() {
        assert_eq!(
            arp_sysctls("eth3"),
            vec![
                ("net/ipv4/conf/eth3/arp_ignore".to_string(), "1"),
                ("net/ipv4/conf/eth3/arp_announce".to_string(), "2"),
            ]
        );
    }
}
