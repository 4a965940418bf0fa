//! The shield's certificate authority: clients trust it so that the shield can terminate
//! their TLS to hosts that have secrets bound, with a leaf certificate it issues for the
//! client's SNI on the fly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::CaSource;

/// Issued leaves are kept this many at most...
const MAX_CACHED: usize = 1024;
/// ...and re-issued when older than this (they are valid for `LEAF_VALIDITY`).
const LEAF_REISSUE: Duration = Duration::from_secs(7 * 86400);
const LEAF_VALIDITY: time::Duration = time::Duration::days(30);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("the CA certificate or key cannot be used: {0}")]
    Material(String),
    #[error("issuing a certificate for {name}: {source}")]
    Issue { name: String, source: rcgen::Error },
}

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    /// One key for every leaf: issuing stays cheap, and the key never leaves the shield.
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn rustls::sign::SigningKey>,
    cache: Mutex<HashMap<String, (Instant, Arc<CertifiedKey>)>>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    pub fn new(source: &CaSource) -> Result<Ca, CaError> {
        let material = |e: rcgen::Error| CaError::Material(e.to_string());
        let (issuer, cert_pem) = match source {
            CaSource::Given { cert_pem, key_pem } => {
                let key = KeyPair::from_pem(key_pem).map_err(material)?;
                check_key_matches(cert_pem, &key)?;
                let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(material)?;
                (issuer, cert_pem.clone())
            }
            CaSource::Generate => {
                let key = KeyPair::generate().map_err(material)?;
                let mut params = CertificateParams::default();
                params.distinguished_name = DistinguishedName::new();
                params
                    .distinguished_name
                    .push(DnType::CommonName, "weft-shield CA");
                params
                    .distinguished_name
                    .push(DnType::OrganizationName, "weft");
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                let now = time::OffsetDateTime::now_utc();
                params.not_before = now - time::Duration::days(1);
                params.not_after = now + time::Duration::days(3650);
                params.serial_number = Some(random_serial());
                let cert = params.self_signed(&key).map_err(material)?;
                (Issuer::new(params, key), cert.pem())
            }
        };
        let leaf_key = KeyPair::generate().map_err(material)?;
        let leaf_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signer =
            any_supported_type(&leaf_der).map_err(|e| CaError::Material(e.to_string()))?;
        Ok(Ca {
            issuer,
            cert_pem,
            leaf_key,
            leaf_signer,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate that clients must trust, in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `name` (normalised), from the cache or freshly issued.
    pub fn leaf(&self, name: &str) -> Result<Arc<CertifiedKey>, CaError> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((issued, key)) = cache.get(name) {
            if issued.elapsed() < LEAF_REISSUE {
                return Ok(key.clone());
            }
        }
        let issue = |source| CaError::Issue {
            name: name.to_string(),
            source,
        };
        let mut params = CertificateParams::new(vec![name.to_string()]).map_err(issue)?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + LEAF_VALIDITY;
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(issue)?;
        let certified = Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(cert.der().to_vec())],
            self.leaf_signer.clone(),
        ));

        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (issued, _)| issued.elapsed() < LEAF_REISSUE);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(name.to_string(), (Instant::now(), certified.clone()));
        Ok(certified)
    }
}

/// A CA key that does not belong to the CA certificate would issue leaves no client accepts.
fn check_key_matches(cert_pem: &str, key: &KeyPair) -> Result<(), CaError> {
    let bad = |why: &str| CaError::Material(why.to_string());
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|_| bad("the CA certificate is not PEM"))?;
    let cert = pem
        .parse_x509()
        .map_err(|_| bad("the CA certificate is not X.509"))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(bad("the CA key does not belong to the CA certificate"));
    }
    Ok(())
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and without a leading zero byte, as DER integers for serials should be.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Gives each intercepted connection a leaf for its SNI.
#[derive(Debug)]
pub struct LeafResolver(pub Arc<Ca>);

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = crate::policy::normalize_name(hello.server_name()?)?;
        self.0.leaf(&name).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_ca_and_caches_leaves() {
        let ca = Ca::new(&CaSource::Generate).unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let a = ca.leaf("api.allowed.test").unwrap();
        let again = ca.leaf("api.allowed.test").unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        let b = ca.leaf("other.test").unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn loads_a_given_ca_and_issues_under_its_name() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "given test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        let ca = Ca::new(&CaSource::Given {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
        .unwrap();
        assert_eq!(ca.cert_pem(), cert.pem());
        let leaf = ca.leaf("a.test").unwrap();
        let der = leaf.cert[0].as_ref();
        let needle = b"given test CA";
        assert!(der.windows(needle.len()).any(|w| w == needle));

        let wrong = Ca::new(&CaSource::Given {
            cert_pem: cert.pem(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
        });
        assert!(matches!(wrong, Err(CaError::Material(_))));

        let other_key = KeyPair::generate().unwrap();
        let mismatched = Ca::new(&CaSource::Given {
            cert_pem: cert.pem(),
            key_pem: other_key.serialize_pem(),
        });
        let message = mismatched.unwrap_err().to_string();
        assert!(message.contains("does not belong"), "{message}");
    }
}
