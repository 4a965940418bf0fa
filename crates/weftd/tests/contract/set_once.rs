//! The network configuration is set once (R10): PATCH, templates, branches, checkpoints.

use serde_json::{json, Value};

use crate::common::{assert_envelope, create, item, sleeper, World};
use crate::{names, own, CONFIG};

#[test]
fn network_configuration_is_set_once() {
    let test = "network_configuration_is_set_once";
    let Some(world) = World::netns(test, "wco", CONFIG) else {
        return;
    };
    world.topo.add_tap("custtap0", Some("custbr0"));
    world.run(set_once);
}

fn set_once(world: &World) {
    let api = world.api();

    // PATCH changes what may change, and refuses the network, leaving all as it was.
    let p = create(
        api,
        json!({ "name": "p", "autostart": false, "gateway": "10.100.0.99",
                "network_interfaces": [{}, { "name": "p-side" }] }),
    );
    let (code, answer) = api.raw(
        "PATCH",
        "/v1/instances/p",
        Some(&json!({ "memory_mb": 256, "args": ["/bin/busybox", "sleep", "601"] }).to_string()),
    );
    assert_envelope("patch", code, &answer);
    assert_eq!(code, 200, "{answer}");
    let patched = item(&answer);
    assert_eq!(patched["memory_mb"], 256);
    assert_eq!(patched["args"], json!(["/bin/busybox", "sleep", "601"]));
    assert_eq!(patched["network_interfaces"], p["network_interfaces"]);
    assert_eq!(patched["gateway"], "10.100.0.99");
    // No args are the image's own, as at create; args that would not reach the guest are
    // refused, as at create.
    let (code, answer) = api.raw("PATCH", "/v1/instances/p", Some(r#"{"args": []}"#));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        item(&answer)["args"],
        json!(["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"])
    );
    let body = json!({ "args": ["/bin/busybox", "sleep", "601"] }).to_string();
    assert_eq!(api.raw("PATCH", "/v1/instances/p", Some(&body)).0, 200);
    let before = world.snapshot();
    let too_many = json!({ "args": vec!["x"; 40] }).to_string();
    let (code, answer) = api.raw("PATCH", "/v1/instances/p", Some(&too_many));
    assert_envelope("patch args", code, &answer);
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid args: 40 arguments do not fit"),
        "{answer}"
    );
    let long_env: serde_json::Map<String, Value> =
        (0..30).map(|i| (format!("K{i}"), json!("v"))).collect();
    let (code, answer) = api.raw(
        "PATCH",
        "/v1/instances/p",
        Some(&json!({ "env": long_env }).to_string()),
    );
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid env: "),
        "{answer}"
    );
    assert_eq!(world.snapshot(), before);

    // A network member refuses the whole patch, whatever its value: null too.
    for member in ["network_interfaces", "gateway", "nameserver"] {
        for value in [json!(null), json!([]), json!("10.1.1.1")] {
            let (code, answer) = api.raw(
                "PATCH",
                "/v1/instances/p",
                Some(&json!({ member: value, "memory_mb": 512 }).to_string()),
            );
            assert_envelope("patch network", code, &answer);
            assert_eq!(code, 400, "{member} {value}: {answer}");
            assert_eq!(
                answer["message"],
                format!(
                    "'{member}' cannot be changed: the network configuration is set once when \
                     the instance is created"
                )
            );
        }
    }
    let (_, now) = api.get("/v1/instances/p");
    assert_eq!(
        item(&now)["memory_mb"],
        256,
        "a refused PATCH changed memory"
    );
    assert_eq!(world.snapshot(), before);

    // A template keeps no network configuration, and releases what the instance held.
    let src = create(
        api,
        json!({ "name": "tsrc", "autostart": false, "env": { "K": "V" },
                "network_interfaces": [{}, own("172.30.5.2/24", "custtap0")] }),
    );
    let pool_addr = src["private_ip"].as_str().unwrap().to_string();
    let (code, answer) = api.post("/v1/instances/templates", &json!([{ "name": "tsrc" }]));
    assert_envelope("template", code, &answer);
    assert_eq!(code, 200, "{answer}");
    let template = item(&answer);
    assert_eq!(template["state"], "template");
    assert_eq!(template["network_interfaces"], json!([]));
    assert_eq!(template["private_ip"], Value::Null);
    assert_eq!(template["gateway"], Value::Null);
    assert_eq!(template["nameserver"], Value::Null);
    let routes =
        String::from_utf8_lossy(&world.topo.host.exec(&["ip", "route"]).stdout).into_owned();
    assert!(!routes.contains(&format!("{pool_addr} ")), "{routes}");
    let (code, answer) = api.put("/v1/instances/tsrc/start");
    assert_eq!(code, 400, "a template does not start: {answer}");
    // Its own TAP device is free again.
    create(
        api,
        json!({ "name": "reuse", "autostart": false,
                "network_interfaces": [own("172.30.5.3/24", "custtap0")] }),
    );
    // Created from it: one pool interface, and the template's image, args and env.
    for (name, reference) in [
        ("fromt", json!("tsrc")),
        ("fromt2", json!({ "name": "tsrc" })),
    ] {
        let (code, answer) = api.post(
            "/v1/instances",
            &json!({ "name": name, "template": reference }),
        );
        assert_eq!(code, 200, "{answer}");
        let clone = item(&answer);
        assert_eq!(clone["state"], "running");
        assert_eq!(names(clone), [format!("{name}-eth0")]);
        assert_eq!(clone["network_interfaces"][0]["pool"], true);
        assert_eq!(clone["args"], src["args"]);
        assert_eq!(clone["env"], json!({ "K": "V" }));
    }

    // branch_from: one interface, stopped, works; the copy has its own pool interface.
    let b = create(
        api,
        json!({ "name": "b1", "autostart": false, "memory_mb": 200,
                "network_interfaces": [{ "name": "b1-only" }] }),
    );
    let (code, answer) = api.post(
        "/v1/instances",
        &json!({ "name": "br", "branch_from": "b1", "autostart": false }),
    );
    assert_eq!(code, 200, "{answer}");
    let branch = item(&answer);
    assert_eq!(branch["memory_mb"], 200);
    assert_eq!(names(branch), ["br-eth0"]);
    assert_ne!(branch["private_ip"], b["private_ip"]);

    // Checkpoints likewise, and an instance made from one.
    let (code, answer) = api.post(
        "/v1/instances/checkpoints",
        &json!([{ "name": "b1", "checkpoint_name": "b1-snap" }]),
    );
    assert_envelope("checkpoint", code, &answer);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(item(&answer)["name"], "b1-snap");
    assert_eq!(item(&answer)["state"], "template");
    assert_eq!(item(&answer)["network_interfaces"], json!([]));
    let (code, answer) = api.post(
        "/v1/instances",
        &json!({ "name": "fromck", "checkpoint": "b1-snap", "args": sleeper() }),
    );
    assert_eq!(code, 200, "{answer}");
    assert_eq!(item(&answer)["memory_mb"], 200);
    assert_eq!(names(item(&answer)), ["fromck-eth0"]);
    assert_eq!(item(&answer)["state"], "running");
}
