//! 100 creates at once, half of them clashing on an instance name, an interface name or an
//! own TAP device: one of each clashing pair wins, the other gets a clean 409 naming the
//! field, every name, address, TAP device and MAC ends up unique in the API and on the host,
//! and nothing of the losers remains.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{assert_envelope, item, items, sleeper, World};

/// Clean requests; the clashing ones come in pairs.
const CLEAN: usize = 50;
const NAME_PAIRS: usize = 10;
const IFACE_PAIRS: usize = 10;
const TAP_PAIRS: usize = 5;
/// Clean requests that bring an own TAP device.
const CLEAN_OWN: usize = 10;

/// What a request is, and what its refusal must name if it loses.
#[derive(Clone, Debug)]
enum Kind {
    Clean,
    /// Pair `k` shares an instance name.
    Name(usize),
    /// Pair `k` shares an interface name.
    Iface(usize),
    /// Pair `k` shares an own TAP device.
    Tap(usize),
}

struct Request {
    name: String,
    kind: Kind,
    body: Value,
}

fn requests() -> Vec<Request> {
    let mut out = Vec::new();
    let request = |name: String, kind: Kind, ifaces: Value| Request {
        body: json!({ "name": name, "image": "base", "args": sleeper(),
                      "network_interfaces": ifaces }),
        name,
        kind,
    };
    for i in 0..CLEAN {
        let ifaces = match i {
            i if i < CLEAN_OWN => json!([{}, {
                "ip": format!("172.31.{}.2/24", 100 + i), "tap_name": format!("own{i}")
            }]),
            i if i % 2 == 0 => json!([{}, {}]),
            i => json!([{ "name": format!("u{i}-given") }]),
        };
        out.push(request(format!("u{i}"), Kind::Clean, ifaces));
    }
    for k in 0..NAME_PAIRS {
        for _ in 0..2 {
            out.push(request(format!("dup{k}"), Kind::Name(k), json!([{}])));
        }
    }
    for k in 0..IFACE_PAIRS {
        for side in ["a", "b"] {
            let ifaces = json!([{ "name": format!("shared{k}") }, {}]);
            out.push(request(format!("if{side}{k}"), Kind::Iface(k), ifaces));
        }
    }
    for k in 0..TAP_PAIRS {
        for (side, host) in [("a", 2), ("b", 3)] {
            let ifaces = json!([{
                "ip": format!("172.31.{k}.{host}/24"), "tap_name": format!("clash{k}")
            }]);
            out.push(request(format!("tap{side}{k}"), Kind::Tap(k), ifaces));
        }
    }
    out
}

#[test]
fn parallel_creates_with_clashes_keep_everything_unique() {
    let test = "parallel_creates_with_clashes_keep_everything_unique";
    let Some(world) = World::netns(test, "wpc", "[pool]\ntap_count = 256\n") else {
        return;
    };
    for i in 0..CLEAN_OWN {
        world.topo.add_tap(&format!("own{i}"), None);
    }
    for k in 0..TAP_PAIRS {
        world.topo.add_tap(&format!("clash{k}"), None);
    }
    world.run(scenario);
}

