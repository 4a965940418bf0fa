//! What the rules make of accepted requests: interface shapes and names (R1, R4), the
//! primary's address (R5), gateway and nameserver (R6), autoconfig (R7), down to what each
//! guest's console says it was told.

use serde_json::{json, Value};
use weft_testkit::Api;

use crate::common::{console_when_started, create, guest_lines, World};
use crate::{body, names, own, CONFIG, OTHER_TOKEN};

/// Two answers for instances of the same shape are equal once what differs between any two
/// instances (uuid, name, time, address, TAP device, MAC) is taken out.
fn shape(item: &Value) -> Value {
    let mut item = item.clone();
    let name = item["name"].as_str().unwrap().to_string();
    for key in [
        "uuid",
        "name",
        "created_at",
        "private_ip",
        "private_fqdn",
        "boot_time_us",
    ] {
        item[key] = json!("-");
    }
    for iface in item["network_interfaces"].as_array_mut().unwrap() {
        let generated = iface["name"].as_str().unwrap().replace(&name, "<instance>");
        iface["name"] = json!(generated);
        for key in ["uuid", "private_ip", "ip", "mac", "tap_name"] {
            iface[key] = json!("-");
        }
    }
    item
}

#[test]
fn interfaces_names_addresses_and_what_guests_are_told() {
    let test = "interfaces_names_addresses_and_what_guests_are_told";
    let Some(world) = World::netns(test, "wcs", CONFIG) else {
        return;
    };
    for n in 0..6 {
        world.topo.add_tap(&format!("custtap{n}"), Some("custbr0"));
    }
    world.run(interfaces);
}

