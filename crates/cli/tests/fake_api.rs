//! The CLI against a stand-in for weftd: request shapes, answers it cannot get from the
//! weftd of today (batch forms, the wait endpoint, service groups), profiles and exit codes.
//! No privileges needed.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Value};
use support::{refusal, run, success, weft_binary, weft_command, FakeApi, Run};

fn weft(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = weft_command(Command::new(weft_binary()), home);
    cmd.envs(env.iter().copied());
    run(cmd, args, None)
}

fn instance(name: &str, state: &str) -> Value {
    json!({"status": "success", "uuid": format!("{name}-uuid"), "name": name, "state": state,
           "image": "base", "memory_mb": 128, "vcpus": 1, "network_interfaces": []})
}

#[test]
fn profiles_and_precedence() {
    let api = FakeApi::start(|_| success("instances", json!([])));
    let home = tempfile::tempdir().unwrap();
    let home = home.path();

    let saved = weft(
        home,
        &[],
        &["login", "--url", &api.url, "--token", "t-profile"],
    );
    assert_eq!(saved.code, 0, "{saved:?}");
    let file = home.join("weft/config.toml");
    assert!(saved.stdout.contains(&file.display().to_string()));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the config file holds tokens");

    let auth_of_last = |api: &FakeApi| api.requests().last().unwrap().auth.clone().unwrap();
    assert_eq!(weft(home, &[], &["ps"]).code, 0);
    assert_eq!(auth_of_last(&api), "Bearer t-profile");
    assert_eq!(weft(home, &[("WEFT_TOKEN", "t-env")], &["ps"]).code, 0);
    assert_eq!(auth_of_last(&api), "Bearer t-env");
    let flag = weft(
        home,
        &[("WEFT_TOKEN", "t-env")],
        &["ps", "--token", "t-flag"],
    );
    assert_eq!(flag.code, 0);
    assert_eq!(auth_of_last(&api), "Bearer t-flag");

    // A second profile points nowhere; the environment's URL beats it.
    let other = weft(
        home,
        &[],
        &[
            "login",
            "--profile",
            "other",
            "--url",
            "http://127.0.0.1:1",
            "--token",
            "t2",
        ],
    );
    assert_eq!(other.code, 0);
    let nowhere = weft(home, &[], &["--profile", "other", "ps"]);
    assert_eq!(nowhere.code, 4, "{nowhere:?}");
    assert!(nowhere
        .stderr
        .starts_with("error: cannot reach weftd at http://127.0.0.1:1: "));
    let env_url = weft(
        home,
        &[("WEFT_URL", &api.url)],
        &["--profile", "other", "ps"],
    );
    assert_eq!(env_url.code, 0, "{env_url:?}");
    assert_eq!(auth_of_last(&api), "Bearer t2");
    let by_env = weft(home, &[("WEFT_PROFILE", "other")], &["ps"]);
    assert_eq!(by_env.code, 4);

    let missing = weft(home, &[], &["--profile", "staging", "ps"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("No profile 'staging'"));
    let incomplete = weft(home, &[], &["login", "--url", &api.url]);
    assert_eq!(incomplete.code, 2);
}

#[test]
fn several_instances_fall_back_to_one_call_each() {
    let api = FakeApi::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("DELETE", "/v1/instances") => (405, String::new()),
        ("DELETE", "/v1/instances/a") => success(
            "instances",
            json!([{"status": "success", "uuid": "a-uuid", "name": "a", "previous_state": "stopped"}]),
        ),
        ("DELETE", "/v1/instances/b") => refusal(404, "No instance 'b'"),
        _ => refusal(500, "unexpected"),
    });
    let home = tempfile::tempdir().unwrap();
    let out = weft(
        home.path(),
        &[],
        &["--url", &api.url, "instance", "rm", "a", "b"],
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(
        out.stdout,
        "NAME  UUID    PREVIOUS STATE\na     a-uuid  stopped\n"
    );
    assert_eq!(out.stderr, "error: b: No instance 'b'\n");
    assert_eq!(
        api.calls(),
        [
            "DELETE /v1/instances",
            "DELETE /v1/instances/a",
            "DELETE /v1/instances/b"
        ]
    );
    assert_eq!(
        serde_json::from_str::<Value>(&api.requests()[0].body).unwrap(),
        json!([{"name": "a"}, {"name": "b"}])
    );
}

#[test]
fn several_instances_use_the_batch_form_when_served() {
    let api = FakeApi::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", "/v1/instances/stop") => success(
            "instances",
            json!([
                {"status": "success", "name": "a", "uuid": "a-uuid", "state": "stopped", "previous_state": "running"},
                {"status": "success", "name": "b", "uuid": "b-uuid", "state": "stopped", "previous_state": "running"}
            ]),
        ),
        _ => refusal(500, "unexpected"),
    });
    let home = tempfile::tempdir().unwrap();
    let uuid = "4b4c0f5e-3c1e-4a53-9d1a-0123456789ab";
    let out = weft(
        home.path(),
        &[],
        &["--url", &api.url, "i", "stop", "a", uuid, "-o", "json"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let items: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 2);
    assert_eq!(api.calls(), ["PUT /v1/instances/stop"]);
    assert_eq!(
        serde_json::from_str::<Value>(&api.requests()[0].body).unwrap(),
        json!([{"name": "a"}, {"uuid": uuid}])
    );
}

