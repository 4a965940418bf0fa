//! The rest of the API: batch calls with per-item outcomes, waits, console output,
//! list filters, image forms, and the envelope of every failure.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{assert_envelope, console_when_started, create, item, items, World};
use crate::CONFIG;

#[test]
fn batch_calls_waits_lists_and_envelopes() {
    let test = "batch_calls_waits_lists_and_envelopes";
    let Some(world) = World::netns(test, "wca", CONFIG) else {
        return;
    };
    world.run(api_rest);
}

fn api_rest(world: &World) {
    let api = world.api();
    let a1 = create(api, json!({ "name": "a1", "autostart": false }));
    create(api, json!({ "name": "a2", "autostart": false }));
    let a3 = create(api, json!({ "name": "a3", "image": { "url": "base" } }));
    assert_eq!(a1["image"], "base");
    assert_eq!(a3["image"], "base");
    let a3_uuid = a3["uuid"].as_str().unwrap().to_string();
    let ghost = "00000000-0000-4000-8000-000000000000";

    // Batch start, stop and delete: each item on its own.
    let send = |method: &str, path: &str, body: Value| {
        let (code, answer) = api.raw(method, path, Some(&body.to_string()));
        assert_envelope(&format!("{method} {path}"), code, &answer);
        assert_eq!(code, 200, "{method} {path}: {answer}");
        answer
    };
    let answer = send(
        "PUT",
        "/v1/instances/start",
        json!([{ "name": "a1" }, { "name": "nobody" }]),
    );
    assert_eq!(answer["status"], "partial_success");
    let list = items(&answer);
    assert_eq!(
        (
            list[0]["name"].clone(),
            list[0]["status"].clone(),
            list[0]["previous_state"].clone()
        ),
        (json!("a1"), json!("success"), json!("stopped"))
    );
    assert_eq!(list[0]["state"], "running");
    assert_eq!(
        list[1],
        json!({ "status": "error", "name": "nobody", "error": 404,
                "message": "No instance with uuid or name 'nobody'" })
    );
    assert_eq!(
        answer["message"],
        "1 of 2 items failed; the first: No instance with uuid or name 'nobody'"
    );
    let answer = send(
        "PUT",
        "/v1/instances/stop",
        json!([{ "uuid": ghost }, { "name": "a1" }]),
    );
    assert_eq!(answer["status"], "partial_success");
    assert_eq!(items(&answer)[0]["uuid"], ghost);
    assert_eq!(items(&answer)[0]["error"], 404);
    assert_eq!(items(&answer)[1]["state"], "stopped");
    assert_eq!(items(&answer)[1]["previous_state"], "running");
    let answer = send(
        "DELETE",
        "/v1/instances",
        json!([{ "name": "a2" }, { "name": "nobody" }]),
    );
    assert_eq!(answer["status"], "partial_success");
    assert_eq!(items(&answer)[0]["previous_state"], "stopped");
    assert_eq!(api.get("/v1/instances/a2").0, 404);
    let answer = send("DELETE", "/v1/instances", json!([{ "name": "nobody" }]));
    assert_eq!(answer["status"], "error");
    assert_eq!(answer["message"], "No instance with uuid or name 'nobody'");
    assert_eq!(answer["errors"], json!([{ "status": 404 }]));
    let answer = send("PUT", "/v1/instances/start", json!({ "name": "a1" }));
    assert_eq!(
        answer["status"], "success",
        "a single object is a list of one"
    );

    // Waits: batch and single, reached, reached later, and timed out (item error 408).
    let answer = send(
        "GET",
        "/v1/instances/wait",
        json!([{ "name": "a3", "state": "running", "timeout_ms": 1000 },
               { "name": "a1", "timeout_ms": 5000 },
               { "uuid": a3_uuid, "state": "stopped", "timeout_ms": 200 }]),
    );
    assert_eq!(answer["status"], "partial_success");
    let list = items(&answer);
    assert_eq!(list[0]["state"], "running");
    assert_eq!(list[1]["state"], "running");
    assert_eq!(list[2]["error"], 408);
    assert_eq!(
        list[2]["message"],
        "Timed out after 200 ms waiting for instance 'a3' to be stopped; it is running"
    );
    let started = Instant::now();
    let (code, answer) = api.get("/v1/instances/a3/wait?state=stopped&timeout_ms=300");
    assert_envelope("wait timeout", code, &answer);
    assert_eq!(
        (code, &answer["status"]),
        (200, &json!("error")),
        "{answer}"
    );
    assert_eq!(item(&answer)["error"], 408);
    assert_eq!(answer["errors"], json!([{ "status": 408 }]));
    assert!(started.elapsed() < Duration::from_secs(5));
    let waiter = {
        let api = api.clone();
        std::thread::spawn(move || api.get("/v1/instances/a3/wait?state=stopped&timeout_ms=20000"))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(api.put("/v1/instances/a3/stop").0, 200);
    let (code, answer) = waiter.join().unwrap();
    assert_eq!(
        (code, &answer["status"]),
        (200, &json!("success")),
        "{answer}"
    );
    assert_eq!(item(&answer)["state"], "stopped");
    assert_eq!(
        (
            item(&answer)["uuid"].as_str(),
            item(&answer)["name"].as_str()
        ),
        (Some(a3_uuid.as_str()), Some("a3"))
    );
    let (code, answer) = api.get("/v1/instances/a3/wait?state=asleep");
    assert_envelope("bad state", code, &answer);
    assert_eq!(code, 400, "{answer}");
    let (code, _) = api.get("/v1/instances/nobody/wait?timeout_ms=10");
    assert_eq!(code, 404);

    // Console output, single and batch.
    console_when_started(api, "a1");
    let answer = send(
        "GET",
        "/v1/instances/log",
        json!([{ "name": "a1", "offset": 0, "limit": 65536 }, { "name": "nobody" }]),
    );
    assert_eq!(answer["status"], "partial_success");
    assert!(decode(&items(&answer)[0]["output"]).contains("weft-guest: app start"));
    assert_eq!(items(&answer)[1]["error"], 404);
    let (code, answer) = api.get("/v1/instances/a1/log?offset=-20&limit=10");
    assert_eq!(code, 200, "{answer}");
    assert_eq!(decode(&item(&answer)["output"]).len(), 10);

    // List filters.
    let listed = |query: &str| -> Vec<String> {
        let (code, answer) = api.get(&format!("/v1/instances{query}"));
        assert_envelope(query, code, &answer);
        assert_eq!(code, 200, "{answer}");
        items(&answer)
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(sorted(listed("")), ["a1", "a3"]);
    assert_eq!(listed("?name=a3"), ["a3"]);
    assert_eq!(sorted(listed("?name=a1,a3,nobody")), ["a1", "a3"]);
    assert_eq!(listed(&format!("?uuid={a3_uuid}")), ["a3"]);
    assert_eq!(listed(&format!("?uuid={ghost}")), Vec::<String>::new());
    let (code, answer) = api.get("/v1/instances?colour=red");
    assert_envelope("bad filter", code, &answer);
    assert_eq!(code, 400);

    // Images by name and by url; nothing else.
    for (image, text) in [
        (
            json!({ "url": 5 }),
            "Invalid image: expected a string or an object with 'url'",
        ),
        (json!({ "url": "base", "tag": "x" }), "Unknown member 'tag'"),
        (
            json!(["base"]),
            "Invalid image: expected a string or an object with 'url'",
        ),
    ] {
        let (code, answer) = api.post(
            "/v1/instances",
            &json!({ "name": "img", "image": image, "autostart": false }),
        );
        assert_envelope("image", code, &answer);
        assert_eq!(
            (code, answer["message"].as_str()),
            (400, Some(text)),
            "{image}"
        );
    }

    // Every failure the framework answers is in the envelope too.
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(300 * 1024));
    let failures: Vec<(&str, &str, Option<&str>, u16)> = vec![
        ("PATCH", "/v1/healthz", None, 405),
        ("DELETE", "/v1/instances/a1/start", None, 405),
        ("POST", "/v1/instances/wait", Some("[]"), 405),
        ("POST", "/v1/instances", Some(&big), 413),
        ("GET", "/v1/instances/%FF%FE", None, 400),
        ("GET", "/v1/nothing/here", None, 404),
        ("POST", "/v1/instances", Some("{\"name\": "), 400),
        ("GET", "/v1/instances/wait", None, 400),
    ];
    for (method, path, body, status) in failures {
        let (code, answer) = api.raw(method, path, body);
        assert_envelope(&format!("{method} {path}"), code, &answer);
        assert_eq!(code, status, "{method} {path}: {answer}");
        assert_eq!(answer["status"], "error");
    }
    let (code, answer) = api.with_token("").get("/v1/instances");
    assert_envelope("no token", code, &answer);
    assert_eq!(code, 401);
    let (code, answer) = api.get("/v1/healthz");
    assert_envelope("health", code, &answer);

    // Done with: every instance goes in one batch call.
    let answer = send(
        "DELETE",
        "/v1/instances",
        json!([{ "name": "a1" }, { "uuid": a3_uuid }]),
    );
    assert_eq!(answer["status"], "success");
    assert_eq!(listed(""), Vec::<String>::new());
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn decode(output: &Value) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(output.as_str().unwrap_or_default())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}
