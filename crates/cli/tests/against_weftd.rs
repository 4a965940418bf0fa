//! `weft` against a real weftd in test namespaces: every command, the `--net` grammar end to
//! end (pool and own TAP devices; refusals only weftd can make, shown verbatim), each output
//! format and the exit codes.
//!
//! Needs root, `/dev/net/tun` and `ip`; without them the test says why and passes, except
//! under `CI=true`, where it fails.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::weftd::{fake_images, start_weftd, Cli};
use weft_testkit::{privileged_or_skip, Topology};

fn tag() -> String {
    format!("wcli{}", std::process::id() % 100_000)
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn cli_against_weftd() {
    if !privileged_or_skip("cli_against_weftd") {
        return;
    }
    let topo = Topology::new(&tag());
    topo.add_tap("custtap0", Some("custbr0"));
    topo.add_tap("custtap1", None);
    let scratch = tempfile::tempdir().unwrap();
    let images = fake_images(scratch.path());
    let weftd = start_weftd(&topo.host, &images);
    let home = scratch.path().join("home");
    let cli = Cli::new(&topo.host, &home);

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        creates_and_shows(&cli);
        net_refusals(&cli);
        relays(&cli);
        lifecycle(&cli);
        raw_api_login_and_exit_codes(&cli, &home);
    }));
    if let Err(panic) = result {
        eprintln!("weftd's log:\n{}", weftd.log());
        std::panic::resume_unwind(panic);
    }
}

/// Pool and own interfaces through `--net`, and every way of showing them.
fn creates_and_shows(cli: &Cli) {
    let created = cli.json(&[
        "instance",
        "create",
        "base",
        "--name",
        "web",
        "--no-start",
        "--memory",
        "96",
        "--env",
        "ROLE=web",
        "--net",
        "",
        "--net",
        "tap=custtap0,ip=172.30.5.2/24,name=db0,autoconfig=false",
        "--",
        "/bin/sh",
        "-c",
        "echo hello",
    ]);
    assert_eq!(created["name"], "web");
    assert_eq!(created["state"], "stopped");
    assert_eq!(created["memory_mb"], 96);
    assert_eq!(created["env"], json!({"ROLE": "web"}));
    assert_eq!(created["args"], json!(["/bin/sh", "-c", "echo hello"]));
    let ifaces = &created["network_interfaces"];
    assert_eq!(names(ifaces), ["web-eth0", "db0"]);
    assert_eq!(ifaces[0]["pool"], true);
    assert_eq!(ifaces[1]["pool"], false);
    assert_eq!(ifaces[1]["tap_name"], "custtap0");
    assert_eq!(ifaces[1]["ip"], "172.30.5.2/24");
    assert_eq!(ifaces[1]["autoconfig"], false);

    // One more, with own gateway and nameserver; the default single pool interface.
    let other = cli.json(&[
        "i",
        "create",
        "base",
        "--name",
        "api",
        "--no-start",
        "--net",
        "tap=custtap1,ip=172.30.6.2/24",
        "--gateway",
        "172.30.6.1",
        "--nameserver",
        "172.30.6.1",
    ]);
    assert_eq!(other["gateway"], "172.30.6.1");
    assert_eq!(other["nameserver"], "172.30.6.1");
    let plain = cli.json(&["i", "create", "base", "--name", "plain", "--no-start"]);
    assert_eq!(names(&plain["network_interfaces"]), ["plain-eth0"]);

    // Lists in three formats, and the shortcut.
    let table = cli.ok(&["instance", "ls"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME   STATE    IMAGE  PRIVATE IP"),
        "{table}"
    );
    for name in ["web ", "api ", "plain "] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(name) && l.contains("stopped")),
            "{table}"
        );
    }
    assert_eq!(cli.ok(&["ps"]), table);
    let listed = cli.json(&["i", "ls"]);
    let mut all = names(&listed);
    all.sort();
    assert_eq!(all, ["api", "plain", "web"]);
    let yaml = cli.ok(&["i", "ls", "-o", "yaml"]);
    assert!(
        yaml.contains("- uuid: ") || yaml.contains("\n  uuid: "),
        "{yaml}"
    );
    assert!(yaml.contains("name: web\n"), "{yaml}");

    // One instance, by name and by uuid.
    let page = cli.ok(&["i", "get", "web"]);
    assert!(page.starts_with("Name:"), "{page}");
    assert!(page.contains("\nState:         stopped\n"), "{page}");
    let db0 = page
        .lines()
        .find(|l| l.starts_with("db0 "))
        .expect("db0 row");
    let cells: Vec<&str> = db0.split_whitespace().collect();
    assert_eq!(cells[1..3], ["no", "172.30.5.2/24"], "{page}");
    assert_eq!(cells[4..7], ["custtap0", "own", "no"], "{page}");
    let uuid = created["uuid"].as_str().unwrap();
    assert_eq!(cli.json(&["i", "get", uuid])["name"], "web");
    assert!(cli
        .ok(&["i", "get", "web", "-o", "yaml"])
        .contains("tap_name: custtap0\n"));

    // The account's interfaces.
    let nets = cli.ok(&["net", "ls"]);
    assert!(nets.starts_with("NAME "), "{nets}");
    let row = |name: &str| {
        nets.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{nets}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("web-eth0")[1..3], ["web", "yes"]);
    assert_eq!(row("web-eth0")[6], "pool");
    assert_eq!(row("db0")[1..4], ["web", "no", "172.30.5.2/24"]);
    assert_eq!(row("db0")[5..8], ["custtap0", "own", "no"]);
    let net_json = cli.json(&["net", "ls"]);
    assert_eq!(net_json.as_array().unwrap().len(), 4);
    let one = cli.json(&["net", "get", "db0"]);
    assert_eq!(one["instance"], "web");
    assert_eq!(one["primary"], false);
    assert_eq!(one["relay_for"], json!([]));
    assert!(cli
        .ok(&["net", "get", "api-eth0", "-o", "yaml"])
        .contains("tap_name: custtap1\n"));
    assert!(cli
        .ok(&["net", "get", "web-eth0"])
        .contains("Source:      pool\n"));
    let missing = cli.run(&["net", "get", "nosuch0"]);
    assert_eq!(missing.code, 3);
}

