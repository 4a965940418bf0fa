//! SIGTERM with a real weftd (netns driver) while creates are in flight: weftd stops
//! accepting, lets the creates finish, and exits; guests keep running, or are stopped when
//! `[shutdown] stop_guests = true`. After a restart every instance is either fully there
//! (in the state the setting gives, with its host side) or not there at all.

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use weft_controller::failpoints;
use weft_testkit::wait_for;

use common::{create, items, sleeper, World};

/// What weftd logs when a failpoint holds a step.
const HELD: &str = "failpoint: holding the step";

/// Creates sent at once just before the SIGTERM.
const IN_FLIGHT: usize = 6;

fn guest_alive(uuid: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", &format!("weft-netns --name weft-{uuid} ")])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn scenario(world: &mut World, stop_guests: bool) {
    let api = world.api().clone();
    let first = create(&api, json!({"name": "before"}));
    let held = |world: &World| world.weftd.log().matches(HELD).count();
    let held_before = held(world);

    let senders: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let api = api.clone();
            std::thread::spawn(move || {
                let name = format!("flight{i}");
                let body = json!({"name": name, "image": "base", "args": sleeper()});
                let (code, answer) = api.post("/v1/instances", &body);
                (name, code, answer)
            })
        })
        .collect();
    // Every create is held 1 s before its guest starts (see `run`): SIGTERM comes while
    // they are in flight, once weftd has logged that one is held.
    wait_for(Duration::from_secs(30), Duration::from_millis(10), || {
        (held(world) > held_before).then_some(())
    })
    .expect("a create reached the held step");
    world.weftd.terminate();
    let answers: Vec<(String, u16, Value)> =
        senders.into_iter().map(|t| t.join().unwrap()).collect();
    let status = world
        .weftd
        .wait_exit(Duration::from_secs(90))
        .expect("weftd did not exit within 90 s of SIGTERM");
    assert!(status.success(), "weftd exited with {status}");
    // The creates that were still in flight when weftd began to stop, from its log.
    let log = world.weftd.log();
    let stopping = log
        .find("weftd stopping")
        .expect("weftd logged that it was stopping");
    let finished_late = log[stopping..].matches("instance created").count();
    eprintln!("{finished_late} creates finished after SIGTERM");
    assert!(
        finished_late >= 1,
        "no create was in flight at SIGTERM; the test proved nothing"
    );
    for (name, code, answer) in &answers {
        eprintln!("{name}: {code} {}", answer["status"]);
        // Finished (200), or sent after the API closed (no answer): never cut off.
        assert!(*code == 200 || *code == 0, "{name}: {code} {answer}");
    }
    let created: Vec<(String, String)> = answers
        .iter()
        .filter(|(_, code, _)| *code == 200)
        .map(|(name, _, answer)| {
            let uuid = answer["data"]["instances"][0]["uuid"].as_str().unwrap();
            (name.clone(), uuid.to_string())
        })
        .chain([(
            "before".to_string(),
            first["uuid"].as_str().unwrap().to_string(),
        )])
        .collect();
    for (name, uuid) in &created {
        assert_eq!(
            guest_alive(uuid),
            !stop_guests,
            "{name}: guest alive should be {}",
            !stop_guests
        );
    }

    world.weftd.start_again();
    let (code, list) = api.get("/v1/instances");
    assert_eq!(code, 200, "{list}");
    let listed = items(&list);
    let nft = String::from_utf8_lossy(
        &world
            .topo
            .host
            .exec(&["nft", "list", "table", "ip", "weft"])
            .stdout,
    )
    .into_owned();
    for (name, _) in &created {
        assert!(
            listed.iter().any(|i| &i["name"] == name),
            "{name} answered 200 but is gone after the restart: {list}"
        );
    }
    let want = if stop_guests { "stopped" } else { "running" };
    for instance in &listed {
        let name = instance["name"].as_str().unwrap();
        assert_eq!(instance["state"], want, "{name}: {instance}");
        let ip = instance["private_ip"].as_str().unwrap_or_default();
        assert!(!ip.is_empty(), "{name} has no address: {instance}");
        assert!(
            nft.contains(ip),
            "{name}'s address {ip} is not in weft's table:\n{nft}"
        );
        assert_eq!(
            guest_alive(instance["uuid"].as_str().unwrap()),
            !stop_guests
        );
    }
    // The store is consistent: the instances work on.
    let (code, answer) = api.put("/v1/instances/before/stop");
    assert_eq!(code, 200, "{answer}");
    let (code, answer) = api.put("/v1/instances/before/start");
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        answer["data"]["instances"][0]["state"], "running",
        "{answer}"
    );
}

fn run(test: &str, prefix: &str, extra: &str, stop_guests: bool) {
    let Some(mut world) = World::netns(test, prefix, extra) else {
        return;
    };
    // Creates are held before their guest starts, so that SIGTERM finds them in flight.
    world.weftd.stop();
    world
        .weftd
        .set_env(failpoints::ENV, Some("create.before_spawn=delay:1000"));
    world.weftd.start_again();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        scenario(&mut world, stop_guests)
    }));
    if let Err(panic) = result {
        eprintln!("--- weftd log ---\n{}", world.weftd.log());
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn sigterm_finishes_creates_in_flight_and_leaves_guests_running() {
    run(
        "sigterm_finishes_creates_in_flight_and_leaves_guests_running",
        "wsd1",
        "",
        false,
    );
}

#[test]
fn sigterm_stops_guests_when_configured() {
    run(
        "sigterm_stops_guests_when_configured",
        "wsd2",
        "[shutdown]\nstop_guests = true\n",
        true,
    );
}
