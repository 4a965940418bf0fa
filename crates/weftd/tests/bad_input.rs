//! Bad create requests: each is refused with HTTP 400 (or the rule's own code) and a message
//! naming the field and value, and leaves host and store exactly as they were (R11).

mod common;

use serde_json::{json, Value};
use weft_testkit::{privileged_or_skip, Topology, Weftd};

use common::{snapshot, tag, weftd_binary};

const EXTRA_ACCOUNTS: &str = r#"
[[accounts]]
name = "plain"
tokens = ["plain-token-0123456789abcdef"]

[[accounts]]
name = "unlicensed"
tokens = ["unlicensed-token-0123456789ab"]
permissions = ["net_manager"]
"#;

/// An images directory whose `base` kernel is not a kernel: every request here is refused
/// before a guest boots, except the one that proves a failed boot is rolled back.
fn fake_images(dir: &std::path::Path) -> std::path::PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(images.join("base")).unwrap();
    std::fs::write(images.join("base/kernel"), b"not a kernel").unwrap();
    images
}

fn create(body: Value) -> Value {
    let mut full = json!({ "image": "base", "name": "web" });
    full.as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    full
}

#[test]
fn bad_create_requests_are_refused_and_change_nothing() {
    if !privileged_or_skip("bad_create_requests_are_refused_and_change_nothing") {
        return;
    }
    let topo = Topology::new(&tag("wbad"));
    topo.add_tap("custtap0", Some("custbr0"));
    topo.host
        .ip(&["tuntap", "add", "dev", "tun0", "mode", "tun"]);
    let scratch = tempfile::tempdir().unwrap();
    let images = fake_images(scratch.path());
    let weftd = Weftd::start(&topo.host, &weftd_binary(), &images, EXTRA_ACCOUNTS);
    let api = &weftd.api;
    let before = snapshot(&topo.host, &weftd);

    let own = |ip: &str, tap: &str| json!({ "ip": ip, "tap_name": tap });
    let ifaces = |list: Value| create(json!({ "network_interfaces": list }));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("malformed JSON", r#"{"image": "base","#.into(), 400, "Malformed JSON body"),
        ("not an object", "[1, 2]".into(), 400, "The request body must be a JSON object"),
        ("unknown key", create(json!({"colour": 1})).to_string(), 400, "Unknown member 'colour'"),
        (
            "unknown interface key",
            ifaces(json!([{"mtu": 9000}])).to_string(),
            400,
            "Unknown member 'mtu'",
        ),
        (
            "bad CIDR",
            ifaces(json!([{}, own("172.30.5.2/33", "custtap0")])).to_string(),
            400,
            "Invalid network_interfaces[1].ip '172.30.5.2/33'",
        ),
        (
            "address without prefix",
            ifaces(json!([own("172.30.5.2", "custtap0")])).to_string(),
            400,
            "Invalid network_interfaces[0].ip '172.30.5.2'",
        ),
        (
            "ip without tap_name",
            ifaces(json!([{"ip": "172.30.5.2/24"}])).to_string(),
            400,
            "Network interface must specify an IP address when a TAP device is provided and vice versa",
        ),
        (
            "tap_name without ip",
            ifaces(json!([{"tap_name": "custtap0"}])).to_string(),
            400,
            "Network interface must specify an IP address when a TAP device is provided and vice versa",
        ),
        (
            "missing device",
            ifaces(json!([own("172.30.5.2/24", "nosuchtap")])).to_string(),
            400,
            "Invalid network_interfaces[0].tap_name 'nosuchtap': no such device on the host",
        ),
        (
            "a bridge is not a TAP",
            ifaces(json!([own("172.30.5.2/24", "custbr0")])).to_string(),
            400,
            "Invalid network_interfaces[0].tap_name 'custbr0': it is a bridge device, not a TAP device",
        ),
        (
            "a TUN is not a TAP",
            ifaces(json!([own("172.30.5.2/24", "tun0")])).to_string(),
            400,
            "Invalid network_interfaces[0].tap_name 'tun0': it is a TUN device, not a TAP device",
        ),
        (
            "pool address",
            ifaces(json!([own("10.100.3.3/24", "custtap0")])).to_string(),
            400,
            "Network interface IP address cannot be from the platform's address pool",
        ),
        (
            "pool device",
            ifaces(json!([own("172.30.5.2/24", "wt3")])).to_string(),
            400,
            "Network interface TAP device cannot be from the platform's device pool",
        ),
        (
            "tap name with shell characters",
            ifaces(json!([own("172.30.5.2/24", "x;rm -rf")])).to_string(),
            400,
            "Invalid network_interfaces[0].tap_name 'x;rm -rf'",
        ),
        ("no interfaces", ifaces(json!([])).to_string(), 400, "not 0"),
        ("five interfaces", ifaces(json!([{}, {}, {}, {}, {}])).to_string(), 400, "not 5"),
        (
            "wrong type",
            ifaces(json!([{"autoconfig": "yes"}])).to_string(),
            400,
            "Invalid value for 'network_interfaces[0].autoconfig'",
        ),
        (
            "bad gateway",
            create(json!({"gateway": "10.0.0"})).to_string(),
            400,
            "Invalid gateway '10.0.0'",
        ),
        ("bad name", create(json!({"name": "a b"})).to_string(), 400, "Invalid name 'a b'"),
        (
            "too many args for a boot command line",
            create(json!({"args": vec!["x"; 40]})).to_string(),
            400,
            "Invalid args: 40 arguments do not fit",
        ),
        (
            "an argument with a double quote",
            create(json!({"args": ["/bin/sh", "-c", "echo \"hi\""]})).to_string(),
            400,
            "Invalid args[2]",
        ),
        (
            "a bad env key",
            create(json!({"env": {"A B": "1"}})).to_string(),
            400,
            "Invalid env key \"A B\"",
        ),
        ("unknown image", json!({"image": "nope"}).to_string(), 404, "image 'nope' not found"),
        ("image path", json!({"image": "../x"}).to_string(), 400, "Invalid image '../x'"),
    ];

    for (what, body, status, message) in &cases {
        let (code, answer) = api.raw("POST", "/v1/instances", Some(body));
        assert_eq!(code, *status, "{what}: {answer}");
        assert_eq!(answer["status"], "error", "{what}: {answer}");
        let text = answer["message"].as_str().unwrap_or_default();
        assert!(
            text.contains(message),
            "{what}: expected {message:?} in {text:?}"
        );
        assert_eq!(answer["errors"][0]["status"], *status as u64, "{what}");
    }

    // R9: without net_manager the network fields do not exist; without the license they are
    // refused.
    let plain = api.with_token("plain-token-0123456789abcdef");
    for field in ["network_interfaces", "gateway", "nameserver"] {
        let body = create(
            json!({ field: if field == "network_interfaces" { json!([{}]) } else { json!("10.1.1.1") } }),
        );
        let (code, answer) = plain.post("/v1/instances", &body);
        assert_eq!(
            (code, answer["message"].as_str()),
            (400, Some(format!("Unknown member '{field}'").as_str()))
        );
    }
    let unlicensed = api.with_token("unlicensed-token-0123456789ab");
    let (code, answer) = unlicensed.post("/v1/instances", &ifaces(json!([{}])));
    assert_eq!(code, 403);
    assert_eq!(
        answer["message"],
        "Insufficient license. Please make sure your license is valid and includes custom network configurations"
    );

    // Tokens.
    assert_eq!(api.with_token("").get("/v1/instances").0, 401);
    assert_eq!(
        api.with_token("wrong-token-0123456789")
            .get("/v1/instances")
            .0,
        401
    );

    assert_eq!(
        snapshot(&topo.host, &weftd),
        before,
        "a refused request changed host or store"
    );

    // A create whose guest cannot boot (the kernel is not one) is undone entirely.
    let (code, answer) = api.post(
        "/v1/instances",
        &ifaces(json!([{}, own("172.30.5.2/24", "custtap0")])),
    );
    assert_eq!(code, 500, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("guest start failed"),
        "{answer}"
    );
    assert_eq!(
        snapshot(&topo.host, &weftd),
        before,
        "a failed boot left something behind"
    );
}
