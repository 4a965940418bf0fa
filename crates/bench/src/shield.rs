//! HTTPS through the network shield: a relay instance running `weft-shield`, a sandbox
//! relayed through it, and an HTTPS server in the internet namespace. Requests per second
//! to a host the shield splices (no secret bound) and to one it intercepts to inject a
//! secret, beside the same requests from a guest without a relay.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use serde_json::json;

use crate::datapath::{relayed, uuid, INTERNET};
use crate::tls::{self, Ca, Internet, DOMAIN, SAW_PLACEHOLDER, SAW_SECRET};
use crate::world::{enter, guest_ns, retry, run_in, trivial, Client, Programs, World};

pub const SECRET_VALUE: &str = "real-secret-7f3a9c";
pub const PLACEHOLDER: &str = "WEFT_BENCH_SECRET";

/// Requests per second, kept-alive connections and one connection per request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rates {
    pub keepalive: f64,
    pub per_connection: f64,
}

pub struct ShieldFigures {
    pub clients: usize,
    pub direct: Rates,
    pub spliced: Rates,
    pub injected: Rates,
}

fn plain() -> String {
    format!("plain.{DOMAIN}")
}

fn inject() -> String {
    format!("inject.{DOMAIN}")
}

pub fn run(
    world: &World,
    programs: &Programs,
    secs: Duration,
    clients: usize,
) -> anyhow::Result<ShieldFigures> {
    let dir = tempfile::tempdir()?;
    let internet_ca = Ca::new("weft-bench internet CA")?;
    let shield_ca = Ca::new("weft-bench shield CA")?;
    let upstream_ca = dir.path().join("internet-ca.pem");
    let ca_cert = dir.path().join("shield-ca.pem");
    let ca_key = dir.path().join("shield-ca.key");
    std::fs::write(&upstream_ca, &internet_ca.cert_pem)?;
    std::fs::write(&ca_cert, &shield_ca.cert_pem)?;
    std::fs::write(&ca_key, &shield_ca.key_pem)?;
    let _internet = Internet::start(
        &world.inet_ns(),
        INTERNET,
        &internet_ca,
        &[plain(), inject()],
    )?;

    let shield = json!({
        "name": "dp-shield",
        "image": "base",
        "args": [programs.shield.to_string_lossy()],
        "env": {
            "SHIELD_ALLOW": format!("*.{DOMAIN}"),
            "SHIELD_UPSTREAM_DNS": format!("{INTERNET}:53"),
            "SHIELD_UPSTREAM_CA": upstream_ca.to_string_lossy(),
            "SHIELD_CA_CERT": ca_cert.to_string_lossy(),
            "SHIELD_CA_KEY": ca_key.to_string_lossy(),
            "SHIELD_SECRET_BENCH": format!("{PLACEHOLDER}|{SECRET_VALUE}|{}", inject()),
            "SHIELD_STATS_INTERVAL": "0",
        },
    });
    let api = Client::new();
    let (direct, sandbox, nameserver) = run_in(&world.host_ns(), || {
        let api = api.connect();
        api.create(&shield)?;
        wait_ready(&api, "dp-shield")?;
        let sandbox = api.create(&relayed("dp-sandbox", "dp-shield"))?;
        let direct = api.create(&trivial("dp-https", 1))?;
        let nameserver: Ipv4Addr = sandbox["nameserver"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .context("sandbox without nameserver")?;
        anyhow::Ok((uuid(&direct)?, uuid(&sandbox)?, nameserver))
    })?;
    let direct_ns = guest_ns(&direct)?;
    let sandbox_ns = guest_ns(&sandbox)?;

    // The shield lets a sandbox reach only addresses its own DNS gave out.
    run_in(&sandbox_ns, || -> anyhow::Result<()> {
        for name in [plain(), inject()] {
            let server = SocketAddr::from((nameserver, 53));
            let addr = retry(Duration::from_secs(10), || {
                crate::dns::resolve(server, &name)
            })?;
            if addr != INTERNET {
                bail!("{name} resolved to {addr} through the shield");
            }
        }
        Ok(())
    })?;

    let config = tls::client_config(&[internet_ca.der.clone(), shield_ca.der.clone()])?;
    let measure = |ns: &Path, name: String, expect: &'static str| -> anyhow::Result<Rates> {
        Ok(Rates {
            keepalive: rate(ns, &config, &name, expect, secs, clients, true)?,
            per_connection: rate(ns, &config, &name, expect, secs, clients, false)?,
        })
    };
    let figures = ShieldFigures {
        clients,
        direct: measure(&direct_ns, plain(), SAW_PLACEHOLDER)?,
        spliced: measure(&sandbox_ns, plain(), SAW_PLACEHOLDER)?,
        injected: measure(&sandbox_ns, inject(), SAW_SECRET)?,
    };

    run_in(&world.host_ns(), || {
        let api = api.connect();
        api.delete("dp-sandbox")?;
        api.delete("dp-shield")?;
        api.delete("dp-https")
    })?;
    Ok(figures)
}

/// Waits until the shield's console says it is ready.
fn wait_ready(api: &crate::world::Connected, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, answer) = api.call(
            "GET",
            &format!("/v1/instances/{name}/log?limit=65536"),
            None,
        );
        let text = answer["data"]["instances"][0]["output"]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if text.contains("weft-shield: ready") {
            return Ok(());
        }
        if text.contains("weft-shield: error") || Instant::now() > deadline {
            bail!("the shield did not get ready:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Requests per second of `clients` threads inside `ns`, each on one kept-alive connection
/// or with a new connection per request, for `secs`. Every answer must be `expect`.
fn rate(
    ns: &Path,
    config: &std::sync::Arc<rustls::ClientConfig>,
    name: &str,
    expect: &str,
    secs: Duration,
    clients: usize,
    keepalive: bool,
) -> anyhow::Result<f64> {
    let done = AtomicUsize::new(0);
    let addr = SocketAddr::from((INTERNET, 443));
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let done = &done;
                scope.spawn(move || -> anyhow::Result<()> {
                    enter(ns)?;
                    let mut conn = None;
                    while started.elapsed() < secs {
                        if conn.is_none() {
                            conn = Some(tls::connect(config, addr, name)?);
                        }
                        let body =
                            tls::request(conn.as_mut().expect("connected"), name, PLACEHOLDER)
                                .with_context(|| format!("request to {name}"))?;
                        if body != expect {
                            bail!("{name} answered '{body}', expected '{expect}'");
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                        if !keepalive {
                            conn = None;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("client"))
            .collect()
    });
    let elapsed = started.elapsed();
    results.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(done.into_inner() as f64 / elapsed.as_secs_f64())
}
