//! Makes every packet that arrives on the relay NIC local, whatever its destination, without
//! netfilter: a routing rule `iif <nic> lookup <table>` and, in that table, the route
//! `local 0.0.0.0/0 dev lo`. The shield's own connections start on the host itself (iif lo)
//! and keep using the main table and its default route.
//!
//! The kernel only lets a socket answer from an address that the local table holds, so the
//! listeners set IP_TRANSPARENT to answer from the client's original destination.

use std::net::Ipv4Addr;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::TryStreamExt;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::route::{RouteScope, RouteType};
use netlink_packet_route::rule::{RuleAction, RuleAttribute};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

/// The rule's priority: after the local table (0), before main (32766).
pub const RULE_PRIORITY: u32 = 100;

/// The sysctls a relay guest needs, under /proc/sys. rp_filter would drop clients' packets,
/// whose source addresses the relay has no route back through the NIC they came in on.
fn sysctls(nic: &str) -> Vec<(String, &'static str)> {
    vec![
        ("net/ipv4/ip_forward".into(), "1"),
        ("net/ipv4/conf/all/rp_filter".into(), "0"),
        ("net/ipv4/conf/default/rp_filter".into(), "0"),
        (format!("net/ipv4/conf/{nic}/rp_filter"), "0"),
    ]
}

/// Sets the sysctls and the routing; any failure is returned, and the shield then exits.
pub async fn setup(nic: &str, table: u32) -> Result<()> {
    let (connection, handle, _) = rtnetlink::new_connection().context("opening netlink")?;
    tokio::spawn(connection);

    link_index(&handle, nic)
        .await?
        .ok_or_else(|| anyhow!("the relay NIC {nic} does not exist"))?;
    for (key, value) in sysctls(nic) {
        let path = format!("/proc/sys/{key}");
        std::fs::write(&path, value).with_context(|| format!("writing {value} to {path}"))?;
    }
    let lo = link_index(&handle, "lo")
        .await?
        .ok_or_else(|| anyhow!("the loopback device lo does not exist"))?;

    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .table_id(table)
        .kind(RouteType::Local)
        .scope(RouteScope::Host)
        .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
        .output_interface(lo)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .with_context(|| format!("adding local 0.0.0.0/0 dev lo table {table}"))?;

    // A second start (the shield restarted) finds its rule in place.
    if !rule_present(&handle, nic, table).await? {
        handle
            .rule()
            .add()
            .v4()
            .input_interface(nic)
            .table_id(table)
            .priority(RULE_PRIORITY)
            .action(RuleAction::ToTable)
            .execute()
            .await
            .with_context(|| format!("adding the rule iif {nic} lookup {table}"))?;
    }
    if !rule_present(&handle, nic, table).await? {
        bail!("the rule iif {nic} lookup {table} is missing after adding it");
    }
    Ok(())
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().execute();
    while let Some(link) = links.try_next().await.context("listing links")? {
        let found = link
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::IfName(n) if n == name));
        if found {
            return Ok(Some(link.header.index));
        }
    }
    Ok(None)
}

async fn rule_present(handle: &Handle, nic: &str, table: u32) -> Result<bool> {
    let mut rules = handle.rule().get(IpVersion::V4).execute();
    while let Some(rule) = rules.try_next().await.context("listing rules")? {
        let mut iif = None;
        let mut rule_table = u32::from(rule.header.table);
        let mut priority = 0;
        for attr in &rule.attributes {
            match attr {
                RuleAttribute::Iifname(name) => iif = Some(name.as_str()),
                RuleAttribute::Table(t) => rule_table = *t,
                RuleAttribute::Priority(p) => priority = *p,
                _ => {}
            }
        }
        if iif == Some(nic) && rule_table == table && priority == RULE_PRIORITY {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_cover_the_nic() {
        let keys: Vec<_> = sysctls("relay0").into_iter().map(|(k, _)| k).collect();
        assert!(keys.contains(&"net/ipv4/conf/relay0/rp_filter".to_string()));
        assert!(keys.contains(&"net/ipv4/ip_forward".to_string()));
    }
}
