//! Hostile input on the API: bodies over the size limit refused before they are read,
//! deep JSON, odd Unicode and shell or path characters in names refused with messages that
//! name field and value, and the per-account rate limit of creates (429).

mod common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use serde_json::{json, Value};
use weft_testkit::{privileged_or_skip, Netns, Topology, Weftd};

use common::{assert_envelope, snapshot, tag, weftd_binary};

/// An images directory whose `base` is not bootable: nothing here boots a guest.
fn fake_images(dir: &std::path::Path) -> std::path::PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(images.join("base")).unwrap();
    std::fs::write(images.join("base/kernel"), b"not a kernel").unwrap();
    images
}

/// Sends raw HTTP from inside `ns` and returns what came back within five seconds.
fn raw_http(ns: &Netns, request: String) -> String {
    Netns::existing(ns.name()).enter(move || {
        let mut stream = std::net::TcpStream::connect(weft_testkit::weftd::LISTEN).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
}

#[test]
fn odd_and_oversized_input_is_refused_clearly() {
    if !privileged_or_skip("odd_and_oversized_input_is_refused_clearly") {
        return;
    }
    let topo = Topology::new(&tag("wodd"));
    let scratch = tempfile::tempdir().unwrap();
    let images = fake_images(scratch.path());
    let weftd = Weftd::start(&topo.host, &weftd_binary(), &images, "");
    let api = &weftd.api;
    let before = snapshot(&topo.host, &weftd);

    // A body announced at 1 GB is refused from its length, before any of it is sent.
    let started = std::time::Instant::now();
    let answer = raw_http(
        &topo.host,
        format!(
            "POST /v1/instances HTTP/1.1\r\nHost: weft\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{{",
            weft_testkit::weftd::TOKEN
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("The request body of 1000000000 bytes is larger than the limit"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "413 came late");
    // Without a token too: the limit comes first.
    let answer = raw_http(
        &topo.host,
        "POST /v1/services HTTP/1.1\r\nHost: weft\r\nContent-Length: 99999999\r\n\r\n".into(),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let big = json!({"image": "base", "args": ["x".repeat(300 * 1024)]}).to_string();
    let (code, answer) = api.raw("POST", "/v1/instances", Some(&big));
    assert_envelope("big body", code, &answer);
    assert_eq!(code, 413, "{answer}");

    let deep = format!(
        "{{\"image\": \"base\", \"env\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (code, answer) = api.raw("POST", "/v1/instances", Some(&deep));
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("recursion limit"),
        "{answer}"
    );

    let own = |tap: &str| json!({"network_interfaces": [{"ip": "172.30.5.2/24", "tap_name": tap}]});
    let with = |extra: Value| {
        let mut body = json!({"image": "base", "name": "web"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(json!({"name": "wéb"})), "Invalid name 'wéb'"),
        (with(json!({"name": "ＷＥＢ"})), "Invalid name 'ＷＥＢ'"),
        (
            with(json!({"name": "web\u{202e}"})),
            "Invalid name 'web\u{202e}'",
        ),
        (with(json!({"name": "a;reboot"})), "Invalid name 'a;reboot'"),
        (with(json!({"name": "$(id)"})), "Invalid name '$(id)'"),
        (with(json!({"name": "../x"})), "Invalid name '../x'"),
        (with(json!({"name": ""})), "Invalid name ''"),
        (
            with(own("../../x")),
            "Invalid network_interfaces[0].tap_name '../../x'",
        ),
        (
            with(own("$(reboot)")),
            "Invalid network_interfaces[0].tap_name '$(reboot)'",
        ),
        (
            with(own("tap;ls")),
            "Invalid network_interfaces[0].tap_name 'tap;ls'",
        ),
        (
            with(own("tap\u{0}")),
            "Invalid network_interfaces[0].tap_name 'tap\u{0}'",
        ),
        (
            with(own("täp0")),
            "Invalid network_interfaces[0].tap_name 'täp0'",
        ),
        (
            with(json!({"network_interfaces": [{"name": "eth/0"}]})),
            "Invalid network_interfaces[0].name 'eth/0'",
        ),
        (
            with(json!({"network_interfaces": [{"relay": {"name": "gw;x"}}]})),
            "gw;x",
        ),
        (
            with(json!({"image": "../../etc"})),
            "Invalid image '../../etc'",
        ),
        (
            with(json!({"env": {"A;B": "1"}})),
            "Invalid env key \"A;B\"",
        ),
        (
            with(json!({"args": ["/bin/sh", "a\u{7}b"]})),
            "Invalid args[1]",
        ),
    ];
    for (body, message) in &cases {
        let (code, answer) = api.post("/v1/instances", body);
        assert_envelope(&body.to_string(), code, &answer);
        assert!((400..500).contains(&code), "{body}: {code} {answer}");
        let text = answer["message"].as_str().unwrap_or_default();
        assert!(
            text.contains(message),
            "{body}: expected {message:?} in {text:?}"
        );
    }
    let (code, answer) = api.post(
        "/v1/services",
        &json!({"name": "a b", "services": [{"port": 8080, "handlers": []}]}),
    );
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("'a b'"),
        "{answer}"
    );

    assert_eq!(api.get("/v1/healthz").0, 200);
    assert!(!weftd.log().contains("panicked"), "weftd panicked");
    assert_eq!(
        snapshot(&topo.host, &weftd),
        before,
        "refused input changed host or store"
    );
}

#[test]
fn creates_are_rate_limited_per_account() {
    if !privileged_or_skip("creates_are_rate_limited_per_account") {
        return;
    }
    let topo = Topology::new(&tag("wlim"));
    let scratch = tempfile::tempdir().unwrap();
    let images = fake_images(scratch.path());
    let extra = r#"
[limits]
creates_per_second = 1
creates_burst = 3

[[accounts]]
name = "beta"
tokens = ["beta-token-0123456789abcdef"]
"#;
    let weftd = Weftd::start(&topo.host, &weftd_binary(), &images, extra);
    let api = &weftd.api;
    let beta = api.with_token("beta-token-0123456789abcdef");
    let body = json!({"image": "nope"});

    for _ in 0..3 {
        let (code, answer) = api.post("/v1/instances", &body);
        assert_eq!(code, 404, "{answer}");
    }
    let (code, answer) = api.post("/v1/instances", &body);
    assert_envelope("limited create", code, &answer);
    assert_eq!(code, 429, "{answer}");
    let text = answer["message"].as_str().unwrap();
    assert!(
        text.starts_with(
            "Too many creates: account 'acme' may create 1 instances per second (up to 3 at once)"
        ),
        "{text}"
    );
    // Other calls and other accounts are not limited.
    assert_eq!(api.get("/v1/instances").0, 200);
    assert_eq!(beta.post("/v1/instances", &body).0, 404);
    // A bad token is refused as such, not counted.
    assert_eq!(
        api.with_token("wrong-token-0123456789")
            .post("/v1/instances", &body)
            .0,
        401
    );
    // The bucket refills.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(api.post("/v1/instances", &body).0, 404);
    assert_eq!(api.post("/v1/instances", &body).0, 429);
}
