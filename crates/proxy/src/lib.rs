//! weft's ingress proxy. It listens on the host's public address on every
//! port that a service group publishes, and forwards each TCP connection, or with the
//! `http` handler each HTTP request, to the destination port on the primary interface's
//! address of one of the group's running instances, in turn (R5). It terminates TLS with
//! the configured certificates, redirects to HTTPS, and follows the routes it is given
//! through a watch channel: ports open and close as groups come and go, without a restart.
//!
//! The proxy knows nothing of stores or accounts: its routes name the ports, what to do on
//! them, and the addresses to forward to. Whoever computes them decides that those are
//! primary addresses only.

mod forward;
mod http;
mod tls;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weft_model::services::{Mode, Route};

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often ports that could not be listened on are tried again.
const RETRY_BIND: Duration = Duration::from_secs(5);

/// Where the proxy listens and the certificates it serves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The host address of every published port (`0.0.0.0`: all of them).
    pub listen: IpAddr,
    pub certificates: Vec<CertificateFiles>,
}

/// A certificate for the `tls` handler, chosen for the names it carries.
#[derive(Clone, Debug)]
pub struct CertificateFiles {
    /// PEM: the certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: its private key.
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("certificate {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

/// What clients made the proxy do. Clients on the internet trigger all of these, so they
/// are counted rather than logged.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted on published ports.
    pub connections: AtomicU64,
    /// HTTP requests forwarded to an instance.
    pub requests: AtomicU64,
    /// Requests answered with a redirect to HTTPS.
    pub redirects: AtomicU64,
    /// Connections and requests that found no running instance.
    pub no_instance: AtomicU64,
    /// Connections and requests that no running instance answered.
    pub unreachable: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_failed: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (name, value) pairs for a metrics endpoint.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("connections", get(&self.connections)),
            ("requests", get(&self.requests)),
            ("redirects", get(&self.redirects)),
            ("no_instance", get(&self.no_instance)),
            ("unreachable", get(&self.unreachable)),
            ("tls_failed", get(&self.tls_failed)),
        ]
    }
}

/// What every connection needs.
pub(crate) struct Context {
    tls: Option<tls::Acceptors>,
    counters: Arc<Counters>,
}

pub struct Proxy {
    listen: IpAddr,
    context: Arc<Context>,
}

/// A published port: its accept loop, and the route it serves, which changes in place.
struct Listener {
    route: watch::Sender<Route>,
    accept: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // The accept loop owns the socket: ending it closes the port. Connections already
        // accepted run on.
        self.accept.abort();
    }
}

impl Proxy {
    /// Reads the certificates; a certificate that cannot be used is an error here rather
    /// than at a client's handshake.
    pub fn new(settings: Settings) -> Result<Proxy, ProxyError> {
        Ok(Proxy {
            listen: settings.listen,
            context: Arc::new(Context {
                tls: tls::Acceptors::load(&settings.certificates)?,
                counters: Arc::new(Counters::default()),
            }),
        })
    }

    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.context.counters)
    }

    /// Serves the routes, following their changes, until the sender is gone.
    pub async fn run(self, mut routes: watch::Receiver<Arc<Vec<Route>>>) {
        let mut listeners: HashMap<u16, Listener> = HashMap::new();
        let mut failing: HashSet<u16> = HashSet::new();
        loop {
            let current = Arc::clone(&routes.borrow_and_update());
            self.reconcile(&mut listeners, &mut failing, &current).await;
            tokio::select! {
                changed = routes.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(RETRY_BIND), if !failing.is_empty() => {}
            }
        }
        tracing::info!(ports = listeners.len(), "proxy stopped");
    }

    /// Opens the ports of new routes, closes those of routes that went, and hands changed
    /// routes to their listeners.
    async fn reconcile(
        &self,
        listeners: &mut HashMap<u16, Listener>,
        failing: &mut HashSet<u16>,
        routes: &[Route],
    ) {
        listeners.retain(|port, _| {
            let keep = routes.iter().any(|r| r.port == *port);
            if !keep {
                tracing::info!(port, "port closed");
            }
            keep
        });
        failing.retain(|port| routes.iter().any(|r| r.port == *port));

        for route in routes {
            if let Some(listener) = listeners.get(&route.port) {
                listener.route.send_if_modified(|current| {
                    let differ = current != route;
                    if differ {
                        *current = route.clone();
                    }
                    differ
                });
                continue;
            }
            let addr = SocketAddr::new(self.listen, route.port);
            match TcpListener::bind(addr).await {
                Ok(socket) => {
                    failing.remove(&route.port);
                    let (tx, rx) = watch::channel(route.clone());
                    let accept = tokio::spawn(accept_loop(socket, rx, Arc::clone(&self.context)));
                    listeners.insert(route.port, Listener { route: tx, accept });
                    tracing::info!(%addr, group = %route.group, mode = ?route.mode, "port published");
                    if route.mode.terminates_tls() && self.context.tls.is_none() {
                        tracing::warn!(%addr, group = %route.group, "the port terminates TLS and no certificate is configured: its handshakes fail");
                    }
                }
                Err(e) => {
                    if failing.insert(route.port) {
                        tracing::error!(%addr, group = %route.group, error = %e, "cannot listen; trying again every few seconds");
                    }
                }
            }
        }
    }
}

async fn accept_loop(socket: TcpListener, route: watch::Receiver<Route>, context: Arc<Context>) {
    // Turns of the round robin over the port's instances.
    let turn = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        Counters::bump(&context.counters.connections);
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(
            stream,
            peer,
            route.clone(),
            Arc::clone(&turn),
            Arc::clone(&context),
        ));
    }
}

/// One accepted connection, handled as its port's route says.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    route: watch::Receiver<Route>,
    turn: Arc<AtomicUsize>,
    context: Arc<Context>,
) {
    let current = route.borrow().clone();
    let (mode, counters) = (current.mode, &context.counters);
    match mode {
        Mode::Tcp => forward::stream(stream, &current, &turn, counters).await,
        Mode::Http => http::serve(stream, peer, "http", route, turn, context).await,
        Mode::Redirect => http::redirect(stream, route, context).await,
        Mode::Tls | Mode::Https => {
            let Some(acceptors) = &context.tls else {
                Counters::bump(&counters.tls_failed);
                return;
            };
            let acceptor = if mode == Mode::Tls {
                &acceptors.raw
            } else {
                &acceptors.http
            };
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                _ => {
                    Counters::bump(&counters.tls_failed);
                    return;
                }
            };
            if mode == Mode::Tls {
                forward::stream(tls, &current, &turn, counters).await
            } else {
                http::serve(tls, peer, "https", route, turn, context.clone()).await
            }
        }
    }
}
