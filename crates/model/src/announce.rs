//! Port announcements: how `weft-guest` tells the controller which TCP ports the guest
//! listens on, over a channel outside the guest's network.
//!
//! The guest writes one JSON object per line, always with the full current set:
//!
//! ```text
//! {"v":1,"listeners":[{"addr":"0.0.0.0","port":22,"proto":"tcp"},{"addr":"10.100.0.2","port":8080,"proto":"tcp"}]}
//! ```
//!
//! A line holds at most [`MAX_LINE`] bytes before its newline and at most [`MAX_LISTENERS`]
//! listeners. Parsing is strict: another version, an unknown key, a missing key, a port 0 or
//! an unknown protocol refuses the whole line. Which listeners count is rule R5
//! ([`Announcement::services`]): those on the primary interface's address or on a wildcard.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

/// The version this code writes and reads.
pub const VERSION: u32 = 1;

/// The longest line, in bytes, without its newline. The most listeners of IPv4 addresses fit
/// in it (see the tests); a reader drops longer lines unread.
pub const MAX_LINE: usize = 4096;

/// The most listeners one line carries.
pub const MAX_LISTENERS: usize = 64;

/// The transport protocol of a listener. Only TCP is announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
}

impl Proto {
    pub fn as_str(&self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
        }
    }
}

/// One listening socket of the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
    pub proto: Proto,
}

impl Listener {
    pub fn tcp(addr: impl Into<IpAddr>, port: u16) -> Listener {
        Listener {
            addr: addr.into(),
            port,
            proto: Proto::Tcp,
        }
    }

    /// Listening on every address of the guest (`0.0.0.0` or `::`).
    pub fn is_wildcard(&self) -> bool {
        self.addr.is_unspecified()
    }

    /// The IPv4 address this listener is bound to, also when written as an IPv4-mapped
    /// IPv6 address (`::ffff:10.100.0.2`).
    fn ipv4(&self) -> Option<Ipv4Addr> {
        match self.addr {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(a) => a.to_ipv4_mapped(),
        }
    }
}

/// One line of the channel: the guest's whole current set of listeners.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    pub v: u32,
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    #[error("the line holds {0} bytes, more than {MAX_LINE}")]
    TooLong(usize),
    #[error("not an announcement: {0}")]
    Malformed(String),
    #[error("version {0} is not {VERSION}")]
    Version(u32),
    #[error("{0} listeners, more than {MAX_LISTENERS}")]
    TooMany(usize),
    #[error("a listener on port 0")]
    PortZero,
}

impl Announcement {
    /// The announcement of `listeners`: sorted, without duplicates, and cut to
    /// [`MAX_LISTENERS`], keeping wildcard listeners first since they count whatever the
    /// primary address is.
    pub fn new(listeners: impl IntoIterator<Item = Listener>) -> Announcement {
        let mut listeners: Vec<Listener> = listeners.into_iter().filter(|l| l.port != 0).collect();
        listeners.sort_by_key(|l| (!l.is_wildcard(), *l));
        listeners.dedup();
        listeners.truncate(MAX_LISTENERS);
        Announcement {
            v: VERSION,
            listeners,
        }
    }

    /// The line to send, newline included.
    pub fn encode(&self) -> String {
        let mut line = serde_json::to_string(self).expect("an announcement serializes");
        line.push('\n');
        line
    }

    /// Parses one line (without its newline) and checks it strictly.
    pub fn parse(line: &[u8]) -> Result<Announcement, AnnounceError> {
        if line.len() > MAX_LINE {
            return Err(AnnounceError::TooLong(line.len()));
        }
        let message: Announcement =
            serde_json::from_slice(line).map_err(|e| AnnounceError::Malformed(e.to_string()))?;
        if message.v != VERSION {
            return Err(AnnounceError::Version(message.v));
        }
        if message.listeners.len() > MAX_LISTENERS {
            return Err(AnnounceError::TooMany(message.listeners.len()));
        }
        if message.listeners.iter().any(|l| l.port == 0) {
            return Err(AnnounceError::PortZero);
        }
        Ok(message)
    }

