//! weft's table `netdev weft`: the relay data path on the TAP devices themselves, before any
//! routing or local delivery. Per relayed interface (named after its TAP `<c>`):
//!
//! - `client-<c>-in`, ingress of the client's TAP, policy drop: the client's ARP (with its
//!   own address as sender) and, with a direct nameserver, DNS to it go on; every other IPv4
//!   packet is forwarded to the relay (`fwd`); anything else is dropped.
//! - `client-<c>-out`, egress of the client's TAP, policy drop: only ARP, what the relay
//!   chain delivered (it carries [`RELAYED_MARK`]) and the direct nameserver's answers reach
//!   the client, so nothing bypasses the relay even when routing or a user's bridge would
//!   send it there.
//! - `relay-for-<c>`, ingress of the relay's TAP, policy accept: IPv4 for the client's
//!   address goes to the client; the relay's other traffic continues as usual.
//!
//! `fwd` rewrites the Ethernet header through the neighbour table of the target device (the
//! host's MAC as source, the guest's as destination) and decrements the TTL.

use std::net::Ipv4Addr;

use nftables::expr::{Expression, MetaKey};
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{FWDFamily, Mangle, Statement, FWD};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::{accept, cmd, drop, element, is, meta, payload, text, RELAYED, TABLE};
use crate::Relayed;

pub(crate) const NETDEV_TABLE: &str = "weft";
/// The mark of frames the relay chain delivers to a client: the client's egress chain lets
/// only those through. The frames leave through the client's TAP right away, so the mark
/// never meets the host's routing or other users of marks.
pub(crate) const RELAYED_MARK: u32 = 0x7765_6674;

const DNS_PORT: u32 = 53;

pub(crate) fn client_in(tap: &str) -> String {
    format!("client-{tap}-in")
}

pub(crate) fn client_out(tap: &str) -> String {
    format!("client-{tap}-out")
}

pub(crate) fn relay_for(tap: &str) -> String {
    format!("relay-for-{tap}")
}

fn netdev_table() -> Table<'static> {
    Table {
        family: NfFamily::NetDev,
        name: NETDEV_TABLE.into(),
        handle: None,
    }
}

fn chain_ref(name: &str) -> Chain<'static> {
    Chain {
        family: NfFamily::NetDev,
        table: NETDEV_TABLE.into(),
        name: name.to_string().into(),
        ..Chain::default()
    }
}

/// Removes a chain whether or not it is there: adding a chain of the same name is a no-op for
/// an existing one (base chain or not), a flushed chain can go.
fn remove_chain(name: &str) -> [NfObject<'static>; 3] {
    [
        cmd(NfCmd::Add(NfListObject::Chain(chain_ref(name)))),
        cmd(NfCmd::Flush(FlushObject::Chain(chain_ref(name)))),
        cmd(NfCmd::Delete(NfListObject::Chain(chain_ref(name)))),
    ]
}

fn base_chain(name: &str, hook: NfHook, dev: &str, policy: NfChainPolicy) -> NfObject<'static> {
    cmd(NfCmd::Add(NfListObject::Chain(Chain {
        _type: Some(NfChainType::Filter),
        hook: Some(hook),
        prio: Some(0),
        dev: Some(dev.to_string().into()),
        policy: Some(policy),
        ..chain_ref(name)
    })))
}

fn rule(chain: &str, expr: Vec<Statement<'static>>, comment: Option<String>) -> NfObject<'static> {
    cmd(NfCmd::Add(NfListObject::Rule(Rule {
        family: NfFamily::NetDev,
        table: NETDEV_TABLE.into(),
        chain: chain.to_string().into(),
        expr: expr.into(),
        comment: comment.map(Into::into),
        ..Rule::default()
    })))
}

fn addr(a: Ipv4Addr) -> Expression<'static> {
    text(a.to_string())
}

fn fwd(to: Ipv4Addr, dev: &str) -> Statement<'static> {
    Statement::FWD(Some(FWD {
        dev: Some(text(dev)),
        family: Some(FWDFamily::IP),
        addr: Some(addr(to)),
    }))
}

/// `ip <dir>addr <ns> <proto> <dir>port 53`, for TCP and UDP.
fn dns(ns: Ipv4Addr, towards: bool) -> [Vec<Statement<'static>>; 2] {
    let (a, p) = if towards {
        ("daddr", "dport")
    } else {
        ("saddr", "sport")
    };
    ["udp", "tcp"].map(|proto| {
        vec![
            is(payload("ip", a), addr(ns)),
            is(payload(proto, p), Expression::Number(DNS_PORT)),
            accept(),
        ]
    })
}

