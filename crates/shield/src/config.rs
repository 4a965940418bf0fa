//! The shield's settings, from `SHIELD_*` environment variables and `--flags`. Values are
//! single lines (an instance's env cannot hold newlines or double quotes). Everything is
//! validated before the shield touches the network: a bad policy stops it at start.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;

use crate::policy::{NamePattern, Policy, Secret};

pub const USAGE: &str = "\
usage: weft-shield [--flag VALUE | --flag=VALUE]...

Every flag has an environment form: --allow-cidrs is SHIELD_ALLOW_CIDRS, and a secret is
SHIELD_SECRET_<NAME>=<placeholder>|<value>|<hosts>. Flags override the environment; lists
(--allow, --allow-cidrs, --secret) add up.

  --allow NAMES            allowed names, comma-separated: example.com, *.example.org, *
  --allow-cidrs NETS       destinations allowed by address, whatever their name or class
  --secret NAME=PH|VALUE|HOSTS
                           replace placeholder PH by VALUE (or base64:...) in requests to
                           HOSTS (comma-separated names or wildcards)
  --upstream-dns IP[:PORT] resolver the shield asks (default: first IPv4 nameserver of
                           /etc/resolv.conf)
  --upstream-ca PATH       PEM roots that upstream servers must chain to (default: the
                           public web roots built in)
  --ca-cert PEM, --ca-key PEM
                           the CA that signs intercepted hosts' certificates: a path
                           (starting with /) or base64 of the PEM text (default: a new CA)
  --intercept secrets|all  intercept TLS only to hosts with secrets (default) or to all
  --nic NAME               the NIC clients' traffic arrives on (default eth0)
  --route-table N          routing table for the any-address route (default 100)
  --max-connections N      concurrent TCP connections (default 512)
  --idle-timeout SECONDS   close connections idle this long (default 300)
  --stats-interval SECONDS print the counters this often, 0 for never (default 60)";

/// Where the intercepting CA comes from.
#[derive(Clone, Debug)]
pub enum CaSource {
    Generate,
    Given { cert_pem: String, key_pem: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intercept {
    /// Only connections to hosts that have secrets bound are intercepted.
    Secrets,
    All,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub nic: String,
    pub route_table: u32,
    pub policy: Policy,
    /// None: take it from /etc/resolv.conf at start.
    pub upstream_dns: Option<SocketAddrV4>,
    pub upstream_ca: Option<PathBuf>,
    pub ca: CaSource,
    pub intercept: Intercept,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub stats_interval: Option<Duration>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            nic: "eth0".into(),
            route_table: 100,
            policy: Policy::default(),
            upstream_dns: None,
            upstream_ca: None,
            ca: CaSource::Generate,
            intercept: Intercept::Secrets,
            max_connections: 512,
            idle_timeout: Duration::from_secs(300),
            stats_interval: Some(Duration::from_secs(60)),
        }
    }
}

/// The flags that take a value; their environment names are `SHIELD_` and the upper case.
const KEYS: &[&str] = &[
    "allow",
    "allow-cidrs",
    "secret",
    "upstream-dns",
    "upstream-ca",
    "ca-cert",
    "ca-key",
    "intercept",
    "nic",
    "route-table",
    "max-connections",
    "idle-timeout",
    "stats-interval",
];

impl Config {
    /// Builds the settings from environment pairs and then command-line arguments.
    pub fn from_sources(
        env: impl IntoIterator<Item = (String, String)>,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Config, String> {
        let mut pairs = Vec::new();
        let mut env: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SHIELD_"))
            .collect();
        env.sort();
        for (key, value) in env {
            pairs.push(env_pair(&key, value)?);
        }
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument '{arg}'"));
            };
            let (key, value) = match flag.split_once('=') {
                Some((key, value)) => (key.to_string(), value.to_string()),
                None => {
                    let value = args
                        .next()
                        .ok_or_else(|| format!("--{flag} needs a value"))?;
                    (flag.to_string(), value)
                }
            };
            if !KEYS.contains(&key.as_str()) {
                return Err(format!("unknown flag --{key}"));
            }
            pairs.push((key, value));
        }

