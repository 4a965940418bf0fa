//! Reconciliation with the store as the truth: what the host has that no instance owns goes,
//! what an instance owns but the host lacks comes back, at start and while weftd runs.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use weft_testkit::{wait_for, Netns};

use common::consistency::{assert_consistent, guest_elements, guest_pid, guest_routes};
use common::{create, World};

/// Runs `nft` with `args` in `host`, which must succeed.
fn nft(host: &Netns, args: &[&str]) {
    let out = host.exec(&[&["nft"], args].concat());
    assert!(out.status.success(), "nft {args:?}: {out:?}");
}

#[test]
fn host_follows_the_store_at_start_and_while_running() {
    let test = "host_follows_the_store_at_start_and_while_running";
    let Some(mut world) = World::netns(test, "wrc", "") else {
        return;
    };
    let a = create(world.api(), json!({"name": "a"}));
    let b = create(world.api(), json!({"name": "b"}));
    let a_uuid = a["uuid"].as_str().unwrap().to_string();
    let b_uuid = b["uuid"].as_str().unwrap().to_string();
    let a_pid = guest_pid(&world.weftd, &a_uuid).expect("a's guest");
    let a_tap = a["network_interfaces"][0]["tap_name"]
        .as_str()
        .unwrap()
        .to_string();
    let a_ip = a["private_ip"].as_str().unwrap().to_string();
    let host = &world.topo.host;

    world.weftd.stop();
    // The store loses b (its guest, route and element are left without an owner), the host
    // loses a's route and element, and gains a stray TAP and an element and route of nobody.
    let db = world.weftd.state_dir().join("weft.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(format!(
            "PRAGMA foreign_keys = ON; DELETE FROM instances WHERE uuid = '{b_uuid}';"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    host.ip(&["route", "del", &format!("{a_ip}/32"), "dev", &a_tap]);
    let element = |tap: &str, ip: &str| format!("{{ {tap} . {ip} }}");
    nft(
        host,
        &[
            "delete",
            "element",
            "ip",
            "weft",
            "guests",
            &element(&a_tap, &a_ip),
        ],
    );
    nft(
        host,
        &[
            "add",
            "element",
            "ip",
            "weft",
            "guests",
            &element("wt6", "10.100.0.77"),
        ],
    );
    host.ip(&["route", "add", "10.100.0.77/32", "dev", "wt6"]);
    host.ip(&["tuntap", "add", "dev", "wt30", "mode", "tap"]);

    world.weftd.start_again();
    world.run(|world| {
        let host = &world.topo.host;
        let instances = assert_consistent(host, &world.weftd, "after the restart");
        assert_eq!(instances.len(), 1, "{instances:?}");
        assert_eq!(
            guest_pid(&world.weftd, &a_uuid),
            Some(a_pid),
            "a is adopted"
        );
        assert_eq!(
            guest_pid(&world.weftd, &b_uuid),
            None,
            "b's guest is stopped"
        );
        assert!(guest_routes(host).contains(&(a_tap.clone(), a_ip.clone())));
        assert!(
            !host.succeeds(&["ip", "link", "show", "wt30"]),
            "stray TAP removed"
        );

        // While weftd runs: a flushed chain is noticed within seconds, and the repair puts
        // back a's element too.
        let started = Instant::now();
        nft(host, &["flush", "chain", "ip", "weft", "forward"]);
        nft(
            host,
            &[
                "delete",
                "element",
                "ip",
                "weft",
                "guests",
                &element(&a_tap, &a_ip),
            ],
        );
        let back = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
            let rules = host.exec(&["nft", "list", "chain", "ip", "weft", "forward"]);
            let text = String::from_utf8_lossy(&rules.stdout).into_owned();
            let elements = guest_elements(host);
            (text.contains("masquerade") || text.contains("accept"))
                .then_some(())
                .filter(|_| elements.contains(&(a_tap.clone(), a_ip.clone())))
        });
        assert!(
            back.is_some(),
            "the chain and a's element did not come back"
        );
        eprintln!("repaired within {:?}", started.elapsed());
        assert_consistent(host, &world.weftd, "after the repair");
    });
}
