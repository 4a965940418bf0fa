//! The API over TLS (`[api.tls]`): a client that trusts the certificate (made with rcgen)
//! gets the API, a plain HTTP client gets nothing, one that does not trust it fails its
//! handshake, and files that are not a certificate and its key keep weftd from starting.

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use weft_testkit::{privileged_or_skip, Netns, Topology, Weftd};

use common::{tag, weftd_binary};

/// A self-signed certificate for 127.0.0.1 and `localhost`, written to `dir`.
fn certificate(dir: &Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let (cert, key) = (dir.join("api.crt"), dir.join("api.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (made.cert.pem(), cert, key)
}

/// An HTTPS request from inside `ns` to the API, trusting `root` (PEM); the answer's text.
fn https(ns: &Netns, root: &str, request: String) -> Result<String, String> {
    let root = CertificateDer::from_pem_slice(root.as_bytes()).unwrap();
    Netns::existing(ns.name()).enter(move || {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let tcp =
            std::net::TcpStream::connect(weft_testkit::weftd::LISTEN).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        match tls.read_to_end(&mut answer) {
            Ok(_) => Ok(String::from_utf8_lossy(&answer).into_owned()),
            Err(e) if !answer.is_empty() => {
                let _ = e;
                Ok(String::from_utf8_lossy(&answer).into_owned())
            }
            Err(e) => Err(e.to_string()),
        }
    })
}

fn get(path: &str, token: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    )
}

#[test]
fn api_serves_tls_with_the_configured_certificate() {
    if !privileged_or_skip("api_serves_tls_with_the_configured_certificate") {
        return;
    }
    let topo = Topology::new(&tag("wtls"));
    let scratch = tempfile::tempdir().unwrap();
    let images = scratch.path().join("images");
    std::fs::create_dir_all(images.join("base")).unwrap();
    let (pem, cert, key) = certificate(scratch.path());
    let extra = format!(
        "[api.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let weftd = Weftd::start(&topo.host, &weftd_binary(), &images, &extra);

    let answer = https(&topo.host, &pem, get("/v1/healthz", "")).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"success\""), "{answer}");
    let answer = https(
        &topo.host,
        &pem,
        get("/v1/instances", weft_testkit::weftd::TOKEN),
    )
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"instances\":[]"), "{answer}");
    let answer = https(
        &topo.host,
        &pem,
        get("/v1/instances", "wrong-token-0123456789"),
    )
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    // Plain HTTP gets no answer; a client that trusts another certificate fails.
    assert_eq!(weftd.api.get("/v1/healthz").0, 0);
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let refused = https(&topo.host, &other.cert.pem(), get("/v1/healthz", ""));
    assert!(refused.is_err(), "{refused:?}");
    // The API still serves after those.
    assert!(https(&topo.host, &pem, get("/v1/healthz", ""))
        .unwrap()
        .starts_with("HTTP/1.1 200"));

    // Bad files: weftd refuses to start, naming the file, before it touches the host.
    let bad = scratch.path().join("bad.toml");
    let text = std::fs::read_to_string(weftd.dir.path().join("weftd.toml")).unwrap();
    std::fs::write(
        &bad,
        text.replace(&key.display().to_string(), &cert.display().to_string()),
    )
    .unwrap();
    let out = topo.host.exec(&[
        weftd_binary().to_str().unwrap(),
        "--config",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("api.tls.key"), "{stderr}");
}
