//! Applies the network part of the boot arguments and prints what the kernel then holds.
//!
//! Every step goes on after a failure: a guest with half its network is still worth running
//! the app in, and the printed lines say what is missing.

use std::path::Path;
use std::time::{Duration, Instant};

use weft_model::BootArgs;

use crate::netlink::Netlink;
use crate::plan::{self, Nic};
use crate::policy;

/// How long to wait for the NICs of the command line to appear.
const NIC_WAIT: Duration = Duration::from_secs(10);
const NIC_POLL: Duration = Duration::from_millis(50);

/// Configures loopback, the NICs with autoconfig and the default route, prints the result,
/// and writes the resolver file when a path is given and nameservers are.
pub fn configure(args: &BootArgs, resolv_conf: Option<&Path>) {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(configure_links(args)),
        Err(err) => fail!("starting the netlink runtime: {err}"),
    }

    if let Some(path) = resolv_conf {
        write_resolv_conf(path, &plan::nameservers(args));
    }
}

async fn configure_links(args: &BootArgs) {
    let netlink = match Netlink::connect() {
        Ok(netlink) => netlink,
        Err(err) => return fail!("{err:#}"),
    };

    let nics = wait_for_nics(&netlink, args).await;
    apply(&netlink, args, &nics).await;
    if let Err(err) = report(&netlink).await {
        fail!("{err:#}");
    }
}

/// Polls until every NIC of the command line is present, or the wait runs out; returns the
/// NICs seen last either way.
async fn wait_for_nics(netlink: &Netlink, args: &BootArgs) -> Vec<Nic> {
    let start = Instant::now();
    loop {
        let nics = match netlink.nics().await {
            Ok(nics) => nics,
            Err(err) => {
                fail!("{err:#}");
                Vec::new()
            }
        };
        if plan::nics_ready(args, &nics) {
            return nics;
        }
        if start.elapsed() >= NIC_WAIT {
            let missing: Vec<String> = plan::missing_macs(args, &nics)
                .iter()
                .map(|m| m.to_string())
                .collect();
            if missing.is_empty() {
                fail!(
                    "fewer NICs than netdev.ip entries after {} s",
                    NIC_WAIT.as_secs()
                );
            } else {
                fail!(
                    "NICs missing after {} s: {}",
                    NIC_WAIT.as_secs(),
                    missing.join(" ")
                );
            }
            return nics;
        }
        tokio::time::sleep(NIC_POLL).await;
    }
}

async fn apply(netlink: &Netlink, args: &BootArgs, nics: &[Nic]) {
    match nics.iter().find(|nic| nic.loopback) {
        Some(lo) => {
            if let Err(err) = netlink.set_up(lo).await {
                fail!("{err:#}");
            }
        }
        None => fail!("no loopback interface"),
    }

    let matching = plan::match_entries(args, nics);
    for problem in &matching.problems {
        fail!("{problem}");
    }

    for assignment in &matching.assigned {
        // Before the NIC is up, so it never answers ARP for another NIC's address.
        for (key, value) in policy::arp_sysctls(&assignment.nic.name) {
            if let Err(err) = write_sysctl(&key, value) {
                fail!("setting {key} to {value}: {err}");
            }
        }
        if let Err(err) = netlink.set_up(&assignment.nic).await {
            fail!("{err:#}");
        }
        if let Some(cidr) = assignment.config.cidr {
            if let Err(err) = netlink.add_address(&assignment.nic, cidr).await {
                fail!("{err:#}");
            }
        }
    }

    let default_route = plan::default_route(&matching.assigned);
    if let Some(route) = &default_route {
        if let Err(err) = netlink.set_default_route(route).await {
            fail!("{err:#}");
        }
    }

    for table in policy::source_tables(&matching.assigned, default_route.as_ref()) {
        if let Err(err) = netlink.add_source_table(&table).await {
            fail!("{err:#}");
        }
    }
}

/// Writes one setting under `/proc/sys`. In a network namespace, `/proc/sys/net` is the
/// namespace's own.
fn write_sysctl(key: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(Path::new("/proc/sys").join(key), value)
}

/// Prints the interfaces, addresses, default routes of the main table and source rules as
/// the kernel reports them.
async fn report(netlink: &Netlink) -> anyhow::Result<()> {
    let nics = netlink.nics().await?;
    let addresses = netlink.ipv4_addresses().await?;
    let routes = netlink.default_routes().await?;

    for nic in nics.iter().filter(|nic| !nic.loopback) {
        let mac = nic
            .mac
            .map(|m| m.to_string())
            .unwrap_or_else(|| "none".into());
        let mut any = false;
        for (_, cidr) in addresses.iter().filter(|(index, _)| *index == nic.index) {
            say!("iface {} mac {mac} addr {cidr}", nic.name);
            any = true;
        }
        if !any {
            say!("iface {} mac {mac} addr none", nic.name);
        }
    }

    if routes.is_empty() {
        say!("route default none");
    }
    for route in &routes {
        let dev = route
            .oif
            .and_then(|index| nics.iter().find(|nic| nic.index == index))
            .map(|nic| nic.name.clone())
            .unwrap_or_else(|| "none".into());
        match route.gateway {
            Some(gw) => say!("route default via {gw} dev {dev}"),
            // weft-guest never adds such a route; one that was there before is shown as is.
            None => say!("route default dev {dev}"),
        }
    }
    // Last, so that a kernel without policy routing still shows everything above.
    for rule in netlink.source_rules().await? {
        say!("rule from {} table {}", rule.source, rule.table);
    }
    Ok(())
}

/// Writes resolv.conf when there are nameservers, then prints the ones the file holds.
fn write_resolv_conf(path: &Path, nameservers: &[std::net::Ipv4Addr]) {
    if nameservers.is_empty() {
        return;
    }
    if let Err(err) = std::fs::write(path, plan::resolv_conf(nameservers)) {
        return fail!("writing {}: {err}", path.display());
    }

    match std::fs::read_to_string(path) {
        Ok(text) => {
            for ns in text.lines().filter_map(|l| l.strip_prefix("nameserver ")) {
                say!("nameserver {}", ns.trim());
            }
        }
        Err(err) => fail!("reading back {}: {err}", path.display()),
    }
}