/// `--net` mistakes: the CLI's own (exit 2, nothing sent) and weftd's (exit 3, its message
/// as it is).
fn net_refusals(cli: &Cli) {
    let before = cli.json(&["i", "ls"]).as_array().unwrap().len();

    let local = [
        ("mtu=9000", "Unknown --net key 'mtu' (known: name, ip, tap, autoconfig, relay, relay-dns)"),
        ("ip=172.30.5.9/24", "Network interface must specify an IP address when a TAP device is provided and vice versa"),
        ("tap=custtap1", "Network interface must specify an IP address when a TAP device is provided and vice versa"),
        ("ip=172.30.5.9/40,tap=custtap1", "Invalid network_interfaces[0].ip '172.30.5.9/40': '40' is not a prefix length between 0 and 32"),
        ("autoconfig=maybe", "Invalid --net autoconfig 'maybe': expected true or false"),
        ("name=x,name=y", "--net key 'name' is given more than once in 'name=x,name=y'"),
    ];
    for (spec, message) in local {
        let out = cli.run(&["i", "create", "base", "--no-start", "--net", spec]);
        assert_eq!(out.code, 2, "{spec}: {out:?}");
        assert_eq!(out.stderr, format!("error: {message}\n"), "{spec}");
    }
    let five = cli.run(&[
        "i", "create", "base", "--net", "", "--net", "", "--net", "", "--net", "", "--net", "",
    ]);
    assert_eq!(five.code, 2);
    assert_eq!(
        five.stderr,
        "error: network_interfaces must hold 1 to 4 interfaces, not 5\n"
    );

    // What only weftd knows: its pools, the host's devices, the account's names.
    let remote = [
        (
            "ip=10.100.7.2/24,tap=custtap1",
            Some("Network interface IP address cannot be from the platform's address pool"),
        ),
        (
            "ip=172.30.7.2/24,tap=wt3",
            Some("Network interface TAP device cannot be from the platform's device pool"),
        ),
        ("ip=172.30.7.2/24,tap=nosuch0", None),
        ("ip=172.30.7.2/24,tap=custbr0", None),
        ("ip=172.30.7.2/24,tap=custtap0", None),
        ("name=db0", None),
        ("relay=nosuch-eth0", None),
    ];
    for (spec, exact) in remote {
        let out = cli.run(&[
            "i",
            "create",
            "base",
            "--name",
            "refused",
            "--no-start",
            "--net",
            spec,
        ]);
        assert_eq!(out.code, 3, "{spec}: {out:?}");
        let message = out
            .stderr
            .strip_prefix("error: ")
            .unwrap()
            .trim_end()
            .to_string();
        if let Some(exact) = exact {
            assert_eq!(message, exact, "{spec}");
        }
        // The same request straight to the API gets the same words.
        let body = json!({"name": "refused", "image": "base", "autostart": false,
                          "network_interfaces": [weft_cli::netspec::parse(spec).unwrap()]});
        let raw = cli.run(&["api", "/v1/instances", "-d", &body.to_string()]);
        assert_eq!(raw.code, 3, "{spec}: {raw:?}");
        let answer: Value = serde_json::from_str(&raw.stdout).unwrap();
        assert_eq!(answer["message"], message.as_str(), "{spec}");
    }

    let after = cli.json(&["i", "ls"]).as_array().unwrap().len();
    assert_eq!(before, after, "refused creates left an instance behind");
}

