//! The main job, end to end, with each driver: one API call boots a guest (a real VM with
//! QEMU, a namespace with netns) with a pool interface, an interface on a TAP device the user
//! brought, and one with autoconfig off. It answers on both addresses, reaches the internet
//! through the host, survives a weftd restart, and leaves nothing behind when deleted.

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use weft_testkit::{privileged_or_skip, wait_for, Netns, Topology, Weftd};

use common::{images_or_skip, tag, weftd_binary};

fn text(out: std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Retries a command in a namespace until it succeeds (bounded), returning its output.
fn eventually(ns: &Netns, args: &[&str], limit: Duration) -> Option<String> {
    wait_for(limit, Duration::from_millis(500), || {
        let out = ns.exec(args);
        out.status.success().then(|| text(out))
    })
}

#[test]
fn qemu_instance_with_pool_and_own_interfaces() {
    run("qemu", "qemu_instance_with_pool_and_own_interfaces");
}

#[test]
fn netns_instance_with_pool_and_own_interfaces() {
    run("netns", "netns_instance_with_pool_and_own_interfaces");
}

fn run(driver: &str, test: &str) {
    if !privileged_or_skip(test) {
        return;
    }
    let Some(images) = images_or_skip(test) else {
        return;
    };
    let topo = Topology::new(&tag(&format!("w{}", &driver[..1])));
    topo.add_tap("custtap0", Some("custbr0"));

    // A web server on the internet side, for the guest to fetch through the host.
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello from the internet\n").unwrap();
    let mut internet = topo
        .inet
        .command("busybox")
        .args(["httpd", "-f", "-p", "8000", "-h"])
        .arg(www.path())
        .spawn()
        .expect("internet web server starts");

    // A VM serves the image's /www; a netns guest shares this host's files.
    let guest_www = tempfile::tempdir().unwrap();
    std::fs::write(
        guest_www.path().join("index.html"),
        "hello from a netns guest\n",
    )
    .unwrap();
    let www_dir = match driver {
        "qemu" => "/www".to_string(),
        _ => guest_www.path().display().to_string(),
    };

    let mut weftd = Weftd::start_with(driver, &topo.host, &weftd_binary(), &images, "");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        scenario(&topo, &mut weftd, &www_dir);
    }));
    let _ = internet.kill();
    let _ = internet.wait();
    if let Err(panic) = result {
        eprintln!("--- weftd log ---\n{}", weftd.log());
        std::panic::resume_unwind(panic);
    }
}

