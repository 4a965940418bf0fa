//! The data path with the netns driver: TCP throughput and round trips from a guest to the
//! internet namespace, directly and through a forwarding-only relay guest.

use std::time::Duration;

use serde_json::{json, Value};

use crate::tcp::{self, PathFigures, Servers};
use crate::world::{guest_ns, run_in, trivial, Client, World};

pub const INTERNET: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 1);

/// The app of a relay that only forwards: what a relay guest needs, then nothing.
pub fn forwarding_relay(name: &str) -> Value {
    json!({
        "name": name,
        "image": "base",
        "args": ["/bin/sh", "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward; \
             for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done; \
             exec sleep 100000"],
    })
}

/// A sandbox whose only interface goes through `relay`'s first interface.
pub fn relayed(name: &str, relay: &str) -> Value {
    json!({
        "name": name,
        "image": "base",
        "args": ["/bin/busybox", "sleep", "100000"],
        "network_interfaces": [{"relay": {"name": format!("{relay}-eth0")}}],
    })
}

pub struct DataPath {
    pub direct: PathFigures,
    pub relayed: PathFigures,
}

/// Creates a direct guest, a relay and its client, and measures both paths for `secs` per
/// stream and `rtts` round trips.
pub fn run(world: &World, secs: Duration, rtts: usize) -> anyhow::Result<DataPath> {
    let _servers = Servers::start(&world.inet_ns(), INTERNET)?;
    let api = Client::new();
    let (direct, client) = run_in(&world.host_ns(), || -> anyhow::Result<(String, String)> {
        let api = api.connect();
        let direct = api.create(&trivial("dp-direct", 1))?;
        api.create(&forwarding_relay("dp-relay"))?;
        let client = api.create(&relayed("dp-client", "dp-relay"))?;
        Ok((uuid(&direct)?, uuid(&client)?))
    })?;

    let direct = tcp::measure(&guest_ns(&direct)?, INTERNET, secs, rtts)?;
    let relayed = tcp::measure(&guest_ns(&client)?, INTERNET, secs, rtts)?;

    run_in(&world.host_ns(), || -> anyhow::Result<()> {
        let api = api.connect();
        api.delete("dp-client")?;
        api.delete("dp-relay")?;
        api.delete("dp-direct")
    })?;
    Ok(DataPath { direct, relayed })
}

pub fn uuid(instance: &Value) -> anyhow::Result<String> {
    instance["uuid"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("instance without uuid: {instance}"))
}