#[test]
fn wait_uses_the_endpoint_when_there_is_one() {
    let api = FakeApi::start(|r| match r.path.as_str() {
        "/v1/instances/web/wait?state=running&timeout_ms=5000" => success(
            "instances",
            json!([{"status": "success", "name": "web", "state": "running"}]),
        ),
        "/v1/instances/web" => success("instances", json!([instance("web", "running")])),
        _ => refusal(500, "unexpected"),
    });
    let home = tempfile::tempdir().unwrap();
    let out = weft(
        home.path(),
        &[],
        &["--url", &api.url, "i", "wait", "web", "--timeout", "5s"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "web is running\n");
    assert_eq!(api.calls().len(), 2);
}

#[test]
fn wait_polls_without_the_endpoint() {
    let gets = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&gets);
    let api = FakeApi::start(move |r| match r.path.as_str() {
        p if p.contains("/wait") => refusal(404, &format!("No such endpoint: {p}")),
        "/v1/instances/web" => {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let state = if n < 2 { "starting" } else { "running" };
            success("instances", json!([instance("web", state)]))
        }
        "/v1/instances/db" => success("instances", json!([instance("db", "stopped")])),
        _ => refusal(500, "unexpected"),
    });
    let home = tempfile::tempdir().unwrap();
    let out = weft(
        home.path(),
        &[],
        &["--url", &api.url, "i", "wait", "web", "-o", "json"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap()["state"],
        "running"
    );
    assert_eq!(gets.load(Ordering::SeqCst), 3);

    let late = weft(
        home.path(),
        &[],
        &["--url", &api.url, "i", "wait", "db", "--timeout", "700ms"],
    );
    assert_eq!(late.code, 3, "{late:?}");
    assert_eq!(
        late.stderr,
        "error: Timed out after 700 ms waiting for instance 'db' to be running; it is stopped\n"
    );
}

/// Serves `text` as the console of `web`, with weftd's offset and limit rules.
fn log_server(text: &'static str) -> FakeApi {
    FakeApi::start(move |r| {
        if r.path == "/v1/instances/web" {
            return success("instances", json!([instance("web", "stopped")]));
        }
        let Some(query) = r.path.strip_prefix("/v1/instances/web/log?") else {
            return refusal(500, "unexpected");
        };
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap()
                .parse::<i64>()
                .unwrap()
        };
        let (offset, limit) = (param("offset"), param("limit") as u64);
        let available = text.len() as u64;
        let start = if offset < 0 {
            available.saturating_sub(offset.unsigned_abs())
        } else {
            (offset as u64).min(available)
        };
        let end = (start + limit).min(available);
        let output = base64::engine::general_purpose::STANDARD
            .encode(&text.as_bytes()[start as usize..end as usize]);
        success(
            "instances",
            json!([{"status": "success", "name": "web", "output": output,
                    "range": {"start": start, "end": end}, "available": {"start": 0, "end": available}}]),
        )
    })
}

#[test]
fn logs_are_decoded() {
    let api = log_server("boot\neth0 10.100.0.1/16\neth1 172.30.5.2/24\nready\n");
    let home = tempfile::tempdir().unwrap();
    let all = weft(home.path(), &[], &["--url", &api.url, "i", "logs", "web"]);
    assert_eq!(all.code, 0, "{all:?}");
    assert_eq!(
        all.stdout,
        "boot\neth0 10.100.0.1/16\neth1 172.30.5.2/24\nready\n"
    );

    let tail = weft(
        home.path(),
        &[],
        &["--url", &api.url, "i", "logs", "web", "--tail", "2"],
    );
    assert_eq!(tail.stdout, "eth1 172.30.5.2/24\nready\n");

    // The instance is stopped: --follow prints what there is and ends.
    let follow = weft(
        home.path(),
        &[],
        &["--url", &api.url, "i", "logs", "web", "-f", "-n", "1"],
    );
    assert_eq!(follow.code, 0, "{follow:?}");
    assert_eq!(follow.stdout, "ready\n");
}

