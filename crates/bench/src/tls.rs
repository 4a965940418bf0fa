//! The internet side of the shield benchmark: a test CA, an HTTPS server and a DNS server
//! for the names under [`DOMAIN`], and the HTTPS client that sandboxes run.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::world::enter;

pub const DOMAIN: &str = "bench.test";
/// What the server answers when the request carried the real secret.
pub const SAW_SECRET: &str = "secret";
pub const SAW_PLACEHOLDER: &str = "placeholder";

/// A CA and what it signed.
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem,
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A leaf certificate and its key for `names`.
    pub fn leaf(
        &self,
        names: &[String],
    ) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        let key = KeyPair::generate()?;
        let params = CertificateParams::new(names.to_vec())?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| anyhow::anyhow!("leaf key: {e}"))?;
        Ok((cert.der().clone(), key))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The HTTPS and DNS servers, serving until dropped.
pub struct Internet {
    stop: Arc<AtomicBool>,
}

impl Drop for Internet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Internet {
    /// Serves HTTPS on port 443 and DNS on port 53 of `addr`, inside the namespace `ns`.
    /// Every name under [`DOMAIN`] resolves to `addr`.
    pub fn start(ns: &Path, addr: Ipv4Addr, ca: &Ca, names: &[String]) -> anyhow::Result<Self> {
        let (cert, key) = ca.leaf(names)?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)?;
        let config = Arc::new(config);
        let stop = Arc::new(AtomicBool::new(false));

        let (ns_https, stop_https) = (ns.to_path_buf(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let listener = enter(&ns_https).and_then(|_| {
                let l = TcpListener::bind((addr, 443))?;
                l.set_nonblocking(true)?;
                Ok(l)
            });
            let listener = match listener {
                Ok(l) => {
                    let _ = ready_tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            while !stop_https.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let config = config.clone();
                        std::thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            let _ = serve_https(conn, config);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        ready_rx.recv().context("HTTPS server thread")??;

        let (ns_dns, stop_dns) = (ns.to_path_buf(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let socket = enter(&ns_dns).and_then(|_| {
                let s = UdpSocket::bind((addr, 53))?;
                s.set_read_timeout(Some(Duration::from_millis(100)))?;
                Ok(s)
            });
            let socket = match socket {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut buf = [0u8; 512];
            while !stop_dns.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    if let Some(answer) = crate::dns::answer(&buf[..n], DOMAIN, addr) {
                        let _ = socket.send_to(&answer, from);
                    }
                }
            }
        });
        ready_rx.recv().context("DNS server thread")??;
        Ok(Internet { stop })
    }
}

/// Answers every request of a kept-alive connection with a short body that says whether it
/// carried the secret.
fn serve_https(conn: TcpStream, config: Arc<rustls::ServerConfig>) -> anyhow::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let tls = rustls::ServerConnection::new(config)?;
    let mut stream = rustls::StreamOwned::new(tls, conn);
    let secret = format!("Bearer {}", crate::shield::SECRET_VALUE);
    loop {
        let Some(head) = read_head(&mut stream)? else {
            return Ok(());
        };
        let body = if head.contains(&secret) {
            SAW_SECRET
        } else {
            SAW_PLACEHOLDER
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes())?;
        stream.flush()?;
    }
}

/// Reads up to the end of an HTTP head; `None` at a clean end of the connection.
fn read_head(stream: &mut impl Read) -> anyhow::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) if head.is_empty() => return Ok(None),
            Ok(0) => bail!("connection closed in a head"),
            Ok(_) => head.push(byte[0]),
            Err(e) if head.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        }
        if head.ends_with(b"\r\n\r\n") {
            return Ok(Some(String::from_utf8_lossy(&head).into_owned()));
        }
        if head.len() > 16 * 1024 {
            bail!("head too long");
        }
    }
}

/// A TLS client that trusts `roots`.
pub fn client_config(
    roots: &[CertificateDer<'static>],
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub type Https = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Opens a TLS connection to `addr` for `name`.
pub fn connect(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> anyhow::Result<Https> {
    let tcp = crate::tcp::connect(addr)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let server = ServerName::try_from(name.to_string())?;
    let tls = rustls::ClientConnection::new(config.clone(), server)?;
    Ok(rustls::StreamOwned::new(tls, tcp))
}

/// Sends one GET with the placeholder as its credential and returns the body.
pub fn request(stream: &mut Https, name: &str, placeholder: &str) -> anyhow::Result<String> {
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {name}\r\nAuthorization: Bearer {placeholder}\r\nUser-Agent: weft-bench\r\n\r\n"
    );
    stream.write_all(req.as_bytes())?;
    stream.flush()?;
    let head = read_head(stream)?.context("connection closed before the answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("answer: {}", head.lines().next().unwrap_or_default());
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .context("no Content-Length")?;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}
