//! Two accounts on one weftd (netns driver): account B's token can never see, change,
//! delete, start, stop, log, wait on or relay to account A's instances, nor see or use A's
//! service groups; both may use the same interface name; and the data path carries no
//! traffic from A's guest to B's.

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use weft_testkit::{Api, Netns};

use common::{assert_envelope, create, items, World};

const B_TOKEN: &str = "beta-token-0123456789abcdef";
const EXTRA: &str = r#"
[[accounts]]
name = "beta"
tokens = ["beta-token-0123456789abcdef"]
permissions = ["net_manager"]
license = ["custom_network_configuration", "branching", "checkpointing"]
"#;

/// An app that answers TCP on port 8080 and keeps running.
fn listener() -> Value {
    json!(["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/"])
}

/// Whether a TCP connection from inside `ns` to `addr` opens within two seconds.
fn connects(ns: &Netns, addr: &str) -> bool {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    Netns::existing(ns.name())
        .enter(move || std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
}

/// Every way B could reach instance `id` of A answers "no such instance".
fn refused_everywhere(b: &Api, id: &str) {
    let single: Vec<(&str, String, Option<String>)> = vec![
        ("GET", format!("/v1/instances/{id}"), None),
        ("DELETE", format!("/v1/instances/{id}"), None),
        ("PUT", format!("/v1/instances/{id}/start"), None),
        ("PUT", format!("/v1/instances/{id}/stop"), None),
        ("GET", format!("/v1/instances/{id}/log"), None),
        (
            "GET",
            format!("/v1/instances/{id}/wait?timeout_ms=100"),
            None,
        ),
        (
            "PATCH",
            format!("/v1/instances/{id}"),
            Some(json!({"memory_mb": 64}).to_string()),
        ),
    ];
    for (method, path, body) in &single {
        let (code, answer) = b.raw(method, path, body.as_deref());
        assert_envelope(path, code, &answer);
        assert_eq!(code, 404, "B {method} {path}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains(id), "{answer}");
    }
    let batch = json!([{ "name": id }, { "uuid": id }]).to_string();
    let batches: Vec<(&str, &str)> = vec![
        ("DELETE", "/v1/instances"),
        ("PUT", "/v1/instances/start"),
        ("PUT", "/v1/instances/stop"),
        ("GET", "/v1/instances/log"),
        ("GET", "/v1/instances/wait"),
        ("POST", "/v1/instances/templates"),
        ("POST", "/v1/instances/checkpoints"),
    ];
    for (method, path) in batches {
        let (code, answer) = b.raw(method, path, Some(&batch));
        assert_envelope(path, code, &answer);
        assert_ne!(answer["status"], "success", "B {method} {path}: {answer}");
        assert!(
            code == 200 || (400..500).contains(&code),
            "{path}: {answer}"
        );
        for item in items(&answer) {
            assert_eq!(item["status"], "error", "B {method} {path}: {item}");
        }
    }
    let patch = json!([{ "name": id, "memory_mb": 64 }]).to_string();
    let (_, answer) = b.raw("PATCH", "/v1/instances", Some(&patch));
    assert_ne!(answer["status"], "success", "B PATCH batch: {answer}");
    let (_, list) = b.get(&format!("/v1/instances?name={id}"));
    assert!(items(&list).is_empty(), "B lists A's instance: {list}");
}

#[test]
fn accounts_are_isolated_in_the_api_and_the_data_path() {
    let Some(world) = World::netns(
        "accounts_are_isolated_in_the_api_and_the_data_path",
        "wiso",
        EXTRA,
    ) else {
        return;
    };
    world.run(|w| {
        let a = w.api();
        let b = a.with_token(B_TOKEN);

        // The same interface name in both accounts; a group of A's.
        let (code, group) = a.post(
            "/v1/services",
            &json!({"name": "a-web", "services": [{"port": 8443, "handlers": []}]}),
        );
        assert_eq!(code, 200, "{group}");
        let a1 = create(
            a,
            json!({"name": "a1", "args": listener(),
                   "network_interfaces": [{"name": "shared-if"}, {"name": "a-gw"}]}),
        );
        let b1 = create(
            &b,
            json!({"name": "b1", "args": listener(), "network_interfaces": [{"name": "shared-if"}]}),
        );
        assert_eq!(a1["network_interfaces"][0]["name"], "shared-if");
        assert_eq!(b1["network_interfaces"][0]["name"], "shared-if");
        // And the same instance name.
        let b_a1 = create(&b, json!({"name": "a1"}));
        assert_ne!(b_a1["uuid"], a1["uuid"]);
        b.delete("/v1/instances/a1");

        // B sees nothing of A.
        let (_, list) = b.get("/v1/instances");
        let names: Vec<_> = items(&list).iter().map(|i| i["name"].clone()).collect();
        assert_eq!(names, vec![json!("b1")], "{list}");
        let a_uuid = a1["uuid"].as_str().unwrap();
        refused_everywhere(&b, "a1");
        refused_everywhere(&b, a_uuid);

        // Nor relays through A's interface, nor joins or deletes A's group.
        let (code, answer) = b.post(
            "/v1/instances",
            &json!({"image": "base", "network_interfaces": [{"relay": {"name": "a-gw"}}]}),
        );
        assert!((400..500).contains(&code), "{answer}");
        assert!(answer["message"].as_str().unwrap().contains("a-gw"), "{answer}");
        let (code, answer) = b.post(
            "/v1/instances",
            &json!({"image": "base", "service_group": "a-web"}),
        );
        assert!((400..500).contains(&code), "{answer}");
        let group_uuid = group["data"]["service_groups"][0]["uuid"].as_str().unwrap();
        for id in ["a-web", group_uuid] {
            assert_eq!(b.get(&format!("/v1/services/{id}")).0, 404);
            assert_eq!(b.delete(&format!("/v1/services/{id}")).0, 404);
        }
        let (_, groups) = b.get("/v1/services");
        assert_eq!(groups["data"]["service_groups"], json!([]), "{groups}");
        let (_, answer) = b.raw("DELETE", "/v1/services", Some(r#"[{"name": "a-web"}]"#));
        assert_ne!(answer["status"], "success", "{answer}");

        // A's instance and group are untouched.
        let (code, answer) = a.get("/v1/instances/a1");
        assert_eq!(code, 200);
        assert_eq!(answer["data"]["instances"][0]["state"], "running", "{answer}");
        assert_eq!(a.get("/v1/services/a-web").0, 200);

        // The data path: B's guest listens (the host reaches it), A's guest cannot reach it.
        let b_ip = b1["private_ip"].as_str().unwrap().to_string();
        let a_ip = a1["private_ip"].as_str().unwrap().to_string();
        let b_port = format!("{b_ip}:8080");
        let up = weft_testkit::wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
            connects(&w.topo.host, &b_port).then_some(())
        });
        assert!(up.is_some(), "B's guest does not answer the host on {b_port}");
        let a_ns = w.weftd.guest_netns("a1", &format!("{}-a1", common::tag("wiso")));
        assert!(!connects(&a_ns, &b_port), "A's guest reached B's guest over TCP");
        assert!(
            !a_ns.succeeds(&["ping", "-c", "2", "-W", "1", &b_ip]),
            "A's guest pinged B's guest"
        );
        // Nor the other way round.
        let b_ns = w.weftd.guest_netns_of_uuid(
            b1["uuid"].as_str().unwrap(),
            &format!("{}-b1", common::tag("wiso")),
        );
        assert!(
            !b_ns.succeeds(&["ping", "-c", "2", "-W", "1", &a_ip]),
            "B's guest pinged A's guest"
        );
        assert!(!connects(&b_ns, &format!("{a_ip}:8080")), "B's guest reached A's over TCP");
    });
}
