//! What the relay and shield tests share: the test world (weftd with the netns driver, and an
//! internet with DNS, HTTP and HTTPS servers behind the host's uplink), the weft-shield
//! binary, and commands run inside netns guests.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use weft_testkit::internet::{self, Seen, TestCa};
use weft_testkit::{wait_for, Api, Netns, Topology, Weftd};

use super::weftd_binary;

/// The pool's gateway, where the platform answers DNS.
pub const GATEWAY: &str = "10.100.255.254";

pub struct World {
    pub topo: Topology,
    pub weftd: Weftd,
    pub seen: Seen,
    pub internet_ca: TestCa,
    /// Files the guests read (netns guests share this host's files).
    pub dir: tempfile::TempDir,
}

impl Drop for World {
    /// Deletes every instance: guests (QEMU processes, netns guests) outlive weftd on
    /// purpose, and must not outlive the test. Clients go before their relays, so this
    /// takes a few rounds at most.
    fn drop(&mut self) {
        for _ in 0..5 {
            let (code, list) = self.api().get("/v1/instances");
            if code != 200 {
                break;
            }
            let names: Vec<String> = list["data"]["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["name"].as_str().map(str::to_string))
                .collect();
            if names.is_empty() {
                return;
            }
            for name in names {
                self.api().delete(&format!("/v1/instances/{name}"));
            }
        }
        eprintln!("some instances could not be deleted after the test");
    }
}

impl World {
    /// The namespaces, the internet's servers, and weftd with `driver`, whose resolver
    /// forwards to the internet's DNS server.
    pub fn new(tag: &str, driver: &str, images: &Path) -> World {
        let topo = Topology::new(tag);
        let internet_ca = TestCa::new();
        let seen = internet::start(&topo.inet, &internet_ca);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("internet-ca.pem"), &internet_ca.pem).unwrap();
        let extra = format!("[dns]\nupstream = [\"{}\"]\n", internet::DNS);
        let weftd = Weftd::start_with(driver, &topo.host, &weftd_binary(), images, &extra);
        World {
            topo,
            weftd,
            seen,
            internet_ca,
            dir,
        }
    }

    pub fn api(&self) -> &Api {
        &self.weftd.api
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Creates an instance; panics unless it is running.
    pub fn create(&self, body: Value) -> Value {
        let (code, answer) = self.api().post("/v1/instances", &body);
        assert_eq!(code, 200, "create {}: {answer}", body["name"]);
        let instance = answer["data"]["instances"][0].clone();
        assert_eq!(instance["state"], "running", "{instance}");
        instance
    }

    /// Stops or starts an instance through the API; panics unless it ends in `state`.
    pub fn lifecycle(&self, name: &str, action: &str, state: &str) {
        let (code, answer) = self.api().put(&format!("/v1/instances/{name}/{action}"));
        assert_eq!(code, 200, "{action} {name}: {answer}");
        let (_, answer) = self.api().get(&format!("/v1/instances/{name}"));
        assert_eq!(answer["data"]["instances"][0]["state"], state, "{answer}");
    }

    /// Waits until the console of `name` has a line with every one of `parts`.
    pub fn wait_console(&self, name: &str, parts: &[&str], limit: Duration) -> String {
        wait_for(limit, Duration::from_millis(200), || {
            self.api()
                .console(name)
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            panic!(
                "no line with {parts:?} on the console of {name} within {limit:?}:\n{}",
                self.api().console(name)
            )
        })
    }

    /// Every instance's console and weftd's log, for a failed test.
    pub fn dump(&self) {
        let (_, list) = self.api().get("/v1/instances");
        for instance in list["data"]["instances"].as_array().into_iter().flatten() {
            let name = instance["name"].as_str().unwrap_or_default();
            eprintln!(
                "--- console of {name} ({}) ---\n{}",
                instance["state"],
                self.api().console(name)
            );
        }
        eprintln!("--- weftd log ---\n{}", self.weftd.log());
    }

    /// Runs `scenario`, printing every console and weftd's log when it fails.
    pub fn run(&self, scenario: impl FnOnce(&World)) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(self)));
        if let Err(panic) = result {
            self.dump();
            std::panic::resume_unwind(panic);
        }
    }
}

/// The app of a relay that only forwards (no shield): the sysctls a relay guest needs, then
/// a line with the count of forwarded packets every second.
pub fn forwarding_relay_app() -> Value {
    json!([
        "/bin/busybox",
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv4/ip_forward; \
         for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done; \
         while true; do \
         busybox awk '/^Ip: [0-9]/ { print \"relay forwarded \" $7 }' /proc/net/snmp; \
         sleep 1; done"
    ])
}

/// The weft-shield binary next to weftd's, built when it is missing.
pub fn shield_binary() -> PathBuf {
    let weftd = weftd_binary();
    let path = weftd.with_file_name("weft-shield");
    if !path.is_file() {
        let profile = weftd
            .parent()
            .and_then(|dir| dir.file_name())
            .and_then(|name| name.to_str())
            .map(|name| if name == "debug" { "dev" } else { name })
            .unwrap_or("dev")
            .to_string();
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .args(["build", "-p", "weft-shield", "--profile", &profile])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building weft-shield failed");
    }
    assert!(path.is_file(), "no weft-shield at {}", path.display());
    path
}

pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// curl in a guest's namespace, IPv4, with short timeouts: (exit code, stdout, stderr).
pub fn curl(ns: &Netns, args: &[&str]) -> (i32, String, String) {
    let mut full = vec![
        "curl",
        "-4",
        "-sS",
        "--noproxy",
        "*",
        "--connect-timeout",
        "4",
        "--max-time",
        "10",
    ];
    full.extend_from_slice(args);
    let out = ns.exec(&full);
    (
        out.status.code().unwrap_or(-1),
        text(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The body and HTTP status of a request from a guest; panics when curl fails.
pub fn http(ns: &Netns, args: &[&str]) -> (String, u16) {
    let mut full = vec!["-w", "\n%{http_code}"];
    full.extend_from_slice(args);
    let (code, out, err) = curl(ns, &full);
    assert_eq!(code, 0, "curl {args:?} in {}: {err}", ns.name());
    let (body, status) = out.rsplit_once('\n').expect("curl printed the status");
    (
        body.to_string(),
        status.trim().parse().expect("an HTTP status"),
    )
}
