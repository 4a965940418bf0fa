//! The test world: a host namespace (weftd's), an internet namespace behind the host's
//! uplink `eth0`, and a user namespace bridged to a TAP device the user brings.
//!
//! ```text
//!  [inet] uplink0 192.0.2.1/24 ── eth0 192.0.2.2/24 [host] custbr0 ── custtap0 (own TAP)
//!                                                        └── user-port ── user0 172.30.5.1/24 [user]
//! ```

use crate::Netns;

pub const HOST_UPLINK_ADDR: &str = "192.0.2.2";
pub const INTERNET_ADDR: &str = "192.0.2.1";
pub const USER_ADDR: &str = "172.30.5.1";

pub struct Topology {
    pub host: Netns,
    pub inet: Netns,
    pub user: Netns,
}

impl Topology {
    /// Builds the namespaces, named `<tag>-host`, `<tag>-inet`, `<tag>-user`.
    pub fn new(tag: &str) -> Topology {
        let host = Netns::create(&format!("{tag}-host"));
        let inet = Netns::create(&format!("{tag}-inet"));
        let user = Netns::create(&format!("{tag}-user"));

        host.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "uplink0",
            "netns",
            inet.name(),
        ]);
        host.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
        host.ip(&["link", "set", "eth0", "up"]);
        host.ip(&["route", "add", "default", "via", INTERNET_ADDR]);
        inet.ip(&["addr", "add", "192.0.2.1/24", "dev", "uplink0"]);
        inet.ip(&["link", "set", "uplink0", "up"]);

        host.ip(&["link", "add", "custbr0", "type", "bridge"]);
        host.ip(&["link", "set", "custbr0", "up"]);
        host.ip(&[
            "link",
            "add",
            "user-port",
            "type",
            "veth",
            "peer",
            "name",
            "user0",
            "netns",
            user.name(),
        ]);
        host.ip(&["link", "set", "user-port", "master", "custbr0", "up"]);
        user.ip(&["addr", "add", "172.30.5.1/24", "dev", "user0"]);
        user.ip(&["link", "set", "user0", "up"]);

        Topology { host, inet, user }
    }

    /// Makes a TAP device in the host namespace, as a user bringing their own would.
    pub fn add_tap(&self, name: &str, bridge: Option<&str>) {
        self.host.ip(&["tuntap", "add", "dev", name, "mode", "tap"]);
        match bridge {
            Some(br) => self.host.ip(&["link", "set", name, "master", br, "up"]),
            None => self.host.ip(&["link", "set", name, "up"]),
        };
    }
}
