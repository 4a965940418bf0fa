//! weftd: the weft daemon. It serves the API, runs the controller, and drives the host
//! network and the VMM driver.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use weft_controller::{Config, Controller};
use weft_vmm::netns::NetnsDriver;
use weft_vmm::qemu::QemuDriver;

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
    tracing::info!(%listen, "weftd serving");

    axum::serve(listener, weft_api::router(controller))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("weftd stopped; guests keep running");
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
