//! IPv4 networks in CIDR notation and the gateway derivation of rule R6.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 address with its prefix length, as in `10.0.0.2/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("expected an IPv4 address with a prefix length, as in 10.0.0.2/24")]
    MissingPrefix,
    #[error("'{0}' is not an IPv4 address")]
    BadAddress(String),
    #[error("'{0}' is not a prefix length between 0 and 32")]
    BadPrefix(String),
}

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        if prefix > 32 {
            return Err(CidrError::BadPrefix(prefix.to_string()));
        }
        Ok(Self { addr, prefix })
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// The network address (all host bits zero).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The highest address of the network (all host bits one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// The network this address belongs to, as a CIDR with host bits cleared.
    pub fn network_cidr(&self) -> Ipv4Cidr {
        Ipv4Cidr {
            addr: self.network(),
            prefix: self.prefix,
        }
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.network())
    }

    /// Whether two networks share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// Number of addresses in the network.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// The same address with another prefix length.
    pub fn with_prefix(&self, prefix: u8) -> Result<Ipv4Cidr, CidrError> {
        Ipv4Cidr::new(self.addr, prefix)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s.split_once('/').ok_or(CidrError::MissingPrefix)?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| CidrError::BadAddress(addr.to_string()))?;

        // Only plain decimal digits: "+8" or "08" parse as u8 but are not CIDR.
        let plain = !prefix.is_empty()
            && prefix.len() <= 2
            && prefix.bytes().all(|b| b.is_ascii_digit())
            && !(prefix.len() == 2 && prefix.starts_with('0'));
        let bits: u8 = match prefix.parse() {
            Ok(bits) if plain && bits <= 32 => bits,
            _ => return Err(CidrError::BadPrefix(prefix.to_string())),
        };
        Ok(Self { addr, prefix: bits })
    }
}

impl serde::Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The gateway (and nameserver) derived from an interface's network (R6): the last usable
/// host address. A /31 has two usable addresses and gives its upper one; a /32 gives none.
pub fn derive_gateway(cidr: &Ipv4Cidr) -> Option<Ipv4Addr> {
    match cidr.prefix() {
        32 => None,
        31 => Some(cidr.broadcast()),
        _ => Some(Ipv4Addr::from(u32::from(cidr.broadcast()) - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn gateway_is_last_usable_address() {
        assert_eq!(
            derive_gateway(&cidr("10.0.0.7/16")),
            Some("10.0.255.254".parse().unwrap())
        );
        assert_eq!(
            derive_gateway(&cidr("172.30.5.2/24")),
            Some("172.30.5.254".parse().unwrap())
        );
        assert_eq!(
            derive_gateway(&cidr("192.0.2.4/31")),
            Some("192.0.2.5".parse().unwrap())
        );
        assert_eq!(
            derive_gateway(&cidr("192.0.2.5/31")),
            Some("192.0.2.5".parse().unwrap())
        );
        assert_eq!(derive_gateway(&cidr("192.0.2.9/32")), None);
        assert_eq!(
            derive_gateway(&cidr("10.1.2.3/30")),
            Some("10.1.2.2".parse().unwrap())
        );
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(cidr("10.0.0.2/24").to_string(), "10.0.0.2/24");
        assert_eq!(
            "10.0.0.2".parse::<Ipv4Cidr>(),
            Err(CidrError::MissingPrefix)
        );
        assert!(matches!(
            "10.0.0/24".parse::<Ipv4Cidr>(),
            Err(CidrError::BadAddress(_))
        ));
        assert!(matches!(
            "10.0.0.1/33".parse::<Ipv4Cidr>(),
            Err(CidrError::BadPrefix(_))
        ));
        assert!(matches!(
            "10.0.0.1/+8".parse::<Ipv4Cidr>(),
            Err(CidrError::BadPrefix(_))
        ));
        assert!(matches!(
            "10.0.0.1/08".parse::<Ipv4Cidr>(),
            Err(CidrError::BadPrefix(_))
        ));
        assert!(matches!(
            "10.0.0.1/".parse::<Ipv4Cidr>(),
            Err(CidrError::BadPrefix(_))
        ));
        assert!(matches!(
            "::1/64".parse::<Ipv4Cidr>(),
            Err(CidrError::BadAddress(_))
        ));
    }

    #[test]
    fn overlap_and_contains() {
        let pool = cidr("10.100.0.0/16");
        assert!(pool.overlaps(&cidr("10.100.3.4/24")));
        assert!(pool.overlaps(&cidr("10.0.0.0/8")));
        assert!(!pool.overlaps(&cidr("10.101.0.1/24")));
        assert!(pool.contains("10.100.255.255".parse().unwrap()));
        assert_eq!(pool.size(), 65536);
        assert_eq!(cidr("0.0.0.0/0").mask(), 0);
    }
}
