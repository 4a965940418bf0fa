//! What the end-to-end tests share: the weftd binary, the guest images, and snapshots of
//! host and store state to prove that a refused request changed nothing.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use weft_testkit::{Netns, Weftd};

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
        .arg("SELECT uuid, name FROM instances; SELECT name, tap_name, mac FROM interfaces;")
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
