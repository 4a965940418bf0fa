//! Port announcements end to end, with each driver.
//!
//! An instance has a pool primary interface and a second interface on a TAP device the test
//! brings. Its app listens on port 8080 of every address, on port 8081 of the primary's
//! address and on port 9090 of the second address only. `services` must show 8080 and 8081
//! and never 9090, `net_time_us` must be set, and when the app closes 8080 it must disappear.
//!
//! A guest that floods its agent channel with garbage, endless lines and valid lines must
//! not slow weftd down: API calls keep answering quickly while the flood lasts, and the drop
//! counters in `/metrics` grow.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weft_testkit::weftd::LISTEN;
use weft_testkit::{privileged_or_skip, wait_for, Api, Netns, Topology, Weftd};

use common::{images_or_skip, tag, weftd_binary};

/// The first pool address of a fresh weftd: the primary's address, which the app binds to.
const PRIMARY: &str = "10.100.0.1";
const OWN: &str = "172.30.5.2";

#[test]
fn netns_services_follow_the_guests_listeners() {
    services("netns", "netns_services_follow_the_guests_listeners");
}

#[test]
fn qemu_services_follow_the_guests_listeners() {
    services("qemu", "qemu_services_follow_the_guests_listeners");
}

#[test]
fn netns_a_guest_flooding_its_channel_does_not_slow_weftd() {
    flood(
        "netns",
        "netns_a_guest_flooding_its_channel_does_not_slow_weftd",
    );
}

#[test]
fn qemu_a_guest_flooding_its_channel_does_not_slow_weftd() {
    flood(
        "qemu",
        "qemu_a_guest_flooding_its_channel_does_not_slow_weftd",
    );
}

/// How long a guest may take to boot and announce: seconds under TCG, milliseconds in a
/// namespace.
fn boot_limit(driver: &str) -> Duration {
    match driver {
        "qemu" => Duration::from_secs(180),
        _ => Duration::from_secs(30),
    }
}

/// Runs `scenario` against a fresh weftd with `driver` in a fresh test world, printing
/// weftd's log and the guest's console when it fails.
fn world(driver: &str, test: &str, prefix: &str, scenario: impl FnOnce(&Topology, &mut Weftd)) {
    if !privileged_or_skip(test) {
        return;
    }
    let Some(images) = images_or_skip(test) else {
        return;
    };
    let topo = Topology::new(&tag(prefix));
    topo.add_tap("custtap0", Some("custbr0"));
    let mut weftd = Weftd::start_with(driver, &topo.host, &weftd_binary(), &images, "");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        scenario(&topo, &mut weftd);
    }));
    if let Err(panic) = result {
        eprintln!("--- weftd log ---\n{}", weftd.log());
        eprintln!("--- console ---\n{}", weftd.api.console("app"));
        std::panic::resume_unwind(panic);
    }
}

/// Creates the instance `app` with a pool primary and the own interface, running `script`.
fn create(api: &Api, script: &str) -> Value {
    let (code, body) = api.post(
        "/v1/instances",
        &json!({
            "name": "app",
            "image": "base",
            "args": ["/bin/busybox", "sh", "-c", script],
            "network_interfaces": [{}, {"ip": format!("{OWN}/24"), "tap_name": "custtap0"}]
        }),
    );
    assert_eq!(code, 200, "{body}");
    let inst = body["data"]["instances"][0].clone();
    assert_eq!(inst["state"], "running", "{inst}");
    assert_eq!(inst["private_ip"], PRIMARY, "{inst}");
    inst
}

fn instance(api: &Api) -> Value {
    let (code, body) = api.get("/v1/instances/app");
    assert_eq!(code, 200, "{body}");
    body["data"]["instances"][0].clone()
}

fn services_of(inst: &Value) -> Vec<String> {
    inst["services"]
        .as_array()
        .expect("services is a list")
        .iter()
        .map(|s| s.as_str().expect("a service is a string").to_string())
        .collect()
}

/// Waits until the instance shows exactly `want`, checking every answer on the way.
fn wait_services(api: &Api, want: &[&str], limit: Duration, check: impl Fn(&[String])) -> Value {
    let found = wait_for(limit, Duration::from_millis(200), || {
        let inst = instance(api);
        let services = services_of(&inst);
        check(&services);
        (services == want).then_some(inst)
    });
    found.unwrap_or_else(|| {
        panic!(
            "services did not become {want:?} within {limit:?}: {}",
            instance(api)
        )
    })
}