fn scenario(world: &World) {
    let api = world.api();
    let before = world.snapshot();
    let requests = requests();
    assert_eq!(requests.len(), 100);

    // All at once: every thread waits at the barrier, then sends.
    let started = Instant::now();
    let barrier = Arc::new(Barrier::new(requests.len()));
    let threads: Vec<_> = requests
        .iter()
        .map(|r| {
            let (api, barrier, body) = (api.clone(), Arc::clone(&barrier), r.body.clone());
            std::thread::spawn(move || {
                barrier.wait();
                api.post("/v1/instances", &body)
            })
        })
        .collect();
    let answers: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let took = started.elapsed();

    // Clean requests win; of each pair exactly one wins and the other gets a 409 that
    // names the field and the value.
    let mut winners: BTreeMap<String, Value> = BTreeMap::new();
    let mut wins_per_pair: BTreeMap<String, usize> = BTreeMap::new();
    for (req, (code, answer)) in requests.iter().zip(&answers) {
        assert_envelope(&req.name, *code, answer);
        let pair = match req.kind {
            Kind::Clean => {
                assert_eq!(*code, 200, "{}: {answer}", req.name);
                None
            }
            Kind::Name(k) => Some(format!("name {k}")),
            Kind::Iface(k) => Some(format!("iface {k}")),
            Kind::Tap(k) => Some(format!("tap {k}")),
        };
        if *code == 200 {
            let created = item(answer).clone();
            assert_eq!(created["name"], req.name.as_str());
            assert!(
                winners.insert(req.name.clone(), created).is_none(),
                "{} won twice",
                req.name
            );
            if let Some(pair) = pair {
                *wins_per_pair.entry(pair).or_default() += 1;
            }
            continue;
        }
        assert_eq!(*code, 409, "{}: {answer}", req.name);
        let message = answer["message"].as_str().unwrap();
        let named = match req.kind {
            Kind::Name(k) => format!("name 'dup{k}' is already used by another instance"),
            Kind::Iface(k) => {
                format!(
                    "network_interfaces[0].name 'shared{k}' is already used by another interface"
                )
            }
            Kind::Tap(k) => format!("network_interfaces[0].tap_name 'clash{k}'"),
            Kind::Clean => unreachable!(),
        };
        assert!(
            message.contains(&named),
            "{}: expected {named:?} in {message:?}",
            req.name
        );
    }
    let pairs = NAME_PAIRS + IFACE_PAIRS + TAP_PAIRS;
    assert_eq!(wins_per_pair.len(), pairs, "{wins_per_pair:?}");
    assert!(wins_per_pair.values().all(|&n| n == 1), "{wins_per_pair:?}");
    assert_eq!(winners.len(), CLEAN + pairs);
    eprintln!(
        "{} parallel creates answered in {took:?} ({} created, {} refused)",
        requests.len(),
        winners.len(),
        requests.len() - winners.len()
    );

    // What the API holds now is exactly the winners, as they were created.
    let (code, list) = api.get("/v1/instances");
    assert_eq!(code, 200);
    let listed = items(&list);
    assert_eq!(listed.len(), winners.len());
    for inst in &listed {
        let name = inst["name"].as_str().unwrap();
        let created = winners
            .get(name)
            .unwrap_or_else(|| panic!("{name} is no winner"));
        assert_eq!(inst["uuid"], created["uuid"]);
        assert_eq!(inst["network_interfaces"], created["network_interfaces"]);
    }

    // Every name, address, TAP device and MAC is unique across instances.
    let ifaces: Vec<&Value> = listed
        .iter()
        .flat_map(|i| i["network_interfaces"].as_array().unwrap())
        .collect();
    for member in ["uuid", "name", "private_ip", "tap_name", "mac"] {
        let values: Vec<&str> = ifaces
            .iter()
            .map(|i| {
                i[member]
                    .as_str()
                    .unwrap_or_else(|| panic!("{member}: {i}"))
            })
            .collect();
        let unique: HashSet<&&str> = values.iter().collect();
        assert_eq!(unique.len(), values.len(), "{member} repeats: {values:?}");
    }
    let uuids: HashSet<&str> = listed.iter().map(|i| i["uuid"].as_str().unwrap()).collect();
    assert_eq!(uuids.len(), listed.len());

    // The host agrees: one /32 route and one set element per pool interface, and no more.
    let pool: BTreeSet<(String, String)> = ifaces
        .iter()
        .filter(|i| i["pool"] == true)
        .map(|i| {
            (
                i["tap_name"].as_str().unwrap().to_string(),
                i["private_ip"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(host_routes(world), pool, "routes of the pool interfaces");
    assert_eq!(guests_set(world), pool, "the guests set");
    let busy = weft_testkit::wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        let up = pool_taps_in_use(world);
        (up == pool.len()).then_some(up)
    });
    assert!(
        busy.is_some(),
        "{} pool TAP devices in use, {} pool interfaces",
        pool_taps_in_use(world),
        pool.len()
    );

    // Nothing of the losers: no instance, no interface row beyond the winners'.
    let rows = sqlite(
        world,
        "SELECT (SELECT COUNT(*) FROM instances) || ' ' || (SELECT COUNT(*) FROM interfaces);",
    );
    assert_eq!(rows, format!("{} {}", winners.len(), ifaces.len()));
    for k in 0..TAP_PAIRS {
        let users = ifaces
            .iter()
            .filter(|i| i["tap_name"] == format!("clash{k}").as_str())
            .count();
        assert_eq!(users, 1, "clash{k}");
    }

    // All of them go in one batch call, and the host is as it was.
    let started = Instant::now();
    let refs: Vec<Value> = listed
        .iter()
        .map(|i| json!({ "uuid": i["uuid"] }))
        .collect();
    let (code, answer) = api.raw(
        "DELETE",
        "/v1/instances",
        Some(&Value::from(refs).to_string()),
    );
    assert_eq!(
        (code, &answer["status"]),
        (200, &json!("success")),
        "{answer}"
    );
    eprintln!(
        "{} deletes in one call took {:?}",
        listed.len(),
        started.elapsed()
    );
    let clean = weft_testkit::wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        (world.snapshot() == before && pool_taps_in_use(world) == 0).then_some(())
    });
    assert!(
        clean.is_some(),
        "host or store changed after deleting everything"
    );
}

