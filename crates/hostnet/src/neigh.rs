//! Neighbour entries through rtnetlink: the permanent ones that let the relay data path send
//! frames to a guest without ARP, and the proxy entries that make the host answer ARP for a
//! relayed interface on its relay's TAP.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::Handle;
use weft_model::MacAddr;

use crate::link::{errno, netlink_error};
use crate::HostNetError;

fn message(index: u32, addr: Ipv4Addr, flags: NeighbourFlags) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = index;
    msg.header.flags = flags;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            addr,
        )));
    msg
}

/// `addr` is at `mac` on the link, for good: the kernel never probes or expires the entry.
/// Replaces whatever entry the address had there.
pub(crate) async fn replace_permanent(
    handle: &Handle,
    index: u32,
    addr: Ipv4Addr,
    mac: MacAddr,
) -> Result<(), HostNetError> {
    handle
        .neighbours()
        .add(index, IpAddr::V4(addr))
        .state(NeighbourState::Permanent)
        .link_layer_address(&mac.octets())
        .replace()
        .execute()
        .await
        .map_err(|e| netlink_error(format!("neighbour {addr} at {mac} on link {index}"), e))
}

/// Makes the host answer ARP requests for `addr` that arrive on the link. An entry already
/// there is fine.
pub(crate) async fn add_proxy(
    handle: &Handle,
    index: u32,
    addr: Ipv4Addr,
) -> Result<(), HostNetError> {
    let mut req = handle.neighbours().add(index, IpAddr::V4(addr));
    *req.message_mut() = message(index, addr, NeighbourFlags::Proxy);
    // A permanent proxy entry survives the device losing carrier, as a TAP does whenever its
    // guest stops; the kernel drops the others then.
    req.message_mut().header.state = NeighbourState::Permanent;
    match req.execute().await {
        Err(e) if errno(&e) != Some(libc::EEXIST) => Err(netlink_error(
            format!("proxy neighbour {addr} on link {index}"),
            e,
        )),
        _ => Ok(()),
    }
}

async fn delete(handle: &Handle, msg: NeighbourMessage, what: String) -> Result<(), HostNetError> {
    match handle.neighbours().del(msg).execute().await {
        Err(e) if !matches!(errno(&e), Some(libc::ENOENT) | Some(libc::ENODEV)) => {
            Err(netlink_error(format!("delete {what}"), e))
        }
        _ => Ok(()),
    }
}

/// Removes the entry for `addr` on the link, whatever its state; a missing one is fine.
pub(crate) async fn delete_entry(
    handle: &Handle,
    index: u32,
    addr: Ipv4Addr,
) -> Result<(), HostNetError> {
    let what = format!("neighbour {addr} on link {index}");
    delete(handle, message(index, addr, NeighbourFlags::empty()), what).await
}

/// Removes the proxy entry for `addr` on the link; a missing one is fine.
pub(crate) async fn delete_proxy(
    handle: &Handle,
    index: u32,
    addr: Ipv4Addr,
) -> Result<(), HostNetError> {
    let what = format!("proxy neighbour {addr} on link {index}");
    delete(handle, message(index, addr, NeighbourFlags::Proxy), what).await
}

/// Listing, for tests.
#[cfg(test)]
pub(crate) mod listing {
    use std::net::Ipv4Addr;

    use futures::TryStreamExt;
    use rtnetlink::packet_route::neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    };
    use rtnetlink::packet_route::AddressFamily;
    use rtnetlink::Handle;
    use weft_model::MacAddr;

    use crate::link::netlink_error;
    use crate::HostNetError;

    /// An IPv4 neighbour entry of a link, as listed.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub(crate) struct Neighbour {
        pub index: u32,
        pub addr: Ipv4Addr,
        /// The link-layer address; `None` for proxy entries.
        pub mac: Option<MacAddr>,
    }

    fn parse(msg: &NeighbourMessage) -> Option<Neighbour> {
        let mut addr = None;
        let mut mac = None;
        for attr in &msg.attributes {
            match attr {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => addr = Some(*a),
                NeighbourAttribute::LinkLayerAddress(l) => {
                    mac = <[u8; 6]>::try_from(l.as_slice()).ok().map(MacAddr)
                }
                _ => {}
            }
        }
        Some(Neighbour {
            index: msg.header.ifindex,
            addr: addr?,
            mac,
        })
    }

    /// Every permanent IPv4 neighbour entry of the namespace.
    pub(crate) async fn permanent(handle: &Handle) -> Result<Vec<Neighbour>, HostNetError> {
        let mut stream = handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute();
        let mut found = Vec::new();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|e| netlink_error("list neighbours".into(), e))?
        {
            if msg.header.state == NeighbourState::Permanent {
                found.extend(parse(&msg));
            }
        }
        Ok(found)
    }

    /// Every IPv4 proxy neighbour entry of the namespace.
    pub(crate) async fn proxies(handle: &Handle) -> Result<Vec<Neighbour>, HostNetError> {
        let mut stream = handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .proxies()
            .execute();
        let mut found = Vec::new();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|e| netlink_error("list proxy neighbours".into(), e))?
        {
            if msg.header.flags.contains(NeighbourFlags::Proxy) {
                found.extend(parse(&msg).map(|n| Neighbour { mac: None, ..n }));
            }
        }
        Ok(found)
    }
}
