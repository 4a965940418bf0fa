//! Serving DNS over UDP and TCP.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::{answer, Config, Counters, Directory, DnsError};

/// Questions answered at once over UDP; more wait, so a flood cannot exhaust the host.
const UDP_IN_FLIGHT: usize = 256;
/// TCP connections served at once, and how long one may sit idle.
const TCP_CONNECTIONS: usize = 64;
const TCP_IDLE: Duration = Duration::from_secs(10);

pub struct Resolver {
    config: Config,
    directory: Arc<dyn Directory>,
    counters: Arc<Counters>,
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
}

impl Resolver {
    /// Binds the UDP and TCP sockets; nothing is served until [`Resolver::run`].
    pub async fn bind(config: Config, directory: Arc<dyn Directory>) -> Result<Resolver, DnsError> {
        let err = |source| DnsError::Bind {
            addr: config.bind,
            source,
        };
        let udp = UdpSocket::bind(config.bind).await.map_err(err)?;
        let tcp = TcpListener::bind(config.bind).await.map_err(err)?;
        Ok(Resolver {
            config,
            directory,
            counters: Arc::default(),
            udp: Arc::new(udp),
            tcp,
        })
    }

    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Serves until the task is dropped or aborted.
    pub async fn run(self) {
        let shared = Arc::new(Shared {
            directory: self.directory,
            upstream: self.config.upstream,
            timeout: self.config.timeout,
            counters: self.counters,
        });
        tracing::info!(bind = %self.config.bind, upstream = ?shared.upstream, "DNS resolver serving");
        let udp = tokio::spawn(serve_udp(self.udp, Arc::clone(&shared)));
        let tcp = tokio::spawn(serve_tcp(self.tcp, shared));
        let _ = tokio::join!(udp, tcp);
    }
}

struct Shared {
    directory: Arc<dyn Directory>,
    upstream: Vec<SocketAddr>,
    timeout: Duration,
    counters: Arc<Counters>,
}

impl Shared {
    async fn answer(&self, query: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        let IpAddr::V4(client) = from.ip() else {
            return None;
        };
        answer(
            query,
            client,
            &*self.directory,
            &self.upstream,
            self.timeout,
            &self.counters,
        )
        .await
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(UDP_IN_FLIGHT));
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::warn!(error = %e, "DNS receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let query = buf[..n].to_vec();
        let (socket, shared) = (Arc::clone(&socket), Arc::clone(&shared));
        tokio::spawn(async move {
            if let Some(reply) = shared.answer(&query, from).await {
                let _ = socket.send_to(&reply, from).await;
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(TCP_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (stream, from) = match listener.accept().await {
            Ok(got) => got,
            Err(e) => {
                tracing::warn!(error = %e, "DNS accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _ = serve_tcp_connection(stream, from, &shared).await;
            drop(permit);
        });
    }
}

/// DNS over TCP: each message is preceded by its length in two bytes.
async fn serve_tcp_connection(
    mut stream: TcpStream,
    from: SocketAddr,
    shared: &Shared,
) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return Ok(()),
        };
        let mut query = vec![0u8; len];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        let Some(reply) = shared.answer(&query, from).await else {
            return Ok(());
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        stream.write_u16(reply_len).await?;
        stream.write_all(&reply).await?;
    }
}
