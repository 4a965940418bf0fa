//! The kernel side of the guest's network setup, through rtnetlink: list NICs, set them up,
//! add addresses, the default route and the source tables and rules, and read back what the
//! kernel holds.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result};
use futures_util::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, IpVersion, LinkUnspec, RouteMessageBuilder};
use weft_model::{Ipv4Cidr, MacAddr};

use crate::plan::{DefaultRoute, Nic};
use crate::policy::SourceTable;

/// An IPv4 default route in the main table, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedRoute {
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

/// An IPv4 rule that sends packets from one address to a table, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedRule {
    pub source: Ipv4Addr,
    pub table: u32,
}

/// An rtnetlink connection; create it inside a tokio runtime.
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    pub fn connect() -> Result<Self> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// All network interfaces, in the kernel's index order.
    pub async fn nics(&self) -> Result<Vec<Nic>> {
        let mut links = self.handle.link().get().execute();
        let mut nics = Vec::new();
        while let Some(link) = links.try_next().await.context("listing interfaces")? {
            let mut name = None;
            let mut mac = None;
            for attr in &link.attributes {
                match attr {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::Address(bytes) => {
                        mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr)
                    }
                    _ => {}
                }
            }
            nics.push(Nic {
                index: link.header.index,
                name: name.unwrap_or_else(|| format!("if{}", link.header.index)),
                mac,
                loopback: link.header.link_layer_type == LinkLayerType::Loopback
                    || link.header.flags.contains(LinkFlags::Loopback),
            });
        }
        nics.sort_by_key(|nic| nic.index);
        Ok(nics)
    }

    pub async fn set_up(&self, nic: &Nic) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(nic.index).up().build())
            .execute()
            .await
            .with_context(|| format!("setting {} up", nic.name))
    }

    /// Adds the address, or keeps it when it is already there (a second run is harmless).
    pub async fn add_address(&self, nic: &Nic, cidr: Ipv4Cidr) -> Result<()> {
        self.handle
            .address()
            .add(nic.index, IpAddr::V4(cidr.addr()), cidr.prefix())
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding {cidr} to {}", nic.name))
    }

    /// Adds the default route, replacing one that is already there so there is exactly one.
    pub async fn set_default_route(&self, route: &DefaultRoute) -> Result<()> {
        let mut message = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
            .gateway(route.gateway)
            .output_interface(route.nic.index);
        if route.onlink {
            message = message.onlink();
        }
        self.handle
            .route()
            .add(message.build())
            .replace()
            .execute()
            .await
            .with_context(|| {
                format!(
                    "adding the default route via {} dev {}",
                    route.gateway, route.nic.name
                )
            })
    }

    /// Fills the NIC's source table (its network route, then its default route) and adds
    /// the rule that sends packets from its address there. Routes already there are
    /// replaced and an identical rule is kept, so a second run is harmless.
    pub async fn add_source_table(&self, t: &SourceTable) -> Result<()> {
        let what = || format!("table {} for {} on {}", t.table, t.addr, t.nic.name);
        if let Some(network) = t.network {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .table_id(t.table)
                .destination_prefix(network.addr(), network.prefix())
                .output_interface(t.nic.index)
                .pref_source(t.addr)
                .scope(RouteScope::Link)
                .build();
            self.handle
                .route()
                .add(route)
                .replace()
                .execute()
                .await
                .with_context(|| format!("adding the route to {network} to {}", what()))?;
        }
        if let Some(default) = &t.default {
            let mut route = RouteMessageBuilder::<Ipv4Addr>::new()
                .table_id(t.table)
                .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                .gateway(default.gateway)
                .output_interface(t.nic.index)
                .pref_source(t.addr);
            if default.onlink {
                route = route.onlink();
            }
            self.handle
                .route()
                .add(route.build())
                .replace()
                .execute()
                .await
                .with_context(|| {
                    format!(
                        "adding the default route via {} to {}",
                        default.gateway,
                        what()
                    )
                })?;
        }
        let added = self
            .handle
            .rule()
            .add()
            .v4()
            .source_prefix(t.addr, 32)
            .table_id(t.table)
            .priority(t.priority)
            .action(RuleAction::ToTable)
            .execute()
            .await;
        match added {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            other => {
                other.with_context(|| format!("adding the rule from {} to {}", t.addr, what()))
            }
        }
    }

    /// The IPv4 rules that send packets from one address to a table, in priority order.
    pub async fn source_rules(&self) -> Result<Vec<ReportedRule>> {
        let mut messages = self.handle.rule().get(IpVersion::V4).execute();
        let mut out = Vec::new();
        while let Some(msg) = messages.try_next().await.context("listing rules")? {
            if msg.header.action != RuleAction::ToTable || msg.header.src_len != 32 {
                continue;
            }
            let source = msg.attributes.iter().find_map(|a| match a {
                RuleAttribute::Source(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let table = msg
                .attributes
                .iter()
                .find_map(|a| match a {
                    RuleAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(msg.header.table));
            if let Some(source) = source {
                out.push(ReportedRule { source, table });
            }
        }
        Ok(out)
    }

    /// The IPv4 addresses of all interfaces, as (interface index, address) in kernel order.
    pub async fn ipv4_addresses(&self) -> Result<Vec<(u32, Ipv4Cidr)>> {
        let mut request = self.handle.address().get();
        request.message_mut().header.family = AddressFamily::Inet;
        let mut messages = request.execute();
        let mut out = Vec::new();
        while let Some(msg) = messages.try_next().await.context("listing addresses")? {
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
            // point-to-point links and the same as IFA_LOCAL elsewhere.
            let local = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let address = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local.or(address) {
                if let Ok(cidr) = Ipv4Cidr::new(ip, msg.header.prefix_len) {
                    out.push((msg.header.index, cidr));
                }
            }
        }
        Ok(out)
    }

    /// The IPv4 default routes of the main table.
    pub async fn default_routes(&self) -> Result<Vec<ReportedRoute>> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut messages = self.handle.route().get(query).execute();
        let mut out = Vec::new();
        while let Some(msg) = messages.try_next().await.context("listing routes")? {
            let table = msg
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(msg.header.table));
            if msg.header.address_family != AddressFamily::Inet
                || msg.header.destination_prefix_length != 0
                || msg.header.kind != RouteType::Unicast
                || table != u32::from(RouteHeader::RT_TABLE_MAIN)
            {
                continue;
            }
            let mut route = ReportedRoute {
                gateway: None,
                oif: None,
            };
            for attr in &msg.attributes {
                match attr {
                    RouteAttribute::Gateway(RouteAddress::Inet(gw)) => route.gateway = Some(*gw),
                    RouteAttribute::Oif(index) => route.oif = Some(*index),
                    _ => {}
                }
            }
            out.push(route);
        }
        Ok(out)
    }
}