#[test]
fn service_groups() {
    let group = json!({"status": "success", "uuid": "g-uuid", "name": "web",
        "services": [{"port": 443, "destination_port": 8080, "handlers": ["tls", "http"]}],
        "instances": [{"name": "a"}], "domains": [{"fqdn": "web.example.com"}]});
    let answer = group.clone();
    let api = FakeApi::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/v1/services") | ("GET", "/v1/services/web") | ("GET", "/v1/services") => {
            success("service_groups", json!([answer]))
        }
        ("DELETE", "/v1/services/web") => success("service_groups", json!([answer])),
        ("DELETE", "/v1/services/old") => refusal(404, "No service group 'old'"),
        _ => refusal(500, "unexpected"),
    });
    let home = tempfile::tempdir().unwrap();
    let w = |args: &[&str]| {
        let mut full = vec!["--url", api.url.as_str()];
        full.extend_from_slice(args);
        weft(home.path(), &[], &full)
    };

    let created = w(&[
        "service",
        "create",
        "web",
        "-p",
        "443:8080/tls+http",
        "-o",
        "json",
    ]);
    assert_eq!(created.code, 0, "{created:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&created.stdout).unwrap(),
        group
    );
    assert_eq!(
        serde_json::from_str::<Value>(&api.requests()[0].body).unwrap(),
        json!({"name": "web", "services": [{"port": 443, "destination_port": 8080, "handlers": ["tls", "http"]}]})
    );

    let listed = w(&["service", "ls"]);
    assert_eq!(
        listed.stdout,
        "NAME  PORTS              INSTANCES  DOMAINS\nweb   443:8080/tls+http  a          web.example.com\n"
    );
    let got = w(&["service", "get", "web", "-o", "yaml"]);
    assert!(got.stdout.contains("name: web\n"), "{got:?}");
    let shown = w(&["service", "get", "web"]);
    assert!(
        shown.stdout.contains("Ports:      443:8080/tls+http\n"),
        "{shown:?}"
    );

    let removed = w(&["service", "rm", "web", "old"]);
    assert_eq!(removed.code, 3);
    assert_eq!(removed.stdout, "NAME  UUID\nweb   g-uuid\n");
    assert_eq!(removed.stderr, "error: old: No service group 'old'\n");

    let bad = w(&["service", "create", "web", "-p", "443/quic"]);
    assert_eq!(bad.code, 2);
    assert_eq!(
        bad.stderr,
        "error: Invalid --port '443/quic': unknown handler 'quic' (known: tls, http, redirect)\n"
    );
}

#[test]
fn raw_api_requests() {
    let api = FakeApi::start(|r| match r.method.as_str() {
        "GET" => success("instances", json!([])),
        _ if r.body.contains("colour") => refusal(400, "Unknown member 'colour'"),
        _ => success("instances", json!([instance("web", "running")])),
    });
    let home = tempfile::tempdir().unwrap();
    let base = || weft_command(Command::new(weft_binary()), home.path());

    let listed = run(base(), &["--url", &api.url, "api", "/v1/instances"], None);
    assert_eq!(listed.code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&listed.stdout).unwrap()["status"],
        "success"
    );

    let file = home.path().join("body.json");
    std::fs::write(&file, r#"{"image": "base"}"#).unwrap();
    let at = format!("@{}", file.display());
    let from_file = run(
        base(),
        &["--url", &api.url, "api", "v1/instances", "-d", &at],
        None,
    );
    assert_eq!(from_file.code, 0, "{from_file:?}");
    let from_stdin = run(
        base(),
        &[
            "--url",
            &api.url,
            "api",
            "/v1/instances",
            "-X",
            "post",
            "-d",
            "-",
            "-o",
            "yaml",
        ],
        Some(r#"{"image": "base", "colour": 1}"#),
    );
    assert_eq!(from_stdin.code, 3, "{from_stdin:?}");
    assert!(from_stdin
        .stdout
        .contains("message: Unknown member 'colour'\n"));
    assert_eq!(from_stdin.stderr, "error: Unknown member 'colour'\n");

    let sent: Vec<String> = api
        .requests()
        .iter()
        .map(|r| format!("{} {} {}", r.method, r.path, r.body))
        .collect();
    assert_eq!(
        sent,
        [
            "GET /v1/instances ".to_string(),
            r#"POST /v1/instances {"image": "base"}"#.to_string(),
            r#"POST /v1/instances {"image": "base", "colour": 1}"#.to_string(),
        ]
    );
}

#[test]
fn local_net_checks_send_nothing() {
    let api = FakeApi::start(|_| refusal(500, "unexpected"));
    let home = tempfile::tempdir().unwrap();
    let out = weft(
        home.path(),
        &[],
        &[
            "--url",
            &api.url,
            "i",
            "create",
            "base",
            "--net",
            "tap=custtap0,mtu=9000",
        ],
    );
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: Unknown --net key 'mtu' (known: name, ip, tap, autoconfig, relay, relay-dns)\n"
    );
    assert!(api.calls().is_empty());
}

#[test]
fn completions() {
    let home = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = weft(home.path(), &[], &["completion", shell]);
        assert_eq!(out.code, 0);
        assert!(out.stdout.contains("instance"), "{shell}");
    }
}