        let mut config = Config::default();
        for (key, value) in pairs {
            config.apply(&key, &value)?;
        }
        config.policy.validate()?;
        Ok(config)
    }

    fn apply(&mut self, key: &str, value: &str) -> Result<(), String> {
        let what = |e: String| format!("{}: {e}", flag_and_env(key));
        match key {
            "allow" => {
                for item in list(value) {
                    let pattern = NamePattern::parse(item).map_err(what)?;
                    if !self.policy.names.contains(&pattern) {
                        self.policy.names.push(pattern);
                    }
                }
            }
            "allow-cidrs" => {
                for item in list(value) {
                    self.policy.cidrs.push(item.parse().map_err(what)?);
                }
            }
            "secret" => {
                let secret = parse_secret(value)?;
                if self.policy.secrets.iter().any(|s| s.name == secret.name) {
                    return Err(format!("secret {} is given twice", secret.name));
                }
                self.policy.secrets.push(secret);
            }
            "upstream-dns" => self.upstream_dns = Some(parse_dns_server(value).map_err(what)?),
            "upstream-ca" => self.upstream_ca = Some(PathBuf::from(value)),
            "ca-cert" | "ca-key" => {
                let pem = load_pem(value).map_err(what)?;
                let (mut cert_pem, mut key_pem) = match &self.ca {
                    CaSource::Given { cert_pem, key_pem } => (cert_pem.clone(), key_pem.clone()),
                    CaSource::Generate => (String::new(), String::new()),
                };
                if key == "ca-cert" {
                    cert_pem = pem;
                } else {
                    key_pem = pem;
                }
                self.ca = CaSource::Given { cert_pem, key_pem };
            }
            "intercept" => {
                self.intercept = match value {
                    "secrets" => Intercept::Secrets,
                    "all" => Intercept::All,
                    _ => return Err(what(format!("'{value}' is neither 'secrets' nor 'all'"))),
                }
            }
            "nic" => {
                if value.is_empty() || value.len() > 15 || value.contains(['/', ' ']) {
                    return Err(what(format!("'{value}' is not an interface name")));
                }
                self.nic = value.to_string();
            }
            "route-table" => {
                let table: u32 = number(value).map_err(what)?;
                // 0 is unspecified, 253 to 255 are the kernel's default, main and local.
                if table == 0 || (253..=255).contains(&table) {
                    return Err(what(format!("table {table} is reserved by the kernel")));
                }
                self.route_table = table;
            }
            "max-connections" => {
                self.max_connections = number(value).map_err(what)?;
                if !(1..=65536).contains(&self.max_connections) {
                    return Err(what("must be between 1 and 65536".into()));
                }
            }
            "idle-timeout" => {
                let secs: u64 = number(value).map_err(what)?;
                if !(1..=86400).contains(&secs) {
                    return Err(what("must be between 1 and 86400 seconds".into()));
                }
                self.idle_timeout = Duration::from_secs(secs);
            }
            "stats-interval" => {
                let secs: u64 = number(value).map_err(what)?;
                self.stats_interval = (secs > 0).then(|| Duration::from_secs(secs));
            }
            _ => unreachable!("keys are checked when read"),
        }
        Ok(())
    }

    /// Checks that a given CA has both halves.
    pub fn check_complete(&self) -> Result<(), String> {
        if let CaSource::Given { cert_pem, key_pem } = &self.ca {
            if cert_pem.is_empty() || key_pem.is_empty() {
                return Err("SHIELD_CA_CERT and SHIELD_CA_KEY must be given together".into());
            }
        }
        Ok(())
    }
}

fn flag_and_env(key: &str) -> String {
    format!("--{key} (SHIELD_{})", key.to_uppercase().replace('-', "_"))
}

