//! The requests of the feature's documentation, sent as it describes them: an instance with
//! custom interfaces, one behind a relay, and one with gateway and nameserver. Their answers
//! are checked member by member against the API's documented members, as a client written for the
//! documented API would read them.

mod common;

use std::net::Ipv4Addr;

use serde_json::{json, Map, Value};

use common::{assert_envelope, item, World};

#[test]
fn documented_requests_get_documented_answers() {
    let test = "documented_requests_get_documented_answers";
    let Some(world) = World::netns(test, "wcp", "") else {
        return;
    };
    world.topo.add_tap("custtap0", Some("custbr0"));
    world.topo.add_tap("custtap1", Some("custbr0"));
    world.run(scenario);
}

fn scenario(world: &World) {
    let api = world.api();

    // Custom interfaces: one from the pools, one brought by the user (both `ip` and
    // `tap_name`), one the app configures itself. The first is the primary.
    let custom = json!({
        "name": "custom",
        "image": "base",
        "args": ["/bin/busybox", "sleep", "600"],
        "network_interfaces": [
            { "name": "custom-pool" },
            { "ip": "172.30.5.2/24", "tap_name": "custtap0", "autoconfig": true },
            { "autoconfig": false }
        ]
    });
    let answer = created(world, &custom);
    let inst = item(&answer);
    let ifaces = inst["network_interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 3);
    assert_eq!(ifaces[0]["name"], "custom-pool");
    assert_eq!(ifaces[1]["name"], "custom-eth1");
    assert_eq!(ifaces[2]["name"], "custom-eth2");
    assert_eq!(inst["private_ip"], ifaces[0]["private_ip"]);
    assert_eq!(ifaces[1]["private_ip"], "172.30.5.2");
    assert_eq!(ifaces[1]["tap_name"], "custtap0");
    assert_eq!(ifaces[2]["autoconfig"], false);
    assert_eq!(inst["gateway"], "10.100.255.254");

    // A relay: the gateway instance first, then one whose traffic passes through it, with
    // DNS to the default server rather than through the relay.
    let gateway = json!({
        "name": "shield",
        "image": "base",
        "args": ["/bin/busybox", "sleep", "600"],
        "network_interfaces": [{ "name": "shield-if" }]
    });
    created(world, &gateway);
    let sandbox = json!({
        "name": "sandbox",
        "image": "base",
        "args": ["/bin/busybox", "sleep", "600"],
        "network_interfaces": [{ "relay": { "name": "shield-if", "relay_dns": false } }]
    });
    let answer = created(world, &sandbox);
    assert_eq!(
        item(&answer)["network_interfaces"][0]["relay"],
        json!({ "name": "shield-if", "relay_dns": false })
    );
    let shared = json!({
        "name": "sandbox2",
        "image": "base",
        "args": ["/bin/busybox", "sleep", "600"],
        "network_interfaces": [{ "relay": { "name": "shield-if" } }]
    });
    let answer = created(world, &shared);
    assert_eq!(
        item(&answer)["network_interfaces"][0]["relay"],
        json!({ "name": "shield-if", "relay_dns": true })
    );

    // Gateway and nameserver overrides on an own interface.
    let overrides = json!({
        "name": "overrides",
        "image": "base",
        "args": ["/bin/busybox", "sleep", "600"],
        "network_interfaces": [{ "ip": "172.30.5.3/24", "tap_name": "custtap1" }],
        "gateway": "172.30.5.1",
        "nameserver": "172.30.5.1"
    });
    let answer = created(world, &overrides);
    assert_eq!(item(&answer)["gateway"], "172.30.5.1");
    assert_eq!(item(&answer)["nameserver"], "172.30.5.1");
    assert_eq!(item(&answer)["private_ip"], "172.30.5.3");

    // The list and the single form show the same items in the same shape.
    let (code, list) = api.get("/v1/instances");
    assert_envelope("list", code, &list);
    check_success_envelope(&list);
    let all = list["data"]["instances"].as_array().unwrap();
    assert_eq!(all.len(), 5);
    for inst in all {
        check_instance(inst);
        let (_, one) = api.get(&format!("/v1/instances/{}", inst["uuid"].as_str().unwrap()));
        assert_eq!(item(&one), inst);
    }

    // The short items of lifecycle calls.
    let (code, answer) = api.put("/v1/instances/custom/stop");
    assert_envelope("stop", code, &answer);
    check_success_envelope(&answer);
    check_members(
        item(&answer),
        &["status", "uuid", "name", "state", "previous_state"],
        &[],
    );
    let (code, answer) = api.delete("/v1/instances/custom");
    assert_envelope("delete", code, &answer);
    check_members(
        item(&answer),
        &["status", "uuid", "name", "previous_state"],
        &[],
    );

    // A documented error: the envelope without data.
    let (code, answer) = api.post(
        "/v1/instances",
        &json!({ "name": "x", "image": "base", "network_interfaces": [{ "tap_name": "custtap1" }] }),
    );
    assert_envelope("error", code, &answer);
    assert_eq!(code, 400);
    check_members(&answer, &["status", "message", "errors", "op_time_us"], &[]);
    assert_eq!(
        answer["message"],
        "Network interface must specify an IP address when a TAP device is provided and vice versa"
    );
}

/// Creates an instance from a documented request; checks its answer's shape and returns it.
fn created(world: &World, body: &Value) -> Value {
    let (code, answer) = world.api().post("/v1/instances", body);
    assert_eq!(code, 200, "{body}: {answer}");
    assert_envelope("create", code, &answer);
    check_success_envelope(&answer);
    let inst = item(&answer);
    check_instance(inst);
    assert_eq!(inst["name"], body["name"]);
    assert_eq!(inst["state"], "running");
    // What the request said is what the answer says.
    let asked = body["network_interfaces"].as_array().unwrap();
    let got = inst["network_interfaces"].as_array().unwrap();
    assert_eq!(asked.len(), got.len());
    for (asked, got) in asked.iter().zip(got) {
        for member in ["name", "tap_name", "autoconfig"] {
            if let Some(v) = asked.get(member) {
                assert_eq!(&got[member], v, "{member}");
            }
        }
        if let Some(ip) = asked["ip"].as_str() {
            assert_eq!(got["private_ip"], ip.split('/').next().unwrap());
        }
        if let Some(relay) = asked["relay"].get("name") {
            assert_eq!(&got["relay"]["name"], relay);
        }
    }
    answer
}

/// A success: status, data with the instances, server time; nothing else.
fn check_success_envelope(answer: &Value) {
    check_members(answer, &["status", "data", "op_time_us"], &[]);
    assert_eq!(answer["status"], "success");
    check_members(&answer["data"], &["instances"], &[]);
    for inst in answer["data"]["instances"].as_array().unwrap() {
        assert_eq!(inst["status"], "success");
    }
}

/// Exactly the `required` members, plus any of `extra` (which weft adds to the contract's).
fn check_members(value: &Value, required: &[&str], extra: &[&str]) -> Map<String, Value> {
    let map = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"));
    for key in required {
        assert!(map.contains_key(*key), "'{key}' missing from {value}");
    }
    for key in map.keys() {
        assert!(
            required.contains(&key.as_str()) || extra.contains(&key.as_str()),
            "'{key}' is not a member of the contract: {value}"
        );
    }
    map.clone()
}

/// The members of an instance with their types.
fn check_instance(inst: &Value) {
    check_members(
        inst,
        &[
            "status",
            "uuid",
            "name",
            "created_at",
            "state",
            "image",
            "memory_mb",
            "vcpus",
            "args",
            "env",
            "private_ip",
            "private_fqdn",
            "gateway",
            "nameserver",
            "network_interfaces",
            "services",
            "service_group",
            "boot_time_us",
            "net_time_us",
        ],
        &["exit_code"],
    );
    assert!(is_uuid(&inst["uuid"]), "{inst}");
    let name = inst["name"].as_str().unwrap();
    let created = inst["created_at"].as_str().unwrap();
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "created_at is RFC 3339 in UTC: {created}"
    );
    let states = [
        "stopped", "starting", "running", "draining", "stopping", "standby", "template",
    ];
    assert!(states.contains(&inst["state"].as_str().unwrap()), "{inst}");
    assert!(inst["image"].is_string());
    assert!(inst["memory_mb"].is_u64() && inst["vcpus"].is_u64());
    assert!(inst["args"]
        .as_array()
        .unwrap()
        .iter()
        .all(Value::is_string));
    assert!(inst["env"]
        .as_object()
        .unwrap()
        .values()
        .all(Value::is_string));
    assert!(is_addr_or_null(&inst["private_ip"]), "{inst}");
    assert_eq!(inst["private_fqdn"], format!("{name}.internal"));
    assert!(is_addr_or_null(&inst["gateway"]), "{inst}");
    assert!(is_addr_or_null(&inst["nameserver"]), "{inst}");
    assert!(inst["services"]
        .as_array()
        .unwrap()
        .iter()
        .all(Value::is_string));
    assert!(
        inst["service_group"].is_null() || inst["service_group"].is_object(),
        "{inst}"
    );
    for key in ["boot_time_us", "net_time_us"] {
        assert!(inst[key].is_null() || inst[key].is_u64(), "{key}: {inst}");
    }

    let ifaces = inst["network_interfaces"].as_array().unwrap();
    if inst["state"] != "template" {
        assert!((1..=4).contains(&ifaces.len()), "{inst}");
        assert_eq!(inst["private_ip"], ifaces[0]["private_ip"], "R5: {inst}");
    }
    for iface in ifaces {
        check_members(
            iface,
            &[
                "uuid",
                "name",
                "private_ip",
                "mac",
                "tap_name",
                "autoconfig",
                "relay",
            ],
            &["ip", "pool"],
        );
        assert!(is_uuid(&iface["uuid"]), "{iface}");
        assert!(iface["name"].is_string());
        assert!(is_addr_or_null(&iface["private_ip"]), "{iface}");
        let mac = iface["mac"].as_str().unwrap();
        assert!(
            mac.len() == 17
                && mac.split(':').count() == 6
                && mac.split(':').all(|b| b.len() == 2
                    && b.bytes()
                        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))),
            "{mac}"
        );
        let tap = iface["tap_name"].as_str().unwrap();
        assert!(!tap.is_empty() && tap.len() <= 15, "{tap}");
        assert!(iface["autoconfig"].is_boolean());
        match &iface["relay"] {
            Value::Null => {}
            relay => {
                check_members(relay, &["name", "relay_dns"], &[]);
                assert!(relay["name"].is_string() && relay["relay_dns"].is_boolean());
            }
        }
        if let Some(ip) = iface["ip"].as_str() {
            let (addr, prefix) = ip.split_once('/').unwrap();
            assert_eq!(iface["private_ip"], addr);
            assert!(prefix.parse::<u8>().unwrap() <= 32);
        }
    }
}

fn is_uuid(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_addr_or_null(v: &Value) -> bool {
    v.is_null() || v.as_str().is_some_and(|s| s.parse::<Ipv4Addr>().is_ok())
}