fn interfaces(world: &World) {
    let api = world.api();

    // R1: `[{}]` is what an omitted list is.
    let omitted = create(api, json!({ "name": "omitted" }));
    let empty = create(api, json!({ "name": "empty", "network_interfaces": [{}] }));
    assert_eq!(shape(&omitted), shape(&empty));
    let iface = &empty["network_interfaces"][0];
    assert_eq!(iface["name"], "empty-eth0");
    assert_eq!(iface["pool"], true);
    assert_eq!(iface["autoconfig"], true);
    assert_eq!(iface["relay"], Value::Null);
    assert_eq!(iface["tap_name"].as_str().unwrap()[..2], *"wt");
    let addr: std::net::Ipv4Addr = iface["private_ip"].as_str().unwrap().parse().unwrap();
    assert_eq!(iface["ip"], format!("{addr}/16"));
    let o = addr.octets();
    assert_eq!(
        iface["mac"],
        format!("12:b0:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
    );
    // Their guests are told the same: their address, the pool's gateway and nameserver.
    for (name, created) in [("omitted", &omitted), ("empty", &empty)] {
        let ip = created["network_interfaces"][0]["ip"].as_str().unwrap();
        let t = told(api, name, created);
        assert_eq!(t.addrs, [format!("addr {ip}")]);
        assert_eq!(t.routes, ["via 10.100.255.254 dev eth0"]);
        assert_eq!(t.nameservers, ["10.100.255.254"]);
    }

    // R4: generated names, the given ones, and the fallback.
    let gen = create(
        api,
        json!({ "name": "gen", "autostart": false,
                "network_interfaces": [{}, { "name": "given-one" }, {}] }),
    );
    assert_eq!(names(&gen), ["gen-eth0", "given-one", "gen-eth2"]);
    let longest = "l".repeat(58);
    let at_limit = create(api, json!({ "name": longest, "autostart": false }));
    assert_eq!(names(&at_limit), [format!("{longest}-eth0")]);
    let too_long = "t".repeat(59);
    let fallback = create(
        api,
        json!({ "name": too_long, "autostart": false, "network_interfaces": [{}, {}] }),
    );
    for name in names(&fallback) {
        assert_fallback(&name);
    }
    create(
        api,
        json!({ "name": "squatter", "autostart": false,
                "network_interfaces": [{ "name": "late-eth0" }] }),
    );
    let late = create(
        api,
        json!({ "name": "late", "autostart": false, "network_interfaces": [{}, {}] }),
    );
    let late_names = names(&late);
    assert_fallback(&late_names[0]);
    assert_eq!(late_names[1], "late-eth1");
    // Account-wide: another account may use the same name, this one not twice.
    let other = api.with_token(OTHER_TOKEN);
    let theirs = create(
        &other,
        json!({ "name": "gen", "autostart": false, "network_interfaces": [{ "name": "given-one" }] }),
    );
    assert_eq!(names(&theirs), ["given-one"]);
    let (code, answer) = api.post(
        "/v1/instances",
        &body(json!({ "network_interfaces": [{ "name": "given-one" }] })),
    );
    assert_eq!(code, 409, "{answer}");

    // R5 and R6: an own primary gives private_ip; the first pool interface gives gateway
    // and nameserver; the guest is told so.
    let own_primary = create(
        api,
        json!({ "name": "ownprim",
                "network_interfaces": [own("172.30.5.2/24", "custtap0"), {}] }),
    );
    assert_eq!(own_primary["private_ip"], "172.30.5.2");
    assert_eq!(own_primary["gateway"], "10.100.255.254");
    assert_eq!(own_primary["nameserver"], "10.100.255.254");
    let t = told(api, "ownprim", &own_primary);
    assert_eq!(t.addrs[0], "addr 172.30.5.2/24");
    assert!(t.addrs[1].starts_with("addr 10.100."), "{t:?}");
    assert_eq!(t.routes, ["via 10.100.255.254 dev eth1"]);
    assert_eq!(t.nameservers, ["10.100.255.254"]);

    // Overrides, outside every network of the instance and inside the own one.
    let outside = create(
        api,
        json!({ "name": "outside", "gateway": "192.168.50.1", "nameserver": "9.9.9.9" }),
    );
    assert_eq!(outside["gateway"], "192.168.50.1");
    assert_eq!(outside["nameserver"], "9.9.9.9");
    let t = told(api, "outside", &outside);
    assert_eq!(t.routes, ["via 192.168.50.1 dev eth0"]);
    assert_eq!(t.nameservers, ["9.9.9.9"]);
    // One override leaves the other derived.
    let gateway_only = create(api, json!({ "name": "gwonly", "gateway": "192.168.60.1" }));
    assert_eq!(gateway_only["gateway"], "192.168.60.1");
    assert_eq!(gateway_only["nameserver"], "10.100.255.254");
    let t = told(api, "gwonly", &gateway_only);
    assert_eq!(t.routes, ["via 192.168.60.1 dev eth0"]);
    assert_eq!(t.nameservers, ["10.100.255.254"]);
    let inside = create(
        api,
        json!({ "name": "inside", "gateway": "172.30.6.1", "nameserver": "172.30.6.53",
                "network_interfaces": [{}, own("172.30.6.2/24", "custtap1")] }),
    );
    assert_eq!(
        inside["private_ip"],
        inside["network_interfaces"][0]["private_ip"]
    );
    assert_eq!(inside["gateway"], "172.30.6.1");
    let t = told(api, "inside", &inside);
    assert_eq!(t.routes, ["via 172.30.6.1 dev eth1"]);
    assert_eq!(t.nameservers, ["172.30.6.53"]);

    // Without a pool interface, the primary's network gives them; a /31 its upper address,
    // a /32 none.
    let own_only = create(
        api,
        json!({ "name": "ownonly", "network_interfaces": [own("172.30.7.2/24", "custtap2")] }),
    );
    assert_eq!(own_only["private_ip"], "172.30.7.2");
    assert_eq!(own_only["gateway"], "172.30.7.254");
    assert_eq!(own_only["nameserver"], "172.30.7.254");
    let t = told(api, "ownonly", &own_only);
    assert_eq!(t.routes, ["via 172.30.7.254 dev eth0"]);
    assert_eq!(t.nameservers, ["172.30.7.254"]);
    let pair = create(
        api,
        json!({ "name": "pair", "network_interfaces": [own("172.30.9.0/31", "custtap3")] }),
    );
    assert_eq!(pair["gateway"], "172.30.9.1");
    assert_eq!(told(api, "pair", &pair).routes, ["via 172.30.9.1 dev eth0"]);
    let host = create(
        api,
        json!({ "name": "host32", "network_interfaces": [own("172.30.8.8/32", "custtap4")] }),
    );
    assert_eq!(host["private_ip"], "172.30.8.8");
    assert_eq!(host["gateway"], Value::Null);
    assert_eq!(host["nameserver"], Value::Null);
    let t = told(api, "host32", &host);
    assert_eq!(t.addrs, ["addr 172.30.8.8/32"]);
    assert!(t.routes.is_empty(), "{t:?}");
    assert!(t.nameservers.is_empty(), "{t:?}");

    // R7: without autoconfig the guest is told nothing of that interface, pool or own.
    let quiet = create(
        api,
        json!({ "name": "quiet", "network_interfaces": [
            {}, { "autoconfig": false },
            { "ip": "172.30.10.2/24", "tap_name": "custtap5", "autoconfig": false }
        ] }),
    );
    let flags: Vec<&Value> = quiet["network_interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["autoconfig"])
        .collect();
    assert_eq!(flags, [&json!(true), &json!(false), &json!(false)]);
    let t = told(api, "quiet", &quiet);
    assert!(t.addrs[0].starts_with("addr 10.100."), "{t:?}");
    assert_eq!(t.addrs[1..], ["addr none", "addr none"]);
    assert_eq!(t.routes, ["via 10.100.255.254 dev eth0"]);
}

fn assert_fallback(name: &str) {
    let suffix = name
        .strip_prefix("eth-")
        .unwrap_or_else(|| panic!("{name}"));
    assert!(
        !suffix.is_empty()
            && suffix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{name}"
    );
}

/// What a guest configured, by its console: per NIC in the API's order (matched by MAC),
/// its address line; the default routes; the nameservers.
#[derive(Debug, PartialEq)]
struct Told {
    addrs: Vec<String>,
    routes: Vec<String>,
    nameservers: Vec<String>,
}

fn told(api: &Api, name: &str, item: &Value) -> Told {
    let lines = guest_lines(&console_when_started(api, name));
    let addrs = item["network_interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|iface| {
            let mac = format!(" mac {} ", iface["mac"].as_str().unwrap());
            let line = lines
                .iter()
                .find(|l| l.starts_with("iface ") && l.contains(&mac))
                .unwrap_or_else(|| panic!("no line for {mac} in {lines:?}"));
            line.split(&mac).nth(1).unwrap().to_string()
        })
        .collect();
    let routes = lines
        .iter()
        .filter_map(|l| l.strip_prefix("route default "))
        .filter(|r| *r != "none")
        .map(str::to_string)
        .collect();
    let nameservers = lines
        .iter()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .map(str::to_string)
        .collect();
    Told {
        addrs,
        routes,
        nameservers,
    }
}
