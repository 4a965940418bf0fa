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
        let elements = guest_elements(&world.topo.host);
        assert_eq!(elements.len(), 3, "{elements:?}");

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
            assert_consistent(&world.topo.host, &world.weftd, "after the flush");
        }
    });
}
