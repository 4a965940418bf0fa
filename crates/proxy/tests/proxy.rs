//! The proxy on loopback addresses, without privileges: instances are small servers on
//! 127.0.0.2 and 127.0.0.3 that answer with their name, and the routes change under a
//! running proxy.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weft_model::services::{Backend, Mode, Route};
use weft_proxy::{CertificateFiles, Proxy, Settings};

const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// A free port on the proxy's address.
async fn free_port() -> u16 {
    let socket = TcpListener::bind((PROXY, 0)).await.unwrap();
    socket.local_addr().unwrap().port()
}

/// An instance: answers each HTTP request with its name and the forwarded headers it got,
/// or with `raw`, echoes what it reads.
async fn instance(name: &'static str, addr: Ipv4Addr, port: u16, raw: bool) -> u16 {
    let socket = TcpListener::bind((addr, port)).await.unwrap();
    let port = socket.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = socket.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if raw {
                    let (mut r, mut w) = conn.split();
                    let _ = w.write_all(format!("{name}:").as_bytes()).await;
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    return;
                }
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let header = |h: &str| {
                    head.lines()
                        .find_map(|l| l.strip_prefix(&format!("{h}: ")))
                        .unwrap_or("-")
                        .to_string()
                };
                let body = format!(
                    "{name} xff={} proto={}",
                    header("x-forwarded-for"),
                    header("x-forwarded-proto")
                );
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

fn route(port: u16, mode: Mode, destination_port: u16, backends: &[(&str, Ipv4Addr)]) -> Route {
    Route {
        port,
        mode,
        destination_port,
        group: "web".into(),
        backends: backends
            .iter()
            .map(|(name, addr)| Backend {
                instance: name.to_string(),
                primary: *addr,
            })
            .collect(),
    }
}

fn start(certificates: Vec<CertificateFiles>) -> watch::Sender<Arc<Vec<Route>>> {
    let proxy = Proxy::new(Settings {
        listen: PROXY.into(),
        certificates,
    })
    .unwrap();
    let (tx, rx) = watch::channel(Arc::new(Vec::new()));
    tokio::spawn(proxy.run(rx));
    tx
}

/// Sends one request over `io` and returns the answer's status line and body.
async fn request<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, host: &str) -> (String, String) {
    let req = format!("GET /page?x=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    io.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = io.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// Connects to the proxy's port once it listens.
async fn connect(port: u16) -> TcpStream {
    for _ in 0..100 {
        if let Ok(conn) = TcpStream::connect((PROXY, port)).await {
            return conn;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("port {port} does not listen");
}

async fn get(port: u16) -> (String, String) {
    request(connect(port).await, "app.example").await
}

async fn closed(port: u16) -> bool {
    for _ in 0..100 {
        if TcpStream::connect((PROXY, port)).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

#[tokio::test]
async fn http_requests_go_round_robin_and_follow_the_routes() {
    let dest = instance("a", A, 0, false).await;
    instance("b", B, dest, false).await;
    let port = free_port().await;
    let routes = start(Vec::new());

    routes.send_replace(Arc::new(vec![route(
        port,
        Mode::Http,
        dest,
        &[("a", A), ("b", B)],
    )]));
    let mut names = Vec::new();
    for _ in 0..4 {
        let (status, body) = get(port).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.ends_with("xff=127.0.0.1 proto=http"), "{body}");
        names.push(body.split(' ').next().unwrap().to_string());
    }
    assert_eq!(names, ["a", "b", "a", "b"]);

    // An instance that stops is no longer chosen.
    routes.send_replace(Arc::new(vec![route(port, Mode::Http, dest, &[("b", B)])]));
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..3 {
        assert!(get(port).await.1.starts_with("b "));
    }

    // None running: a plain 503.
    routes.send_replace(Arc::new(vec![route(port, Mode::Http, dest, &[])]));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, body) = get(port).await;
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(body, "No instance of service group 'web' is running\n");

    // An instance that does not answer on the destination port: 502.
    let nothing = free_port().await;
    routes.send_replace(Arc::new(vec![route(
        port,
        Mode::Http,
        nothing,
        &[("a", A)],
    )]));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(port).await.0, "HTTP/1.1 502 Bad Gateway");

    // The group goes: so does the port; another comes: its port opens.
    let other = free_port().await;
    routes.send_replace(Arc::new(vec![route(other, Mode::Http, dest, &[("a", A)])]));
    assert!(closed(port).await, "port {port} still listens");
    assert!(get(other).await.1.starts_with("a "));
}

#[tokio::test]
async fn tcp_connections_skip_instances_that_do_not_answer() {
    let dest = instance("b", B, 0, true).await;
    let port = free_port().await;
    let routes = start(Vec::new());
    // "a" has nothing on the destination port: its turn falls to "b".
    routes.send_replace(Arc::new(vec![route(
        port,
        Mode::Tcp,
        dest,
        &[("a", A), ("b", B)],
    )]));
    for _ in 0..2 {
        let mut conn = connect(port).await;
        conn.write_all(b"ping").await.unwrap();
        conn.shutdown().await.unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "b:ping");
    }

    // Without instances the connection is closed with nothing said.
    routes.send_replace(Arc::new(vec![route(port, Mode::Tcp, dest, &[])]));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut conn = connect(port).await;
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    assert!(answer.is_empty());
}

#[tokio::test]
async fn redirects_go_to_https() {
    let port = free_port().await;
    let routes = start(Vec::new());
    routes.send_replace(Arc::new(vec![route(port, Mode::Redirect, 443, &[])]));
    let mut conn = connect(port).await;
    let req = "GET /a/b?c=d HTTP/1.1\r\nHost: app.example:80\r\nConnection: close\r\n\r\n";
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 301 Moved Permanently"),
        "{answer}"
    );
    assert!(
        answer.contains("location: https://app.example/a/b?c=d\r\n"),
        "{answer}"
    );
}

/// A self-signed certificate for `name`, written to `dir`.
fn certificate(dir: &std::path::Path, name: &str) -> (CertificateFiles, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let files = CertificateFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.cert, cert.cert.pem()).unwrap();
    std::fs::write(&files.key, cert.signing_key.serialize_pem()).unwrap();
    (files, cert.cert.der().to_vec())
}