/// An interface relayed through another instance's, as `weft net` shows it; the relay
/// cannot be deleted while it is in use (weftd's message, verbatim).
fn relays(cli: &Cli) {
    cli.ok(&["i", "create", "base", "--name", "shield", "--no-start"]);
    let client = cli.json(&[
        "i",
        "create",
        "base",
        "--name",
        "client",
        "--no-start",
        "--net",
        "relay=shield-eth0,relay-dns=false",
    ]);
    assert_eq!(
        client["network_interfaces"][0]["relay"],
        json!({"name": "shield-eth0", "relay_dns": false})
    );
    assert_eq!(
        cli.json(&["net", "get", "shield-eth0"])["relay_for"],
        json!(["client-eth0"])
    );
    let nets = cli.ok(&["net", "ls"]);
    let line = |name: &str| {
        nets.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{nets}"))
            .to_string()
    };
    assert!(
        line("client-eth0").ends_with("shield-eth0 (no dns)  -"),
        "{nets}"
    );
    assert!(line("shield-eth0").ends_with("  client-eth0"), "{nets}");

    let refused = cli.run(&["i", "rm", "shield"]);
    assert_eq!(refused.code, 3, "{refused:?}");
    let raw = cli.run(&["api", "/v1/instances/shield", "-X", "DELETE"]);
    let answer: Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(
        refused.stderr,
        format!("error: {}\n", answer["message"].as_str().unwrap())
    );
    assert!(refused.stderr.contains("client"), "{refused:?}");
    cli.ok(&["i", "rm", "client"]);
    cli.ok(&["i", "rm", "shield"]);
}

/// start, stop, wait, logs and rm, of one and of several instances.
fn lifecycle(cli: &Cli) {
    assert_eq!(
        cli.ok(&["i", "wait", "web", "--state", "stopped", "--timeout", "5s"]),
        "web is stopped\n"
    );
    let late = cli.run(&["i", "wait", "plain", "--timeout", "1s"]);
    assert_eq!(late.code, 3, "{late:?}");
    assert_eq!(
        late.stderr,
        "error: Timed out after 1000 ms waiting for instance 'plain' to be running; it is stopped\n"
    );
    // Nothing ran yet: no console output.
    assert_eq!(cli.ok(&["i", "logs", "plain"]), "");
    assert_eq!(cli.ok(&["i", "logs", "plain", "--tail", "5"]), "");

    booting_lifecycle(cli);
    let stopped = cli.ok(&["i", "stop", "web", "api"]);
    assert!(
        stopped.starts_with("NAME  STATE    PREVIOUS STATE\n"),
        "{stopped}"
    );

    let removed = cli.run(&["i", "rm", "web", "nosuch", "api"]);
    assert_eq!(removed.code, 3, "{removed:?}");
    assert!(removed.stdout.starts_with("NAME  UUID"), "{removed:?}");
    assert!(removed.stderr.starts_with("error: nosuch: "), "{removed:?}");
    let single = cli.run(&["instance", "delete", "plain", "-o", "json"]);
    assert_eq!(single.code, 0, "{single:?}");
    let gone: Value = serde_json::from_str(&single.stdout).unwrap();
    assert_eq!(gone[0]["name"], "plain");
    assert_eq!(cli.json(&["i", "ls"]), json!([]));
    assert_eq!(
        cli.ok(&["net", "ls"]).lines().count(),
        1,
        "only the header is left"
    );
}

