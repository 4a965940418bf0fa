//! TLS termination with the configured certificates (rustls with the `ring` provider). A
//! client gets the certificate whose names match the name it asks for (SNI), wildcards
//! included; a client that names no server gets the first certificate; a name that no
//! certificate carries fails the handshake.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::{CertificateFiles, ProxyError};

/// The acceptors of the two handlers that terminate TLS: `tls` alone forwards the stream as
/// it is; with `http` the connection speaks HTTP/1.1, which ALPN says.
pub(crate) struct Acceptors {
    pub raw: TlsAcceptor,
    pub http: TlsAcceptor,
}

impl Acceptors {
    /// `None` without certificates: the controller then refuses handlers that need one.
    pub fn load(files: &[CertificateFiles]) -> Result<Option<Acceptors>, ProxyError> {
        if files.is_empty() {
            return Ok(None);
        }
        let provider = Arc::new(ring::default_provider());
        let mut entries = Vec::with_capacity(files.len());
        for file in files {
            entries.push(load_one(file, &provider)?);
        }
        let resolver = Arc::new(ByName { entries });

        let config = || -> Result<ServerConfig, ProxyError> {
            Ok(ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(resolver.clone()))
        };
        let raw = config()?;
        let mut http = config()?;
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Acceptors {
            raw: TlsAcceptor::from(Arc::new(raw)),
            http: TlsAcceptor::from(Arc::new(http)),
        }))
    }
}

fn load_one(
    file: &CertificateFiles,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Entry, ProxyError> {
    let fail = |path: &Path, message: String| ProxyError::Certificate {
        path: path.to_path_buf(),
        message,
    };
    let pem = fs::read(&file.cert).map_err(|e| fail(&file.cert, e.to_string()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(&file.cert, format!("not a PEM certificate: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(fail(&file.cert, "holds no certificate".into()));
    };
    let names = names_of(leaf).map_err(|e| fail(&file.cert, e))?;

    let key = PrivateKeyDer::from_pem_file(&file.key)
        .map_err(|e| fail(&file.key, format!("not a PEM private key: {e}")))?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| fail(&file.key, e.to_string()))?;
    let certified = CertifiedKey::new(chain, key);
    certified.keys_match().map_err(|_| {
        fail(
            &file.key,
            format!("is not the key of {}", file.cert.display()),
        )
    })?;
    tracing::info!(cert = %file.cert.display(), names = ?names, "certificate loaded");
    Ok(Entry {
        names,
        key: Arc::new(certified),
    })
}

/// The DNS names a certificate is for: its subject alternative names, or without any, its
/// common name.
fn names_of(cert: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;

    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("cannot be parsed: {e}"))?;
    let mut names: Vec<String> = match parsed.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            parsed
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    if names.is_empty() {
        return Err("names no host (no DNS subject alternative name, no common name)".into());
    }
    Ok(names)
}

#[derive(Debug)]
struct Entry {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// Chooses a certificate by the server name a client asks for.
#[derive(Debug)]
struct ByName {
    entries: Vec<Entry>,
}

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(asked) = hello.server_name() else {
            return self.entries.first().map(|e| Arc::clone(&e.key));
        };
        let asked = asked.to_ascii_lowercase();
        self.entries
            .iter()
            .find(|e| e.names.iter().any(|n| n == &asked))
            .or_else(|| {
                self.entries
                    .iter()
                    .find(|e| e.names.iter().any(|n| wildcard_matches(n, &asked)))
            })
            .map(|e| Arc::clone(&e.key))
    }
}

/// `*.example.com` matches `www.example.com`, not `example.com` nor `a.b.example.com`.
fn wildcard_matches(pattern: &str, name: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    match name.split_once('.') {
        Some((label, rest)) => !label.is_empty() && rest == suffix,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(wildcard_matches("*.example.com", "www.example.com"));
        assert!(!wildcard_matches("*.example.com", "example.com"));
        assert!(!wildcard_matches("*.example.com", "a.b.example.com"));
        assert!(!wildcard_matches("www.example.com", "www.example.com"));
    }

    #[test]
    fn certificates_must_match_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str| {
            let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
            let (c, k) = (
                dir.path().join(format!("{name}.crt")),
                dir.path().join(format!("{name}.key")),
            );
            fs::write(&c, cert.cert.pem()).unwrap();
            fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
            CertificateFiles { cert: c, key: k }
        };
        let a = make("a.example");
        let b = make("b.example");
        assert!(Acceptors::load(std::slice::from_ref(&a)).unwrap().is_some());
        let mixed = CertificateFiles {
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        let err = Acceptors::load(&[mixed]).err().unwrap().to_string();
        assert!(err.contains("is not the key of"), "{err}");
        let missing = CertificateFiles {
            cert: dir.path().join("none.crt"),
            key: a.key,
        };
        assert!(Acceptors::load(&[missing]).is_err());
    }
}