fn tls_client(trusted: &[Vec<u8>]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for der in trusted {
        roots.add(der.clone().into()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn tls_is_terminated_with_the_certificate_of_the_name_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (app, app_der) = certificate(dir.path(), "app.example");
    let (other, other_der) = certificate(dir.path(), "other.example");
    let dest = instance("a", A, 0, false).await;
    let echo = instance("e", A, 0, true).await;
    let (https, raw) = (free_port().await, free_port().await);
    let routes = start(vec![app, other]);
    routes.send_replace(Arc::new(vec![
        route(https, Mode::Https, dest, &[("a", A)]),
        route(raw, Mode::Tls, echo, &[("e", A)]),
    ]));
    let client = tls_client(&[app_der, other_der]);

    for name in ["app.example", "other.example"] {
        let server = rustls_pki_types::ServerName::try_from(name).unwrap();
        let tls = client.connect(server, connect(https).await).await.unwrap();
        let (status, body) = request(tls, name).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, "a xff=127.0.0.1 proto=https");
    }

    // A name no certificate carries gets no certificate at all.
    let server = rustls_pki_types::ServerName::try_from("nobody.example").unwrap();
    assert!(client.connect(server, connect(https).await).await.is_err());

    // `tls` alone forwards the decrypted stream as it is.
    let server = rustls_pki_types::ServerName::try_from("app.example").unwrap();
    let mut tls = client.connect(server, connect(raw).await).await.unwrap();
    tls.write_all(b"hello").await.unwrap();
    let mut answer = [0u8; 7];
    tls.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"e:hello");
}

#[tokio::test]
async fn a_port_taken_by_another_program_is_tried_again() {
    let taken = TcpListener::bind((PROXY, 0)).await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let dest = instance("a", A, 0, false).await;
    let routes = start(Vec::new());
    routes.send_replace(Arc::new(vec![route(port, Mode::Http, dest, &[("a", A)])]));
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(taken);
    // The proxy tries again within a few seconds.
    let mut served = false;
    for _ in 0..100 {
        if let Ok(conn) = TcpStream::connect(SocketAddr::from((PROXY, port))).await {
            served = request(conn, "x").await.1.starts_with("a ");
            if served {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the proxy did not take the port once it was free");
}
