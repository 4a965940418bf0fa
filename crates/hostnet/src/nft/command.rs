//! Talking to nftables: applying JSON batches and reading weft's tables back, through
//! libnftables in process (see [`super::libnft`]) or, without it, the `nft` program.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;

use nftables::schema::Nftables;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::relay::NETDEV_TABLE;
use super::{GUESTS, RELAYED, TABLE};
use crate::HostNetError;

/// The `nft` program: from `PATH`, else from the usual system directories, which a service's
/// `PATH` does not always include.
pub(crate) fn nft_program() -> &'static PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join("nft"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("nft"))
    })
}

/// Runs the nft command `args` (`list tables ip`), or with `args` empty the JSON batch
/// `input`, and returns what `nft -j` prints. In process through libnftables when it is
/// installed, else by running `nft -j`; either way in the calling thread's network namespace.
async fn run(args: &[&str], input: Option<&str>) -> Result<String, HostNetError> {
    let what = if args.is_empty() {
        "-f -".to_string()
    } else {
        args.join(" ")
    };
    match super::libnft::library() {
        Some(lib) => lib
            .run(input.unwrap_or(&what))
            .map_err(|e| HostNetError::Nftables(format!("nft {what}: {e}"))),
        None => spawn(args, input).await,
    }
}

/// Runs `nft -j <args>` (`-f -` when empty) with `input` on stdin and returns its stdout.
/// The child inherits the calling thread's network namespace.
async fn spawn(args: &[&str], input: Option<&str>) -> Result<String, HostNetError> {
    let fail = |what: String| HostNetError::Nftables(what);
    let args: &[&str] = if args.is_empty() { &["-f", "-"] } else { args };

    let mut child = Command::new(nft_program())
        .arg("-j")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", nft_program().display())))?;

    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| fail(format!("writing to nft: {e}")))?;
    }

    let out = child
        .wait_with_output()
        .await
        .map_err(|e| fail(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!("nft {}: {}", args.join(" "), stderr.trim())));
    }
    String::from_utf8(out.stdout).map_err(|e| fail(format!("nft output: {e}")))
}

/// Applies a batch atomically: nft runs a whole input as one transaction.
pub(crate) async fn apply(batch: &Nftables<'_>) -> Result<(), HostNetError> {
    let json = serde_json::to_string(batch)
        .map_err(|e| HostNetError::Nftables(format!("encoding rules: {e}")))?;
    run(&[], Some(&json)).await.map(|_| ())
}

fn parse(output: &str) -> Result<Vec<serde_json::Value>, HostNetError> {
    let value: serde_json::Value = serde_json::from_str(output)
        .map_err(|e| HostNetError::Nftables(format!("nft output: {e}")))?;
    match value.get("nftables") {
        Some(serde_json::Value::Array(items)) => Ok(items.clone()),
        _ => Err(HostNetError::Nftables(
            "nft output has no \"nftables\" list".into(),
        )),
    }
}

/// Whether the table `<family> <name>` exists.
async fn exists(family: &str, name: &str) -> Result<bool, HostNetError> {
    let items = parse(&run(&["list", "tables", family], None).await?)?;
    Ok(items.iter().any(|i| i["table"]["name"] == name))
}

/// Whether `ip weft` exists.
pub(crate) async fn table_exists() -> Result<bool, HostNetError> {
    exists("ip", TABLE).await
}

/// What `ip weft` holds, as counts of (chains, sets, rules); `None` when the table is not
/// installed.
pub(crate) async fn table_shape() -> Result<Option<(usize, usize, usize)>, HostNetError> {
    if !table_exists().await? {
        return Ok(None);
    }
    let items = parse(&run(&["list", "table", "ip", TABLE], None).await?)?;
    let count = |kind: &str| items.iter().filter(|i| i.get(kind).is_some()).count();
    Ok(Some((count("chain"), count("set"), count("rule"))))
}

/// Whether `netdev weft` exists.
pub(crate) async fn netdev_table_exists() -> Result<bool, HostNetError> {
    exists("netdev", NETDEV_TABLE).await
}

/// The elements of a set of `ip weft`; empty when the table is not installed.
async fn set_elements(set: &str) -> Result<Vec<serde_json::Value>, HostNetError> {
    if !table_exists().await? {
        return Ok(Vec::new());
    }
    let items = parse(&run(&["list", "set", "ip", TABLE, set], None).await?)?;
    Ok(items
        .iter()
        .filter_map(|item| item["set"]["elem"].as_array())
        .flatten()
        .cloned()
        .collect())
}

/// The elements of `guests`; empty when weft's table is not installed.
pub(crate) async fn guests() -> Result<Vec<(String, Ipv4Addr)>, HostNetError> {
    set_elements(GUESTS)
        .await?
        .iter()
        .map(parse_guest)
        .collect()
}

/// The elements of `relayed`; empty when weft's table is not installed.
pub(crate) async fn relayed_sources() -> Result<Vec<Ipv4Addr>, HostNetError> {
    set_elements(RELAYED)
        .await?
        .iter()
        .map(|elem| {
            let value = elem.get("elem").and_then(|e| e.get("val")).unwrap_or(elem);
            value.as_str().and_then(|a| a.parse().ok()).ok_or_else(|| {
                HostNetError::Nftables(format!("unexpected element in {RELAYED}: {elem}"))
            })
        })
        .collect()
}

/// The comments of the rules of `netdev weft`; empty when the table is not installed.
pub(crate) async fn netdev_comments() -> Result<Vec<String>, HostNetError> {
    if !netdev_table_exists().await? {
        return Ok(Vec::new());
    }
    let items = parse(&run(&["list", "table", "netdev", NETDEV_TABLE], None).await?)?;
    Ok(items
        .iter()
        .filter_map(|item| item["rule"]["comment"].as_str())
        .map(str::to_string)
        .collect())
}

pub(super) fn parse_guest(elem: &serde_json::Value) -> Result<(String, Ipv4Addr), HostNetError> {
    let bad = || HostNetError::Nftables(format!("unexpected element in {GUESTS}: {elem}"));
    // An element with attributes (timeout, comment) is wrapped as {"elem": {"val": ...}}.
    let value = elem.get("elem").and_then(|e| e.get("val")).unwrap_or(elem);
    let parts = value["concat"].as_array().ok_or_else(bad)?;
    match parts.as_slice() {
        [tap, addr] => {
            let tap = tap.as_str().ok_or_else(bad)?;
            let addr = addr.as_str().and_then(|a| a.parse().ok()).ok_or_else(bad)?;
            Ok((tap.to_string(), addr))
        }
        _ => Err(bad()),
    }
}
