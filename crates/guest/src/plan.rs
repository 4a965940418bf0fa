//! The decisions of the guest's network setup, kept free of any system call: which NIC each
//! `netdev.ip` entry configures, which default route to add, and what resolv.conf says.

use std::net::Ipv4Addr;

use weft_model::{BootArgs, MacAddr, NetdevConfig};

/// A network interface as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub loopback: bool,
}

/// A `netdev.ip` entry with autoconfig, matched to the NIC it configures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Position of the entry on the command line (device order).
    pub entry: usize,
    pub nic: Nic,
    pub config: NetdevConfig,
}

/// The result of matching entries to NICs: what can be applied, and what cannot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matching {
    pub assigned: Vec<Assignment>,
    pub problems: Vec<String>,
}

/// The one default route the guest adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultRoute {
    pub gateway: Ipv4Addr,
    pub nic: Nic,
    /// The gateway lies outside the NIC's network, so the kernel must be told it is
    /// reachable on the link anyway.
    pub onlink: bool,
}

/// The MACs of `weft.macs` that no NIC has yet.
pub fn missing_macs(args: &BootArgs, nics: &[Nic]) -> Vec<MacAddr> {
    args.macs
        .iter()
        .filter(|mac| !nics.iter().any(|nic| nic.mac == Some(**mac)))
        .copied()
        .collect()
}

/// Whether every NIC the command line speaks of is present. Without `weft.macs` the guest
/// can only count: one non-loopback NIC per `netdev.ip` entry.
pub fn nics_ready(args: &BootArgs, nics: &[Nic]) -> bool {
    if args.macs.is_empty() {
        nics.iter().filter(|nic| !nic.loopback).count() >= args.netdevs.len()
    } else {
        missing_macs(args, nics).is_empty()
    }
}

/// Matches each entry with autoconfig to its NIC: by MAC when `weft.macs` is given, else by
/// position among the non-loopback NICs sorted by name. Entries without autoconfig are
/// skipped: their NICs stay untouched.
pub fn match_entries(args: &BootArgs, nics: &[Nic]) -> Matching {
    let mut by_name: Vec<&Nic> = nics.iter().filter(|nic| !nic.loopback).collect();
    by_name.sort_by(|a, b| name_key(&a.name).cmp(&name_key(&b.name)));

    let mut matching = Matching::default();
    for (entry, config) in args.netdevs.iter().enumerate() {
        let Some(config) = config else { continue };

        let nic = if args.macs.is_empty() {
            match by_name.get(entry) {
                Some(nic) => (*nic).clone(),
                None => {
                    matching
                        .problems
                        .push(format!("no NIC for netdev.ip entry {entry}"));
                    continue;
                }
            }
        } else {
            let Some(mac) = args.macs.get(entry) else {
                matching
                    .problems
                    .push(format!("netdev.ip entry {entry} has no MAC in weft.macs"));
                continue;
            };
            match nics.iter().find(|nic| nic.mac == Some(*mac)) {
                Some(nic) => nic.clone(),
                None => {
                    matching
                        .problems
                        .push(format!("no NIC with MAC {mac} (netdev.ip entry {entry})"));
                    continue;
                }
            }
        };
        matching.assigned.push(Assignment {
            entry,
            nic,
            config: config.clone(),
        });
    }
    matching
}

/// Sort key that puts `eth2` before `eth10`: the name without its trailing digits, then
/// those digits as a number.
fn name_key(name: &str) -> (&str, Option<u64>, &str) {
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let number = name[stem.len()..].parse().ok();
    (stem, number, name)
}

/// Chooses the single default route: the gateway of the first entry whose own network holds
/// it; failing that, the first gateway given at all, reached on-link through the primary
/// (first configured) NIC.
pub fn default_route(assigned: &[Assignment]) -> Option<DefaultRoute> {
    let in_network = assigned.iter().find_map(|a| {
        let gateway = a.config.gateway?;
        a.config.cidr.filter(|cidr| cidr.contains(gateway))?;
        Some(DefaultRoute {
            gateway,
            nic: a.nic.clone(),
            onlink: false,
        })
    });
    if in_network.is_some() {
        return in_network;
    }

    let gateway = assigned.iter().find_map(|a| a.config.gateway)?;
    let primary = assigned.first()?;
    Some(DefaultRoute {
        gateway,
        nic: primary.nic.clone(),
        onlink: true,
    })
}

/// The distinct nameservers of all entries, in command-line order.
pub fn nameservers(args: &BootArgs) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = Vec::new();
    for ns in args
        .netdevs
        .iter()
        .flatten()
        .filter_map(|cfg| cfg.nameserver)
    {
        if !out.contains(&ns) {
            out.push(ns);
        }
    }
    out
}