/// With a driver that boots: create --wait, console output, stop, start --wait.
fn booting_lifecycle(cli: &Cli) {
    let created = cli.json(&[
        "i",
        "create",
        "base",
        "--name",
        "live",
        "--wait",
        "--timeout",
        "30s",
        "--",
        "/bin/sh",
        "-c",
        "echo weft-cli-marker; exec sleep 600",
    ]);
    assert_eq!(created["state"], "running");
    let logged = weft_testkit::wait_for(
        std::time::Duration::from_secs(15),
        std::time::Duration::from_millis(200),
        || {
            cli.ok(&["i", "logs", "live"])
                .contains("weft-cli-marker")
                .then_some(())
        },
    );
    assert!(
        logged.is_some(),
        "no marker in {}",
        cli.ok(&["i", "logs", "live"])
    );
    assert!(cli
        .ok(&["i", "logs", "live", "--tail", "200"])
        .contains("weft-cli-marker"));

    let stopped = cli.ok(&["i", "stop", "live"]);
    assert!(stopped.contains("live  stopped  running"), "{stopped}");
    // Stopped: --follow prints what there is and ends.
    assert!(cli
        .ok(&["i", "logs", "live", "--follow"])
        .contains("weft-cli-marker"));
    let started = cli.ok(&["i", "start", "live", "--wait"]);
    assert!(started.contains("live  running  stopped"), "{started}");
    assert_eq!(cli.ok(&["i", "rm", "live"]).lines().count(), 2);
}

/// `weft api`, `weft login` and the exit codes of refusals and of an unreachable weftd.
fn raw_api_login_and_exit_codes(cli: &Cli, home: &Path) {
    let health = cli.json(&["api", "/v1/healthz"]);
    assert_eq!(health["status"], "success");
    let unknown = cli.run(&[
        "api",
        "/v1/instances",
        "-X",
        "POST",
        "-d",
        r#"{"image": "base", "colour": 1}"#,
    ]);
    assert_eq!(unknown.code, 3);
    assert_eq!(unknown.stderr, "error: Unknown member 'colour'\n");
    let piped = cli.bare(
        &[
            "--url",
            &cli.url,
            "--token",
            &cli.token,
            "api",
            "/v1/instances",
            "-d",
            "-",
        ],
        Some(r#"{"image": "base", "name": "piped", "autostart": false}"#),
    );
    assert_eq!(piped.code, 0, "{piped:?}");
    assert_eq!(cli.json(&["i", "rm", "piped"])[0]["name"], "piped");

    // Refusals: unknown instance, bad token.
    let nosuch = cli.run(&["i", "get", "nosuch"]);
    assert_eq!(nosuch.code, 3);
    let bad_token = cli.bare(&["--url", &cli.url, "--token", "wrong", "ps"], None);
    assert_eq!(bad_token.code, 3);
    assert_eq!(bad_token.stderr, "error: Invalid token\n");
    let no_token = cli.bare(&["--url", &cli.url, "ps"], None);
    assert_eq!(no_token.code, 3);

    // Service groups: create, list, show, a refused handler combination in the API's own
    // words, delete.
    let group = cli.json(&["service", "create", "tcp9000", "-p", "9000:8080"]);
    assert_eq!(group["name"], "tcp9000", "{group}");
    assert_eq!(group["services"][0]["port"], 9000, "{group}");
    assert_eq!(group["services"][0]["destination_port"], 8080, "{group}");
    assert_eq!(group["services"][0]["handlers"], json!([]), "{group}");
    let listed = cli.ok(&["service", "ls"]);
    assert!(listed.starts_with("NAME "), "{listed}");
    assert!(
        listed.contains("tcp9000") && listed.contains("9000:8080"),
        "{listed}"
    );
    assert_eq!(
        cli.json(&["service", "get", "tcp9000"])["uuid"],
        group["uuid"]
    );
    let refused = cli.run(&["service", "create", "wrong", "-p", "8080:80/http"]);
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(
        refused
            .stderr
            .starts_with("error: Invalid services[0]: handlers [\"http\"]"),
        "{refused:?}"
    );
    assert_eq!(cli.run(&["service", "get", "wrong"]).code, 3);
    let removed = cli.ok(&["service", "rm", "tcp9000"]);
    assert!(removed.contains("tcp9000"), "{removed}");
    assert_eq!(cli.run(&["service", "get", "tcp9000"]).code, 3);

    // Nothing listens on 7071: exit 4, naming the address.
    let away = cli.bare(&["--url", "http://127.0.0.1:7071", "ps"], None);
    assert_eq!(away.code, 4);
    assert!(
        away.stderr
            .starts_with("error: cannot reach weftd at http://127.0.0.1:7071: "),
        "{away:?}"
    );

    // A saved profile, then no flags at all.
    let login = cli.bare(&["login", "--url", &cli.url, "--token", &cli.token], None);
    assert_eq!(login.code, 0, "{login:?}");
    assert!(home.join("weft/config.toml").is_file());
    let listed = cli.bare(&["ps"], None);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(listed.stdout.starts_with("NAME "));
}