/// Maps `SHIELD_X_Y=v` to the flag `x-y`, and `SHIELD_SECRET_N=v` to `secret` with `N=v`.
fn env_pair(key: &str, value: String) -> Result<(String, String), String> {
    let rest = &key["SHIELD_".len()..];
    if let Some(name) = rest.strip_prefix("SECRET_") {
        return Ok(("secret".into(), format!("{name}={value}")));
    }
    let flag = rest.to_lowercase().replace('_', "-");
    if !KEYS.contains(&flag.as_str()) || flag == "secret" {
        return Err(format!("unknown setting {key}"));
    }
    Ok((flag, value))
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("'{value}' is not a number"))
}

/// `NAME=<placeholder>|<value>|<host>,<host>`. The value is everything between the first and
/// the last `|`, so it may hold `|` itself; `base64:` before it means it is encoded.
fn parse_secret(spec: &str) -> Result<Secret, String> {
    let (name, rest) = spec
        .split_once('=')
        .ok_or_else(|| format!("secret '{spec}' is not NAME=<placeholder>|<value>|<hosts>"))?;
    let bad = |why: &str| format!("secret {name}: {why}");
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "secret name '{name}' must be upper-case letters, digits and '_'"
        ));
    }
    let (placeholder, rest) = rest
        .split_once('|')
        .ok_or_else(|| bad("expected <placeholder>|<value>|<hosts>"))?;
    let (value, hosts) = rest
        .rsplit_once('|')
        .ok_or_else(|| bad("expected <placeholder>|<value>|<hosts>"))?;

    if !(8..=128).contains(&placeholder.len())
        || !placeholder
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        return Err(bad(
            "the placeholder must be 8 to 128 letters, digits, '_', '-' or '.'",
        ));
    }
    let value = match value.strip_prefix("base64:") {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| bad("the value after 'base64:' is not base64"))?;
            String::from_utf8(bytes).map_err(|_| bad("the decoded value is not UTF-8"))?
        }
        None => value.to_string(),
    };
    // The value goes into an HTTP head: control characters would split or end it.
    if value.is_empty() || value.len() > 8192 || value.chars().any(|c| c.is_control()) {
        return Err(bad(
            "the value must be 1 to 8192 bytes without control characters",
        ));
    }
    if value.contains(placeholder) {
        return Err(bad("the value contains its own placeholder"));
    }
    let hosts = list(hosts)
        .map(|h| NamePattern::parse(h).map_err(|e| bad(&e)))
        .collect::<Result<Vec<_>, _>>()?;
    if hosts.is_empty() {
        return Err(bad("no hosts given"));
    }
    Ok(Secret {
        name: name.to_string(),
        placeholder: placeholder.to_string(),
        value,
        hosts,
    })
}

fn parse_dns_server(value: &str) -> Result<SocketAddrV4, String> {
    if let Ok(addr) = value.parse::<SocketAddrV4>() {
        return Ok(addr);
    }
    let ip: Ipv4Addr = value
        .parse()
        .map_err(|_| format!("'{value}' is not IPv4 address[:port]"))?;
    Ok(SocketAddrV4::new(ip, 53))
}

/// A PEM given as a path (starting with `/`) or as base64 of its text on one line.
fn load_pem(value: &str) -> Result<String, String> {
    let text = if value.starts_with('/') {
        std::fs::read_to_string(value).map_err(|e| format!("reading {value}: {e}"))?
    } else {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| "neither a path starting with '/' nor base64 of a PEM".to_string())?;
        String::from_utf8(bytes).map_err(|_| "the decoded PEM is not text".to_string())?
    };
    if !text.contains("-----BEGIN ") {
        return Err("not PEM (no -----BEGIN line)".into());
    }
    Ok(text)
}

/// The first IPv4 `nameserver` of a resolv.conf text.
pub fn first_nameserver(resolv_conf: &str) -> Option<Ipv4Addr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
