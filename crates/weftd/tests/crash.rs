//! Crash safety and rollback with failpoints (`WEFT_FAILPOINTS`, see the controller's
//! `failpoints.rs`), a real weftd with the netns driver, real TAPs and real nftables:
//!
//! - weftd killed (SIGKILL) at every failpoint of create, start, stop and delete, then
//!   restarted: store and host agree, nothing is handed out twice, nothing is orphaned, a
//!   guest that outlived the crash is adopted, and the same instance can be created again;
//! - every create step made to fail: the error names the step, and host and store are as
//!   they were.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weft_controller::failpoints;

use common::consistency::{assert_consistent, guest_pid, guest_processes};
use common::{create, item, World};

/// The instance each round creates, stops, starts or deletes: a pool interface and one relayed
/// through the bystander, so that every step of a create has something to do.
fn victim() -> Value {
    json!({
        "name": "victim",
        "network_interfaces": [{}, {"relay": {"name": "bystander-eth0"}}]
    })
}

/// Sets the failpoint (or none) and restarts weftd.
fn restart_with(world: &mut World, point: Option<String>) {
    world.weftd.stop();
    world.weftd.set_env(failpoints::ENV, point.as_deref());
    world.weftd.start_again();
}

fn exists(world: &World, name: &str) -> Option<Value> {
    let (code, body) = world.api().get(&format!("/v1/instances/{name}"));
    (code == 200).then(|| item(&body).clone())
}

/// The request a failpoint's operation makes, after whatever it needs first.
fn request(world: &World, op: &str) -> (u16, Value) {
    let api = world.api();
    match op {
        "create" => {
            let mut body = victim();
            body["image"] = json!("base");
            body["args"] = common::sleeper();
            api.post("/v1/instances", &body)
        }
        "start" => {
            create(api, victim());
            let (code, body) = api.put("/v1/instances/victim/stop");
            assert_eq!(code, 200, "{body}");
            api.put("/v1/instances/victim/start")
        }
        "stop" => {
            create(api, victim());
            api.put("/v1/instances/victim/stop")
        }
        "delete" => {
            create(api, victim());
            api.delete("/v1/instances/victim")
        }
        other => panic!("no request for {other}"),
    }
}

#[test]
fn crash_at_every_failpoint_leaves_a_consistent_system() {
    let test = "crash_at_every_failpoint_leaves_a_consistent_system";
    let Some(mut world) = World::netns(test, "wcr", "") else {
        return;
    };
    let started = Instant::now();
    let bystander = create(world.api(), json!({"name": "bystander"}));
    let by_uuid = bystander["uuid"].as_str().unwrap().to_string();
    let by_pid = guest_pid(&world.weftd, &by_uuid).expect("the bystander's guest");

    // The victim's addresses and TAPs when nothing went wrong: each round gets them again.
    let first = create(world.api(), victim());
    let expected_ifaces = first["network_interfaces"].clone();
    assert_eq!(world.api().delete("/v1/instances/victim").0, 200);

    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for point in failpoints::ALL {
            let op = point.split('.').next().unwrap();
            restart_with(&mut world, Some(format!("{point}=abort")));
            let (code, answer) = request(&world, op);
            let status = world.weftd.wait_exit(Duration::from_secs(20));
            let status = status.unwrap_or_else(|| {
                panic!("{point}: weftd did not die; the request answered {code} {answer}")
            });
            assert_eq!(code, 0, "{point}: the request got an answer: {answer}");
            eprintln!("{point}: weftd died ({status})");

            restart_with(&mut world, None);
            let context = format!("after a crash at {point}");
            assert_consistent(&world.topo.host, &world.weftd, &context);

            // The guest that outlived every crash is adopted, not restarted.
            let by = exists(&world, "bystander").expect("the bystander is kept");
            assert_eq!(by["state"], "running", "{context}: {by}");
            assert_eq!(guest_pid(&world.weftd, &by_uuid), Some(by_pid), "{context}");

            // What became of the victim depends on where the operation was cut.
            let left = exists(&world, "victim");
            let state = left
                .as_ref()
                .map(|v| v["state"].as_str().unwrap().to_string());
            let expected = match op {
                // A create that never answered is rolled back.
                "create" => None,
                // A start or stop cut short leaves the instance stopped.
                "start" | "stop" => Some("stopped"),
                // A delete is undone only before it was accepted.
                _ if *point == "delete.after_check" => Some("running"),
                _ => None,
            };
            assert_eq!(state.as_deref(), expected, "{context}: victim {left:?}");

            // Names, addresses and TAPs are free again once the victim is gone.
            if left.is_some() {
                let (code, body) = world.api().delete("/v1/instances/victim");
                assert_eq!(code, 200, "{context}: delete: {body}");
            }
            let again = create(world.api(), victim());
            assert_eq!(again["state"], "running", "{context}: {again}");
            for (i, iface) in again["network_interfaces"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                for key in ["private_ip", "tap_name", "name"] {
                    assert_eq!(iface[key], expected_ifaces[i][key], "{context}: {key}");
                }
            }
            assert_consistent(
                &world.topo.host,
                &world.weftd,
                &format!("{context}, recreated"),
            );
            let (code, body) = world.api().delete("/v1/instances/victim");
            assert_eq!(code, 200, "{context}: delete: {body}");
        }
    }));
    if let Err(panic) = run {
        eprintln!("--- weftd log ---\n{}", world.weftd.log());
        std::panic::resume_unwind(panic);
    }
    eprintln!(
        "{} failpoints in {:?}",
        failpoints::ALL.len(),
        started.elapsed()
    );
    // Every way of settling a crash was taken at least once.
    let log = world.weftd.log();
    for what in [
        "a create was cut short by a crash: rolled back",
        "a delete was cut short by a crash: finished",
        "a stop was cut short by a crash: finished",
        "a guest process that no instance owns: stopping it",
        "guest survived a restart",
    ] {
        let n = log.matches(what).count();
        eprintln!("weftd's log: {n} x '{what}'");
        assert!(n > 0, "weftd never logged '{what}'");
    }
}

#[test]
fn every_create_step_failing_rolls_back() {
    let test = "every_create_step_failing_rolls_back";
    let Some(mut world) = World::netns(test, "wfi", "") else {
        return;
    };
    let started = Instant::now();
    create(world.api(), json!({"name": "bystander"}));
    let points: Vec<&str> = failpoints::ALL
        .iter()
        .copied()
        .filter(|p| p.starts_with("create."))
        .collect();

    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for point in &points {
            restart_with(&mut world, Some(format!("{point}=error")));
            let before = world.snapshot().without_empty_relay_table();
            let guests_before = guest_processes(&world.weftd);

            let (code, answer) = request(&world, "create");
            assert_eq!(code, 500, "{point}: {answer}");
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(point) && message.contains("failed"),
                "{point}: the error does not name the step: {message}"
            );
            let after = world.snapshot().without_empty_relay_table();
            assert_eq!(after, before, "{point}: host or store changed");
            assert_eq!(
                guest_processes(&world.weftd),
                guests_before,
                "{point}: guests"
            );
            assert_consistent(&world.topo.host, &world.weftd, point);
        }
        // Without failpoints the same create succeeds.
        restart_with(&mut world, None);
        create(world.api(), victim());
    }));
    if let Err(panic) = run {
        eprintln!("--- weftd log ---\n{}", world.weftd.log());
        std::panic::resume_unwind(panic);
    }
    eprintln!("{} create steps in {:?}", points.len(), started.elapsed());
}
