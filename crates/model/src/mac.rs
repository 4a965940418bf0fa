//! MAC addresses of guest NICs.
//!
//! Pool interfaces get `12:b0:` followed by the four bytes of their address, so a guest can
//! tell its configuration from the MAC alone. Interfaces on the user's own TAP devices get
//! `12:b1:` followed by four random bytes, kept unique by the store.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The MAC of a pool interface with this address.
    pub fn for_pool_address(addr: Ipv4Addr) -> Self {
        let [a, b, c, d] = addr.octets();
        MacAddr([0x12, 0xb0, a, b, c, d])
    }

    /// A random MAC for an interface on an own TAP device.
    pub fn random_own() -> Self {
        let tail: [u8; 4] = rand::random();
        MacAddr([0x12, 0xb1, tail[0], tail[1], tail[2], tail[3]])
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a MAC address")]
pub struct MacError(pub String);

impl FromStr for MacAddr {
    type Err = MacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(|| MacError(s.to_string()))?;
            if part.len() != 2 {
                return Err(MacError(s.to_string()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacError(s.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(MacError(s.to_string()));
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_mac_carries_the_address() {
        let mac = MacAddr::for_pool_address("10.100.0.2".parse().unwrap());
        assert_eq!(mac.to_string(), "12:b0:0a:64:00:02");
        assert_eq!(mac.to_string().parse::<MacAddr>().unwrap(), mac);
    }

    #[test]
    fn own_mac_is_locally_administered_unicast() {
        let mac = MacAddr::random_own();
        assert_eq!(mac.0[0] & 0b11, 0b10);
        assert_eq!(&mac.0[..2], &[0x12, 0xb1]);
    }

    #[test]
    fn refuses_bad_macs() {
        for bad in [
            "",
            "12:b0",
            "12:b0:0a:64:00:02:00",
            "12:b0:0a:64:00:zz",
            "12:b0:0a:64:00:2",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