/// The `ip weft` elements of a relayed interface: its relay may forward from its address, a
/// pool client may reach the gateway's resolver with its own address when DNS is direct, and
/// its address is masqueraded on the uplink.
fn elements(r: &Relayed) -> Vec<NfListObject<'static>> {
    let mut found = Vec::new();
    if r.relay.pool {
        found.push(element(&r.relay.tap, r.client.addr));
    }
    if r.client.pool && r.dns_direct.is_some() {
        found.push(element(&r.client.tap, r.client.addr));
    }
    found.push(NfListObject::Element(nftables::schema::Element {
        family: NfFamily::IP,
        table: TABLE.into(),
        name: RELAYED.into(),
        elem: vec![addr(r.client.addr)].into(),
    }));
    found
}

/// One transaction that replaces the relayed interface's chains and adds its `ip weft`
/// elements. `record` goes into the comment of the forwarding rule, so that the installed
/// relays can be listed.
pub(crate) fn attach_relayed(r: &Relayed, record: &str) -> Nftables<'static> {
    let (c, rl) = (&r.client, &r.relay);
    let (cin, cout, rfor) = (client_in(&c.tap), client_out(&c.tap), relay_for(&c.tap));

    let mut objects = vec![cmd(NfCmd::Add(NfListObject::Table(netdev_table())))];
    for name in [&cin, &cout, &rfor] {
        objects.extend(remove_chain(name));
    }

    objects.push(base_chain(
        &cin,
        NfHook::Ingress,
        &c.tap,
        NfChainPolicy::Drop,
    ));
    // The host answers ARP for the gateway on a pool TAP; on an own TAP, ARP goes on into the
    // user's bridge. Either way only with the client's own address as sender.
    objects.push(rule(
        &cin,
        vec![is(payload("arp", "saddr ip"), addr(c.addr)), accept()],
        None,
    ));
    if let Some(ns) = r.dns_direct {
        for expr in dns(ns, true) {
            objects.push(rule(&cin, expr, None));
        }
    }
    objects.push(rule(
        &cin,
        vec![
            is(meta(MetaKey::Protocol), text("ip")),
            fwd(rl.addr, &rl.tap),
        ],
        Some(record.to_string()),
    ));

    objects.push(base_chain(
        &cout,
        NfHook::Egress,
        &c.tap,
        NfChainPolicy::Drop,
    ));
    objects.push(rule(
        &cout,
        vec![is(meta(MetaKey::Protocol), text("arp")), accept()],
        None,
    ));
    objects.push(rule(
        &cout,
        vec![
            is(meta(MetaKey::Mark), Expression::Number(RELAYED_MARK)),
            accept(),
        ],
        None,
    ));
    if let Some(ns) = r.dns_direct {
        for expr in dns(ns, false) {
            objects.push(rule(&cout, expr, None));
        }
    }

    objects.push(base_chain(
        &rfor,
        NfHook::Ingress,
        &rl.tap,
        NfChainPolicy::Accept,
    ));
    objects.push(rule(
        &rfor,
        vec![
            is(payload("ip", "daddr"), addr(c.addr)),
            Statement::Mangle(Mangle {
                key: meta(MetaKey::Mark),
                value: Expression::Number(RELAYED_MARK),
            }),
            fwd(c.addr, &c.tap),
        ],
        None,
    ));
    // `fwd` lets a packet go on when its device is gone; it must not reach the host instead.
    objects.push(rule(
        &rfor,
        vec![is(payload("ip", "daddr"), addr(c.addr)), drop()],
        None,
    ));

    objects.extend(elements(r).into_iter().map(|e| cmd(NfCmd::Add(e))));
    Nftables {
        objects: objects.into(),
    }
}

/// Removes the relayed interface's chains; nothing there is fine.
pub(crate) fn detach_relayed(client_tap: &str) -> Nftables<'static> {
    let mut objects = vec![cmd(NfCmd::Add(NfListObject::Table(netdev_table())))];
    for name in [
        client_in(client_tap),
        client_out(client_tap),
        relay_for(client_tap),
    ] {
        objects.extend(remove_chain(&name));
    }
    Nftables {
        objects: objects.into(),
    }
}

/// Removes the relayed interface's `ip weft` elements, adding each first so that a missing
/// one is not an error. The table must exist.
pub(crate) fn remove_relayed_elements(r: &Relayed) -> Nftables<'static> {
    let mut objects = Vec::new();
    for e in elements(r) {
        objects.push(cmd(NfCmd::Add(e.clone())));
        objects.push(cmd(NfCmd::Delete(e)));
    }
    Nftables {
        objects: objects.into(),
    }
}

/// Removes `netdev weft` if it is there.
pub(crate) fn remove_netdev() -> Nftables<'static> {
    Nftables {
        objects: vec![
            cmd(NfCmd::Add(NfListObject::Table(netdev_table()))),
            cmd(NfCmd::Delete(NfListObject::Table(netdev_table()))),
        ]
        .into(),
    }
}
