//! weft's nftables table `ip weft`, built with the `nftables` crate's JSON schema types and
//! handed to `nft -j -f -`. No nft text syntax is ever generated.

mod command;
mod libnft;
pub(crate) mod relay;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::net::Ipv4Addr;

use nftables::expr::{
    Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, CT,
};
use nftables::schema::{
    Chain, Element, NfCmd, NfListObject, NfObject, Nftables, Set, SetType, SetTypeValue, Table,
};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

#[cfg(test)]
pub(crate) use command::nft_program;
pub(crate) use command::{
    apply, guests, netdev_comments, netdev_table_exists, relayed_sources, table_exists, table_shape,
};
pub(crate) use relay::{attach_relayed, detach_relayed, remove_netdev, remove_relayed_elements};

use crate::PoolNet;

pub(crate) const TABLE: &str = "weft";
/// `ifname . ipv4_addr`: the source address each pool TAP may use.
pub(crate) const GUESTS: &str = "guests";
/// `ipv4_addr`: addresses of relayed interfaces, masqueraded like the pool when their relay
/// forwards their traffic to the uplink (an own TAP's address is outside the pool).
pub(crate) const RELAYED: &str = "relayed";

const FAMILY: NfFamily = NfFamily::IP;
/// The priority of the nat postrouting hook that nft calls `srcnat`.
const SRCNAT_PRIORITY: i32 = 100;

fn table() -> Table<'static> {
    Table {
        family: FAMILY,
        name: TABLE.into(),
        handle: None,
    }
}

fn cmd(c: NfCmd<'static>) -> NfObject<'static> {
    NfObject::CmdObject(c)
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn text(s: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(s.into()))
}

fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn is_not(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

fn ct_established() -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::CT(CT {
            key: "state".into(),
            family: None,
            dir: None,
        })),
        right: Expression::List(vec![text("established"), text("related")]),
        op: Operator::IN,
    })
}

fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

fn drop() -> Statement<'static> {
    Statement::Drop(None)
}

/// `iifname . ip saddr`, the key of the `guests` set.
fn iif_saddr() -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(vec![
        meta(MetaKey::Iifname),
        payload("ip", "saddr"),
    ]))
}

fn guests_ref() -> Expression<'static> {
    text(format!("@{GUESTS}"))
}

/// One element of `guests`: `<tap> . <addr>`.
fn guest_elem(tap: &str, addr: Ipv4Addr) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(vec![
        text(tap),
        text(addr.to_string()),
    ]))
}

fn base_chain(name: &'static str, kind: NfChainType, hook: NfHook, prio: i32) -> NfObject<'static> {
    cmd(NfCmd::Add(NfListObject::Chain(Chain {
        family: FAMILY,
        table: TABLE.into(),
        name: name.into(),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    })))
}

fn rule(chain: &'static str, expr: Vec<Statement<'static>>) -> NfObject<'static> {
    cmd(NfCmd::Add(NfListObject::Rule(nftables::schema::Rule {
        family: FAMILY,
        table: TABLE.into(),
        chain: chain.into(),
        expr: expr.into(),
        ..nftables::schema::Rule::default()
    })))
}

