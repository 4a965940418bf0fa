use super::*;
use std::sync::Arc;

fn client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test]
async fn reads_the_sni_of_a_client_hello() {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let connector = TlsConnector::from(client_config());
    let name = ServerName::try_from("API.Allowed.test").unwrap();
    // The handshake cannot finish (nobody answers); only its first flight matters.
    let handshake = tokio::spawn(async move { connector.connect(name, client).await });

    let hello = read_client_hello(&mut server).await.unwrap();
    assert_eq!(hello.sni.as_deref(), Some("api.allowed.test"));
    assert_eq!(hello.raw[0], 0x16, "a TLS handshake record");
    handshake.abort();
}

#[tokio::test]
async fn refuses_what_is_not_tls() {
    let mut input: &[u8] = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    assert_eq!(read_client_hello(&mut input).await.err(), Some("not-tls"));
    let mut empty: &[u8] = b"";
    assert_eq!(
        read_client_hello(&mut empty).await.err(),
        Some("client-gone")
    );
}
