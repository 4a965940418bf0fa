//! TLS from clients on port 443: the SNI of the ClientHello is checked like a Host. Hosts
//! without secrets are spliced byte for byte; hosts with secrets bound (or all, if so
//! configured) are intercepted: the client's TLS ends at the shield, with a leaf issued by
//! its CA, and the shield opens its own verified TLS connection to the real server.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::server::Acceptor;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::Intercept;
use crate::log::{Decision, Proto};
use crate::policy::{normalize_name, replace_placeholders};
use crate::stream::{copy_touching, Activity, Ending, Incoming, Verdict};
use crate::tcp::{first_head, refuse, relay, Conn, FIRST_BYTES};

/// A ClientHello larger than this is refused (post-quantum key shares make them a few KiB).
const MAX_HELLO: usize = 64 * 1024;
const HANDSHAKE: Duration = Duration::from_secs(15);

pub struct Hello {
    /// The bytes read so far, handed on unchanged to whoever takes the connection.
    pub raw: Vec<u8>,
    pub sni: Option<String>,
}

/// Reads until the whole ClientHello is in, without answering it.
pub async fn read_client_hello<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<Hello, &'static str> {
    let mut acceptor = Acceptor::default();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = stream.read(&mut buf).await.map_err(|_| "client-gone")?;
        if n == 0 {
            return Err("client-gone");
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_HELLO {
            return Err("client-hello-too-large");
        }
        let mut fresh = &buf[..n];
        while !fresh.is_empty() {
            match acceptor.read_tls(&mut fresh) {
                Ok(0) | Err(_) => return Err("not-tls"),
                Ok(_) => {}
            }
        }
        match acceptor.accept() {
            Ok(None) => continue,
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_string);
                return Ok(Hello { raw, sni });
            }
            Err(_) => return Err("not-tls"),
        }
    }
}

pub async fn handle(conn: Conn, mut stream: TcpStream) {
    let hello = match timeout(FIRST_BYTES, read_client_hello(&mut stream)).await {
        Ok(Ok(hello)) => hello,
        Ok(Err("client-gone")) => return,
        Ok(Err(reason)) => return conn.log(Decision::Deny, Proto::Tls, None, reason),
        Err(_) => return conn.log(Decision::Deny, Proto::Tls, None, "hello-timeout"),
    };
    let sni = hello.sni.as_deref().and_then(normalize_name);
    let name = sni.as_deref();
    match conn.shield.check(name, *conn.dst.ip()) {
        Ok(reason) => conn.log(Decision::Allow, Proto::Tls, name, reason),
        // Closing is all the client gets: no certificate could make the refusal readable.
        Err(reason) => return conn.log(Decision::Deny, Proto::Tls, name, reason),
    }

    let policy = &conn.shield.config.policy;
    let intercept = match &sni {
        Some(sni) => conn.shield.config.intercept == Intercept::All || policy.has_secrets_for(sni),
        None => false,
    };
    match sni {
        Some(sni) if intercept => intercept_conn(&conn, stream, hello, &sni).await,
        _ => splice(&conn, stream, hello, name_owned(name)).await,
    }
}

fn name_owned(name: Option<&str>) -> Option<String> {
    name.map(str::to_string)
}

/// Passes the connection through untouched: the ClientHello already read, then both ways.
async fn splice(conn: &Conn, client: TcpStream, hello: Hello, name: Option<String>) {
    let mut upstream = match conn.connect().await {
        Ok(upstream) => upstream,
        Err(_) => {
            return conn.log(
                Decision::Deny,
                Proto::Tls,
                name.as_deref(),
                "upstream-unreachable",
            )
        }
    };
    if upstream.write_all(&hello.raw).await.is_err() {
        return;
    }
    let activity = Activity::new();
    let (mut client_r, mut client_w) = client.into_split();
    let (mut upstream_r, mut upstream_w) = upstream.into_split();
    let both = async {
        tokio::join!(
            copy_touching(&mut client_r, &mut upstream_w, &activity),
            copy_touching(&mut upstream_r, &mut client_w, &activity),
        )
    };
    tokio::select! {
        _ = both => {}
        _ = activity.idle(conn.shield.config.idle_timeout) => {}
    }
}

