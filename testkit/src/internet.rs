//! A test "internet": a DNS server and HTTP/HTTPS servers that record every byte they
//! receive, all in one network namespace, with certificates from a test CA. The shield's
//! tests put it behind the shield; weftd's put it behind the host's uplink.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;

use crate::Netns;

pub const ALLOWED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const DENIED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
pub const ECHO: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 30);
pub const DNS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
pub const PRIVATE: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 5);
pub const CGNAT: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 5);
pub const CGNAT_ALLOWED: Ipv4Addr = Ipv4Addr::new(100, 64, 7, 7);
pub const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// Every address the internet namespace answers on (besides its link to the shield).
pub const ADDRESSES: [Ipv4Addr; 8] = [
    ALLOWED,
    DENIED,
    ECHO,
    DNS,
    PRIVATE,
    CGNAT,
    CGNAT_ALLOWED,
    METADATA,
];
/// Answers of `big.allowed.test`: too many for one UDP answer.
pub const BIG: usize = 120;

/// The zone the test DNS server answers.
fn zone(name: &str) -> Option<Vec<Ipv4Addr>> {
    Some(match name {
        "api.allowed.test" | "www.allowed.test" => vec![ALLOWED],
        "echo.allowed.test" => vec![ECHO],
        "private.allowed.test" => vec![PRIVATE],
        "denied.test" => vec![DENIED],
        "big.allowed.test" => (0..BIG as u32)
            .map(|i| Ipv4Addr::from(0xCB00_7180 + i))
            .collect(),
        _ => return None,
    })
}

/// The test's own certificate authority, which the servers' certificates chain to.
pub struct TestCa {
    pub pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "weft-shield test internet CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn key_pem(&self) -> String {
        self.key_pem.clone()
    }

    fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        Arc::new(config)
    }
}

/// What the internet saw: bytes received per server address, and DNS question names.
#[derive(Clone, Default)]
pub struct Seen {
    bytes: Arc<Mutex<HashMap<Ipv4Addr, Vec<u8>>>>,
    questions: Arc<Mutex<Vec<String>>>,
}

impl Seen {
    pub fn received(&self, server: Ipv4Addr) -> String {
        let bytes = self.bytes.lock().unwrap();
        String::from_utf8_lossy(bytes.get(&server).map(Vec::as_slice).unwrap_or_default())
            .into_owned()
    }

    /// Everything every server received, DNS questions included.
    pub fn everything(&self) -> String {
        let bytes = self.bytes.lock().unwrap();
        let mut all: String = bytes
            .values()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        all.push_str(&self.questions().join("\n"));
        all
    }

    pub fn questions(&self) -> Vec<String> {
        self.questions.lock().unwrap().clone()
    }

    fn record(&self, server: Ipv4Addr, bytes: &[u8]) {
        self.bytes
            .lock()
            .unwrap()
            .entry(server)
            .or_default()
            .extend_from_slice(bytes);
    }
}

/// Builds the namespace's addresses and starts the servers on a thread of their own.
pub fn start(internet: &Netns, ca: &TestCa) -> Seen {
    for addr in ADDRESSES {
        internet.ip(&["addr", "add", &format!("{addr}/32"), "dev", "lo"]);
    }
    let sockets = internet.enter(|| {
        let any = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let http = std::net::TcpListener::bind(any(80)).unwrap();
        let https = std::net::TcpListener::bind(any(443)).unwrap();
        let dns_udp = std::net::UdpSocket::bind((DNS, 53)).unwrap();
        let dns_tcp = std::net::TcpListener::bind((DNS, 53)).unwrap();
        for l in [&http, &https, &dns_tcp] {
            l.set_nonblocking(true).unwrap();
        }
        dns_udp.set_nonblocking(true).unwrap();
        (http, https, dns_udp, dns_tcp)
    });
    let acceptors: HashMap<Ipv4Addr, TlsAcceptor> = [
        (
            ALLOWED,
            ca.server_config(&["api.allowed.test", "www.allowed.test"]),
        ),
        (DENIED, ca.server_config(&["denied.test"])),
        (ECHO, ca.server_config(&["echo.allowed.test"])),
    ]
    .into_iter()
    .map(|(ip, config)| (ip, TlsAcceptor::from(config)))
    .collect();
    let fallback = TlsAcceptor::from(ca.server_config(&["api.allowed.test"]));

    let seen = Seen::default();
    let servers = seen.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (http, https, dns_udp, dns_tcp) = sockets;
            let http = TcpListener::from_std(http).unwrap();
            let https = TcpListener::from_std(https).unwrap();
            let dns_udp = UdpSocket::from_std(dns_udp).unwrap();
            let dns_tcp = TcpListener::from_std(dns_tcp).unwrap();
            tokio::join!(
                serve_http(http, servers.clone()),
                serve_https(https, acceptors, fallback, servers.clone()),
                serve_dns_udp(dns_udp, servers.clone()),
                serve_dns_tcp(dns_tcp, servers),
            );
        });
    });
    seen
}

