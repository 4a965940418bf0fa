//! Relays (R8) and the delete of a relay in use (R11), also racing with new clients.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{assert_envelope, create, item, items, World};
use crate::{body, unknown, CONFIG};

#[test]
fn relays_and_the_delete_of_a_relay_in_use() {
    let test = "relays_and_the_delete_of_a_relay_in_use";
    let Some(world) = World::netns(test, "wcy", CONFIG) else {
        return;
    };
    world.topo.add_tap("custtap0", Some("custbr0"));
    world.run(relays);
}

fn relays(world: &World) {
    let api = world.api();
    let empty = world.snapshot();

    let shield = create(api, json!({ "name": "shield" }));
    let c1 = create(
        api,
        json!({ "name": "c1", "network_interfaces": [{ "relay": { "name": "shield-eth0" } }] }),
    );
    // R8: relay_dns defaults to true and is shown.
    assert_eq!(
        c1["network_interfaces"][0]["relay"],
        json!({ "name": "shield-eth0", "relay_dns": true })
    );
    let c2 = create(
        api,
        json!({ "name": "c2", "network_interfaces": [
            { "relay": { "name": "shield-eth0", "relay_dns": false } }, {}
        ] }),
    );
    assert_eq!(
        c2["network_interfaces"][0]["relay"],
        json!({ "name": "shield-eth0", "relay_dns": false })
    );
    assert_eq!(c2["network_interfaces"][1]["relay"], Value::Null);
    let c3 = create(
        api,
        json!({ "name": "c3", "network_interfaces": [
            { "ip": "172.30.5.2/24", "tap_name": "custtap0", "relay": { "name": "shield-eth0" } }
        ] }),
    );
    assert_eq!(c3["network_interfaces"][0]["relay"]["name"], "shield-eth0");
    // The same answers come back from GET.
    for (name, created) in [("shield", &shield), ("c1", &c1), ("c2", &c2), ("c3", &c3)] {
        let (_, got) = api.get(&format!("/v1/instances/{name}"));
        assert_eq!(
            item(&got)["network_interfaces"],
            created["network_interfaces"],
            "{name}"
        );
    }
    // The host relays the pool clients: their addresses are in the relayed set.
    let relayed = nft_set(world, "relayed");
    for c in [&c1, &c2] {
        let addr = c["network_interfaces"][0]["private_ip"].as_str().unwrap();
        assert!(relayed.iter().any(|e| e == addr), "{addr} in {relayed:?}");
    }

    // R11: refused while clients live, naming every one of them, and nothing changes.
    let before = world.snapshot();
    let (code, answer) = api.delete("/v1/instances/shield");
    assert_envelope("delete shield", code, &answer);
    assert_eq!(code, 409, "{answer}");
    assert_eq!(
        answer["message"],
        "Instance 'shield' cannot be deleted: it is the relay of 'c1-eth0' (instance 'c1') \
         through 'shield-eth0', 'c2-eth0' (instance 'c2') through 'shield-eth0', 'c3-eth0' \
         (instance 'c3') through 'shield-eth0'"
    );
    assert_eq!(world.snapshot(), before);

    // Once its clients are gone, it goes, and nothing of any of them remains.
    for name in ["c1", "c2"] {
        assert_eq!(api.delete(&format!("/v1/instances/{name}")).0, 200);
        let (code, answer) = api.delete("/v1/instances/shield");
        assert_eq!(code, 409, "{answer}");
    }
    assert_eq!(api.delete("/v1/instances/c3").0, 200);
    let (code, answer) = api.delete("/v1/instances/shield");
    assert_eq!(code, 200, "{answer}");
    assert_eq!(item(&answer)["previous_state"], "running");
    let gone = weft_testkit::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        (world.snapshot().without_empty_relay_table() == empty).then_some(())
    });
    assert!(gone.is_some(), "{:#?}\n{:#?}", world.snapshot(), empty);

    // A delete racing with creates that name the relay: either the relay stays with its new
    // clients, or it goes and they are refused; never a client without its relay.
    for round in 0..3 {
        create(api, json!({ "name": "racer" }));
        let clients: Vec<_> = (0..8)
            .map(|i| {
                let api = api.clone();
                let body = body(json!({ "name": format!("r{round}c{i}"),
                    "network_interfaces": [{ "relay": { "name": "racer-eth0" } }] }));
                std::thread::spawn(move || api.post("/v1/instances", &body))
            })
            .collect();
        let deleted = api.delete("/v1/instances/racer");
        let created: Vec<(u16, Value)> = clients.into_iter().map(|t| t.join().unwrap()).collect();
        let winners = created.iter().filter(|(code, _)| *code == 200).count();
        match deleted.0 {
            200 => assert_eq!(winners, 0, "clients of a deleted relay: {created:?}"),
            409 => assert!(winners > 0, "{deleted:?}"),
            _ => panic!("{deleted:?}"),
        }
        for (code, answer) in &created {
            if *code != 200 {
                assert_eq!(
                    (*code, &answer["message"]),
                    (400, &json!(unknown("racer-eth0")))
                );
            }
        }
        // Clean up: clients first, then the relay.
        for i in 0..8 {
            api.delete(&format!("/v1/instances/r{round}c{i}"));
        }
        if deleted.0 == 409 {
            assert_eq!(api.delete("/v1/instances/racer").0, 200);
        }
    }
    let (_, list) = api.get("/v1/instances");
    assert_eq!(items(&list), Vec::<Value>::new());
}

/// The elements of a set of weft's nftables table, as text.
fn nft_set(world: &World, set: &str) -> Vec<String> {
    let out = world
        .topo
        .host
        .exec(&["nft", "-j", "list", "set", "ip", "weft", set]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("nft answers JSON");
    let elems = doc["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o["set"]["elem"].as_array().cloned())
        .unwrap_or_default();
    elems
        .iter()
        .map(|e| match e {
            Value::String(s) => s.clone(),
            Value::Object(o) if o.contains_key("concat") => o["concat"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join(" . "),
            other => other.to_string(),
        })
        .collect()
}
