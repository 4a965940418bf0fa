//! Policy routing for relayed interfaces, through rtnetlink.
//!
//! Whatever the host routes to a relayed interface's address (replies from the internet once
//! masquerade is undone, the host's own packets) goes to its relay instead: a rule sends the
//! address to the relay's table, whose only route is a default route through the relay's
//! guest. Exceptions of higher precedence keep the main table for ARP lookups made on the
//! relay's TAP (so that proxy ARP answers there) and, with direct DNS, for the nameserver's
//! answers.
//!
//! Numbers: exceptions have priority [`KEEP_PRIORITY`], redirects [`RELAY_PRIORITY`], both
//! ahead of the main table (32766). A relay's table is [`RELAY_TABLE_BASE`] plus the ifindex of
//! its TAP, unique while the device exists and stable for persistent devices.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage, RulePortRange};
use rtnetlink::packet_route::{AddressFamily, IpProtocol};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use crate::link::{errno, netlink_error};
use crate::HostNetError;

/// Rules that keep the main table for some traffic to a relayed address.
pub(crate) const KEEP_PRIORITY: u32 = 1000;
/// Rules that send a relayed address to its relay's table.
pub(crate) const RELAY_PRIORITY: u32 = 1001;
/// A relay's table is this plus its TAP's ifindex; ifindexes are positive `i32`s, so the sum
/// never overflows and never lands on the kernel's own tables (253 to 255).
pub(crate) const RELAY_TABLE_BASE: u32 = 1_000_000_000;

const DNS_PORT: u16 = 53;

pub(crate) fn relay_table(relay_index: u32) -> u32 {
    RELAY_TABLE_BASE + relay_index
}

fn is_relay_table(table: u32) -> bool {
    (RELAY_TABLE_BASE..=RELAY_TABLE_BASE + i32::MAX as u32).contains(&table)
}

/// One of weft's rules for a relayed address `to/32`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Rule {
    pub priority: u32,
    pub to: Ipv4Addr,
    pub from: Option<Ipv4Addr>,
    pub iif: Option<String>,
    /// IP protocol number and source port.
    pub sport: Option<(u8, u16)>,
    pub table: u32,
}

/// The rules a relayed address needs: `to` goes to the relay's table, except for ARP lookups
/// on the relay's TAP and, with a direct nameserver, for that nameserver's answers. Those are
/// told apart by their source address, so a resolver on the host must answer from the
/// nameserver's address when it routes (bound to it, as weft's resolver is, or choosing the
/// source per packet); one bound to the wildcard address routes before it has a source, and
/// its answers go to the relay.
pub(crate) fn wanted(
    to: Ipv4Addr,
    relay_tap: &str,
    relay_index: u32,
    dns_direct: Option<Ipv4Addr>,
) -> Vec<Rule> {
    let main = u32::from(RouteHeader::RT_TABLE_MAIN);
    let keep = |from, iif: Option<&str>, sport| Rule {
        priority: KEEP_PRIORITY,
        to,
        from,
        iif: iif.map(str::to_string),
        sport,
        table: main,
    };
    let udp = u8::from(IpProtocol::Udp);
    let tcp = u8::from(IpProtocol::Tcp);

    let mut rules = vec![keep(None, Some(relay_tap), None)];
    if let Some(ns) = dns_direct {
        rules.push(keep(Some(ns), None, Some((udp, DNS_PORT))));
        rules.push(keep(Some(ns), None, Some((tcp, DNS_PORT))));
    }
    rules.push(Rule {
        priority: RELAY_PRIORITY,
        to,
        from: None,
        iif: None,
        sport: None,
        table: relay_table(relay_index),
    });
    rules
}

fn rule_message(rule: &Rule) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.action = RuleAction::ToTable;
    msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    msg.header.dst_len = 32;
    msg.attributes.push(RuleAttribute::Priority(rule.priority));
    msg.attributes.push(RuleAttribute::Table(rule.table));
    msg.attributes
        .push(RuleAttribute::Destination(IpAddr::V4(rule.to)));
    if let Some(from) = rule.from {
        msg.header.src_len = 32;
        msg.attributes.push(RuleAttribute::Source(IpAddr::V4(from)));
    }
    if let Some(iif) = &rule.iif {
        msg.attributes.push(RuleAttribute::Iifname(iif.clone()));
    }
    if let Some((proto, port)) = rule.sport {
        msg.attributes
            .push(RuleAttribute::IpProtocol(IpProtocol::from(proto)));
        msg.attributes
            .push(RuleAttribute::SourcePortRange(RulePortRange {
                start: port,
                end: port,
            }));
    }
    msg
}

fn parse_rule(msg: &RuleMessage) -> Option<Rule> {
    if msg.header.family != AddressFamily::Inet
        || msg.header.action != RuleAction::ToTable
        || msg.header.dst_len != 32
    {
        return None;
    }
    let mut rule = Rule {
        priority: 0,
        to: Ipv4Addr::UNSPECIFIED,
        from: None,
        iif: None,
        sport: None,
        table: u32::from(msg.header.table),
    };
    let mut proto = None;
    let mut port = None;
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Priority(p) => rule.priority = *p,
            RuleAttribute::Table(t) => rule.table = *t,
            RuleAttribute::Destination(IpAddr::V4(a)) => rule.to = *a,
            RuleAttribute::Source(IpAddr::V4(a)) if msg.header.src_len == 32 => {
                rule.from = Some(*a)
            }
            RuleAttribute::Iifname(name) => rule.iif = Some(name.clone()),
            RuleAttribute::IpProtocol(p) => proto = Some(u8::from(*p)),
            RuleAttribute::SourcePortRange(r) if r.start == r.end => port = Some(r.start),
            _ => {}
        }
    }
    rule.sport = proto.zip(port);
    Some(rule)
}