#[test]
fn parallel_creates_beyond_the_pool_leave_nothing_of_the_refused() {
    let test = "parallel_creates_beyond_the_pool_leave_nothing_of_the_refused";
    let Some(world) = World::netns(test, "wpx", "[pool]\ntap_count = 9\n") else {
        return;
    };
    world.run(exhaustion);
}

/// 12 creates of two pool interfaces each on a pool of 9 TAP devices: at most 4 fit, the
/// fifth can take one device and not its second. Every refusal is a 409 naming the
/// interface and the pool, and no device, address, route or row of a refused one remains.
fn exhaustion(world: &World) {
    let api = world.api();
    let before = world.snapshot();
    let barrier = Arc::new(Barrier::new(12));
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let (api, barrier) = (api.clone(), Arc::clone(&barrier));
            let body = json!({ "name": format!("x{i}"), "image": "base", "args": sleeper(),
                               "network_interfaces": [{}, {}] });
            std::thread::spawn(move || {
                barrier.wait();
                api.post("/v1/instances", &body)
            })
        })
        .collect();
    let answers: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let won = answers.iter().filter(|(code, _)| *code == 200).count();
    assert_eq!(won, 4, "{answers:?}");
    for (code, answer) in answers.iter().filter(|(code, _)| *code != 200) {
        assert_envelope("exhausted", *code, answer);
        assert_eq!(*code, 409, "{answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.starts_with("Cannot allocate network_interfaces[")
                && message.ends_with("TAP device pool wt0..8 is exhausted"),
            "{message}"
        );
    }
    let (_, list) = api.get("/v1/instances");
    let pool: BTreeSet<(String, String)> = items(&list)
        .iter()
        .flat_map(|i| i["network_interfaces"].as_array().unwrap().clone())
        .map(|i| {
            (
                i["tap_name"].as_str().unwrap().to_string(),
                i["private_ip"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(pool.len(), 8);
    assert_eq!(host_routes(world), pool);
    assert_eq!(guests_set(world), pool);
    assert_eq!(
        sqlite(world, "SELECT COUNT(*) FROM interfaces;"),
        "8",
        "interface rows"
    );

    // The one device left is free: an instance of one interface gets it, then the pool is
    // full for everyone.
    let (code, answer) = api.post(
        "/v1/instances",
        &json!({ "name": "last", "image": "base", "args": sleeper() }),
    );
    assert_eq!(code, 200, "{answer}");
    let (code, answer) = api.post(
        "/v1/instances",
        &json!({ "name": "more", "image": "base", "args": sleeper() }),
    );
    assert_eq!(code, 409, "{answer}");

    let refs: Vec<Value> = items(&list)
        .iter()
        .map(|i| json!({ "name": i["name"] }))
        .chain([json!({ "name": "last" })])
        .collect();
    let (code, answer) = api.raw(
        "DELETE",
        "/v1/instances",
        Some(&Value::from(refs).to_string()),
    );
    assert_eq!(
        (code, &answer["status"]),
        (200, &json!("success")),
        "{answer}"
    );
    let clean = weft_testkit::wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        (world.snapshot() == before && pool_taps_in_use(world) == 0).then_some(())
    });
    assert!(
        clean.is_some(),
        "host or store changed after deleting everything"
    );
}

fn text(out: std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host's /32 routes through pool TAP devices, as (device, address).
fn host_routes(world: &World) -> BTreeSet<(String, String)> {
    let out = text(world.topo.host.exec(&["ip", "-j", "route", "show"]));
    let routes: Value = serde_json::from_str(&out).expect("ip answers JSON");
    routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dev"].as_str().is_some_and(|d| d.starts_with("wt")))
        .filter(|r| r["dst"].as_str().is_some_and(|d| !d.contains('/')))
        .map(|r| {
            (
                r["dev"].as_str().unwrap().to_string(),
                r["dst"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The elements of weft's `guests` set, as (device, address).
fn guests_set(world: &World) -> BTreeSet<(String, String)> {
    let out = world
        .topo
        .host
        .exec(&["nft", "-j", "list", "set", "ip", "weft", "guests"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("nft answers JSON");
    doc["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o["set"]["elem"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let pair = e["concat"].as_array().expect("a concatenated element");
            (
                pair[0].as_str().unwrap().to_string(),
                pair[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// How many pool TAP devices a guest holds open (they have carrier).
fn pool_taps_in_use(world: &World) -> usize {
    text(world.topo.host.exec(&["ip", "-o", "link"]))
        .lines()
        .filter(|l| l.contains(": wt") && l.contains("LOWER_UP"))
        .count()
}

fn sqlite(world: &World, query: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(world.weftd.state_dir().join("weft.db"))
        .arg(query)
        .output()
        .expect("sqlite3 runs");
    text(out).trim().to_string()
}
