//! What the end-to-end tests share: the weftd binary, the guest images, and snapshots of
//! host and store state to prove that a refused request changed nothing.

#![allow(dead_code)]

pub mod consistency;
pub mod relay;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use weft_testkit::{Api, Netns, Topology, Weftd};

pub fn weftd_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weftd"))
}

/// The images directory with the base image built by `image/build.sh`
/// (`WEFT_TEST_IMAGES`, default `image/out`). Under `CI=true` a missing image fails the
/// test; elsewhere the test is skipped.
pub fn images_or_skip(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("WEFT_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../image/out"));
    if dir.join("base/kernel").is_file() && dir.join("base/initrd").is_file() {
        return Some(dir);
    }
    let reason = format!("no base image in {} (run image/build.sh)", dir.display());
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run under CI: {reason}");
    }
    eprintln!("skipping {test}: {reason}");
    None
}

/// A unique short tag for this test's namespaces.
pub fn tag(prefix: &str) -> String {
    format!("{prefix}{}", std::process::id() % 100_000)
}

/// Everything a create could leave behind on the host and in the store.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub links: Vec<String>,
    pub addrs: String,
    pub routes: String,
    pub nft: String,
    pub instances: u64,
    pub store_rows: String,
}

/// The store's rows as a refused request must leave them: every instance with its
/// configuration and state, and every interface with everything it holds.
const STORE_ROWS: &str = "SELECT uuid, account, name, state, image, args, env, memory_mb, vcpus, \
     gateway, nameserver FROM instances ORDER BY uuid; \
     SELECT uuid, account, name, instance, idx, ip, tap_name, mac, pool_addr, autoconfig, \
     relay_name, relay_dns FROM interfaces ORDER BY uuid;";

impl Snapshot {
    /// The snapshot without an empty `netdev weft` table: the first relay creates that table
    /// and the last one to go leaves it empty, with no rule in it, until weftd stops.
    pub fn without_empty_relay_table(mut self) -> Snapshot {
        self.nft = self.nft.replace("table netdev weft {\n}\n", "");
        self
    }
}

pub fn snapshot(host: &Netns, weftd: &Weftd) -> Snapshot {
    let text = |out: std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let links = text(host.exec(&["ip", "-o", "link", "show"]));
    // Carrier flags change as guests come and go; keep names and kinds only.
    let links = links
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_string())
        .collect();
    let (_, list) = weftd.api.get("/v1/instances");
    let db = weftd.state_dir().join("weft.db");
    let rows = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(STORE_ROWS)
        .output()
        .expect("sqlite3 runs");
    // IPv6 link-local addresses and routes come and go with carrier on the user's own
    // devices; weft does not manage IPv6.
    let ipv4_only = |s: String| {
        s.lines()
            .filter(|l| !l.contains("inet6") && !l.contains("fe80::") && !l.contains("ff00::"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Snapshot {
        links,
        addrs: ipv4_only(text(host.exec(&["ip", "-o", "addr", "show"]))),
        routes: ipv4_only(text(host.exec(&["ip", "route", "show", "table", "all"]))),
        nft: text(host.exec(&["nft", "list", "ruleset"])),
        instances: list["data"]["instances"]
            .as_array()
            .map_or(0, |a| a.len() as u64),
        store_rows: String::from_utf8_lossy(&rows.stdout).into_owned(),
    }
}

/// A test's world: its namespaces and a weftd with the netns driver (guests are network
/// namespaces running `weft-guest`, so they boot in milliseconds).
pub struct World {
    pub topo: Topology,
    pub weftd: Weftd,
    /// The tokens of every account of the configuration, to clean up with.
    tokens: Vec<String>,
}

impl Drop for World {
    /// Deletes every instance of every account: guests outlive weftd on purpose, and a
    /// test's guests must not outlive the test, whether it passed or not. Relays go once
    /// their clients have, so this takes a few rounds at most.
    fn drop(&mut self) {
        for _ in 0..5 {
            let mut left = 0;
            for token in &self.tokens {
                let api = self.weftd.api.with_token(token);
                let (code, list) = api.get("/v1/instances");
                if code != 200 {
                    continue;
                }
                for inst in list["data"]["instances"].as_array().into_iter().flatten() {
                    let uuid = inst["uuid"].as_str().unwrap_or_default();
                    if api.delete(&format!("/v1/instances/{uuid}")).0 != 200 {
                        left += 1;
                    }
                }
            }
            if left == 0 {
                return;
            }
        }
        eprintln!("some instances could not be deleted after the test");
    }
}

impl World {
    /// Starts the world of `test`, or returns `None` when the test cannot run here (and is
    /// not under CI). `extra` is TOML merged into weftd's test configuration.
    pub fn netns(test: &str, prefix: &str, extra: &str) -> Option<World> {
        if !weft_testkit::privileged_or_skip(test) {
            return None;
        }
        let images = images_or_skip(test)?;
        let topo = Topology::new(&tag(prefix));
        let weftd = Weftd::start_with("netns", &topo.host, &weftd_binary(), &images, extra);
        let mut tokens = vec![weft_testkit::weftd::TOKEN.to_string()];
        tokens.extend(tokens_of(extra));
        Some(World {
            topo,
            weftd,
            tokens,
        })
    }

    pub fn api(&self) -> &Api {
        &self.weftd.api
    }

    pub fn snapshot(&self) -> Snapshot {
        snapshot(&self.topo.host, &self.weftd)
    }

    /// Runs `scenario`, printing weftd's log when it fails.
    pub fn run(&self, scenario: impl FnOnce(&World)) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(self)));
        if let Err(panic) = result {
            eprintln!("--- weftd log ---\n{}", self.weftd.log());
            std::panic::resume_unwind(panic);
        }
    }
}