/// The text of `/metrics`, fetched from inside weftd's namespace.
fn metrics(host: &Netns) -> String {
    let url = format!("http://{LISTEN}/metrics");
    let out = host.exec(&["curl", "-sf", "--max-time", "5", &url]);
    assert!(out.status.success(), "GET /metrics: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `weft_agent_lines_total` by outcome.
fn agent_lines(host: &Netns) -> BTreeMap<String, u64> {
    metrics(host)
        .lines()
        .filter_map(|l| l.strip_prefix("weft_agent_lines_total{outcome=\""))
        .filter_map(|l| {
            let (outcome, count) = l.split_once("\"} ")?;
            Some((outcome.to_string(), count.trim().parse().ok()?))
        })
        .collect()
}

fn services(driver: &str, test: &str) {
    world(
        driver,
        test,
        &format!("an{}", &driver[..1]),
        |topo, weftd| {
            let api = weftd.api.clone();

            // 8080 on every address (busybox httpd takes `::` where it can), 8081 on the
            // primary's address, 9090 on the own interface's address only. The first request to
            // 9090 makes the app close 8080.
            let script = format!(
                "busybox httpd -f -p 8080 -h /tmp & h=$!; \
             busybox httpd -f -p {PRIMARY}:8081 -h /tmp & \
             busybox httpd -f -v -p {OWN}:9090 -h /tmp 2>&1 | \
             (read -r line; kill $h; echo closed 8080); wait"
            );
            let created = Instant::now();
            create(&api, &script);
            let never_9090 = |s: &[String]| assert!(!s.iter().any(|s| s == "tcp:9090"), "{s:?}");

            let inst = wait_services(
                &api,
                &["tcp:8080", "tcp:8081"],
                boot_limit(driver),
                never_9090,
            );
            let shown = created.elapsed();
            let net_time = inst["net_time_us"].as_u64().expect("net_time_us is set");
            let boot_time = inst["boot_time_us"].as_u64().expect("boot_time_us is set");
            assert!(net_time > 0 && net_time >= boot_time, "{inst}");
            assert!(
                Duration::from_micros(net_time) < shown,
                "net_time_us {net_time} is longer than the wait {shown:?}"
            );
            eprintln!(
                "{driver}: boot_time_us {boot_time}, net_time_us {net_time}, services shown after \
             {shown:?}"
            );

            // 9090 does listen (on the own address): it was announced and ignored, not missing.
            let page = topo.user.exec(&[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
                &format!("http://{OWN}:9090/"),
            ]);
            assert_eq!(String::from_utf8_lossy(&page.stdout), "404", "{page:?}");

            // That request made the app close 8080.
            let closed = Instant::now();
            wait_services(&api, &["tcp:8081"], Duration::from_secs(30), never_9090);
            eprintln!(
                "{driver}: a closed port left services after {:?}",
                closed.elapsed()
            );
            let lines = agent_lines(&topo.host);
            assert!(lines["accepted"] >= 2, "{lines:?}");
            assert_eq!(lines["dropped_malformed"], 0, "{lines:?}");
            assert_eq!(lines["dropped_oversized"], 0, "{lines:?}");

            // A restarted weftd connects again and keeps what was announced; the guest's
            // periodic announcement reaches it.
            weftd.restart();
            assert_eq!(services_of(&instance(&api)), ["tcp:8081"]);
            let again = wait_for(Duration::from_secs(30), Duration::from_millis(500), || {
                (agent_lines(&topo.host)
                    .get("accepted")
                    .copied()
                    .unwrap_or(0)
                    > 0)
                .then_some(())
            });
            assert!(again.is_some(), "no announcement after the restart");
            assert_eq!(services_of(&instance(&api)), ["tcp:8081"]);
            assert_eq!(instance(&api)["net_time_us"].as_u64(), Some(net_time));

            // A stopped guest announces nothing.
            let (code, body) = api.put("/v1/instances/app/stop");
            assert_eq!(code, 200, "{body}");
            let inst = instance(&api);
            assert_eq!(inst["state"], "stopped", "{inst}");
            assert!(services_of(&inst).is_empty(), "{inst}");
            let (code, body) = api.delete("/v1/instances/app");
            assert_eq!(code, 200, "{body}");
        },
    );
}

fn flood(driver: &str, test: &str) {
    world(
        driver,
        test,
        &format!("af{}", &driver[..1]),
        |topo, weftd| {
            let api = weftd.api.clone();
            let flood_s = 20;

            // Where the app finds the channel: in a VM the virtio-serial port, which root in the
            // guest may open; in a namespace the pipe weft-guest (its parent) writes to, through
            // /proc, which the netns driver shares with the host.
            let find = match driver {
                "qemu" => {
                    "for f in /sys/class/virtio-ports/*; do \
                 [ $(cat $f/name) = weft.agent ] && dev=/dev/${f##*/}; done"
                }
                _ => {
                    "read -r pid comm st ppid rest < /proc/self/stat; \
                 fd=$(tr '\\000' '\\n' < /proc/$ppid/cmdline | grep -A1 -x -- --agent-fd | \
                 tail -n 1); dev=/proc/$ppid/fd/$fd"
                }
            };
            // Random bytes (short garbage lines), an endless line of zeros, and valid
            // announcements by the thousand, over and over. The port is the app's only while it
            // holds it open: a write that finds it taken is retried.
            let script = format!(
                "busybox httpd -f -p 8080 -h /tmp & {find}; echo flooding $dev; sleep 5; \
             valid=$(printf '{{\\042v\\042:1,\\042listeners\\042:[]}}'); \
             end=$(( $(date +%s) + {flood_s} )); \
             while [ $(date +%s) -lt $end ]; do \
             {{ head -c 100000 /dev/urandom; echo; head -c 100000 /dev/zero; echo; \
             yes $valid | head -n 2000; }} > $dev 2>/dev/null || sleep 0.1; done; \
             echo flood over; wait"
            );
            create(&api, &script);
            wait_services(&api, &["tcp:8080"], boot_limit(driver), |_| {});
            let before = agent_lines(&topo.host);

            let started = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
                api.console("app")
                    .contains("flooding /")
                    .then_some(Instant::now())
            })
            .expect("the app starts flooding");

            // While it floods: every API call answers quickly.
            let mut timings = Vec::new();
            while started.elapsed() < Duration::from_secs(flood_s) {
                for path in ["/v1/instances/app", "/v1/instances", "/v1/healthz"] {
                    let asked = Instant::now();
                    let (code, body) = api.get(path);
                    timings.push(asked.elapsed());
                    assert_eq!(code, 200, "{path}: {body}");
                }
                let asked = Instant::now();
                let text = metrics(&topo.host);
                timings.push(asked.elapsed());
                assert!(text.contains("weft_agent_lines_total"), "{text}");
                std::thread::sleep(Duration::from_millis(100));
            }
            let after = agent_lines(&topo.host);
            timings.sort();
            let worst = *timings.last().expect("calls made");
            let median = timings[timings.len() / 2];
            eprintln!(
                "{driver}: {} API calls during the flood: median {median:?}, worst {worst:?}; \
             lines before {before:?}, after {after:?}; {}",
                timings.len(),
                metrics(&topo.host)
                    .lines()
                    .find(|l| l.starts_with("weft_agent_bytes_total"))
                    .unwrap_or_default()
            );
            assert!(
                worst < Duration::from_millis(500),
                "an API call took {worst:?}"
            );
            for outcome in ["dropped_oversized", "dropped_malformed", "dropped_rate"] {
                assert!(
                    after[outcome] > before[outcome],
                    "{outcome} did not grow: {before:?} -> {after:?}"
                );
            }

            // Once the flood is over, the guest's own announcement gets through again.
            wait_for(Duration::from_secs(60), Duration::from_millis(500), || {
                api.console("app").contains("flood over").then_some(())
            })
            .expect("the flood ends");
            wait_services(&api, &["tcp:8080"], Duration::from_secs(60), |_| {});
            let (code, body) = api.delete("/v1/instances/app");
            assert_eq!(code, 200, "{body}");
        },
    );
}
