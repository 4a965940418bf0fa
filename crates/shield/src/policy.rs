//! What the shield lets through: allowed names (with wildcards), allowed networks, and the
//! secrets it injects for their bound hosts.

use std::fmt;
use std::net::Ipv4Addr;

use crate::addr::Cidr;

/// The longest DNS name, without the trailing dot.
const MAX_NAME: usize = 253;

/// Normalises a DNS name for matching: lower case, no trailing dot. None when it is not a
/// well-formed host name (labels of letters, digits, `-` and `_`, 1 to 63 characters).
pub fn normalize_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(valid_label) {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// An allowed name: `example.com` (that name only), `*.example.com` (any name below it, not
/// `example.com` itself) or `*` (any name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamePattern {
    Exact(String),
    /// The suffix without the `*.`.
    Below(String),
    Any,
}

impl NamePattern {
    pub fn parse(s: &str) -> Result<NamePattern, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(NamePattern::Any);
        }
        if s.parse::<Ipv4Addr>().is_ok() {
            return Err(format!(
                "'{s}' is an address, not a name; allow addresses with SHIELD_ALLOW_CIDRS"
            ));
        }
        let (below, rest) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let name = normalize_name(rest)
            .ok_or_else(|| format!("'{s}' is not a host name or a '*.' wildcard"))?;
        Ok(if below {
            NamePattern::Below(name)
        } else {
            NamePattern::Exact(name)
        })
    }

    /// Whether a normalised name matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Any => true,
            NamePattern::Exact(exact) => name == exact,
            NamePattern::Below(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }

    /// Whether every name this pattern matches is also matched by `self`.
    fn covers(&self, other: &NamePattern) -> bool {
        match other {
            NamePattern::Exact(name) => self.matches(name),
            NamePattern::Below(suffix) => match self {
                NamePattern::Any => true,
                NamePattern::Exact(_) => false,
                NamePattern::Below(mine) => suffix == mine || other_below(suffix, mine),
            },
            NamePattern::Any => matches!(self, NamePattern::Any),
        }
    }
}

/// Whether `suffix` lies strictly below `mine` (`a.example.com` below `example.com`).
fn other_below(suffix: &str, mine: &str) -> bool {
    NamePattern::Below(mine.to_string()).matches(suffix)
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Exact(name) => f.write_str(name),
            NamePattern::Below(suffix) => write!(f, "*.{suffix}"),
            NamePattern::Any => f.write_str("*"),
        }
    }
}

/// A secret: the client sends `placeholder`; requests to `hosts` carry `value` instead.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub name: String,
    pub placeholder: String,
    pub value: String,
    pub hosts: Vec<NamePattern>,
}

impl fmt::Debug for Secret {
    // The value stays out of every debug print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("placeholder", &self.placeholder)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl Secret {
    pub fn bound_to(&self, name: &str) -> bool {
        self.hosts.iter().any(|h| h.matches(name))
    }
}

#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub names: Vec<NamePattern>,
    pub cidrs: Vec<Cidr>,
    pub secrets: Vec<Secret>,
}

