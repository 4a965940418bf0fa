//! The network shield end to end, with the netns driver: a shield instance (weft-shield as
//! its app, policy by env) and two sandboxes whose only interface names the shield's as its
//! relay, all made through weftd's API, in front of a test internet with an allowed server,
//! a denied one, an echo server and a DNS server. Checks run inside the sandboxes' network
//! namespaces: what they can reach, what the servers receive, what the shield logs, what
//! happens while the shield is stopped, and that the sandboxes cannot reach each other.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{json, Value};
use weft_testkit::dns::{self, ResponseCode};
use weft_testkit::internet::{
    pattern, TestCa, ADDRESSES, ALLOWED, CGNAT, DENIED, ECHO, METADATA, PRIVATE,
};
use weft_testkit::{base64, privileged_or_skip, wait_for, Netns};

use common::relay::{curl, http, shield_binary, World, GATEWAY};
use common::tag;

const PLACEHOLDER: &str = "WEFT_SECRET_API";
const SECRET: &str = "s3cr3t-value-42";
/// How long the shield gets to print its ready line after its instance started.
const READY: Duration = Duration::from_secs(20);

#[test]
fn netns_shield_guards_relayed_sandboxes() {
    let test = "netns_shield_guards_relayed_sandboxes";
    if !privileged_or_skip(test) {
        return;
    }
    // A netns guest boots no kernel: an image directory is enough.
    let images = tempfile::tempdir().unwrap();
    std::fs::create_dir(images.path().join("base")).unwrap();
    let world = World::new(&tag("wsd"), "netns", images.path());
    world.run(scenario);
}

/// The same relay path with QEMU guests: the shield is the image's own /bin/weft-shield in a
/// VM, the sandbox another VM whose app probes through it (no command runs inside a VM, so
/// the sandbox's app prints what it got on its console): a denied name, a long download, then
/// one small request a second while the test stops and starts the shield.
#[test]
fn qemu_shield_guards_a_relayed_vm() {
    let test = "qemu_shield_guards_a_relayed_vm";
    if !privileged_or_skip(test) {
        return;
    }
    let Some(images) = common::images_or_skip(test) else {
        return;
    };
    let world = World::new(&tag("wsq"), "qemu", &images);
    world.run(qemu_scenario);
}

/// How long a VM gets to boot to its app's first line (TCG, on a shared host).
const VM_BOOT: Duration = Duration::from_secs(180);
/// The length of the sandbox VM's long download.
const VM_LONG: usize = 8 << 20;

/// The sandbox VM's app: busybox sh without double quotes or newlines (it travels on the
/// kernel command line). The image's static busybox `wget` crashes with address space
/// randomization on (docs/limitations.md), so names are resolved with busybox's own
/// `nslookup` (through the shield, like any DNS of the sandbox) and requests sent with `nc`.
fn vm_sandbox_script() -> String {
    format!(
        "r() {{ nslookup $1 2>/dev/null | awk '/^Address: /{{print $2}}' | head -n 1; }}; \
         get() {{ a=$(r $1); test -z $a && return 1; \
         printf 'GET %s HTTP/1.1\\r\\nHost: %s\\r\\nConnection: close\\r\\n\\r\\n' $2 $1 \
         | nc -w 10 $a 80; }}; \
         echo denied=$(test -z $(r denied.test) && echo refused || echo reached); \
         s=$(date +%s); get echo.allowed.test /bytes/{VM_LONG} > /tmp/long; \
         echo long=$(wc -c < /tmp/long) $(tail -c {VM_LONG} /tmp/long | sha256sum) \
         took $(( $(date +%s) - s )) s; rm /tmp/long; \
         i=0; while true; do i=$((i+1)); \
         if get api.allowed.test /p$i | grep -q '^HTTP/1.1 200'; \
         then echo probe $i ok; else echo probe $i failed; fi; sleep 1; done"
    )
}

