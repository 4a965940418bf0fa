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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use weft_model::MacAddr;

    use super::*;
    use crate::RelayEnd;

    fn relayed(client_pool: bool, dns: Option<Ipv4Addr>) -> Relayed {
        let end = |tap: &str, addr: Ipv4Addr, pool| RelayEnd {
            tap: tap.into(),
            addr,
            mac: MacAddr::for_pool_address(addr),
            pool,
        };
        Relayed {
            client: end("wtap0", Ipv4Addr::new(10, 100, 0, 2), client_pool),
            relay: end("wtap1", Ipv4Addr::new(10, 100, 0, 3), true),
            dns_direct: dns,
        }
    }

    fn batch(r: &Relayed) -> Vec<Value> {
        let value = serde_json::to_value(attach_relayed(r, "rec")).unwrap();
        value["nftables"].as_array().unwrap().clone()
    }

    fn rules(objects: &[Value], chain: &str) -> Vec<Value> {
        objects
            .iter()
            .filter(|o| o["add"]["rule"]["chain"] == chain)
            .map(|o| o["add"]["rule"].clone())
            .collect()
    }

    #[test]
    fn chains_hook_the_client_and_the_relay_taps() {
        let objects = batch(&relayed(true, None));
        let chains: Vec<_> = objects
            .iter()
            .filter_map(|o| o["add"].get("chain"))
            .filter(|c| c.get("hook").is_some())
            .map(|c| {
                (
                    c["name"].clone(),
                    c["hook"].clone(),
                    c["dev"].clone(),
                    c["policy"].clone(),
                )
            })
            .collect();
        assert_eq!(
            chains,
            vec![
                (
                    json!("client-wtap0-in"),
                    json!("ingress"),
                    json!("wtap0"),
                    json!("drop")
                ),
                (
                    json!("client-wtap0-out"),
                    json!("egress"),
                    json!("wtap0"),
                    json!("drop")
                ),
                (
                    json!("relay-for-wtap0"),
                    json!("ingress"),
                    json!("wtap1"),
                    json!("accept")
                ),
            ]
        );
        // Each chain is removed first, whether or not it is there.
        for name in ["client-wtap0-in", "client-wtap0-out", "relay-for-wtap0"] {
            let at = |cmd: &str| {
                objects
                    .iter()
                    .position(|o| {
                        o[cmd]["chain"]["name"] == name && o[cmd]["chain"].get("hook").is_none()
                    })
                    .unwrap()
            };
            assert!(at("add") < at("flush") && at("flush") < at("delete"));
        }
    }

    #[test]
    fn the_client_reaches_only_its_relay() {
        let objects = batch(&relayed(true, None));
        let cin = rules(&objects, "client-wtap0-in");
        assert_eq!(cin.len(), 2);
        assert_eq!(cin[0]["expr"][0]["match"]["right"], json!("10.100.0.2"));
        assert_eq!(
            cin[1]["expr"][1],
            json!({"fwd": {"dev": "wtap1", "family": "ip", "addr": "10.100.0.3"}})
        );
        assert_eq!(cin[1]["comment"], json!("rec"));

        let rfor = rules(&objects, "relay-for-wtap0");
        assert_eq!(
            rfor[0]["expr"][2],
            json!({"fwd": {"dev": "wtap0", "family": "ip", "addr": "10.100.0.2"}})
        );
        assert_eq!(rfor[0]["expr"][1]["mangle"]["value"], json!(RELAYED_MARK));
        assert!(rfor[1]["expr"][1].get("drop").is_some());

        let cout = rules(&objects, "client-wtap0-out");
        assert_eq!(cout.len(), 2);
        assert_eq!(cout[1]["expr"][0]["match"]["right"], json!(RELAYED_MARK));
    }

    #[test]
    fn direct_dns_opens_both_directions_for_the_nameserver_only() {
        let ns = Ipv4Addr::new(10, 100, 255, 254);
        let objects = batch(&relayed(true, Some(ns)));
        let cin = rules(&objects, "client-wtap0-in");
        let cout = rules(&objects, "client-wtap0-out");
        assert_eq!((cin.len(), cout.len()), (4, 4));
        for (rule, proto) in cin[1..3].iter().zip(["udp", "tcp"]) {
            assert_eq!(rule["expr"][0]["match"]["right"], json!("10.100.255.254"));
            assert_eq!(
                rule["expr"][1]["match"]["left"]["payload"]["protocol"],
                json!(proto)
            );
            assert_eq!(
                rule["expr"][1]["match"]["left"]["payload"]["field"],
                json!("dport")
            );
        }
        for rule in &cout[2..4] {
            assert_eq!(
                rule["expr"][0]["match"]["left"]["payload"]["field"],
                json!("saddr")
            );
            assert_eq!(
                rule["expr"][1]["match"]["left"]["payload"]["field"],
                json!("sport")
            );
        }
    }

    #[test]
    fn elements_follow_the_kinds_of_the_ends() {
        let names = |r: &Relayed| -> Vec<Value> {
            batch(r)
                .iter()
                .filter_map(|o| o["add"].get("element"))
                .map(|e| json!([e["name"], e["elem"][0]]))
                .collect()
        };
        let relay_elem = json!(["guests", {"concat": ["wtap1", "10.100.0.2"]}]);
        let client_elem = json!(["guests", {"concat": ["wtap0", "10.100.0.2"]}]);
        let masq = json!(["relayed", "10.100.0.2"]);
        let ns = Some(Ipv4Addr::new(10, 100, 255, 254));
        assert_eq!(
            names(&relayed(true, None)),
            vec![relay_elem.clone(), masq.clone()]
        );
        assert_eq!(
            names(&relayed(true, ns)),
            vec![relay_elem.clone(), client_elem, masq.clone()]
        );
        assert_eq!(names(&relayed(false, ns)), vec![relay_elem, masq]);
    }

    #[test]
    fn detach_removes_the_chains_whether_or_not_they_are_there() {
        let value = serde_json::to_value(detach_relayed("wtap0")).unwrap();
        let objects = value["nftables"].as_array().unwrap();
        assert_eq!(objects.len(), 10);
        assert_eq!(objects[0]["add"]["table"]["family"], json!("netdev"));
        assert!(objects
            .iter()
            .all(|o| o.get("add").is_some_and(|a| a.get("rule").is_none())
                || o.get("flush").is_some()
                || o.get("delete").is_some()));
    }
}