    /// The services an instance shows for this announcement (R5): `"tcp:<port>"` for every
    /// listener on `primary` or on a wildcard address, sorted by protocol and port, each once.
    /// Without a primary address only wildcard listeners count.
    pub fn services(&self, primary: Option<Ipv4Addr>) -> Vec<String> {
        let mut kept: Vec<(Proto, u16)> = self
            .listeners
            .iter()
            .filter(|l| l.is_wildcard() || (primary.is_some() && l.ipv4() == primary))
            .map(|l| (l.proto, l.port))
            .collect();
        kept.sort();
        kept.dedup();
        kept.into_iter()
            .map(|(proto, port)| format!("{}:{port}", proto.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn encodes_one_small_line() {
        let a = Announcement::new([
            Listener::tcp(v4("10.100.0.2"), 8080),
            Listener::tcp(v4("0.0.0.0"), 22),
            Listener::tcp(v4("10.100.0.2"), 8080),
        ]);
        assert_eq!(
            a.encode(),
            "{\"v\":1,\"listeners\":[{\"addr\":\"0.0.0.0\",\"port\":22,\"proto\":\"tcp\"},\
             {\"addr\":\"10.100.0.2\",\"port\":8080,\"proto\":\"tcp\"}]}\n"
        );
        let line = a.encode();
        assert_eq!(Announcement::parse(line.trim_end().as_bytes()), Ok(a));
    }

    #[test]
    fn the_most_listeners_fit_in_a_line() {
        let worst = (0..200u16).map(|i| Listener::tcp(v4("255.255.255.255"), 65535 - i));
        let a = Announcement::new(worst);
        assert_eq!(a.listeners.len(), MAX_LISTENERS);
        let line = a.encode();
        assert!(line.len() - 1 <= MAX_LINE, "{} bytes", line.len());
        assert!(Announcement::parse(line.trim_end().as_bytes()).is_ok());
    }

    #[test]
    fn cutting_keeps_wildcards() {
        let many = (1..=100u16)
            .map(|p| Listener::tcp(v4("10.0.0.1"), p))
            .chain([Listener::tcp(IpAddr::from([0u16; 8]), 9000)]);
        let a = Announcement::new(many);
        assert_eq!(a.listeners.len(), MAX_LISTENERS);
        assert_eq!(a.listeners[0], Listener::tcp(IpAddr::from([0u16; 8]), 9000));
    }

    #[test]
    fn parsing_is_strict() {
        let ok = br#"{"v":1,"listeners":[{"addr":"::","port":80,"proto":"tcp"}]}"#;
        assert!(Announcement::parse(ok).is_ok());
        assert!(Announcement::parse(br#"{"v":1,"listeners":[]}"#).is_ok());

        let refused: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"garbage", "not JSON"),
            (b"\xff\xfe{}", "not UTF-8"),
            (br#"{"v":2,"listeners":[]}"#, "version"),
            (br#"{"listeners":[]}"#, "no version"),
            (br#"{"v":1}"#, "no listeners"),
            (br#"{"v":1,"listeners":[],"extra":1}"#, "unknown key"),
            (br#"{"v":1,"v":1,"listeners":[]}"#, "duplicate key"),
            (
                br#"{"v":1,"listeners":[{"addr":"1.2.3.4","port":80}]}"#,
                "no proto",
            ),
            (
                br#"{"v":1,"listeners":[{"addr":"1.2.3.4","port":80,"proto":"udp"}]}"#,
                "proto",
            ),
            (
                br#"{"v":1,"listeners":[{"addr":"1.2.3.4","port":0,"proto":"tcp"}]}"#,
                "port 0",
            ),
            (
                br#"{"v":1,"listeners":[{"addr":"1.2.3.4","port":65536,"proto":"tcp"}]}"#,
                "port",
            ),
            (
                br#"{"v":1,"listeners":[{"addr":"1.2.3","port":80,"proto":"tcp"}]}"#,
                "addr",
            ),
            (
                br#"{"v":1,"listeners":[{"addr":"1.2.3.4","port":80,"proto":"tcp","x":0}]}"#,
                "key",
            ),
            (br#"{"v":1,"listeners":{}}"#, "listeners not a list"),
            (br#"[1]"#, "not an object"),
            (br#"{"v":1,"listeners":[]} {}"#, "trailing"),
        ];
        for (line, why) in refused {
            assert!(Announcement::parse(line).is_err(), "{why}: accepted");
        }

        let too_many: Vec<String> = (1..=65)
            .map(|p| format!(r#"{{"addr":"1.2.3.4","port":{p},"proto":"tcp"}}"#))
            .collect();
        let line = format!(r#"{{"v":1,"listeners":[{}]}}"#, too_many.join(","));
        assert_eq!(
            Announcement::parse(line.as_bytes()),
            Err(AnnounceError::TooMany(65))
        );
        let long = vec![b' '; MAX_LINE + 1];
        assert_eq!(
            Announcement::parse(&long),
            Err(AnnounceError::TooLong(MAX_LINE + 1))
        );
    }

    #[test]
    fn only_primary_and_wildcard_listeners_count() {
        let a = Announcement::new([
            Listener::tcp(v4("10.100.0.2"), 8080),
            Listener::tcp(v4("172.30.5.2"), 9090),
            Listener::tcp(v4("127.0.0.1"), 5000),
            Listener::tcp(v4("0.0.0.0"), 22),
            Listener::tcp(IpAddr::from([0u16; 8]), 22),
            Listener::tcp(IpAddr::from([0u16; 8]), 443),
            Listener::tcp("::ffff:10.100.0.2".parse::<IpAddr>().unwrap(), 8443),
            Listener::tcp("fd00::2".parse::<IpAddr>().unwrap(), 7000),
        ]);
        assert_eq!(
            a.services(Some(v4("10.100.0.2"))),
            ["tcp:22", "tcp:443", "tcp:8080", "tcp:8443"]
        );
        assert_eq!(a.services(None), ["tcp:22", "tcp:443"]);
        assert!(Announcement::new([])
            .services(Some(v4("10.100.0.2")))
            .is_empty());
    }
}
