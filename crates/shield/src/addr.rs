//! IPv4 networks and the address classes the shield never connects to unless a policy CIDR
//! allows them.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, `a.b.c.d/n`, with the host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Cidr {
    pub const fn new_const(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
        Cidr {
            network: Ipv4Addr::new(a, b, c, d),
            prefix,
        }
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Parses `a.b.c.d/n`, or a bare address as a /32. Host bits must be zero, so that a
    /// typo such as `10.0.0.1/8` is refused instead of silently allowing all of 10/8.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => {
                let prefix: u8 = prefix
                    .parse()
                    .ok()
                    .filter(|p| *p <= 32)
                    .ok_or_else(|| format!("bad prefix length in '{s}'"))?;
                (addr, prefix)
            }
            None => (s, 32),
        };
        let network: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an IPv4 address or network"))?;
        let cidr = Cidr { network, prefix };
        if u32::from(network) & !cidr.mask() != 0 {
            return Err(format!(
                "'{s}' has host bits set; write the network address"
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Address classes that are not the public internet, each with the reason logged when a
/// connection to it is refused. The documentation networks (192.0.2.0/24, 198.51.100.0/24,
/// 203.0.113.0/24) are not listed: they exist nowhere on the internet, so reaching them
/// exposes nothing, and test networks are built from them.
const RESERVED: &[(Cidr, &str)] = &[
    (Cidr::new_const(0, 0, 0, 0, 8), "this-network-address"),
    (Cidr::new_const(10, 0, 0, 0, 8), "private-address"),
    (Cidr::new_const(100, 64, 0, 0, 10), "cgnat-address"),
    (Cidr::new_const(127, 0, 0, 0, 8), "loopback-address"),
    (Cidr::new_const(169, 254, 169, 254, 32), "metadata-address"),
    (Cidr::new_const(169, 254, 0, 0, 16), "link-local-address"),
    (Cidr::new_const(172, 16, 0, 0, 12), "private-address"),
    (
        Cidr::new_const(192, 0, 0, 0, 24),
        "protocol-assignment-address",
    ),
    (Cidr::new_const(192, 168, 0, 0, 16), "private-address"),
    (Cidr::new_const(198, 18, 0, 0, 15), "benchmarking-address"),
    (Cidr::new_const(224, 0, 0, 0, 4), "multicast-address"),
    (Cidr::new_const(240, 0, 0, 0, 4), "reserved-address"),
];

/// The class of a non-public address, as a log reason; None for a public one.
pub fn reserved_class(ip: Ipv4Addr) -> Option<&'static str> {
    RESERVED
        .iter()
        .find(|(cidr, _)| cidr.contains(ip))
        .map(|(_, class)| *class)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_networks_and_refuses_host_bits() {
        let cidr: Cidr = "198.51.100.0/24".parse().unwrap();
        assert!(cidr.contains(ip("198.51.100.255")));
        assert!(!cidr.contains(ip("198.51.101.0")));
        assert_eq!(cidr.to_string(), "198.51.100.0/24");

        let host: Cidr = "203.0.113.7".parse().unwrap();
        assert_eq!(host.to_string(), "203.0.113.7/32");
        assert!(host.contains(ip("203.0.113.7")));
        assert!(!host.contains(ip("203.0.113.8")));

        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("255.255.255.255")));

        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0/8",
            "x",
            "10.0.0.0/",
            "::1/128",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn classifies_reserved_addresses() {
        let cases = [
            ("10.1.2.3", Some("private-address")),
            ("172.16.0.1", Some("private-address")),
            ("172.31.255.255", Some("private-address")),
            ("172.32.0.1", None),
            ("192.168.1.1", Some("private-address")),
            ("127.0.0.1", Some("loopback-address")),
            ("169.254.169.254", Some("metadata-address")),
            ("169.254.1.1", Some("link-local-address")),
            ("100.64.0.5", Some("cgnat-address")),
            ("100.127.255.255", Some("cgnat-address")),
            ("100.128.0.1", None),
            ("0.0.0.0", Some("this-network-address")),
            ("224.0.0.1", Some("multicast-address")),
            ("255.255.255.255", Some("reserved-address")),
            ("198.18.0.1", Some("benchmarking-address")),
            ("192.0.0.8", Some("protocol-assignment-address")),
            ("8.8.8.8", None),
            ("203.0.113.10", None),
            ("198.51.100.30", None),
        ];
        for (addr, class) in cases {
            assert_eq!(reserved_class(ip(addr)), class, "{addr}");
        }
    }
}