/// The first line of the sandbox app's output that starts with `prefix`, waiting up to
/// `limit`. Only the app's own lines start so: the kernel's echo of the command line (which
/// holds the whole script) starts with a timestamp.
fn app_line(world: &World, prefix: &str, limit: Duration) -> String {
    wait_for(limit, Duration::from_millis(500), || {
        world
            .api()
            .console("sandbox")
            .lines()
            .find(|l| l.trim_start_matches('\r').starts_with(prefix))
            .map(|l| l.trim_end().to_string())
    })
    .unwrap_or_else(|| {
        panic!(
            "the sandbox printed no line starting with {prefix:?} within {limit:?}:\n{}",
            world.api().console("sandbox")
        )
    })
}

/// The numbered probe lines (`probe <n> ok|failed`) of the sandbox's console after its
/// first `skip` lines.
fn probes(world: &World, skip: usize) -> Vec<(u32, bool)> {
    world
        .api()
        .console("sandbox")
        .lines()
        .skip(skip)
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("probe ")?;
            let (n, result) = rest.split_once(' ')?;
            Some((n.parse().ok()?, result == "ok"))
        })
        .collect()
}

fn console_lines(world: &World, name: &str) -> usize {
    world.api().console(name).lines().count()
}

fn qemu_scenario(world: &World) {
    let shield = world.create(json!({
        "name": "shield",
        "image": "base",
        "args": ["/bin/weft-shield"],
        "env": {
            "SHIELD_ALLOW": "*.allowed.test",
            "SHIELD_UPSTREAM_DNS": GATEWAY,
            "SHIELD_STATS_INTERVAL": "0"
        }
    }));
    assert_eq!(shield["network_interfaces"][0]["name"], "shield-eth0");
    world.wait_console("shield", &["weft-shield: ready"], VM_BOOT);

    let sandbox = world.create(json!({
        "name": "sandbox",
        "image": "base",
        "args": ["/bin/busybox", "sh", "-c", vm_sandbox_script()],
        "network_interfaces": [{"relay": {"name": "shield-eth0"}}]
    }));
    let ip: Ipv4Addr = sandbox["private_ip"].as_str().unwrap().parse().unwrap();

    // A denied name: its DNS is refused by the shield.
    assert_eq!(app_line(world, "denied=", VM_BOOT), "denied=refused");
    expect_line(world, "deny", ip, &["proto=dns", "name=denied.test"]);

    // The long download arrives whole, through the shield.
    let expected = world.path("vm-long");
    std::fs::write(&expected, pattern(VM_LONG)).unwrap();
    let sum = std::process::Command::new("sha256sum")
        .arg(&expected)
        .output()
        .expect("sha256sum runs");
    let sum = String::from_utf8_lossy(&sum.stdout);
    let sum = sum
        .split_whitespace()
        .next()
        .expect("a checksum")
        .to_string();
    let long = app_line(world, "long=", Duration::from_secs(300));
    let words: Vec<&str> = long.split_whitespace().collect();
    let total: usize = words[0]["long=".len()..].parse().unwrap_or(0);
    assert!(
        total > VM_LONG && words.get(1) == Some(&sum.as_str()),
        "{long}: not {sum}"
    );
    eprintln!("qemu sandbox: {VM_LONG} bytes through the shield VM: {long}");
    expect_line(world, "allow", ip, &["proto=dns", "name=echo.allowed.test"]);
    expect_line(
        world,
        "allow",
        ip,
        &[
            "proto=http",
            "name=echo.allowed.test",
            "reason=allowed-name",
        ],
    );
    wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
        probes(world, 0).iter().any(|(_, ok)| *ok).then_some(())
    })
    .expect("a probe through the shield succeeded");
    expect_line(world, "allow", ip, &["proto=http", "name=api.allowed.test"]);

    // The shield stopped: the probes fail, and the internet hears nothing.
    world.lifecycle("shield", "stop", "stopped");
    let mark = console_lines(world, "sandbox");
    let failed = wait_for(Duration::from_secs(120), Duration::from_millis(500), || {
        let after = probes(world, mark);
        let first = after.iter().position(|(_, ok)| !ok)?;
        (after.len() - first >= 2).then(|| after[first..].to_vec())
    })
    .expect("two probes failed with the shield stopped");
    assert!(
        failed.iter().all(|(_, ok)| !ok),
        "a probe went through with the shield stopped: {failed:?}"
    );
    let before = world.seen.received(ALLOWED).len();
    std::thread::sleep(Duration::from_secs(3));
    let mark = console_lines(world, "sandbox");
    assert_eq!(world.seen.received(ALLOWED).len(), before, "bytes got out");

    // Started again, it serves the sandbox as before.
    world.lifecycle("shield", "start", "running");
    world.wait_console("shield", &["weft-shield: ready"], VM_BOOT);
    wait_for(Duration::from_secs(90), Duration::from_millis(500), || {
        probes(world, mark).iter().any(|(_, ok)| *ok).then_some(())
    })
    .expect("a probe succeeded after the shield's restart");
}

