//! Every refusal of the rules, one table row each: code, message, and nothing changed.

use serde_json::{json, Value};
use weft_testkit::Api;

use crate::common::{self, assert_envelope, create, item, items, World};
use crate::{
    body, own, unknown, CONFIG, IP_AND_TAP, IP_FROM_POOL, LICENSE, OTHER_TOKEN, PLAIN_TOKEN,
    TAP_FROM_POOL, UNLICENSED_TOKEN,
};

/// How a refusal's message must read.
enum Text {
    Exact(String),
    Contains(String),
}

/// Where a refusal shows: as the answer's failure (the HTTP code is the refusal's), or as
/// the one failed item of a batch answer (HTTP 200, the item's `error` is the code).
#[derive(Clone, Copy, PartialEq)]
enum Form {
    Request,
    Item,
}

/// One refusal of the contract.
struct Row {
    rule: &'static str,
    case: String,
    api: Api,
    method: &'static str,
    path: String,
    body: Option<Value>,
    form: Form,
    status: u16,
    text: Text,
}

fn exact(s: impl Into<String>) -> Text {
    Text::Exact(s.into())
}

fn contains(s: impl Into<String>) -> Text {
    Text::Contains(s.into())
}

/// Sends the row's request and checks the refusal and that nothing changed.
fn check(world: &World, before: &common::Snapshot, row: &Row) {
    let what = format!("{} / {}", row.rule, row.case);
    let raw = row.body.as_ref().map(Value::to_string);
    let (code, answer) = row.api.raw(row.method, &row.path, raw.as_deref());
    assert_envelope(&what, code, &answer);
    assert_eq!(answer["status"], "error", "{what}: {answer}");

    let (message, got) = match row.form {
        Form::Request => {
            assert_eq!(code, row.status, "{what}: {answer}");
            assert!(answer.get("data").is_none(), "{what}: {answer}");
            (
                answer["message"].as_str().unwrap_or_default(),
                u64::from(code),
            )
        }
        Form::Item => {
            assert_eq!(code, 200, "{what}: {answer}");
            let list = items(&answer);
            assert_eq!(list.len(), 1, "{what}: {answer}");
            assert_eq!(list[0]["status"], "error", "{what}: {answer}");
            // The one failed item is the answer's reason too.
            assert_eq!(answer["message"], list[0]["message"], "{what}: {answer}");
            assert_eq!(
                answer["errors"],
                json!([{ "status": row.status }]),
                "{what}"
            );
            (
                item(&answer)["message"].as_str().unwrap_or_default(),
                item(&answer)["error"].as_u64().unwrap_or_default(),
            )
        }
    };
    assert_eq!(got, u64::from(row.status), "{what}: {answer}");
    match &row.text {
        Text::Exact(text) => assert_eq!(message, text, "{what}"),
        Text::Contains(text) => assert!(
            message.contains(text.as_str()),
            "{what}: expected {text:?} in {message:?}"
        ),
    }
    assert_eq!(
        &world.snapshot(),
        before,
        "{what}: the refused request changed host or store"
    );
}

#[test]
fn every_refusal_of_the_rules_changes_nothing() {
    let test = "every_refusal_of_the_rules_changes_nothing";
    let Some(world) = World::netns(test, "wcr", CONFIG) else {
        return;
    };
    world.topo.add_tap("custtap0", Some("custbr0"));
    world.topo.add_tap("custtap1", Some("custbr0"));
    world
        .topo
        .host
        .ip(&["tuntap", "add", "dev", "tun0", "mode", "tun"]);
    world.run(refusals);
}

