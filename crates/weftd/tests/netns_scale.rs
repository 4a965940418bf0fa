//! 50 instances with 4 pool interfaces each, created and deleted twice over with the netns
//! driver, leave no process, namespace, TAP in use, route, rule or row behind.

mod common;

use std::time::Instant;

use serde_json::json;
use weft_testkit::{privileged_or_skip, Topology, Weftd};

use common::{images_or_skip, snapshot, tag, weftd_binary};

const INSTANCES: usize = 50;
const ROUNDS: usize = 2;

#[test]
fn netns_many_instances_leave_nothing_behind() {
    let test = "netns_many_instances_leave_nothing_behind";
    if !privileged_or_skip(test) {
        return;
    }
    let Some(images) = images_or_skip(test) else {
        return;
    };
    let topo = Topology::new(&tag("wsc"));
    let extra = "[pool]\ntap_count = 256\n";
    let weftd = Weftd::start_with("netns", &topo.host, &weftd_binary(), &images, extra);
    let api = &weftd.api;
    let before = snapshot(&topo.host, &weftd);

    for round in 0..ROUNDS {
        let started = Instant::now();
        let mut uuids = Vec::new();
        for i in 0..INSTANCES {
            let (code, body) = api.post(
                "/v1/instances",
                &json!({
                    "name": format!("s{i}"),
                    "image": "base",
                    "args": ["/bin/busybox", "sleep", "600"],
                    "network_interfaces": [{}, {}, {}, {}]
                }),
            );
            assert_eq!(
                code,
                200,
                "round {round}, instance {i}: {body}\n{}",
                weftd.log()
            );
            assert_eq!(body["data"]["instances"][0]["state"], "running");
            uuids.push(
                body["data"]["instances"][0]["uuid"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        let created = started.elapsed();

        // Every guest is a process of its own with four NICs wired to four pool TAPs.
        let running = uuids.iter().filter(|u| guest_processes(u) > 0).count();
        assert_eq!(running, INSTANCES, "instances with a guest process");
        let links = String::from_utf8_lossy(&topo.host.exec(&["ip", "-o", "link"]).stdout)
            .lines()
            .filter(|l| l.contains(": wt") && l.contains("LOWER_UP"))
            .count();
        assert_eq!(links, INSTANCES * 4, "pool TAPs in use");

        let started = Instant::now();
        for i in 0..INSTANCES {
            let (code, body) = api.delete(&format!("/v1/instances/s{i}"));
            assert_eq!(code, 200, "{body}");
        }
        eprintln!(
            "round {round}: {INSTANCES} creates in {created:?}, {INSTANCES} deletes in {:?}",
            started.elapsed()
        );

        let left: usize = uuids.iter().map(|u| guest_processes(u)).sum();
        assert_eq!(left, 0, "guest processes remain");
        assert_eq!(
            snapshot(&topo.host, &weftd),
            before,
            "host or store changed"
        );
        let carrier = weft_testkit::wait_for(
            std::time::Duration::from_secs(5),
            std::time::Duration::from_millis(100),
            || {
                let out = topo.host.exec(&["ip", "-o", "link"]);
                let busy = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|l| l.contains(": wt") && l.contains("LOWER_UP"));
                (!busy).then_some(())
            },
        );
        assert!(carrier.is_some(), "a pool TAP is still in use");
    }
}

/// Processes whose command line names the instance (its guest's supervisor).
fn guest_processes(uuid: &str) -> usize {
    let out = std::process::Command::new("pgrep")
        .args(["-f", uuid])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .count()
}
