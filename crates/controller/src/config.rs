//! weftd's configuration file. The repository's `config/weftd.toml` is
//! embedded as the default; a file given with `--config` overrides any of its keys.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use weft_hostnet::PoolNet;
use weft_model::{derive_gateway, Ipv4Cidr};

pub const DEFAULT_CONFIG: &str = include_str!("../../../config/weftd.toml");

/// The permission that opens the network fields of the API (R9).
pub const NET_MANAGER: &str = "net_manager";
/// The license feature of custom network configuration (R9).
pub const LICENSE_CUSTOM_NETWORK: &str = "custom_network_configuration";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub store: PathBuf,
    pub images_dir: PathBuf,
    pub driver: String,
    pub pool: PoolConfig,
    pub dns: DnsConfig,
    #[serde(default)]
    pub qemu: weft_vmm::qemu::QemuConfig,
    #[serde(default)]
    pub netns: weft_vmm::netns::NetnsConfig,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub api: crate::hardening::ApiConfig,
    #[serde(default)]
    pub limits: crate::hardening::LimitsConfig,
    #[serde(default)]
    pub shutdown: crate::hardening::ShutdownConfig,
}

/// The ingress proxy: it publishes the ports of service groups.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub enabled: bool,
    /// The host address the published ports listen on; `0.0.0.0` is all of them.
    pub listen: std::net::IpAddr,
    /// Certificates for the `tls` handler, chosen by the name a client asks for (SNI).
    #[serde(default)]
    pub certificates: Vec<CertificateConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM: the certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the certificate's private key.
    pub key: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub addresses: Ipv4Cidr,
    pub tap_prefix: String,
    pub tap_count: u32,
    pub uplink: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    pub enabled: bool,
    /// Upstream resolvers (`ip` or `ip:port`); empty means the host's /etc/resolv.conf.
    pub upstream: Vec<String>,
}

impl DnsConfig {
    /// The upstream resolvers to forward to, leaving out the gateway itself.
    pub fn upstream_addrs(&self, gateway: Ipv4Addr) -> Result<Vec<SocketAddr>, ConfigError> {
        if self.upstream.is_empty() {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            return Ok(weft_dns::upstream_from_resolv_conf(&text, gateway));
        }
        self.upstream
            .iter()
            .map(|entry| {
                entry
                    .parse::<SocketAddr>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| {
                        ConfigError::Invalid(format!(
                            "dns.upstream '{entry}' is not an address such as 192.0.2.53 or 192.0.2.53:53"
                        ))
                    })
            })
            .collect()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub name: String,
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Tokens given by their SHA-256 digest (`sha256:<64 hex digits>`), so that the
    /// configuration need not hold them.
    #[serde(default)]
    pub token_sha256: Vec<String>,
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub license: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Config {
    /// The embedded defaults, overridden key by key by `path` when given.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut merged: toml::Table = DEFAULT_CONFIG.parse().expect("embedded config parses");
        let source = path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| "(embedded)".into());

        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let overrides: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Parse {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })?;
            merge(&mut merged, overrides);
        }

        let config: Config =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: source,
                    message: e.to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let pool = &self.pool;
        if pool.addresses.prefix() > 30 {
            return Err(ConfigError::Invalid(format!(
                "pool.addresses {} is too small: it needs at least a /30",
                pool.addresses
            )));
        }
        if pool.addresses.addr() != pool.addresses.network() {
            return Err(ConfigError::Invalid(format!(
                "pool.addresses {} has host bits set; write {}",
                pool.addresses,
                pool.addresses.network_cidr()
            )));
        }
        let longest = format!("{}{}", pool.tap_prefix, pool.tap_count.saturating_sub(1));
        if weft_model::names::check_tap_name(&longest).is_err() || pool.tap_count == 0 {
            return Err(ConfigError::Invalid(format!(
                "pool.tap_prefix '{}' with tap_count {} makes device names such as '{longest}' \
                 that are not valid (at most 15 letters, digits, '-', '_', '.')",
                pool.tap_prefix, pool.tap_count
            )));
        }
        self.dns.upstream_addrs(self.pool_gateway())?;
        if self.driver != "qemu" && self.driver != "netns" {
            return Err(ConfigError::Invalid(format!(
                "driver '{}' is not known; use \"qemu\" or \"netns\"",
                self.driver
            )));
        }
        if self.limits.creates_per_second > 0 && self.limits.creates_burst == 0 {
            return Err(ConfigError::Invalid(
                "limits.creates_burst must be at least 1 when limits.creates_per_second is set"
                    .into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for account in &self.accounts {
            if !seen.insert(&account.name) {
                return Err(ConfigError::Invalid(format!(
                    "account '{}' is configured twice",
                    account.name
                )));
            }
        }
        Ok(())
    }

    /// The pools as the host network sees them.
    pub fn pool_net(&self) -> PoolNet {
        PoolNet {
            cidr: self.pool.addresses,
            gateway: self.pool_gateway(),
            tap_prefix: self.pool.tap_prefix.clone(),
            tap_count: self.pool.tap_count,
            uplink: self.pool.uplink.clone(),
        }
    }

    /// The gateway of pool interfaces: the pool's last usable address (R6).
    pub fn pool_gateway(&self) -> Ipv4Addr {
        derive_gateway(&self.pool.addresses).expect("pool is at least a /30")
    }
}

/// Overrides `base` with `over`, merging tables key by key and replacing everything else.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_load() {
        let config = Config::load(None).unwrap();
        assert_eq!(config.pool.addresses.to_string(), "10.100.0.0/16");
        assert_eq!(config.pool_gateway().to_string(), "10.100.255.254");
        assert_eq!(config.accounts[0].permissions, vec![NET_MANAGER]);
    }

    #[test]
    fn file_overrides_key_by_key() {
        let dir = std::env::temp_dir().join(format!("weft-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weftd.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9\"\n[pool]\ntap_count = 4\n").unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.listen.port(), 9);
        assert_eq!(config.pool.tap_count, 4);
        assert_eq!(config.pool.tap_prefix, "weft-tap");

        std::fs::write(&path, "[pool]\naddresses = \"10.100.0.1/16\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("host bits"), "{err}");

        std::fs::write(&path, "[pool]\ntap_prefix = \"much-too-long-\"\n").unwrap();
        assert!(Config::load(Some(&path)).is_err());

        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