fn scenario(topo: &Topology, weftd: &mut Weftd, www: &str) {
    let api = weftd.api.clone();
    let app = format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 5 192.0.2.1 8000 \
         || echo internet unreachable; exec busybox httpd -f -p 8080 -h {www}"
    );
    let (code, body) = api.post(
        "/v1/instances",
        &json!({
            "name": "demo",
            "image": "base",
            "args": ["/bin/busybox", "sh", "-c", app],
            "network_interfaces": [
                {},
                {"ip": "172.30.5.2/24", "tap_name": "custtap0"},
                {"autoconfig": false}
            ]
        }),
    );
    assert_eq!(code, 200, "{body}");
    let inst = &body["data"]["instances"][0];
    assert_eq!(inst["state"], "running", "{inst}");
    assert_eq!(inst["private_ip"], "10.100.0.1");
    assert_eq!(inst["private_fqdn"], "demo.internal");
    assert_eq!(inst["gateway"], "10.100.255.254");
    assert_eq!(inst["nameserver"], "10.100.255.254");
    let ifaces = inst["network_interfaces"].as_array().unwrap();
    let expect = [
        ("demo-eth0", "10.100.0.1", "wt0", "12:b0:0a:64:00:01", true),
        ("demo-eth1", "172.30.5.2", "custtap0", "", true),
        ("demo-eth2", "10.100.0.2", "wt1", "12:b0:0a:64:00:02", false),
    ];
    for (iface, (name, ip, tap, mac, autoconfig)) in ifaces.iter().zip(expect) {
        assert_eq!(iface["name"], name);
        assert_eq!(iface["private_ip"], ip);
        assert_eq!(iface["tap_name"], tap);
        assert_eq!(iface["autoconfig"], autoconfig);
        if !mac.is_empty() {
            assert_eq!(iface["mac"], mac);
        }
    }
    let own_mac = ifaces[1]["mac"].as_str().unwrap().to_string();
    assert!(own_mac.starts_with("12:b1:"), "{own_mac}");
    let uuid = inst["uuid"].as_str().unwrap().to_string();

    // The guest boots (TCG: seconds) and reports what it configured, read back from its
    // kernel.
    let console = wait_for(Duration::from_secs(180), Duration::from_secs(1), || {
        let console = api.console("demo");
        console.contains("weft-guest: app start").then_some(console)
    })
    .unwrap_or_else(|| panic!("guest did not start its app:\n{}", api.console("demo")));
    let lines: Vec<&str> = console.lines().map(str::trim_end).collect();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has("mac 12:b0:0a:64:00:01 addr 10.100.0.1/16"), "{console}");
    assert!(
        has(&format!("mac {own_mac} addr 172.30.5.2/24")),
        "{console}"
    );
    assert!(has("mac 12:b0:0a:64:00:02 addr none"), "{console}");
    let routes: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("weft-guest: route default"))
        .collect();
    assert_eq!(routes.len(), 1, "exactly one default route: {routes:?}");
    assert!(routes[0].contains("via 10.100.255.254"), "{routes:?}");
    assert!(has("weft-guest: nameserver 10.100.255.254"), "{console}");

    // Both addresses answer: the pool one from the host, the own one from the user's network.
    eventually(
        &topo.host,
        &["ping", "-c", "1", "-W", "2", "10.100.0.1"],
        Duration::from_secs(60),
    )
    .expect("pool address answers ping");
    let page = eventually(
        &topo.host,
        &["curl", "-sf", "--max-time", "5", "http://10.100.0.1:8080/"],
        Duration::from_secs(60),
    )
    .expect("app answers on the pool address");
    assert!(!page.is_empty());
    eventually(
        &topo.user,
        &["ping", "-c", "1", "-W", "2", "172.30.5.2"],
        Duration::from_secs(30),
    )
    .expect("own address answers ping");
    let own_page = eventually(
        &topo.user,
        &["curl", "-sf", "--max-time", "5", "http://172.30.5.2:8080/"],
        Duration::from_secs(30),
    )
    .expect("app answers on the own address");
    assert_eq!(own_page, page);

    // Egress through forwarding and masquerade.
    let console = api.console("demo");
    assert!(
        console.contains("hello from the internet"),
        "guest could not reach the internet:\n{console}"
    );

    // A restarted weftd still knows the instance, and its guest kept running.
    weftd.restart();
    let (code, body) = api.get("/v1/instances/demo");
    assert_eq!(code, 200);
    assert_eq!(body["data"]["instances"][0]["state"], "running", "{body}");
    assert_eq!(body["data"]["instances"][0]["uuid"], uuid.as_str());

    // Delete releases everything.
    let (code, body) = api.delete("/v1/instances/demo");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["instances"][0]["previous_state"], "running");
    assert_eq!(api.get("/v1/instances/demo").0, 404);
    assert_no_trace(topo, weftd, &uuid);
}

fn assert_no_trace(topo: &Topology, weftd: &Weftd, uuid: &str) {
    let routes = text(topo.host.exec(&["ip", "route", "show"]));
    assert!(
        !routes.contains("10.100.0."),
        "guest routes remain:\n{routes}"
    );
    let set = text(
        topo.host
            .exec(&["nft", "-j", "list", "set", "ip", "weft", "guests"]),
    );
    let set: Value = serde_json::from_str(&set).expect("nft answers JSON");
    let elements = set["nftables"][1]["set"]["elem"]
        .as_array()
        .map_or(0, |e| e.len());
    assert_eq!(elements, 0, "nft elements remain: {set}");
    for tap in ["wt0", "wt1"] {
        let link = text(topo.host.exec(&["ip", "-o", "link", "show", tap]));
        assert!(
            link.contains("NO-CARRIER"),
            "pool TAP {tap} still in use: {link}"
        );
    }
    let custtap = text(topo.host.exec(&["ip", "-o", "link", "show", "custtap0"]));
    assert!(
        custtap.contains("NO-CARRIER") && custtap.contains("master custbr0"),
        "{custtap}"
    );
    let rows = std::process::Command::new("sqlite3")
        .arg(weftd.state_dir().join("weft.db"))
        .arg(format!(
            "SELECT (SELECT COUNT(*) FROM instances WHERE uuid = '{uuid}') + \
                    (SELECT COUNT(*) FROM interfaces WHERE instance = '{uuid}');"
        ))
        .output()
        .expect("sqlite3 runs");
    assert_eq!(String::from_utf8_lossy(&rows.stdout).trim(), "0");
    let procs = std::process::Command::new("pgrep")
        .args(["-f", uuid])
        .output()
        .unwrap();
    assert!(procs.stdout.is_empty(), "guest process remains");
}
