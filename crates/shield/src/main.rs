//! weft-shield: the egress shield that runs as the app of a relay instance.
//!
//! Every packet its clients send arrives on the relay NIC, whatever its destination. The
//! shield makes all of it local, answers DNS for allowed names only, lets HTTP and TLS
//! through to allowed names at the addresses its own DNS gave out, refuses everything else,
//! and replaces secret placeholders in requests to the hosts the secrets are bound to.
//!
//! It fails closed: when it cannot set up its routing or its listeners it exits non-zero,
//! and when it is gone its clients' packets still end at the relay, unanswered.

mod addr;
mod ca;
mod config;
mod dns;
mod http;
mod local;
mod log;
mod netsetup;
mod policy;
mod refuse;
mod resolved;
mod shield;
mod sockets;
mod stream;
mod tcp;
mod tls;

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{first_nameserver, Config, Intercept, USAGE};
use crate::log::say;
use crate::shield::Shield;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let config = Config::from_sources(std::env::vars(), args).and_then(|c| {
        c.check_complete()?;
        Ok(c)
    });
    let config = match config {
        Ok(config) => config,
        Err(message) => {
            say(&format!("error: bad policy: {message}"));
            eprintln!("\n{USAGE}");
            std::process::exit(2);
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            say(&format!("error: starting the runtime: {err}"));
            std::process::exit(1);
        }
    };
    if let Err(err) = runtime.block_on(run(config)) {
        say(&format!("error: {err:#}"));
        std::process::exit(1);
    }
}

async fn run(config: Config) -> Result<()> {
    let upstream_dns = match config.upstream_dns {
        Some(addr) => addr,
        None => {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let ip = first_nameserver(&text).ok_or_else(|| {
                anyhow!(
                    "no upstream resolver: set SHIELD_UPSTREAM_DNS or give the guest a nameserver"
                )
            })?;
            SocketAddrV4::new(ip, 53)
        }
    };
    let nic = config.nic.clone();
    let table = config.route_table;
    let shield = Arc::new(Shield::new(config, upstream_dns)?);

    netsetup::setup(&nic, table)
        .await
        .context("setting up the relay routing")?;
    let bind = |what: &str| format!("listening on {what}");
    let dns_udp = sockets::udp_socket(53).with_context(|| bind("udp port 53"))?;
    let dns_tcp = sockets::tcp_listener(53).with_context(|| bind("tcp port 53"))?;
    let http = sockets::tcp_listener(80).with_context(|| bind("tcp port 80"))?;
    let https = sockets::tcp_listener(443).with_context(|| bind("tcp port 443"))?;
    let refuser = refuse::Refuser::new(&nic).context("opening the raw sockets for other ports")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("handling SIGUSR1")?;
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;

    say(&ready_line(&shield, &nic, table));

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(dns::serve(shield.clone(), dns_udp, dns_tcp));
    tasks.spawn(tcp::serve(shield.clone(), http, 80));
    tasks.spawn(tcp::serve(shield.clone(), https, 443));
    tasks.spawn(refuser.run(shield.clone()));

    let interval = shield.config.stats_interval;
    let mut stats = tokio::time::interval(interval.unwrap_or(Duration::from_secs(3600)));
    stats.tick().await;
    let mut suppressed = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = usr1.recv() => say(&shield.log.stats_line()),
            _ = stats.tick(), if interval.is_some() => say(&shield.log.stats_line()),
            _ = suppressed.tick() => shield.log.report_suppressed(),
            _ = term.recv() => break,
            _ = int.recv() => break,
            ended = tasks.join_next() => {
                // A server loop never ends by itself: this is a bug or a panic, and a shield
                // that no longer serves everything must not pretend it does.
                return Err(anyhow!("a server task ended: {ended:?}"));
            }
        }
    }
    say(&shield.log.stats_line());
    // The routing stays: with the shield gone, clients' packets end here, unanswered.
    say("stopping");
    Ok(())
}

fn ready_line(shield: &Shield, nic: &str, table: u32) -> String {
    let policy = &shield.config.policy;
    let join = |items: Vec<String>| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(",")
        }
    };
    format!(
        "ready nic={nic} table={table} upstream-dns={} allow={} allow-cidrs={} secrets={} \
         intercept={}",
        shield.upstream_dns,
        join(policy.names.iter().map(|n| n.to_string()).collect()),
        join(policy.cidrs.iter().map(|c| c.to_string()).collect()),
        join(policy.secrets.iter().map(|s| s.name.clone()).collect()),
        match shield.config.intercept {
            Intercept::Secrets => "secrets",
            Intercept::All => "all",
        },
    )
}