async fn intercept_conn(conn: &Conn, client: TcpStream, hello: Hello, sni: &str) {
    let replay = Replay {
        prefix: hello.raw,
        at: 0,
        inner: client,
    };
    let acceptor = TlsAcceptor::from(conn.shield.intercept_tls.clone());
    let client_tls = match timeout(HANDSHAKE, acceptor.accept(replay)).await {
        Ok(Ok(tls)) => tls,
        // Typically a client that does not trust the shield's CA.
        _ => {
            return conn.log(
                Decision::Deny,
                Proto::Tls,
                Some(sni),
                "client-handshake-failed",
            )
        }
    };

    let activity = Activity::new();
    let (client_r, mut client_w) = tokio::io::split(client_tls);
    let mut incoming = Incoming::new(client_r, activity.clone());
    let Some(first) = first_head(conn, (Proto::Tls, Some(sni)), &mut incoming, &mut client_w).await
    else {
        return;
    };

    // The certificate checked upstream is for the SNI; a request for another host on this
    // connection would take the secret to whoever serves that host behind the same server.
    let shield = conn.shield.clone();
    let sni_owned = sni.to_string();
    let mut judge = move |head: &crate::http::RequestHead| -> Verdict {
        if head.host.as_deref() != Some(sni_owned.as_str()) {
            return Verdict::Refuse("host-mismatch");
        }
        match replace_placeholders(&head.raw, shield.config.policy.secrets_for(&sni_owned)) {
            Some((bytes, used)) => {
                // The log names the secrets, never their values.
                let reason = format!("secret:{}", used.join(","));
                let client = conn.client;
                shield.log.record(&crate::log::Event {
                    decision: Decision::Inject,
                    client: *client.ip(),
                    proto: Proto::Tls,
                    name: Some(&sni_owned),
                    dst: conn.dst,
                    reason: &reason,
                });
                Verdict::Rewrite(bytes)
            }
            None => Verdict::Forward,
        }
    };
    let first_out = match judge(&first) {
        Verdict::Forward => first.raw.clone(),
        Verdict::Rewrite(bytes) => bytes,
        Verdict::Refuse(reason) => {
            conn.log(Decision::Deny, Proto::Tls, Some(sni), reason);
            return refuse(&mut client_w, 421, reason).await;
        }
    };

    let upstream = match connect_tls(conn, sni).await {
        Ok(upstream) => upstream,
        Err(reason) => {
            conn.log(Decision::Deny, Proto::Tls, Some(sni), reason);
            return refuse(&mut client_w, 502, reason).await;
        }
    };
    let (upstream_r, upstream_w) = tokio::io::split(upstream);
    let ending = relay(
        conn,
        (incoming, client_w),
        (upstream_r, upstream_w),
        (&first, &first_out),
        &mut judge,
        activity,
    )
    .await;
    if let Ending::Refused(reason) = ending {
        conn.log(Decision::Deny, Proto::Tls, Some(sni), reason);
    }
}

/// The shield's own TLS connection to the original destination, verified for the SNI.
async fn connect_tls(
    conn: &Conn,
    sni: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, &'static str> {
    let tcp = conn.connect().await.map_err(|_| "upstream-unreachable")?;
    let server_name = ServerName::try_from(sni.to_string()).map_err(|_| "bad-name")?;
    let connector = TlsConnector::from(conn.shield.upstream_tls.clone());
    match timeout(HANDSHAKE, connector.connect(server_name, tcp)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(err)) if err.kind() == io::ErrorKind::InvalidData => {
            Err("upstream-certificate-refused")
        }
        _ => Err("upstream-handshake-failed"),
    }
}

/// A stream that first gives back bytes already read from it.
struct Replay {
    prefix: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