/// A sandbox: its address and its network namespace.
struct Sandbox {
    ip: Ipv4Addr,
    ns: Netns,
}

impl Sandbox {
    fn dns(&self, name: &str, tcp: bool) -> dns::Answer {
        let name = name.to_string();
        let gateway: Ipv4Addr = GATEWAY.parse().unwrap();
        self.ns.enter(move || dns::query(gateway, &name, tcp))
    }
}

fn scenario(world: &World) {
    let api = world.api();

    // The shield: its policy in env, its CA given (so sandboxes can keep trusting it across
    // restarts), the real servers' roots from the test internet, the platform resolver as
    // its upstream (a netns guest shares the host's /etc/resolv.conf).
    let shield_ca = TestCa::new();
    let shield = world.create(json!({
        "name": "shield",
        "image": "base",
        "args": [shield_binary()],
        "env": {
            "SHIELD_ALLOW": "*.allowed.test",
            "SHIELD_SECRET_API": format!("{PLACEHOLDER}|{SECRET}|api.allowed.test"),
            "SHIELD_UPSTREAM_DNS": GATEWAY,
            "SHIELD_UPSTREAM_CA": world.path("internet-ca.pem"),
            "SHIELD_CA_CERT": base64(&shield_ca.pem),
            "SHIELD_CA_KEY": base64(shield_ca.key_pem()),
            "SHIELD_STATS_INTERVAL": "0"
        }
    }));
    assert_eq!(shield["network_interfaces"][0]["name"], "shield-eth0");
    world.wait_console("shield", &["weft-shield: ready"], READY);

    // Two sandboxes behind it; the second sends DNS to the platform resolver directly.
    let sandbox = |name: &str, relay: Value| {
        let www = world.path(name);
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), format!("{name} answers\n")).unwrap();
        let instance = world.create(json!({
            "name": name,
            "image": "base",
            "args": ["busybox", "httpd", "-f", "-p", "8080", "-h", www],
            "network_interfaces": [{"relay": relay}]
        }));
        assert_eq!(
            instance["network_interfaces"][0]["relay"]["name"],
            relay["name"]
        );
        let ip = instance["private_ip"].as_str().unwrap().parse().unwrap();
        let ns = world
            .weftd
            .guest_netns(name, &format!("{}-{name}", world.topo.host.name()));
        Sandbox { ip, ns }
    };
    let a = sandbox("sandbox-a", json!({"name": "shield-eth0"}));
    let b = sandbox(
        "sandbox-b",
        json!({"name": "shield-eth0", "relay_dns": false}),
    );

    allowed_and_denied(world, &a);
    secrets(world, &a, &shield_ca);
    dns_direct(world, &a, &b);
    isolation(world, &a, &b);
    fail_closed(world, &a, &b);
    long_transfer(world, &a);

    // Nothing but the allowed server ever saw the secret, and the sandboxes never did.
    for server in ADDRESSES.into_iter().filter(|ip| *ip != ALLOWED) {
        assert!(
            !world.seen.received(server).contains(SECRET),
            "{server} received the secret"
        );
    }
    let log = api.console("shield");
    assert!(!log.contains(SECRET), "the shield logged the secret");
}

/// The shield's console lines of one decision kind for one client.
fn decisions(world: &World, decision: &str, client: Ipv4Addr) -> Vec<String> {
    let prefix = format!("weft-shield: {decision} client={client} ");
    world
        .api()
        .console("shield")
        .lines()
        .filter(|l| l.contains(&prefix))
        .map(str::to_string)
        .collect()
}

