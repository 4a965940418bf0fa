//! Host side of weft's networking: the pool's TAP devices, the gateway address on them,
//! routes to instance addresses (netlink), weft's own nftables tables for forwarding,
//! masquerade and anti-spoofing (nftables JSON), and the relay data path (`relay.rs`).
//! Nothing here runs `ip`, `tc` or `iptables`.

mod drift;
mod link;
mod neigh;
mod nft;
mod policy;
mod relay;
mod tap;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub use relay::{RelayEnd, Relayed};

use rtnetlink::Handle;
use tracing::{debug, info, warn};
use weft_model::Ipv4Cidr;

/// The host's pools and uplink, as the controller sees them.
#[derive(Clone, Debug)]
pub struct PoolNet {
    /// The address pool's network, host bits clear (`10.100.0.0/16`).
    pub cidr: Ipv4Cidr,
    /// The gateway address guests of the pool use (the pool's last usable address).
    pub gateway: Ipv4Addr,
    /// TAP pool: devices `<tap_prefix><n>` for n in 0..tap_count.
    pub tap_prefix: String,
    pub tap_count: u32,
    /// The device egress leaves the host through.
    pub uplink: String,
}

impl PoolNet {
    pub fn tap_name(&self, n: u32) -> String {
        format!("{}{}", self.tap_prefix, n)
    }
}

/// What a device name refers to on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Missing,
    Tap,
    /// A TUN (layer 3) device: not usable as a guest NIC.
    Tun,
    /// Any other kind of link, with its kind as the kernel reports it ("veth", "bridge", ...,
    /// or "" for physical devices and loopback).
    Other(String),
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceKind::Missing => f.write_str("missing"),
            DeviceKind::Tap => f.write_str("a TAP device"),
            DeviceKind::Tun => f.write_str("a TUN device"),
            DeviceKind::Other(kind) if kind.is_empty() => {
                f.write_str("a physical or loopback device")
            }
            DeviceKind::Other(kind) => write!(f, "a {kind} link"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostNetError {
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("nftables: {0}")]
    Nftables(String),
    #[error("TAP device {tap}: {source}")]
    Tap { tap: String, source: std::io::Error },
    #[error("device {0} does not exist")]
    NoDevice(String),
    /// A name that should be a TAP device is another kind of link.
    #[error("device {name} is {kind}, not a TAP device")]
    NotTap { name: String, kind: DeviceKind },
    /// The pool's settings cannot be applied as they are.
    #[error("invalid pool: {0}")]
    InvalidPool(String),
    /// A relay that cannot be installed as given.
    #[error("invalid relay: {0}")]
    InvalidRelay(String),
    #[error("sysctl {key}: {source}")]
    Sysctl { key: String, source: std::io::Error },
    /// A cleanup that kept going past failures reports all of them.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<HostNetError>),
}

impl HostNetError {
    /// The result of a cleanup that kept going: `Ok` when nothing failed, else every failure.
    fn collect(errors: Vec<HostNetError>) -> Result<(), HostNetError> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(HostNetError::Many(errors))
        }
    }
}

/// The host side of pool networking in the network namespace where it was connected. Clones
/// share one netlink connection.
#[derive(Clone, Debug)]
pub struct HostNet {
    handle: Handle,
    /// Serializes relay changes: several clients share a relay's table, and the last one to
    /// go removes it.
    relay_lock: Arc<tokio::sync::Mutex<()>>,
}

