//! The shield's shared state and the destination check every TCP connection goes through.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::sync::Semaphore;

use crate::addr::reserved_class;
use crate::ca::{Ca, LeafResolver};
use crate::config::Config;
use crate::log::Log;
use crate::resolved::Resolved;

pub struct Shield {
    pub config: Config,
    pub upstream_dns: SocketAddrV4,
    pub log: Log,
    pub resolved: Resolved,
    pub ca: Arc<Ca>,
    /// Terminates intercepted clients' TLS with leaves issued by `ca`.
    pub intercept_tls: Arc<rustls::ServerConfig>,
    /// Connects to real servers, verifying them against the upstream roots.
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// TCP connections open at once, DNS over TCP included.
    pub connections: Arc<Semaphore>,
}

impl Shield {
    pub fn new(config: Config, upstream_dns: SocketAddrV4) -> Result<Shield> {
        let ca = Arc::new(Ca::new(&config.ca)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let mut intercept = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS versions for interception")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(LeafResolver(ca.clone())));
        // The shield reads HTTP/1 only; offering h2 would hide requests from it.
        intercept.alpn_protocols = vec![b"http/1.1".to_vec()];

        let mut roots = rustls::RootCertStore::empty();
        match &config.upstream_ca {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path)
                    .with_context(|| format!("reading upstream roots {}", path.display()))?
                {
                    let cert = cert.with_context(|| format!("parsing {}", path.display()))?;
                    roots
                        .add(cert)
                        .with_context(|| format!("adding a root of {}", path.display()))?;
                }
                anyhow::ensure!(!roots.is_empty(), "{} holds no certificate", path.display());
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let mut upstream = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions for upstream")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        upstream.alpn_protocols = vec![b"http/1.1".to_vec()];

        let connections = Arc::new(Semaphore::new(config.max_connections));
        Ok(Shield {
            config,
            upstream_dns,
            log: Log::default(),
            resolved: Resolved::default(),
            ca,
            intercept_tls: Arc::new(intercept),
            upstream_tls: Arc::new(upstream),
            connections,
        })
    }

    /// Whether a client may reach `dst` for `name`: the reason logged either way.
    pub fn check(&self, name: Option<&str>, dst: Ipv4Addr) -> Result<&'static str, &'static str> {
        let policy = &self.config.policy;
        if policy.cidr_allowed(dst) {
            return Ok("allowed-cidr");
        }
        if let Some(class) = reserved_class(dst) {
            return Err(class);
        }
        let Some(name) = name else {
            return Err("no-name");
        };
        if !policy.name_allowed(name) {
            return Err("name-not-allowed");
        }
        // The name alone proves nothing: the client chose it. The address must be one that
        // this shield's own DNS gave out for it.
        if !self.resolved.resolves_to(name, dst) {
            return Err("address-not-resolved");
        }
        Ok("allowed-name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::NamePattern;

    fn shield() -> Shield {
        let mut config = Config::default();
        config.policy.names = vec![NamePattern::parse("*.allowed.test").unwrap()];
        config.policy.cidrs = vec!["100.64.7.0/24".parse().unwrap()];
        Shield::new(config, "203.0.113.53:53".parse().unwrap()).unwrap()
    }

    #[test]
    fn checks_names_addresses_and_classes() {
        let shield = shield();
        let api: Ipv4Addr = "203.0.113.10".parse().unwrap();
        let other: Ipv4Addr = "203.0.113.20".parse().unwrap();
        assert_eq!(
            shield.check(Some("api.allowed.test"), api),
            Err("address-not-resolved")
        );
        shield.resolved.remember("api.allowed.test", &[(api, 60)]);
        assert_eq!(
            shield.check(Some("api.allowed.test"), api),
            Ok("allowed-name")
        );
        assert_eq!(
            shield.check(Some("api.allowed.test"), other),
            Err("address-not-resolved")
        );
        assert_eq!(
            shield.check(Some("denied.test"), api),
            Err("name-not-allowed")
        );
        assert_eq!(shield.check(None, api), Err("no-name"));

        // A reserved address is refused even when DNS said so; a CIDR allows by address.
        let private: Ipv4Addr = "10.1.2.3".parse().unwrap();
        shield
            .resolved
            .remember("api.allowed.test", &[(private, 60)]);
        assert_eq!(
            shield.check(Some("api.allowed.test"), private),
            Err("private-address")
        );
        let meta: Ipv4Addr = "169.254.169.254".parse().unwrap();
        assert_eq!(shield.check(None, meta), Err("metadata-address"));
        assert_eq!(
            shield.check(None, "100.64.7.7".parse().unwrap()),
            Ok("allowed-cidr")
        );
        assert_eq!(
            shield.check(None, "100.64.0.5".parse().unwrap()),
            Err("cgnat-address")
        );
    }
}