/// weft's rules: IPv4 rules to a /32 at weft's two priorities.
pub(crate) async fn rules(handle: &Handle) -> Result<Vec<Rule>, HostNetError> {
    let mut stream = handle.rule().get(IpVersion::V4).execute();
    let mut found = Vec::new();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| netlink_error("list rules".into(), e))?
    {
        if let Some(rule) = parse_rule(&msg) {
            if rule.priority == KEEP_PRIORITY || rule.priority == RELAY_PRIORITY {
                found.push(rule);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Adds a rule; the same rule already there is fine.
pub(crate) async fn add_rule(handle: &Handle, rule: &Rule) -> Result<(), HostNetError> {
    let mut req = handle.rule().add();
    *req.message_mut() = rule_message(rule);
    match req.execute().await {
        Err(e) if errno(&e) != Some(libc::EEXIST) => Err(netlink_error(format!("add {rule:?}"), e)),
        _ => Ok(()),
    }
}

/// Deletes a rule; a missing one is fine.
pub(crate) async fn delete_rule(handle: &Handle, rule: &Rule) -> Result<(), HostNetError> {
    match handle.rule().del(rule_message(rule)).execute().await {
        Err(e) if !matches!(errno(&e), Some(libc::ENOENT) | Some(libc::ESRCH)) => {
            Err(netlink_error(format!("delete {rule:?}"), e))
        }
        _ => Ok(()),
    }
}

fn relay_route(table: u32, relay_index: u32, relay_addr: Ipv4Addr) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .table_id(table)
        .output_interface(relay_index)
        .gateway(relay_addr)
        .onlink()
        .build()
}

/// `default via <relay_addr> dev <relay> onlink` in the relay's table: the relay's guest is
/// reached over its TAP whatever addresses the host side of that TAP has (an own TAP has
/// none).
pub(crate) async fn replace_relay_route(
    handle: &Handle,
    relay_index: u32,
    relay_addr: Ipv4Addr,
) -> Result<(), HostNetError> {
    let table = relay_table(relay_index);
    handle
        .route()
        .add(relay_route(table, relay_index, relay_addr))
        .replace()
        .execute()
        .await
        .map_err(|e| netlink_error(format!("default via {relay_addr} in table {table}"), e))
}

/// A route of one of weft's relay tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RelayRoute {
    pub table: u32,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    message: RouteMessage,
}

/// Every IPv4 route in weft's relay tables.
pub(crate) async fn relay_routes(handle: &Handle) -> Result<Vec<RelayRoute>, HostNetError> {
    let mut stream = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut found = Vec::new();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| netlink_error("list routes".into(), e))?
    {
        let mut table = u32::from(msg.header.table);
        let mut gateway = None;
        let mut oif = None;
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(*a),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        if is_relay_table(table) {
            found.push(RelayRoute {
                table,
                gateway,
                oif,
                message: msg,
            });
        }
    }
    found.sort_by_key(|r| (r.table, r.gateway, r.oif));
    Ok(found)
}

/// Deletes a route as it was listed; a missing one is fine.
pub(crate) async fn delete_relay_route(
    handle: &Handle,
    route: &RelayRoute,
) -> Result<(), HostNetError> {
    let mut msg = route.message.clone();
    msg.header.protocol = RouteProtocol::Unspec;
    msg.header.scope = RouteScope::NoWhere;
    msg.header.kind = RouteType::Unspec;
    match handle.route().del(msg).execute().await {
        Err(e) if !matches!(errno(&e), Some(libc::ESRCH) | Some(libc::ENOENT)) => Err(
            netlink_error(format!("delete route of table {}", route.table), e),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 2);
    const NS: Ipv4Addr = Ipv4Addr::new(10, 100, 255, 254);

    #[test]
    fn a_client_goes_to_its_relays_table_after_the_exceptions() {
        let rules = wanted(C, "wtap1", 7, None);
        assert_eq!(rules.len(), 2);
        assert_eq!(
            (rules[0].priority, rules[0].iif.as_deref(), rules[0].table),
            (KEEP_PRIORITY, Some("wtap1"), 254)
        );
        assert_eq!(
            (rules[1].priority, rules[1].table),
            (RELAY_PRIORITY, 1_000_000_007)
        );
        assert!(rules.iter().all(|r| r.to == C));
        const { assert!(KEEP_PRIORITY < RELAY_PRIORITY && RELAY_PRIORITY < 32766) };
    }

    #[test]
    fn direct_dns_keeps_the_nameservers_answers() {
        let rules = wanted(C, "wtap1", 7, Some(NS));
        let dns: Vec<_> = rules.iter().filter(|r| r.sport.is_some()).collect();
        assert_eq!(dns.len(), 2);
        assert!(dns
            .iter()
            .all(|r| r.from == Some(NS) && r.priority == KEEP_PRIORITY && r.table == 254));
        assert_eq!(dns[0].sport, Some((17, 53)));
        assert_eq!(dns[1].sport, Some((6, 53)));
    }

    #[test]
    fn rules_read_back_as_written() {
        for rule in wanted(C, "wtap1", 7, Some(NS)) {
            assert_eq!(parse_rule(&rule_message(&rule)), Some(rule));
        }
    }

    #[test]
    fn relay_tables_stay_in_their_range() {
        assert!(is_relay_table(relay_table(1)));
        assert!(is_relay_table(relay_table(i32::MAX as u32)));
        assert!(!is_relay_table(254));
        assert!(!is_relay_table(RELAY_TABLE_BASE - 1));
    }
}