/// The whole table, replacing any previous one in the same transaction. `keep` and
/// `keep_relayed` are the `guests` and `relayed` elements to carry over, so that running
/// instances keep their egress while weftd restarts; reconciliation removes the ones that no
/// longer belong.
pub(crate) fn install(
    pool: &PoolNet,
    keep: &[(String, Ipv4Addr)],
    keep_relayed: &[Ipv4Addr],
) -> Nftables<'static> {
    let pool_taps = text(format!("{}*", pool.tap_prefix));
    let uplink = text(pool.uplink.clone());
    let gateway = text(pool.gateway.to_string());

    // `add` first so that `delete` never fails on a host without the table.
    let mut objects = vec![
        cmd(NfCmd::Add(NfListObject::Table(table()))),
        cmd(NfCmd::Delete(NfListObject::Table(table()))),
        cmd(NfCmd::Add(NfListObject::Table(table()))),
    ];

    let elems: Vec<_> = keep
        .iter()
        .map(|(tap, addr)| guest_elem(tap, *addr))
        .collect();
    objects.push(cmd(NfCmd::Add(NfListObject::Set(Box::new(Set {
        family: FAMILY,
        table: TABLE.into(),
        name: GUESTS.into(),
        set_type: SetTypeValue::Concatenated(vec![SetType::Ifname, SetType::Ipv4Addr].into()),
        elem: (!elems.is_empty()).then(|| elems.into()),
        ..Set::default()
    })))));
    let relayed: Vec<_> = keep_relayed.iter().map(|a| text(a.to_string())).collect();
    objects.push(cmd(NfCmd::Add(NfListObject::Set(Box::new(Set {
        family: FAMILY,
        table: TABLE.into(),
        name: RELAYED.into(),
        set_type: SetTypeValue::Single(SetType::Ipv4Addr),
        elem: (!relayed.is_empty()).then(|| relayed.into()),
        ..Set::default()
    })))));

    // Guests reach the uplink from their own address only; nothing else is forwarded from or
    // to a pool TAP, so instances cannot reach each other through the host.
    objects.push(base_chain(
        "forward",
        NfChainType::Filter,
        NfHook::Forward,
        0,
    ));
    objects.push(rule("forward", vec![ct_established(), accept()]));
    objects.push(rule(
        "forward",
        vec![
            is(iif_saddr(), guests_ref()),
            is(meta(MetaKey::Oifname), uplink.clone()),
            accept(),
        ],
    ));
    objects.push(rule(
        "forward",
        vec![is(meta(MetaKey::Iifname), pool_taps.clone()), drop()],
    ));
    objects.push(rule(
        "forward",
        vec![is(meta(MetaKey::Oifname), pool_taps.clone()), drop()],
    ));

    // From a pool TAP the host answers ping and DNS on the gateway, and nothing else (not
    // weftd's API, not other services). A spoofed source gets nothing, so the resolver cannot
    // be used to send answers at another instance.
    let from_pool = || is(meta(MetaKey::Iifname), pool_taps.clone());
    objects.push(base_chain("input", NfChainType::Filter, NfHook::Input, 0));
    objects.push(rule(
        "input",
        vec![from_pool(), is_not(iif_saddr(), guests_ref()), drop()],
    ));
    objects.push(rule("input", vec![from_pool(), ct_established(), accept()]));
    objects.push(rule(
        "input",
        vec![
            from_pool(),
            is(payload("ip", "protocol"), text("icmp")),
            accept(),
        ],
    ));
    for proto in ["udp", "tcp"] {
        objects.push(rule(
            "input",
            vec![
                from_pool(),
                is(payload("ip", "daddr"), gateway.clone()),
                is(payload(proto, "dport"), Expression::Number(53)),
                accept(),
            ],
        ));
    }
    objects.push(rule("input", vec![from_pool(), drop()]));

    objects.push(base_chain(
        "postrouting",
        NfChainType::NAT,
        NfHook::Postrouting,
        SRCNAT_PRIORITY,
    ));
    let pool_net = Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(text(pool.cidr.network().to_string())),
        len: u32::from(pool.cidr.prefix()),
    }));
    objects.push(rule(
        "postrouting",
        vec![
            is(payload("ip", "saddr"), pool_net),
            is(meta(MetaKey::Oifname), uplink.clone()),
            Statement::Masquerade(None),
        ],
    ));
    objects.push(rule(
        "postrouting",
        vec![
            is(payload("ip", "saddr"), text(format!("@{RELAYED}"))),
            is(meta(MetaKey::Oifname), uplink),
            Statement::Masquerade(None),
        ],
    ));

    Nftables {
        objects: objects.into(),
    }
}

/// The (chains, sets, rules) that [`install`] puts in `ip weft` for `pool`.
pub(crate) fn installed_shape(pool: &PoolNet) -> (usize, usize, usize) {
    let batch = install(pool, &[], &[]);
    let count = |f: fn(&NfListObject) -> bool| {
        batch
            .objects
            .iter()
            .filter(|o| matches!(o, NfObject::CmdObject(NfCmd::Add(obj)) if f(obj)))
            .count()
    };
    (
        count(|o| matches!(o, NfListObject::Chain(_))),
        count(|o| matches!(o, NfListObject::Set(_))),
        count(|o| matches!(o, NfListObject::Rule(_))),
    )
}

/// Removes the table if it is there.
pub(crate) fn remove() -> Nftables<'static> {
    Nftables {
        objects: vec![
            cmd(NfCmd::Add(NfListObject::Table(table()))),
            cmd(NfCmd::Delete(NfListObject::Table(table()))),
        ]
        .into(),
    }
}

fn element(tap: &str, addr: Ipv4Addr) -> NfListObject<'static> {
    NfListObject::Element(Element {
        family: FAMILY,
        table: TABLE.into(),
        name: GUESTS.into(),
        elem: vec![guest_elem(tap, addr)].into(),
    })
}

/// The elements `<tap> . <addr>` of `guests`, as one object.
fn elements(guests: &[(String, Ipv4Addr)]) -> NfListObject<'static> {
    NfListObject::Element(Element {
        family: FAMILY,
        table: TABLE.into(),
        name: GUESTS.into(),
        elem: guests
            .iter()
            .map(|(tap, addr)| guest_elem(tap, *addr))
            .collect::<Vec<_>>()
            .into(),
    })
}

/// Adds `<tap> . <addr>` to `guests` for each pair, in one transaction; nft's `add` is a
/// no-op for an element already there.
pub(crate) fn add_guests(guests: &[(String, Ipv4Addr)]) -> Nftables<'static> {
    Nftables {
        objects: vec![cmd(NfCmd::Add(elements(guests)))].into(),
    }
}

/// Removes `<tap> . <addr>` from `guests` for each pair, adding them first in the same
/// transaction so that a missing element is not an error.
pub(crate) fn remove_guests(guests: &[(String, Ipv4Addr)]) -> Nftables<'static> {
    Nftables {
        objects: vec![
            cmd(NfCmd::Add(elements(guests))),
            cmd(NfCmd::Delete(elements(guests))),
        ]
        .into(),
    }
}
