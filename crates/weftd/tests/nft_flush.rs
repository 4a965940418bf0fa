//! Someone flushes the whole nftables ruleset of weftd's namespace while instances run:
//! weftd notices within seconds and puts weft's table, its elements and the relays back, and
//! the guests reach the internet again.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use weft_testkit::{topology::INTERNET_ADDR, wait_for, Netns};

use common::consistency::{assert_consistent, guest_elements};
use common::{create, World};

/// How long weftd may take to repair its rules: its check runs every 2 s.
const REPAIR_BOUND: Duration = Duration::from_secs(10);

fn reaches_internet(ns: &Netns) -> bool {
    ns.succeeds(&["ping", "-c", "1", "-W", "1", INTERNET_ADDR])
}

/// How many rules `netdev weft` (the relays' table) holds.
fn relay_rules(host: &Netns) -> usize {
    let out = host.exec(&["nft", "-j", "list", "table", "netdev", "weft"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list["nftables"].as_array().map_or(0, |items| {
        items.iter().filter(|i| i.get("rule").is_some()).count()
    })
}

#[test]
fn flushed_ruleset_is_repaired_while_instances_run() {
    let test = "flushed_ruleset_is_repaired_while_instances_run";
    let Some(world) = World::netns(test, "wfl", "") else {
        return;
    };
    world.run(|world| {
        create(world.api(), json!({"name": "a"}));
        create(
            world.api(),
            json!({"name": "b", "network_interfaces": [{}, {}]}),
        );
        let host = world.topo.host.name().to_string();
        let guests: Vec<Netns> = ["a", "b"]
            .iter()
            .map(|n| world.weftd.guest_netns(n, &format!("{host}-{n}")))
            .collect();
        for ns in &guests {
            let up = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
                reaches_internet(ns).then_some(())
            });
            assert!(up.is_some(), "{}: no internet before the flush", ns.name());
        }
        // A client relayed through a: its relay rules live in `netdev weft`.
        create(
            world.api(),
            json!({"name": "c", "network_interfaces": [{"relay": {"name": "a-eth0"}}]}),
        );
        let relays = relay_rules(&world.topo.host);
        assert!(relays > 0, "no relay rules");
        let elements = guest_elements(&world.topo.host);
        assert_eq!(elements.len(), 4, "{elements:?}");

        // No false alarm while instances and relays came and went.
        let alarms = |w: &World| w.weftd.log().matches("incomplete: repairing").count();
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(alarms(world), 0, "weftd repaired a whole table");

        for round in 0..2 {
            let out = world.topo.host.exec(&["nft", "flush", "ruleset"]);
            assert!(out.status.success(), "nft flush ruleset: {out:?}");
            let flushed = Instant::now();

            for ns in &guests {
                let back = wait_for(REPAIR_BOUND, Duration::from_millis(200), || {
                    reaches_internet(ns).then_some(())
                });
                assert!(
                    back.is_some(),
                    "round {round}: {} has no internet {REPAIR_BOUND:?} after the flush",
                    ns.name()
                );
            }
            eprintln!("round {round}: repaired within {:?}", flushed.elapsed());
            assert_eq!(guest_elements(&world.topo.host), elements);
            assert_eq!(relay_rules(&world.topo.host), relays, "relay rules");
            assert_consistent(&world.topo.host, &world.weftd, "after the flush");
            assert!(alarms(world) > round, "weftd did not log its repair");
        }
    });
}