/// The tokens that lines `tokens = ["...", ...]` of a configuration give.
fn tokens_of(config: &str) -> Vec<String> {
    config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tokens"))
        .filter_map(|l| l.trim().strip_prefix('='))
        .flat_map(|list| list.split('"').skip(1).step_by(2).map(str::to_string))
        .collect()
}

/// The args of a guest that only waits, long enough for any test.
pub fn sleeper() -> Value {
    json!(["/bin/busybox", "sleep", "600"])
}

/// The one item of an answer about one instance.
pub fn item(body: &Value) -> &Value {
    &body["data"]["instances"][0]
}

/// The items of an answer.
pub fn items(body: &Value) -> Vec<Value> {
    body["data"]["instances"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Creates an instance from `body` (with `image` and `args` filled in when missing) and
/// returns its item, failing the test with the answer when the create fails.
pub fn create(api: &Api, body: Value) -> Value {
    let mut full = json!({ "image": "base", "args": sleeper() });
    full.as_object_mut().unwrap().extend(
        body.as_object()
            .expect("a create body is an object")
            .clone(),
    );
    let (code, answer) = api.post("/v1/instances", &full);
    assert_eq!(code, 200, "create {full}: {answer}");
    assert_envelope("create", code, &answer);
    item(&answer).clone()
}

/// The members an envelope may have.
const ENVELOPE_MEMBERS: &[&str] = &["status", "message", "data", "errors", "op_time_us"];

/// Checks the envelope of any answer: only its members, the server time, and on error a
/// message and the HTTP code in `errors`.
pub fn assert_envelope(what: &str, code: u16, body: &Value) {
    let map = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: the answer is not a JSON object: {body}"));
    for key in map.keys() {
        assert!(
            ENVELOPE_MEMBERS.contains(&key.as_str()),
            "{what}: '{key}' is not an envelope member: {body}"
        );
    }
    assert!(
        body["op_time_us"].is_u64(),
        "{what}: op_time_us missing: {body}"
    );
    let status = body["status"].as_str().unwrap_or_default();
    match status {
        "success" => {
            assert_eq!(code, 200, "{what}: {body}");
            assert!(
                body.get("message").is_none() && body.get("errors").is_none(),
                "{what}: a success with an error's members: {body}"
            );
        }
        "partial_success" => {
            assert_eq!(code, 200, "{what}: {body}");
            assert!(body["message"].is_string(), "{what}: {body}");
        }
        "error" => {
            let message = body["message"].as_str().unwrap_or_default();
            assert!(
                !message.is_empty(),
                "{what}: an error without message: {body}"
            );
            let errors = body["errors"].as_array().cloned().unwrap_or_default();
            assert!(
                !errors.is_empty(),
                "{what}: an error without errors: {body}"
            );
            for e in &errors {
                assert!(e["status"].is_u64(), "{what}: {body}");
            }
            if code != 200 {
                assert_eq!(
                    body["errors"],
                    json!([{ "status": code }]),
                    "{what}: errors must carry the HTTP code: {body}"
                );
            }
        }
        other => panic!("{what}: status '{other}' is not one of the envelope's: {body}"),
    }
    if let Some(list) = body["data"]["instances"].as_array() {
        for item in list {
            let status = item["status"].as_str().unwrap_or_default();
            assert!(
                status == "success" || status == "error",
                "{what}: an item without its status: {item}"
            );
            if status == "error" {
                assert!(item["message"].is_string(), "{what}: {item}");
                assert!(item["error"].is_u64(), "{what}: {item}");
            }
        }
    }
}

/// Waits (bounded) until the guest of `id` has started its app, and returns its console.
pub fn console_when_started(api: &Api, id: &str) -> String {
    weft_testkit::wait_for(
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(100),
        || {
            let console = api.console(id);
            console.contains("weft-guest: app start").then_some(console)
        },
    )
    .unwrap_or_else(|| panic!("guest {id} did not start its app:\n{}", api.console(id)))
}

/// The lines a guest's console holds, trimmed of the `weft-guest: ` prefix.
pub fn guest_lines(console: &str) -> Vec<String> {
    console
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("weft-guest: "))
        .map(str::to_string)
        .collect()
}