/// Waits for the shield's console line of a decision for a client with all of `parts`.
fn expect_line(world: &World, decision: &str, client: Ipv4Addr, parts: &[&str]) -> String {
    let prefix = format!("weft-shield: {decision} client={client} ");
    let mut all = vec![prefix.as_str()];
    all.extend_from_slice(parts);
    world.wait_console("shield", &all, Duration::from_secs(10))
}

fn allowed_and_denied(world: &World, a: &Sandbox) {
    let allow = |parts: &[&str]| expect_line(world, "allow", a.ip, parts);
    let deny = |parts: &[&str]| expect_line(world, "deny", a.ip, parts);

    // DNS through the shield: allowed names resolve, others are refused, over UDP and TCP.
    let api = a.dns("api.allowed.test", false);
    assert_eq!(api.code, Some(ResponseCode::NoError), "{api:?}");
    assert_eq!(api.addrs, [ALLOWED]);
    assert_eq!(a.dns("echo.allowed.test", true).addrs, [ECHO]);
    for tcp in [false, true] {
        let denied = a.dns("denied.test", tcp);
        assert_eq!(denied.code, Some(ResponseCode::Refused), "{denied:?}");
        assert!(denied.addrs.is_empty());
    }
    assert!(
        !world.seen.questions().iter().any(|q| q == "denied.test"),
        "a refused name reached the upstream"
    );
    allow(&["proto=dns", "name=api.allowed.test"]);
    deny(&["proto=dns", "name=denied.test"]);

    // The allowed name answers over HTTP and HTTPS (spliced: the sandbox verifies the real
    // server's certificate).
    let internet_ca = world.path("internet-ca.pem");
    let internet_ca = internet_ca.to_str().unwrap();
    assert_eq!(
        http(&a.ns, &["http://api.allowed.test/"]),
        ("ok\n".to_string(), 200)
    );
    let (body, status) = http(
        &a.ns,
        &["--cacert", internet_ca, "https://echo.allowed.test/hello"],
    );
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /hello HTTP/1.1"), "{body}");
    allow(&["proto=http", "name=api.allowed.test", "reason=allowed-name"]);
    allow(&["proto=tls", "name=echo.allowed.test", "reason=allowed-name"]);

    // The denied name: its DNS is refused, so neither scheme even connects; given its
    // address, HTTP gets the shield's 403 and TLS is closed after the ClientHello.
    for url in ["http://denied.test/", "https://denied.test/"] {
        let (code, _, err) = curl(&a.ns, &[url]);
        assert_eq!(code, 6, "{url} resolved: {err}");
    }
    let pin80 = format!("denied.test:80:{DENIED}");
    let (body, status) = http(&a.ns, &["--resolve", &pin80, "http://denied.test/"]);
    assert_eq!(status, 403, "{body}");
    let pin443 = format!("denied.test:443:{DENIED}");
    let tls_denied = [
        "--cacert",
        internet_ca,
        "--resolve",
        &pin443,
        "https://denied.test/",
    ];
    let (code, _, err) = curl(&a.ns, &tls_denied);
    assert_ne!(code, 0, "TLS to the denied name went through: {err}");
    deny(&["proto=http", "name=denied.test", "reason=name-not-allowed"]);
    deny(&["proto=tls", "name=denied.test", "reason=name-not-allowed"]);

    // An allowed SNI or Host sent to the denied server's address is refused.
    let spoof443 = format!("api.allowed.test:443:{DENIED}");
    let spoofed_tls = [
        "--cacert",
        internet_ca,
        "--resolve",
        &spoof443,
        "https://api.allowed.test/",
    ];
    let (code, _, _) = curl(&a.ns, &spoofed_tls);
    assert_ne!(code, 0, "a spoofed SNI went through");
    let spoof80 = format!("api.allowed.test:80:{DENIED}");
    let (_, status) = http(&a.ns, &["--resolve", &spoof80, "http://api.allowed.test/"]);
    assert_eq!(status, 403);
    for proto in ["proto=tls", "proto=http"] {
        deny(&[
            proto,
            "name=api.allowed.test",
            &format!("dst={DENIED}:"),
            "reason=address-not-resolved",
        ]);
    }

    // Reserved addresses, by literal and by an allowed name that resolves to one.
    for (ip, reason) in [
        (PRIVATE, "private-address"),
        (CGNAT, "cgnat-address"),
        (METADATA, "metadata-address"),
    ] {
        let (body, status) = http(&a.ns, &[&format!("http://{ip}/latest/meta-data/")]);
        assert_eq!(status, 403, "{ip}: {body}");
        assert!(body.contains(reason), "{ip}: {body}");
        let (code, _, _) = curl(&a.ns, &["-k", &format!("https://{ip}/")]);
        assert_ne!(code, 0, "TLS to {ip} went through");
        let reason = format!("reason={reason}");
        deny(&["proto=http", &format!("dst={ip}:80"), &reason]);
        deny(&["proto=tls", &format!("dst={ip}:443"), &reason]);
    }
    let (_, status) = http(&a.ns, &["http://private.allowed.test/"]);
    assert_eq!(status, 403);
    deny(&[
        "proto=http",
        "name=private.allowed.test",
        "reason=private-address",
    ]);
    for ip in [DENIED, PRIVATE, CGNAT, METADATA] {
        assert_eq!(world.seen.received(ip), "", "{ip} got bytes");
    }
}

