//! The host network setup of one instance with four pool interfaces, measured alone: weft's
//! own code (`weft_hostnet`, in process) against the same routes and set elements made by
//! running `ip route` and `nft` commands, as a shell script would.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use weft_hostnet::{HostNet, PoolNet};
use weft_testkit::Netns;

use crate::stats::Samples;
use crate::world::{netns_path, run_in};

/// TAP devices of the measured instance, one per interface.
const NICS: usize = 4;
const PREFIX: &str = "wbt";

pub struct HostSetup {
    /// How many other interfaces were attached (routes and set elements) while measuring.
    pub resident: usize,
    pub weft_attach: Samples,
    pub weft_detach: Samples,
    pub cmd_attach: Samples,
    pub cmd_detach: Samples,
}

fn pool() -> PoolNet {
    PoolNet {
        cidr: "10.100.0.0/16".parse().expect("pool CIDR"),
        gateway: Ipv4Addr::new(10, 100, 255, 254),
        tap_prefix: PREFIX.into(),
        tap_count: NICS as u32,
        uplink: "lo".into(),
    }
}

/// The measured instance's interfaces.
fn interfaces() -> Vec<(String, Ipv4Addr)> {
    (0..NICS)
        .map(|n| {
            (
                format!("{PREFIX}{n}"),
                Ipv4Addr::new(10, 100, 0, n as u8 + 1),
            )
        })
        .collect()
}

/// Measures `rounds` attach/detach cycles of weft's code, and one cycle of the commands
/// every fourth round (they are slow), with `resident` other interfaces in place.
pub fn run(tag: &str, rounds: usize, resident: usize) -> anyhow::Result<HostSetup> {
    let ns = Netns::create(&format!("{tag}{}", std::process::id() % 10_000));
    run_in(&netns_path(ns.name()), || measure(rounds, resident))
}

fn measure(rounds: usize, resident: usize) -> anyhow::Result<HostSetup> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let net = HostNet::connect().await?;
        net.setup_pool(&pool()).await?;
        prefill(resident)?;

        let ifaces = interfaces();
        let mut out = HostSetup {
            resident,
            weft_attach: Samples::new(),
            weft_detach: Samples::new(),
            cmd_attach: Samples::new(),
            cmd_detach: Samples::new(),
        };
        // One untimed cycle of each, so that caches and lazy set-ups do not count.
        weft_cycle(&net, &ifaces).await?;
        cmd_cycle(&ifaces)?;

        for round in 0..rounds {
            let (attach, detach) = weft_cycle(&net, &ifaces).await?;
            out.weft_attach.push(attach);
            out.weft_detach.push(detach);
            if round % 4 == 0 {
                let (attach, detach) = cmd_cycle(&ifaces)?;
                out.cmd_attach.push(attach);
                out.cmd_detach.push(detach);
            }
        }

        net.teardown_pool(&pool()).await?;
        Ok(out)
    })
}

async fn weft_cycle(
    net: &HostNet,
    ifaces: &[(String, Ipv4Addr)],
) -> anyhow::Result<(Duration, Duration)> {
    // What the controller does for an instance: all its pool interfaces at once.
    let started = Instant::now();
    net.attach_pool_interfaces(ifaces).await?;
    let attached = started.elapsed();

    let started = Instant::now();
    net.detach_pool_interfaces(ifaces).await?;
    Ok((attached, started.elapsed()))
}

/// The same routes and elements through `ip` and `nft`, one command each.
fn cmd_cycle(ifaces: &[(String, Ipv4Addr)]) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    for (tap, addr) in ifaces {
        sh(&["ip", "route", "add", &format!("{addr}/32"), "dev", tap])?;
        sh(&[
            "nft",
            "add",
            "element",
            "ip",
            "weft",
            "guests",
            &elem(tap, *addr),
        ])?;
    }
    let attached = started.elapsed();

    let started = Instant::now();
    for (tap, addr) in ifaces {
        sh(&["ip", "route", "del", &format!("{addr}/32"), "dev", tap])?;
        sh(&[
            "nft",
            "delete",
            "element",
            "ip",
            "weft",
            "guests",
            &elem(tap, *addr),
        ])?;
    }
    Ok((attached, started.elapsed()))
}

fn elem(tap: &str, addr: Ipv4Addr) -> String {
    format!("{{ {tap} . {addr} }}")
}

/// Attaches `n` other interfaces (spread over the same TAPs) in two commands.
fn prefill(n: usize) -> anyhow::Result<()> {
    if n == 0 {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut routes = String::new();
    let mut elems = Vec::new();
    for i in 0..n {
        let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 100, 1, 0)) + i as u32);
        let tap = format!("{PREFIX}{}", i % NICS);
        routes.push_str(&format!("route add {addr}/32 dev {tap}\n"));
        elems.push(format!("{tap} . {addr}"));
    }
    let routes_file = dir.path().join("routes");
    std::fs::write(&routes_file, routes)?;
    let nft_file = dir.path().join("elements.nft");
    std::fs::write(
        &nft_file,
        format!("add element ip weft guests {{ {} }}\n", elems.join(", ")),
    )?;
    sh(&["ip", "-batch", &routes_file.to_string_lossy()])?;
    sh(&["nft", "-f", &nft_file.to_string_lossy()])?;
    Ok(())
}

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
