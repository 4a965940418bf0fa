//! Host side of weft's networking: the pool's TAP devices, the gateway address on them,
//! routes to instance addresses (netlink), and weft's own nftables table for forwarding,
//! masquerade and anti-spoofing (nftables JSON). Nothing here runs `ip`, `tc` or `iptables`.

use std::net::Ipv4Addr;

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
    #[error("sysctl {key}: {source}")]
    Sysctl { key: String, source: std::io::Error },
    /// A cleanup that kept going past failures reports all of them.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<HostNetError>),
}