impl Policy {
    /// Checks what single fields cannot: that every secret's hosts are reachable at all and
    /// that no placeholder hides inside another (which would make replacement ambiguous).
    pub fn validate(&self) -> Result<(), String> {
        for secret in &self.secrets {
            for host in &secret.hosts {
                if !self.names.iter().any(|allowed| allowed.covers(host)) {
                    return Err(format!(
                        "secret {} is bound to '{host}', which SHIELD_ALLOW does not allow",
                        secret.name
                    ));
                }
            }
        }
        for a in &self.secrets {
            for b in &self.secrets {
                if a.name != b.name && b.placeholder.contains(&a.placeholder) {
                    return Err(format!(
                        "the placeholder of secret {} is part of the placeholder of secret {}",
                        a.name, b.name
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn name_allowed(&self, name: &str) -> bool {
        self.names.iter().any(|p| p.matches(name))
    }

    pub fn cidr_allowed(&self, ip: Ipv4Addr) -> bool {
        self.cidrs.iter().any(|c| c.contains(ip))
    }

    /// The secrets bound to a host.
    pub fn secrets_for<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Secret> + 'a {
        self.secrets.iter().filter(move |s| s.bound_to(name))
    }

    pub fn has_secrets_for(&self, name: &str) -> bool {
        self.secrets_for(name).next().is_some()
    }
}

/// Replaces every placeholder of `secrets` in `text`, returning the new text and the names
/// of the secrets that were used, or None when nothing was replaced.
pub fn replace_placeholders<'a>(
    text: &[u8],
    secrets: impl IntoIterator<Item = &'a Secret>,
) -> Option<(Vec<u8>, Vec<&'a str>)> {
    let mut out = text.to_vec();
    let mut used = Vec::new();
    for secret in secrets {
        let from = secret.placeholder.as_bytes();
        if find(&out, from).is_none() {
            continue;
        }
        let mut next = Vec::with_capacity(out.len() + secret.value.len());
        let mut rest = out.as_slice();
        while let Some(at) = find(rest, from) {
            next.extend_from_slice(&rest[..at]);
            next.extend_from_slice(secret.value.as_bytes());
            rest = &rest[at + from.len()..];
        }
        next.extend_from_slice(rest);
        out = next;
        used.push(secret.name.as_str());
    }
    (!used.is_empty()).then_some((out, used))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> NamePattern {
        NamePattern::parse(s).unwrap()
    }

    fn secret(name: &str, placeholder: &str, value: &str, hosts: &[&str]) -> Secret {
        Secret {
            name: name.into(),
            placeholder: placeholder.into(),
            value: value.into(),
            hosts: hosts.iter().map(|h| pat(h)).collect(),
        }
    }

    #[test]
    fn names_are_normalised_and_checked() {
        assert_eq!(
            normalize_name("Api.Example.COM."),
            Some("api.example.com".into())
        );
        assert_eq!(
            normalize_name("_dmarc.x-y.org"),
            Some("_dmarc.x-y.org".into())
        );
        for bad in [
            "",
            ".",
            "a..b",
            "a b.com",
            "a.com:443",
            &"a".repeat(64),
            "é.com",
        ] {
            assert_eq!(normalize_name(bad), None, "{bad:?}");
        }
        assert_eq!(normalize_name(&format!("{}.com", "a.".repeat(125))), None);
    }

    #[test]
    fn wildcards_match_names_below_only() {
        let p = pat("*.Example.org");
        assert_eq!(p.to_string(), "*.example.org");
        assert!(p.matches("a.example.org"));
        assert!(p.matches("a.b.example.org"));
        assert!(!p.matches("example.org"));
        assert!(!p.matches("badexample.org"));
        assert!(!p.matches(".example.org"));
        assert!(!p.matches("example.org.evil.com"));

        let e = pat("example.com");
        assert!(e.matches("example.com"));
        assert!(!e.matches("a.example.com"));
        assert!(pat("*").matches("anything.at.all"));

        for bad in [
            "*example.com",
            "a.*.com",
            "**.com",
            "*.",
            "10.0.0.1",
            "exa mple.com",
        ] {
            assert!(NamePattern::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn secret_hosts_must_be_allowed() {
        let mut policy = Policy {
            names: vec![pat("*.allowed.test"), pat("api.other.test")],
            cidrs: vec![],
            secrets: vec![secret("A", "WEFT_SECRET_A", "v", &["api.allowed.test"])],
        };
        policy.validate().unwrap();
        policy.secrets[0].hosts = vec![pat("*.x.allowed.test")];
        policy.validate().unwrap();
        policy.secrets[0].hosts = vec![pat("*.other.test")];
        assert!(policy.validate().unwrap_err().contains("'*.other.test'"));
        policy.secrets[0].hosts = vec![pat("allowed.test")];
        assert!(policy.validate().is_err());
    }

    #[test]
    fn nested_placeholders_are_refused() {
        let policy = Policy {
            names: vec![pat("*")],
            cidrs: vec![],
            secrets: vec![
                secret("A", "WEFT_SECRET_A", "1", &["a.test"]),
                secret("AB", "WEFT_SECRET_AB", "2", &["a.test"]),
            ],
        };
        assert!(policy.validate().unwrap_err().contains("secret A"));
    }

    #[test]
    fn replaces_every_occurrence_and_reports_secrets() {
        let secrets = [
            secret("A", "PH_AAAA", "alpha", &["a.test"]),
            secret("B", "PH_BBBB", "beta", &["a.test"]),
        ];
        let (out, used) =
            replace_placeholders(b"x PH_AAAA y PH_AAAA PH_BBBB", secrets.iter()).unwrap();
        assert_eq!(out, b"x alpha y alpha beta");
        assert_eq!(used, ["A", "B"]);
        assert!(replace_placeholders(b"nothing here PH_AAA", secrets.iter()).is_none());
    }

    #[test]
    fn secrets_are_bound_to_their_hosts() {
        let policy = Policy {
            names: vec![pat("*")],
            cidrs: vec![],
            secrets: vec![secret("A", "PH_AAAA", "alpha", &["api.a.test", "*.b.test"])],
        };
        assert!(policy.has_secrets_for("api.a.test"));
        assert!(policy.has_secrets_for("x.b.test"));
        assert!(!policy.has_secrets_for("a.test"));
        assert!(!policy.has_secrets_for("echo.a.test"));
        assert!(!format!("{:?}", policy.secrets[0]).contains("alpha"));
    }
}