async fn serve_http(listener: TcpListener, seen: Seen) {
    while let Ok((stream, _)) = listener.accept().await {
        let SocketAddr::V4(local) = stream.local_addr().unwrap() else {
            continue;
        };
        tokio::spawn(echo(stream, *local.ip(), seen.clone()));
    }
}

async fn serve_https(
    listener: TcpListener,
    acceptors: HashMap<Ipv4Addr, TlsAcceptor>,
    fallback: TlsAcceptor,
    seen: Seen,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let SocketAddr::V4(local) = stream.local_addr().unwrap() else {
            continue;
        };
        let acceptor = acceptors.get(local.ip()).unwrap_or(&fallback).clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(stream).await {
                echo(tls, *local.ip(), seen).await;
            }
        });
    }
}

/// The largest body `GET /bytes/<n>` serves.
pub const MAX_BYTES: usize = 256 << 20;

/// The body of `GET /bytes/<len>`: bytes that do not repeat with any short period, so that a
/// lost, doubled or reordered segment changes the whole.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The length asked by a request line `GET /bytes/<n> ...`, up to [`MAX_BYTES`].
fn bytes_asked(head: &str) -> Option<usize> {
    let target = head.strip_prefix("GET /bytes/")?;
    let n: usize = target.split([' ', '?']).next()?.parse().ok()?;
    (n <= MAX_BYTES).then_some(n)
}

/// Serves HTTP/1.1 requests with Content-Length bodies, keep-alive, recording each. The
/// server at ALLOWED answers "ok"; the others echo the request back. Every server answers
/// `GET /bytes/<n>` with `pattern(n)`, for long transfers.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, server: Ipv4Addr, seen: Seen) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    seen.record(server, &buf);
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let request: Vec<u8> = buf.drain(..head_end + length).collect();
        seen.record(server, &request);
        let body = if let Some(n) = bytes_asked(&head) {
            pattern(n)
        } else if server == ALLOWED {
            b"ok\n".to_vec()
        } else {
            request
        };
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if stream.write_all(reply.as_bytes()).await.is_err()
            || stream.write_all(&body).await.is_err()
        {
            return;
        }
        if head
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n")
        {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

fn answer(query: &[u8], seen: &Seen, udp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let question = request.queries().first()?.clone();
    let name = question
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    seen.questions.lock().unwrap().push(name.clone());
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .add_query(question.clone());
    match zone(&name) {
        None => {
            response.set_response_code(ResponseCode::NXDomain);
        }
        Some(addrs) if question.query_type() == RecordType::A => {
            for ip in addrs {
                response.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(ip)),
                ));
            }
        }
        Some(_) => {}
    }
    let bytes = response.to_vec().ok()?;
    let limit = request
        .extensions()
        .as_ref()
        .map_or(512, |e| usize::from(e.max_payload()));
    if udp && bytes.len() > limit {
        let mut short = response.clone();
        short.take_answers();
        short.set_truncated(true);
        return short.to_vec().ok();
    }
    Some(bytes)
}

async fn serve_dns_udp(socket: UdpSocket, seen: Seen) {
    let mut buf = [0u8; 4096];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        if let Some(reply) = answer(&buf[..n], &seen, true) {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

async fn serve_dns_tcp(listener: TcpListener, seen: Seen) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok(len) = stream.read_u16().await {
                let mut query = vec![0u8; usize::from(len)];
                if stream.read_exact(&mut query).await.is_err() {
                    return;
                }
                let Some(reply) = answer(&query, &seen, false) else {
                    return;
                };
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
    }
}
