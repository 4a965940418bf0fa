//! weftd: the weft daemon. It serves the API, runs the controller, and drives the host
//! network and the VMM driver.

use std::future::IntoFuture as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use weft_controller::{Config, Controller};
use weft_vmm::netns::NetnsDriver;
use weft_vmm::qemu::QemuDriver;

mod tls;

#[derive(Parser)]
#[command(
    version,
    about = "The weft daemon: microVMs with custom network configuration"
)]
struct Args {
    /// A TOML configuration file; its keys override the embedded defaults
    /// (see config/weftd.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_default_config {
        print!("{}", weft_controller::config::DEFAULT_CONFIG);
        return Ok(());
    }

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let config = Config::load(args.config.as_deref())?;
    // Before anything on the host changes, so that bad files change nothing.
    let api_tls = match &config.api.tls {
        Some(files) => Some(tls::server_config(files)?),
        None => None,
    };
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating {}", config.state_dir.display()))?;
    if let Some(dir) = config.store.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    let store = weft_store::Store::open(&config.store)
        .await
        .with_context(|| format!("opening store {}", config.store.display()))?;
    let hostnet = weft_hostnet::HostNet::connect()
        .await
        .context("connecting to netlink")?;
    let driver: Arc<dyn weft_vmm::Driver> = match config.driver.as_str() {
        "netns" => Arc::new(NetnsDriver::new(config.netns.clone())),
        _ => Arc::new(QemuDriver::new(config.qemu.clone())),
    };
    let listen = config.listen;

    let dns = config.dns.clone();
    let proxy = config.proxy.clone();
    let gateway = config.pool_gateway();
    let shutdown = config.shutdown.clone();
    let controller = Controller::start(config, store, hostnet, driver).await?;

    if dns.enabled {
        let resolver = weft_dns::Resolver::bind(
            weft_dns::Config {
                bind: std::net::SocketAddr::from((gateway, 53)),
                upstream: dns.upstream_addrs(gateway)?,
                timeout: std::time::Duration::from_secs(2),
            },
            Arc::new(weft_controller::directory::InstanceDirectory(Arc::clone(
                &controller,
            ))),
        )
        .await?;
        let _ = controller.metrics.dns.set(resolver.counters());
        tokio::spawn(resolver.run());
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    // After the API has its port, so that no published port can take it first.
    if proxy.enabled {
        serve_proxy(&controller, proxy)?;
    }
    tracing::info!(%listen, tls = api_tls.is_some(), "weftd serving");

    // On SIGTERM or SIGINT the server stops accepting, and requests in flight finish (at
    // most `grace_s`); a create among them runs on a task of its own and is finished or
    // undone as a whole.
    let stopping = Arc::new(tokio::sync::Notify::new());
    let stopped = {
        let stopping = Arc::clone(&stopping);
        async move { stopping.notified().await }
    };
    let app = weft_api::router(Arc::clone(&controller));
    let mut server = match api_tls {
        Some(config) => tokio::spawn(
            axum::serve(tls::TlsListener::new(listener, config)?, app)
                .with_graceful_shutdown(stopped)
                .into_future(),
        ),
        None => tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .into_future(),
        ),
    };
    tokio::select! {
        result = &mut server => {
            result??;
            return Ok(());
        }
        () = shutdown_signal() => {}
    }
    tracing::info!("weftd stopping: no new requests, finishing those in flight");
    stopping.notify_one();
    let grace = std::time::Duration::from_secs(shutdown.grace_s);
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => result??,
        Err(_) => {
            server.abort();
            tracing::warn!(
                grace_s = shutdown.grace_s,
                "requests still in flight at the end of the grace time"
            );
        }
    }
    if shutdown.stop_guests {
        let (stopped, failed) = controller.stop_all_guests().await;
        for failure in &failed {
            tracing::error!(%failure, "stopping a guest at shutdown");
        }
        tracing::info!(
            stopped,
            failed = failed.len(),
            "weftd stopped; guests stopped"
        );
    } else {
        tracing::info!("weftd stopped; guests keep running");
    }
    Ok(())
}

/// Starts the ingress proxy on the controller's routes.
fn serve_proxy(
    controller: &Arc<Controller>,
    config: weft_controller::config::ProxyConfig,
) -> anyhow::Result<()> {
    let settings = weft_proxy::Settings {
        listen: config.listen,
        certificates: config
            .certificates
            .into_iter()
            .map(|c| weft_proxy::CertificateFiles {
                cert: c.cert,
                key: c.key,
            })
            .collect(),
    };
    let proxy = weft_proxy::Proxy::new(settings).context("starting the ingress proxy")?;
    let _ = controller.metrics.proxy.set(proxy.counters());
    tokio::spawn(proxy.run(controller.routes()));
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
