//! The pure rules of weft's custom network configuration.
//!
//! Nothing here touches the host: these are the address, name, MAC and boot-argument rules,
//! and the port announcement format, that the controller, the host network, the VMM drivers
//! and the guest agree on.

pub mod announce;
pub mod bootargs;
pub mod cidr;
pub mod mac;
pub mod names;
pub mod services;

pub use bootargs::{BootArgs, NetdevConfig};
pub use cidr::{derive_gateway, Ipv4Cidr};
pub use mac::MacAddr;

/// At most this many network interfaces per instance (R1, R10).
pub const MAX_INTERFACES: usize = 4;
