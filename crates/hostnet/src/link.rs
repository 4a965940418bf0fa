//! Links, addresses and routes through rtnetlink.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_core::Nla;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::{DeviceKind, HostNetError};

/// `IFLA_TUN_TYPE` inside the link info data of a "tun" link.
const IFLA_TUN_TYPE: u16 = 3;
/// The value of `IFLA_TUN_TYPE` for a layer-2 device (`IFF_TAP`).
const TUN_TYPE_TAP: u8 = libc::IFF_TAP as u8;
const TUN_TYPE_TUN: u8 = libc::IFF_TUN as u8;

/// The errno of a netlink error, when the kernel sent one.
pub(crate) fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

pub(crate) fn netlink_error(what: String, err: rtnetlink::Error) -> HostNetError {
    let detail = match &err {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io().to_string(),
        other => other.to_string(),
    };
    HostNetError::Netlink(format!("{what}: {detail}"))
}

/// Whether `name` could be a Linux interface name at all. Asking the kernel about a name it
/// cannot hold fails with a policy error instead of "no such device".
pub(crate) fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// The link called `name`, or `None` when there is none.
pub(crate) async fn link_by_name(
    handle: &Handle,
    name: &str,
) -> Result<Option<LinkMessage>, HostNetError> {
    if !valid_ifname(name) {
        return Ok(None);
    }
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(netlink_error(format!("get link {name}"), e)),
    }
}

/// The names of the links that `wanted` picks, by link index.
pub(crate) async fn link_names(
    handle: &Handle,
    wanted: impl Fn(&str) -> bool,
) -> Result<HashMap<u32, String>, HostNetError> {
    let mut links = handle.link().get().execute();
    let mut found = HashMap::new();
    while let Some(link) = links
        .try_next()
        .await
        .map_err(|e| netlink_error("list links".into(), e))?
    {
        if let Some(name) = link_name(&link) {
            if wanted(name) {
                found.insert(link.header.index, name.to_string());
            }
        }
    }
    Ok(found)
}

fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// What kind of device a link is, from its link info.
pub(crate) fn kind_of(link: &LinkMessage) -> DeviceKind {
    let infos = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => Some(infos),
        _ => None,
    });
    let Some(infos) = infos else {
        // Physical devices and loopback carry no link info.
        return DeviceKind::Other(String::new());
    };
    let kind = infos.iter().find_map(|i| match i {
        LinkInfo::Kind(k) => Some(k),
        _ => None,
    });
    match kind {
        Some(InfoKind::Tun) => match tun_type(infos) {
            Some(TUN_TYPE_TAP) => DeviceKind::Tap,
            Some(TUN_TYPE_TUN) => DeviceKind::Tun,
            other => DeviceKind::Other(format!("tun type {other:?}")),
        },
        Some(k) => DeviceKind::Other(k.to_string()),
        None => DeviceKind::Other(String::new()),
    }
}

/// `IFLA_TUN_TYPE` from a tun link's info data; netlink-packet-route keeps tun data as raw NLAs.
fn tun_type(infos: &[LinkInfo]) -> Option<u8> {
    infos.iter().find_map(|i| match i {
        LinkInfo::Data(InfoData::Tun(nlas)) => nlas.iter().find_map(|nla| {
            if nla.kind() != IFLA_TUN_TYPE || nla.value_len() != 1 {
                return None;
            }
            let mut value = [0u8; 1];
            nla.emit_value(&mut value);
            Some(value[0])
        }),
        _ => None,
    })
}

/// Whether the link reports carrier. A tun/tap device has carrier exactly while a process has
/// it open (the driver turns carrier on at attach and off when the last queue detaches),
/// whatever its admin state.
pub(crate) fn has_carrier(link: &LinkMessage) -> bool {
    link.attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::Carrier(c) if *c != 0))
}

pub(crate) async fn set_up(handle: &Handle, index: u32, name: &str) -> Result<(), HostNetError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| netlink_error(format!("set {name} up"), e))
}