impl HostNet {
    /// Connects to netlink in the current network namespace (spawns the connection task on the
    /// current tokio runtime).
    pub async fn connect() -> Result<HostNet, HostNetError> {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| HostNetError::Netlink(format!("cannot open a netlink socket: {e}")))?;
        tokio::spawn(connection);
        Ok(HostNet {
            handle,
            relay_lock: Arc::default(),
        })
    }

    /// Makes the host ready for the pool; idempotent, so it runs at every weftd start:
    /// installs weft's nftables table (keeping the `guests` elements of pool TAPs and the
    /// `relayed` addresses that are already there), enables IPv4 forwarding, and creates,
    /// configures and brings up the pool's persistent TAP devices. The table goes first so that
    /// no TAP is up unfiltered. Relays (`netdev weft`, rules, neighbours) are left as they are.
    pub async fn setup_pool(&self, pool: &PoolNet) -> Result<(), HostNetError> {
        check_pool(pool)?;
        let names: HashSet<String> = (0..pool.tap_count).map(|n| pool.tap_name(n)).collect();

        let keep: Vec<_> = nft::guests()
            .await?
            .into_iter()
            .filter(|(tap, _)| names.contains(tap))
            .collect();
        let keep_relayed = nft::relayed_sources().await?;
        nft::apply(&nft::install(pool, &keep, &keep_relayed)).await?;

        write_sysctl("net/ipv4/ip_forward", "1")?;

        for n in 0..pool.tap_count {
            self.setup_pool_tap(&pool.tap_name(n), pool.gateway).await?;
        }

        info!(
            taps = pool.tap_count,
            prefix = %pool.tap_prefix,
            uplink = %pool.uplink,
            "pool network ready"
        );
        Ok(())
    }

    async fn setup_pool_tap(&self, tap: &str, gateway: Ipv4Addr) -> Result<(), HostNetError> {
        let link = match link::link_by_name(&self.handle, tap).await? {
            Some(link) => link,
            None => {
                tap::create_persistent(tap, tap::POOL_TAP_FLAGS)?;
                info!(tap, "TAP device created");
                link::link_by_name(&self.handle, tap)
                    .await?
                    .ok_or_else(|| HostNetError::NoDevice(tap.to_string()))?
            }
        };
        let kind = link::kind_of(&link);
        if kind != DeviceKind::Tap {
            return Err(HostNetError::NotTap {
                name: tap.to_string(),
                kind,
            });
        }
        let index = link.header.index;

        // weft's table filters IPv4 only: without IPv6 on the TAP a guest cannot reach host
        // services over link-local addresses either. A kernel without IPv6 has no such knob.
        match write_sysctl(&format!("net/ipv6/conf/{tap}/disable_ipv6"), "1") {
            Err(HostNetError::Sysctl { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
        // Proxy ARP (for relayed interfaces, on their relay's TAP) answers at once instead of
        // after a random delay meant for busy LANs.
        write_sysctl(&format!("net/ipv4/neigh/{tap}/proxy_delay"), "0")?;

        link::set_up(&self.handle, index, tap).await?;
        link::add_host_address(&self.handle, index, tap, gateway).await?;
        debug!(tap, gateway = %gateway, "pool TAP ready");
        Ok(())
    }

    /// Connects one pool interface: routes `addr/32` to the TAP and lets the TAP use `addr` as
    /// its source (the `guests` set). Idempotent. When the set cannot be updated, the route is
    /// taken back.
    pub async fn attach_pool_interface(
        &self,
        tap: &str,
        addr: Ipv4Addr,
    ) -> Result<(), HostNetError> {
        self.attach_pool_interfaces(&[(tap.to_string(), addr)])
            .await
    }

    /// [`Self::attach_pool_interface`] for all the pool interfaces of an instance, their set
    /// elements in one nftables transaction. Either all are attached or, on failure, none.
    pub async fn attach_pool_interfaces(
        &self,
        ifaces: &[(String, Ipv4Addr)],
    ) -> Result<(), HostNetError> {
        if ifaces.is_empty() {
            return Ok(());
        }
        let mut routed = Vec::with_capacity(ifaces.len());
        let mut result = Ok(());
        for (tap, addr) in ifaces {
            let step = async {
                let link = link::link_by_name(&self.handle, tap)
                    .await?
                    .ok_or_else(|| HostNetError::NoDevice(tap.to_string()))?;
                let index = link.header.index;
                link::replace_host_route(&self.handle, index, tap, *addr).await?;
                Ok::<_, HostNetError>(index)
            };
            match step.await {
                Ok(index) => routed.push((index, tap, *addr)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            result = nft::apply(&nft::add_guests(ifaces)).await;
        }

        if let Err(e) = result {
            for (index, tap, addr) in routed {
                if let Err(undo) = link::delete_host_route(&self.handle, index, tap, addr).await {
                    warn!(tap, addr = %addr, error = %undo, "route left behind");
                }
            }
            return Err(e);
        }
        for (tap, addr) in ifaces {
            debug!(tap, addr = %addr, "pool interface attached");
        }
        Ok(())
    }

    /// Reverse of attach. Idempotent: a missing TAP, route, element or table is fine. Keeps
    /// going past failures and reports every one of them as [`HostNetError::Many`].
    pub async fn detach_pool_interface(
        &self,
        tap: &str,
        addr: Ipv4Addr,
    ) -> Result<(), HostNetError> {
        self.detach_pool_interfaces(&[(tap.to_string(), addr)])
            .await
    }

    /// [`Self::detach_pool_interface`] for several pool interfaces, their set elements in one
    /// nftables transaction.
    pub async fn detach_pool_interfaces(
        &self,
        ifaces: &[(String, Ipv4Addr)],
    ) -> Result<(), HostNetError> {
        if ifaces.is_empty() {
            return Ok(());
        }
        let mut errors = Vec::new();

        for (tap, addr) in ifaces {
            match link::link_by_name(&self.handle, tap).await {
                Ok(Some(link)) => {
                    let index = link.header.index;
                    if let Err(e) = link::delete_host_route(&self.handle, index, tap, *addr).await {
                        errors.push(e);
                    }
                }
                // Routes go with their device: there is nothing to remove.
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }

        // Removing is tried first: asking whether the table exists lists the whole ruleset,
        // elements and all, which costs far more than the removal once many instances run.
        if let Err(e) = nft::apply(&nft::remove_guests(ifaces)).await {
            match nft::table_exists().await {
                Ok(true) => errors.push(e),
                Ok(false) => {}
                Err(e) => errors.push(e),
            }
        }

        if errors.is_empty() {
            for (tap, addr) in ifaces {
                debug!(tap, addr = %addr, "pool interface detached");
            }
        }
        HostNetError::collect(errors)
    }

    /// What a device name is on the host, from its netlink link info; the device is never
    /// opened. A name the kernel could not hold is `Missing`.
    pub async fn device_kind(&self, name: &str) -> Result<DeviceKind, HostNetError> {
        Ok(match link::link_by_name(&self.handle, name).await? {
            Some(link) => link::kind_of(&link),
            None => DeviceKind::Missing,
        })
    }

    /// Whether a process (a VMM) has the TAP or TUN device open. The signal is the link's
    /// carrier: the tun driver turns it on when a file attaches and off when the last one
    /// detaches, whatever the device's admin state. (A process that attaches with
    /// `IFF_NO_CARRIER` is not seen; VMMs do not use it.) A missing device is not in use.
    pub async fn tap_in_use(&self, name: &str) -> Result<bool, HostNetError> {
        let Some(link) = link::link_by_name(&self.handle, name).await? else {
            return Ok(false);
        };
        match link::kind_of(&link) {
            DeviceKind::Tap | DeviceKind::Tun => Ok(link::has_carrier(&link)),
            kind => Err(HostNetError::NotTap {
                name: name.to_string(),
                kind,
            }),
        }
    }

    /// The guest routes weft installed: (tap, addr) for every /32 route of the main table
    /// through a pool TAP, sorted.
    pub async fn guest_routes(
        &self,
        pool: &PoolNet,
    ) -> Result<Vec<(String, Ipv4Addr)>, HostNetError> {
        let names: HashSet<String> = (0..pool.tap_count).map(|n| pool.tap_name(n)).collect();
        let taps = link::link_names(&self.handle, |name| names.contains(name)).await?;

        let mut found: Vec<_> = link::main_routes(&self.handle)
            .await?
            .into_iter()
            .filter(|route| route.prefix == 32)
            .filter_map(|route| Some((taps.get(&route.oif?)?.clone(), route.dst)))
            .collect();
        found.sort();
        Ok(found)
    }

    /// The elements of the nft set `guests` as (tap, addr), sorted; empty when weft's table
    /// is not installed.
    pub async fn guest_elements(&self) -> Result<Vec<(String, Ipv4Addr)>, HostNetError> {
        let mut found = nft::guests().await?;
        found.sort();
        Ok(found)
    }

    /// Removes every relay, weft's nftables tables and the pool's TAP devices (with their
    /// addresses and routes). Keeps going past failures and reports every one of them as
    /// [`HostNetError::Many`].
    pub async fn teardown_pool(&self, pool: &PoolNet) -> Result<(), HostNetError> {
        let mut errors = Vec::new();

        match self.relayed().await {
            Ok(relays) => {
                for r in relays {
                    if let Err(e) = self.detach_relayed(&r).await {
                        errors.push(e);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
        if let Err(e) = nft::apply(&nft::remove_netdev()).await {
            errors.push(e);
        }
        if let Err(e) = nft::apply(&nft::remove()).await {
            errors.push(e);
        }
        for n in 0..pool.tap_count {
            let tap = pool.tap_name(n);
            if let Err(e) = link::delete_link(&self.handle, &tap).await {
                errors.push(e);
            }
        }

        if errors.is_empty() {
            info!(taps = pool.tap_count, prefix = %pool.tap_prefix, "pool network removed");
        }
        HostNetError::collect(errors)
    }
}

/// Refuses pool settings that would make bad device names or rules: an empty prefix would
/// make the TAP wildcard `*` match every interface of the host.
fn check_pool(pool: &PoolNet) -> Result<(), HostNetError> {
    let prefix_ok = !pool.tap_prefix.is_empty()
        && pool
            .tap_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !prefix_ok {
        return Err(HostNetError::InvalidPool(format!(
            "TAP prefix '{}' must be letters, digits, '-' or '_'",
            pool.tap_prefix
        )));
    }
    if pool.tap_count > 0 && !link::valid_ifname(&pool.tap_name(pool.tap_count - 1)) {
        return Err(HostNetError::InvalidPool(format!(
            "TAP name '{}' is longer than {} characters",
            pool.tap_name(pool.tap_count - 1),
            libc::IFNAMSIZ - 1
        )));
    }
    if !link::valid_ifname(&pool.uplink) {
        return Err(HostNetError::InvalidPool(format!(
            "uplink '{}' is not an interface name",
            pool.uplink
        )));
    }
    if !pool.cidr.contains(pool.gateway) {
        return Err(HostNetError::InvalidPool(format!(
            "gateway {} is outside {}",
            pool.gateway, pool.cidr
        )));
    }
    Ok(())
}

/// Writes a sysctl of the calling thread's network namespace; `key` is the path under
/// `/proc/sys`, with `/` separators so that device names with dots stay whole.
fn write_sysctl(key: &str, value: &str) -> Result<(), HostNetError> {
    std::fs::write(format!("/proc/sys/{key}"), value).map_err(|source| HostNetError::Sysctl {
        key: key.to_string(),
        source,
    })
}