fn secrets(world: &World, a: &Sandbox, shield_ca: &TestCa) {
    // The sandbox trusts the shield's CA, fetched over plain HTTP from the shield by name.
    let ca_file = world.path("shield-ca.pem");
    let ca = ca_file.to_str().unwrap();
    let (code, _, err) = curl(&a.ns, &["-o", ca, "http://weft-shield.internal/ca.pem"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&ca_file).unwrap().trim(),
        shield_ca.pem.trim(),
        "the shield serves the CA it was given"
    );

    // The placeholder becomes the secret on its way to the bound host, in a header and in
    // the request line; the sandbox gets the server's answer, not the secret.
    let auth = format!("Authorization: Bearer {PLACEHOLDER}");
    let url = format!("https://api.allowed.test/v1?key={PLACEHOLDER}");
    let (body, status) = http(&a.ns, &["--cacert", ca, "-H", &auth, &url]);
    assert_eq!((body.as_str(), status), ("ok\n", 200));
    let got = world.seen.received(ALLOWED);
    assert!(
        got.contains(&format!("Authorization: Bearer {SECRET}")),
        "{got}"
    );
    assert!(
        got.contains(&format!("GET /v1?key={SECRET} HTTP/1.1")),
        "{got}"
    );
    expect_line(
        world,
        "inject",
        a.ip,
        &[
            "proto=tls",
            "name=api.allowed.test",
            &format!("dst={ALLOWED}:443"),
            "reason=secret:API",
        ],
    );

    // Plain HTTP to the bound host carries the placeholder unchanged.
    let before = got.len();
    http(&a.ns, &["-H", &auth, "http://api.allowed.test/plain"]);
    let plain = world.seen.received(ALLOWED)[before..].to_string();
    assert!(plain.contains(&auth) && !plain.contains(SECRET), "{plain}");

    // Whatever the sandbox sends towards the echo server, the secret never comes back:
    // placeholders in headers, bodies and request targets, over HTTP and HTTPS, with the
    // bound host's name as Host, as SNI, or as an absolute request target.
    let internet_ca = world.path("internet-ca.pem");
    let internet_ca = internet_ca.to_str().unwrap();
    let echo_as_api80 = format!("api.allowed.test:80:{ECHO}");
    let echo_as_api443 = format!("api.allowed.test:443:{ECHO}");
    let body = format!("token={PLACEHOLDER}");
    let tries: Vec<Vec<&str>> = vec![
        vec!["-H", &auth, "http://echo.allowed.test/header"],
        vec!["-d", &body, "http://echo.allowed.test/body"],
        vec![
            "--cacert",
            internet_ca,
            "-H",
            &auth,
            "https://echo.allowed.test/tls",
        ],
        vec![
            "--cacert",
            ca,
            "-H",
            &auth,
            "https://echo.allowed.test/tls-shield-ca",
        ],
        vec![
            "-H",
            &auth,
            "--resolve",
            &echo_as_api80,
            "http://api.allowed.test/",
        ],
        vec![
            "--cacert",
            ca,
            "-H",
            &auth,
            "--resolve",
            &echo_as_api443,
            "https://api.allowed.test/",
        ],
        vec![
            "-H",
            &auth,
            "--request-target",
            "http://api.allowed.test/",
            "http://echo.allowed.test/",
        ],
    ];
    for args in &tries {
        let (_, out, _) = curl(&a.ns, args);
        assert!(!out.contains(SECRET), "{args:?} brought back the secret");
    }
    let echo = world.seen.received(ECHO);
    assert!(echo.contains(PLACEHOLDER), "{echo}");
    assert!(!echo.contains(SECRET), "{echo}");
}