/// The content of resolv.conf for these nameservers.
pub fn resolv_conf(nameservers: &[Ipv4Addr]) -> String {
    let mut out = String::from("# Written by weft-guest from the boot arguments.\n");
    for ns in nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(index: u32, name: &str, mac: Option<&str>) -> Nic {
        Nic {
            index,
            name: name.into(),
            mac: mac.map(|m| m.parse().unwrap()),
            loopback: name == "lo",
        }
    }

    fn entry(cidr: &str, gateway: Option<&str>, ns: Option<&str>) -> Option<NetdevConfig> {
        Some(NetdevConfig {
            cidr: if cidr.is_empty() {
                None
            } else {
                Some(cidr.parse().unwrap())
            },
            gateway: gateway.map(|g| g.parse().unwrap()),
            nameserver: ns.map(|n| n.parse().unwrap()),
        })
    }

    fn nics() -> Vec<Nic> {
        vec![
            nic(1, "lo", Some("00:00:00:00:00:00")),
            nic(2, "eth0", Some("12:b1:00:00:00:01")),
            nic(3, "eth1", Some("12:b0:0a:64:00:02")),
            nic(4, "eth10", Some("12:b0:ac:1e:05:02")),
            nic(5, "eth2", Some("12:b1:00:00:00:03")),
        ]
    }

    #[test]
    fn matches_entries_by_mac_and_skips_entries_without_autoconfig() {
        let args = BootArgs::parse(
            "netdev.ip=10.100.0.2/16:10.100.255.254: netdev.ip= netdev.ip=172.30.5.2/24:: \
             weft.macs=12:b0:0a:64:00:02,12:b1:00:00:00:01,12:b0:ac:1e:05:02 --",
        )
        .unwrap();
        let m = match_entries(&args, &nics());
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        let got: Vec<(usize, &str)> = m
            .assigned
            .iter()
            .map(|a| (a.entry, a.nic.name.as_str()))
            .collect();
        assert_eq!(got, vec![(0, "eth1"), (2, "eth10")]);
        assert!(nics_ready(&args, &nics()));
    }

    #[test]
    fn reports_missing_nics_and_macs() {
        let args = BootArgs::parse(
            "netdev.ip=10.0.0.2/24:: netdev.ip=10.1.0.2/24:: netdev.ip=10.2.0.2/24:: \
             weft.macs=12:b0:0a:64:00:02,12:b0:00:00:00:09 --",
        )
        .unwrap();
        let m = match_entries(&args, &nics());
        assert_eq!(m.assigned.len(), 1);
        assert_eq!(m.problems.len(), 2);
        assert!(m.problems[0].contains("12:b0:00:00:00:09"));
        assert!(m.problems[1].contains("entry 2"));
        assert_eq!(
            missing_macs(&args, &nics()),
            vec!["12:b0:00:00:00:09".parse().unwrap()]
        );
        assert!(!nics_ready(&args, &nics()));
    }

    #[test]
    fn without_macs_matches_by_name_order() {
        let args = BootArgs::parse(
            "netdev.ip= netdev.ip=10.1.0.2/24:: netdev.ip=10.2.0.2/24:: netdev.ip=10.3.0.2/24:: --",
        )
        .unwrap();
        let m = match_entries(&args, &nics());
        let got: Vec<(usize, &str)> = m
            .assigned
            .iter()
            .map(|a| (a.entry, a.nic.name.as_str()))
            .collect();
        // eth2 sorts before eth10.
        assert_eq!(got, vec![(1, "eth1"), (2, "eth2"), (3, "eth10")]);
        assert!(nics_ready(&args, &nics()));
        assert!(!nics_ready(&args, &nics()[..3]));
    }

    fn assigned(entries: Vec<Option<NetdevConfig>>) -> Vec<Assignment> {
        let args = BootArgs {
            netdevs: entries,
            ..Default::default()
        };
        match_entries(&args, &nics()).assigned
    }

    #[test]
    fn default_route_prefers_a_gateway_inside_its_network() {
        let a = assigned(vec![
            entry("10.0.0.2/24", Some("192.168.1.1"), None),
            entry("172.30.5.2/24", Some("172.30.5.1"), None),
        ]);
        let route = default_route(&a).unwrap();
        assert_eq!(route.gateway, "172.30.5.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(route.nic.name, "eth1");
        assert!(!route.onlink);
    }

    #[test]
    fn default_route_falls_back_to_onlink_on_the_primary_nic() {
        let a = assigned(vec![
            entry("10.0.0.2/24", None, None),
            entry("172.30.5.2/24", Some("192.168.1.1"), None),
        ]);
        let route = default_route(&a).unwrap();
        assert_eq!(route.gateway, "192.168.1.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(route.nic.name, "eth0");
        assert!(route.onlink);
    }

    #[test]
    fn no_gateway_means_no_default_route() {
        assert_eq!(
            default_route(&assigned(vec![entry("10.0.0.2/24", None, None)])),
            None
        );
        assert_eq!(default_route(&[]), None);
    }

    #[test]
    fn resolv_conf_lists_distinct_nameservers_in_order() {
        let args = BootArgs {
            netdevs: vec![
                entry("10.0.0.2/24", None, Some("10.0.0.1")),
                None,
                entry("10.1.0.2/24", None, Some("9.9.9.9")),
                entry("10.2.0.2/24", None, Some("10.0.0.1")),
            ],
            ..Default::default()
        };
        let ns = nameservers(&args);
        assert_eq!(
            ns,
            vec![
                "10.0.0.1".parse::<Ipv4Addr>().unwrap(),
                "9.9.9.9".parse().unwrap()
            ]
        );
        assert_eq!(
            resolv_conf(&ns),
            "# Written by weft-guest from the boot arguments.\nnameserver 10.0.0.1\nnameserver 9.9.9.9\n"
        );
    }
}