pub(crate) async fn delete_link(handle: &Handle, name: &str) -> Result<(), HostNetError> {
    let Some(link) = link_by_name(handle, name).await? else {
        return Ok(());
    };
    match handle.link().del(link.header.index).execute().await {
        Err(e) if errno(&e) != Some(libc::ENODEV) => {
            Err(netlink_error(format!("delete link {name}"), e))
        }
        _ => Ok(()),
    }
}

/// Gives the link `addr/32` with `noprefixroute`; an address already there is fine.
pub(crate) async fn add_host_address(
    handle: &Handle,
    index: u32,
    name: &str,
    addr: Ipv4Addr,
) -> Result<(), HostNetError> {
    let mut req = handle.address().add(index, IpAddr::V4(addr), 32);
    req.message_mut()
        .attributes
        .push(AddressAttribute::Flags(AddressFlags::Noprefixroute));
    match req.execute().await {
        Err(e) if errno(&e) != Some(libc::EEXIST) => {
            Err(netlink_error(format!("add {addr}/32 to {name}"), e))
        }
        _ => Ok(()),
    }
}

/// The IPv4 addresses on a link, with their prefix lengths and whether they are
/// `noprefixroute`.
#[cfg(test)]
pub(crate) async fn addresses(
    handle: &Handle,
    index: u32,
) -> Result<Vec<(Ipv4Addr, u8, bool)>, HostNetError> {
    let mut stream = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    let mut found = Vec::new();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| netlink_error("list addresses".into(), e))?
    {
        if msg.header.index != index {
            continue;
        }
        let mut local = None;
        let mut noprefixroute = false;
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(IpAddr::V4(a)) => local = Some(*a),
                AddressAttribute::Flags(f) => {
                    noprefixroute = f.contains(AddressFlags::Noprefixroute)
                }
                _ => {}
            }
        }
        if let Some(a) = local {
            found.push((a, msg.header.prefix_len, noprefixroute));
        }
    }
    Ok(found)
}

fn host_route(index: u32, addr: Ipv4Addr) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(addr, 32)
        .output_interface(index)
        .scope(RouteScope::Link)
        .build()
}

/// Routes `addr/32` to the link; replaces a route to the same address elsewhere.
pub(crate) async fn replace_host_route(
    handle: &Handle,
    index: u32,
    name: &str,
    addr: Ipv4Addr,
) -> Result<(), HostNetError> {
    handle
        .route()
        .add(host_route(index, addr))
        .replace()
        .execute()
        .await
        .map_err(|e| netlink_error(format!("route {addr}/32 dev {name}"), e))
}

/// Removes the route `addr/32` through the link, whatever its protocol and scope; a missing
/// route is fine.
pub(crate) async fn delete_host_route(
    handle: &Handle,
    index: u32,
    name: &str,
    addr: Ipv4Addr,
) -> Result<(), HostNetError> {
    let mut route = host_route(index, addr);
    route.header.protocol = RouteProtocol::Unspec;
    route.header.scope = RouteScope::NoWhere;
    match handle.route().del(route).execute().await {
        Err(e) if !matches!(errno(&e), Some(libc::ESRCH) | Some(libc::ENOENT)) => Err(
            netlink_error(format!("delete route {addr}/32 dev {name}"), e),
        ),
        _ => Ok(()),
    }
}

/// A unicast IPv4 route of the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MainRoute {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub oif: Option<u32>,
    pub scope: RouteScope,
}

/// Every unicast IPv4 route of the main table.
pub(crate) async fn main_routes(handle: &Handle) -> Result<Vec<MainRoute>, HostNetError> {
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
        let table = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(msg.header.table));
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) || msg.header.kind != RouteType::Unicast {
            continue;
        }
        let mut dst = Ipv4Addr::UNSPECIFIED;
        let mut oif = None;
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = *a,
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        found.push(MainRoute {
            dst,
            prefix: msg.header.destination_prefix_length,
            oif,
            scope: msg.header.scope,
        });
    }
    Ok(found)
}