fn refusals(world: &World) {
    let acme = world.api().clone();
    let other = acme.with_token(OTHER_TOKEN);
    let plain = acme.with_token(PLAIN_TOKEN);
    let unlicensed = acme.with_token(UNLICENSED_TOKEN);

    // What the refusals run against: a relay and its client, a stopped instance with two
    // interfaces, a running one, one on an own TAP device, and another account's instance.
    create(&acme, json!({ "name": "gw" }));
    create(
        &acme,
        json!({ "name": "cl", "network_interfaces": [{ "relay": { "name": "gw-eth0" } }] }),
    );
    create(
        &acme,
        json!({ "name": "two", "autostart": false, "network_interfaces": [{}, {}] }),
    );
    create(&acme, json!({ "name": "run" }));
    create(
        &acme,
        json!({ "name": "own", "autostart": false,
                "network_interfaces": [own("172.30.5.2/24", "custtap0")] }),
    );
    let oth = create(
        &other,
        json!({ "name": "oth", "autostart": false, "network_interfaces": [{ "name": "theirs" }] }),
    );
    let oth_uuid = oth["uuid"].as_str().unwrap().to_string();
    let before = world.snapshot();

    let post = |rule, case: &str, api: &Api, extra: Value, status, text| Row {
        rule,
        case: case.to_string(),
        api: api.clone(),
        method: "POST",
        path: "/v1/instances".into(),
        body: Some(body(extra)),
        form: Form::Request,
        status,
        text,
    };
    let ifaces = |list: Value| json!({ "network_interfaces": list });
    let relay_to = |name: &str| ifaces(json!([{ "relay": { "name": name } }]));
    let patch = |case: &str, member: &str, value: Value| Row {
        rule: "R10",
        case: case.to_string(),
        api: acme.clone(),
        method: "PATCH",
        path: "/v1/instances/run".into(),
        body: Some(json!({ member: value })),
        form: Form::Request,
        status: 400,
        text: exact(format!(
            "'{member}' cannot be changed: the network configuration is set once when the \
             instance is created"
        )),
    };
    let batch = |rule, case: &str, method, path: &str, list: Value, status, text| Row {
        rule,
        case: case.to_string(),
        api: acme.clone(),
        method,
        path: path.into(),
        body: Some(list),
        form: Form::Item,
        status,
        text,
    };

    #[rustfmt::skip]
    let mut rows = vec![
        // R1: one to four interfaces.
        post("R1", "no interfaces", &acme, ifaces(json!([])), 400,
             exact("network_interfaces must hold 1 to 4 interfaces, not 0")),
        post("R1", "five interfaces", &acme, ifaces(json!([{}, {}, {}, {}, {}])), 400,
             exact("network_interfaces must hold 1 to 4 interfaces, not 5")),
        post("R1", "not a list", &acme, json!({ "network_interfaces": {} }), 400,
             contains("Invalid value for 'network_interfaces'")),
        // R2: the members of an entry and of a relay.
        post("R2", "unknown interface member", &acme, ifaces(json!([{ "mtu": 9000 }])), 400,
             exact("Unknown member 'mtu'")),
        post("R2", "unknown relay member", &acme,
             ifaces(json!([{ "relay": { "name": "gw-eth0", "via": 1 } }])), 400,
             exact("Unknown member 'via'")),
        post("R2", "relay without name", &acme, ifaces(json!([{ "relay": {} }])), 400,
             contains("network_interfaces[0].relay")),
        post("R2", "autoconfig not a bool", &acme, ifaces(json!([{ "autoconfig": "yes" }])),
             400, contains("Invalid value for 'network_interfaces[0].autoconfig'")),
        // R3: ip and tap_name together, outside the pools, on a free TAP device.
        post("R3", "ip without tap_name", &acme, ifaces(json!([{ "ip": "172.30.5.9/24" }])),
             400, exact(IP_AND_TAP)),
        post("R3", "tap_name without ip", &acme, ifaces(json!([{}, { "tap_name": "custtap1" }])),
             400, exact(IP_AND_TAP)),
        post("R3", "address in the pool", &acme,
             ifaces(json!([own("10.100.3.3/24", "custtap1")])), 400, exact(IP_FROM_POOL)),
        post("R3", "network holding the pool", &acme,
             ifaces(json!([own("10.0.0.1/8", "custtap1")])), 400, exact(IP_FROM_POOL)),
        post("R3", "pool device", &acme, ifaces(json!([own("172.30.5.9/24", "wt3")])), 400,
             exact(TAP_FROM_POOL)),
        post("R3", "pool device beyond the count", &acme,
             ifaces(json!([own("172.30.5.9/24", "wt99")])), 400, exact(TAP_FROM_POOL)),
        post("R3", "bad CIDR", &acme, ifaces(json!([own("172.30.5.9/33", "custtap1")])), 400,
             contains("Invalid network_interfaces[0].ip '172.30.5.9/33'")),
        post("R3", "network address", &acme, ifaces(json!([own("172.30.5.0/24", "custtap1")])),
             400, contains("Invalid network_interfaces[0].ip '172.30.5.0/24'")),
        post("R3", "TAP name too long", &acme,
             ifaces(json!([own("172.30.5.9/24", "custtap-0123456789")])), 400,
             exact("Invalid network_interfaces[0].tap_name 'custtap-0123456789': it is longer than 15 characters")),
        post("R3", "missing TAP device", &acme, ifaces(json!([own("172.30.5.9/24", "nosuch0")])),
             400, exact("Invalid network_interfaces[0].tap_name 'nosuch0': no such device on the host")),
        post("R3", "a bridge is not a TAP", &acme,
             ifaces(json!([own("172.30.5.9/24", "custbr0")])), 400,
             exact("Invalid network_interfaces[0].tap_name 'custbr0': it is a bridge device, not a TAP device")),
        post("R3", "a TUN is not a TAP", &acme, ifaces(json!([own("172.30.5.9/24", "tun0")])),
             400, exact("Invalid network_interfaces[0].tap_name 'tun0': it is a TUN device, not a TAP device")),
        post("R3", "TAP of another interface", &acme,
             ifaces(json!([{}, own("172.30.5.9/24", "custtap0")])), 409,
             exact("network_interfaces[1].tap_name 'custtap0' is already used by another interface")),
        post("R3", "one TAP twice", &acme,
             ifaces(json!([own("172.30.5.9/24", "custtap1"), own("172.30.6.9/24", "custtap1")])),
             400, contains("network_interfaces[1].tap_name 'custtap1' is given to more than one interface")),
        // R4: names are free in the account.
        post("R4", "interface name taken", &acme, ifaces(json!([{ "name": "run-eth0" }])), 409,
             exact("network_interfaces[0].name 'run-eth0' is already used by another interface")),
        post("R4", "interface name twice", &acme,
             ifaces(json!([{ "name": "twin" }, { "name": "twin" }])), 400,
             exact("network_interfaces[1].name 'twin' is given to more than one interface")),
        post("R4", "interface name not a DNS label", &acme, ifaces(json!([{ "name": "Eth_0" }])),
             400, contains("Invalid network_interfaces[0].name 'Eth_0'")),
        post("R4", "interface name too long", &acme,
             ifaces(json!([{ "name": "a".repeat(64) }])), 400,
             contains("is longer than 63 characters")),
        post("R4", "instance name taken", &acme, json!({ "name": "run" }), 409,
             exact("name 'run' is already used by another instance")),
        // R6: overrides are plain IPv4 addresses.
        post("R6", "gateway not an address", &acme, json!({ "gateway": "10.0.0" }), 400,
             exact("Invalid gateway '10.0.0': expected an IPv4 address")),
        post("R6", "nameserver broadcast", &acme, json!({ "nameserver": "255.255.255.255" }),
             400, exact("Invalid nameserver '255.255.255.255': the broadcast address cannot be used")),
        post("R6", "gateway not a string", &acme, json!({ "gateway": 10 }), 400,
             contains("Invalid value for 'gateway'")),
        // R8: a relay is another instance's interface of this account, not itself relayed.
        post("R8", "relay unknown", &acme, relay_to("nope"), 400, exact(unknown("nope"))),
        post("R8", "relay of another account", &acme, relay_to("theirs"), 400,
             exact(unknown("theirs"))),
        post("R8", "relay in the same instance", &acme,
             ifaces(json!([{ "name": "mine" }, { "relay": { "name": "mine" } }])), 400,
             exact("Invalid network_interfaces[1].relay.name 'mine': it is an interface of this instance; a relay must belong to another instance")),
        post("R8", "relay that is relayed", &acme, relay_to("cl-eth0"), 400,
             exact("Invalid network_interfaces[0].relay.name 'cl-eth0': it uses the relay 'gw-eth0' itself; a relay cannot be relayed")),
        post("R8", "relay_dns not a bool", &acme,
             ifaces(json!([{ "relay": { "name": "gw-eth0", "relay_dns": "no" } }])), 400,
             contains("Invalid value for 'network_interfaces[0].relay.relay_dns'")),
        // R9: the permission makes the members exist; the license allows their use.
        post("R9", "network_interfaces without net_manager", &plain, ifaces(json!([{}])), 400,
             exact("Unknown member 'network_interfaces'")),
        post("R9", "gateway without net_manager", &plain, json!({ "gateway": "10.1.1.1" }), 400,
             exact("Unknown member 'gateway'")),
        post("R9", "nameserver without net_manager", &plain, json!({ "nameserver": "10.1.1.1" }),
             400, exact("Unknown member 'nameserver'")),
        post("R9", "network_interfaces without license", &unlicensed, ifaces(json!([{}])), 403,
             exact(LICENSE)),
        post("R9", "gateway without license", &unlicensed, json!({ "gateway": "10.1.1.1" }), 403,
             exact(LICENSE)),
        post("R9", "nameserver without license", &unlicensed,
             json!({ "nameserver": "10.1.1.1" }), 403, exact(LICENSE)),
        Row {
            rule: "R9",
            case: "PATCH without net_manager".into(),
            api: plain.clone(),
            method: "PATCH",
            path: "/v1/instances/whatever".into(),
            body: Some(json!({ "gateway": "10.1.1.1" })),
            form: Form::Request,
            status: 400,
            text: exact("Unknown member 'gateway'"),
        },
        Row {
            rule: "R9",
            case: "PATCH without license".into(),
            api: unlicensed.clone(),
            method: "PATCH",
            path: "/v1/instances/whatever".into(),
            body: Some(json!({ "network_interfaces": [{}] })),
            form: Form::Request,
            status: 403,
            text: exact(LICENSE),
        },
        // R10: set once; templates, branches and checkpoints of one interface only.
        patch("PATCH network_interfaces", "network_interfaces", json!([{}, {}])),
        patch("PATCH gateway", "gateway", json!("10.100.0.77")),
        patch("PATCH nameserver", "nameserver", json!("9.9.9.9")),
        batch("R10", "batch PATCH gateway", "PATCH", "/v1/instances",
              json!([{ "name": "run", "gateway": "10.1.1.1" }]), 400,
              exact("'gateway' cannot be changed: the network configuration is set once when the instance is created")),
        post("R10", "branch of two interfaces", &acme, json!({ "branch_from": "two" }), 400,
             exact("Invalid branch_from 'two': instance 'two' has 2 network interfaces, and instances with more than one cannot be branched")),
        post("R10", "branch of a running instance", &acme,
             json!({ "branch_from": { "name": "run" } }), 409,
             exact("Invalid branch_from 'run': instance 'run' is running; branching a running instance needs memory snapshots, which this version of weft does not take. Stop it first")),
        batch("R10", "checkpoint of two interfaces", "POST", "/v1/instances/checkpoints",
              json!([{ "name": "two" }]), 400,
              exact("Instance 'two' has 2 network interfaces; instances with more than one cannot be checkpointed")),
        batch("R10", "checkpoint of a running instance", "POST", "/v1/instances/checkpoints",
              json!([{ "name": "run" }]), 409,
              exact("Instance 'run' is running; checkpointing a running instance needs memory snapshots, which this version of weft does not take. Stop it first")),
        batch("R10", "template of a running instance", "POST", "/v1/instances/templates",
              json!([{ "name": "run" }]), 409,
              exact("Instance 'run' is running; stop it before making a template of it")),
        post("R10", "template that is not one", &acme, json!({ "template": "two" }), 400,
             exact("Invalid template 'two': instance 'two' is not a template")),
        post("R10", "checkpoint that is not one", &acme, json!({ "checkpoint": "two" }), 400,
             exact("Invalid checkpoint 'two': instance 'two' is not a checkpoint")),
        // Another account's instances are not there, by name or by uuid.
        Row {
            rule: "accounts",
            case: "delete another account's instance".into(),
            api: acme.clone(),
            method: "DELETE",
            path: format!("/v1/instances/{oth_uuid}"),
            body: None,
            form: Form::Request,
            status: 404,
            text: exact(format!("No instance with uuid or name '{oth_uuid}'")),
        },
        batch("accounts", "start another account's instance", "PUT", "/v1/instances/start",
              json!([{ "name": "oth" }]), 404, exact("No instance with uuid or name 'oth'")),
        post("accounts", "branch another account's instance", &acme,
             json!({ "branch_from": { "uuid": oth_uuid } }), 400,
             exact(format!("Invalid branch_from '{oth_uuid}': no instance of that uuid or name"))),
        // Branching and checkpoints have license features of their own.
        post("license", "branch without the branching feature", &other,
             json!({ "branch_from": "oth" }), 403,
             exact("Insufficient license. Please make sure your license is valid and includes branching")),
        Row {
            rule: "license",
            case: "checkpoint without the checkpointing feature".into(),
            api: other.clone(),
            method: "POST",
            path: "/v1/instances/checkpoints".into(),
            body: Some(json!([{ "name": "oth" }])),
            form: Form::Item,
            status: 403,
            text: exact("Insufficient license. Please make sure your license is valid and includes checkpointing"),
        },
        // R11: a relay in use stays, and says who uses it.
        Row {
            rule: "R11",
            case: "delete a relay in use".into(),
            api: acme.clone(),
            method: "DELETE",
            path: "/v1/instances/gw".into(),
            body: None,
            form: Form::Request,
            status: 409,
            text: exact("Instance 'gw' cannot be deleted: it is the relay of 'cl-eth0' (instance 'cl') through 'gw-eth0'"),
        },
        batch("R11", "batch delete of a relay in use", "DELETE", "/v1/instances",
              json!([{ "name": "gw" }]), 409,
              exact("Instance 'gw' cannot be deleted: it is the relay of 'cl-eth0' (instance 'cl') through 'gw-eth0'")),
    ];
    // Names that are words of the API's paths could not be addressed by name.
    for word in ["wait", "start", "stop", "log", "templates", "checkpoints"] {
        let text = contains(format!("Invalid name '{word}': it is reserved"));
        let case = format!("instance named '{word}'");
        rows.push(post(
            "names",
            &case,
            &acme,
            json!({ "name": word }),
            400,
            text,
        ));
    }
    rows.push(batch(
        "names",
        "checkpoint named 'wait'",
        "POST",
        "/v1/instances/checkpoints",
        json!([{ "name": "own", "checkpoint_name": "wait" }]),
        400,
        contains("Invalid checkpoint_name 'wait': it is reserved"),
    ));

    for row in &rows {
        check(world, &before, row);
    }

    // Another account's interface is refused exactly as an unknown one: same code, and the
    // same words but for the name given.
    let refusal = |name: &str| {
        let (code, answer) = acme.post("/v1/instances", &body(relay_to(name)));
        (
            code,
            answer["message"].as_str().unwrap().replace(name, "<name>"),
        )
    };
    assert_eq!(refusal("theirs"), refusal("nope-at-all"));
    eprintln!("{} refusals checked", rows.len());
}