fn dns_direct(world: &World, a: &Sandbox, b: &Sandbox) {
    // The platform resolver answers the second sandbox directly: instance names, and names
    // the shield would refuse.
    let (_, shield) = world.api().get("/v1/instances/shield");
    let shield_ip: Ipv4Addr = shield["data"]["instances"][0]["private_ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(b.dns("shield.internal", false).addrs, [shield_ip]);
    assert_eq!(b.dns("sandbox-a.internal", true).addrs, [a.ip]);
    assert_eq!(b.dns("www.allowed.test", false).addrs, [ALLOWED]);
    assert_eq!(b.dns("denied.test", false).addrs, [DENIED]);

    // The shield saw none of it, so it never learnt www.allowed.test's address: a
    // connection by that name is refused.
    let (_, status) = http(&b.ns, &["http://www.allowed.test/"]);
    assert_eq!(status, 403);
    expect_line(
        world,
        "deny",
        b.ip,
        &["name=www.allowed.test", "reason=address-not-resolved"],
    );
    let seen_dns = decisions(world, "allow", b.ip)
        .into_iter()
        .chain(decisions(world, "deny", b.ip))
        .filter(|l| l.contains("proto=dns"))
        .collect::<Vec<_>>();
    assert!(seen_dns.is_empty(), "the shield saw B's DNS: {seen_dns:?}");
}

fn isolation(world: &World, a: &Sandbox, b: &Sandbox) {
    // Each sandbox's server answers inside its own namespace...
    for sandbox in [a, b] {
        assert_eq!(http(&sandbox.ns, &["http://127.0.0.1:8080/"]).1, 200);
    }
    // ...but not to the other sandbox, nor to the host: everything for a sandbox's address
    // ends at the shield, which serves no port 8080 and refuses private addresses.
    for (from, to) in [(a, b), (b, a)] {
        let url = format!("http://{}:8080/", to.ip);
        let (code, out, _) = curl(&from.ns, &[&url]);
        assert_ne!(code, 0, "{} reached {}: {out}", from.ns.name(), to.ip);
        let (_, status) = http(&from.ns, &[&format!("http://{}/", to.ip)]);
        assert_eq!(status, 403);
        let ip = to.ip.to_string();
        assert!(!from.ns.succeeds(&["ping", "-c", "1", "-W", "1", &ip]));
        expect_line(
            world,
            "deny",
            from.ip,
            &[
                "proto=tcp",
                &format!("dst={ip}:8080"),
                "reason=port-not-allowed",
            ],
        );
    }
    let url = format!("http://{}:8080/", a.ip);
    let out = world
        .topo
        .host
        .exec(&["curl", "-sS", "--max-time", "4", &url]);
    assert!(!out.status.success(), "the host reached a sandbox's server");
}

fn fail_closed(world: &World, a: &Sandbox, b: &Sandbox) {
    world.lifecycle("shield", "stop", "stopped");
    let internet = "192.0.2.1";
    let received = || -> usize {
        ADDRESSES
            .iter()
            .map(|ip| world.seen.received(*ip).len())
            .sum()
    };
    let before = received();

    // Nothing: no DNS, not the gateway, not the internet, not even by address. The second
    // sandbox's DNS never went through the shield and still works; nothing else does.
    assert_eq!(a.dns("api.allowed.test", false).code, None);
    assert_eq!(a.dns("api.allowed.test", true).code, None);
    assert_eq!(b.dns("api.allowed.test", false).addrs, [ALLOWED]);
    for (sandbox, dns_through_shield) in [(a, true), (b, false)] {
        let mut urls = vec![
            format!("http://{ALLOWED}/"),
            format!("http://{internet}/"),
            format!("http://{GATEWAY}/"),
        ];
        if dns_through_shield {
            urls.push(format!("http://{GATEWAY}:53/"));
        }
        for url in urls {
            let (code, _, _) = curl(&sandbox.ns, &["--connect-timeout", "2", &url]);
            assert_ne!(code, 0, "{url} reached with the shield stopped");
        }
        for ip in [GATEWAY, internet] {
            assert!(!sandbox.ns.succeeds(&["ping", "-c", "1", "-W", "1", ip]));
        }
    }
    assert_eq!(received(), before, "the internet got bytes");

    // Started again, the shield serves as before, with the same CA.
    world.lifecycle("shield", "start", "running");
    world.wait_console("shield", &["weft-shield: ready"], READY);
    assert_eq!(a.dns("api.allowed.test", false).addrs, [ALLOWED]);
    let ca = world.path("shield-ca.pem");
    let auth = format!("Authorization: Bearer {PLACEHOLDER}");
    let again = [
        "--cacert",
        ca.to_str().unwrap(),
        "-H",
        &auth,
        "https://api.allowed.test/again",
    ];
    assert_eq!(http(&a.ns, &again), ("ok\n".to_string(), 200));
    let got = world.seen.received(ALLOWED);
    let tail = &got[got.rfind("GET /again").expect("the request arrived")..];
    assert!(
        tail.contains(&format!("Authorization: Bearer {SECRET}")),
        "{tail}"
    );
}

/// Long TCP transfers through the shield, both ways: the relay path keeps carrying data long
/// after the handshake, byte for byte, spliced TLS and parsed HTTP alike.
fn long_transfer(world: &World, a: &Sandbox) {
    const LEN: usize = 32 << 20;
    let expected = pattern(LEN);
    let internet_ca = world.path("internet-ca.pem");
    let internet_ca = internet_ca.to_str().unwrap();
    let url = |scheme: &str| format!("{scheme}://echo.allowed.test/bytes/{LEN}");
    for (scheme, extra) in [("http", vec![]), ("https", vec!["--cacert", internet_ca])] {
        let file = world.path(&format!("long-{scheme}"));
        let started = std::time::Instant::now();
        let mut args = vec!["--max-time", "120", "-o", file.to_str().unwrap()];
        args.extend(extra);
        let url = url(scheme);
        args.push(&url);
        let (code, _, err) = curl(&a.ns, &args);
        assert_eq!(code, 0, "{url}: {err}");
        let got = std::fs::read(&file).unwrap();
        assert_eq!(got.len(), LEN, "{url}: length");
        assert!(got == expected, "{url}: the bytes differ");
        eprintln!(
            "long transfer: {LEN} bytes over {scheme} through the shield in {:?}",
            started.elapsed()
        );
    }

    // Up: a large body to the echo server comes back whole.
    const UP: usize = 8 << 20;
    let body = world.path("upload");
    std::fs::write(&body, &pattern(UP)[..]).unwrap();
    let back = world.path("upload-echoed");
    let data = format!("@{}", body.display());
    let (code, _, err) = curl(
        &a.ns,
        &[
            "--max-time",
            "120",
            "-H",
            "Expect:",
            "--data-binary",
            &data,
            "-o",
            back.to_str().unwrap(),
            "http://echo.allowed.test/upload",
        ],
    );
    assert_eq!(code, 0, "upload: {err}");
    let echoed = std::fs::read(&back).unwrap();
    assert!(echoed.starts_with(b"POST /upload HTTP/1.1"));
    assert!(
        echoed.ends_with(&pattern(UP)),
        "the upload came back changed"
    );
    expect_line(
        world,
        "allow",
        a.ip,
        &["proto=tls", "name=echo.allowed.test", "reason=allowed-name"],
    );
}
