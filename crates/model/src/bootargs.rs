//! Boot arguments in Unikraft's convention.
//!
//! ```text
//! netdev.ip=10.100.0.2/16:10.100.255.254:10.100.255.254 netdev.ip= weft.macs=12:b0:..,12:b1:..
//! env.vars=[ "K=V" ] -- /bin/app arg1 "arg two"
//! ```
//!
//! One `netdev.ip=` per interface in device order, empty for an interface without autoconfig.
//! `weft.macs=` lists the NICs' MACs in the same order so the guest matches entries to
//! devices by MAC; unikernels ignore it. The string is tokenized like the Linux kernel does
//! it: whitespace separates, double quotes group, and there is no escape character, so a
//! value cannot hold a double quote or a control character.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::{Ipv4Cidr, MacAddr};

/// What the guest is told about one interface.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NetdevConfig {
    pub cidr: Option<Ipv4Cidr>,
    pub gateway: Option<Ipv4Addr>,
    pub nameserver: Option<Ipv4Addr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BootArgs {
    /// One entry per NIC in device order; `None` when autoconfig is off.
    pub netdevs: Vec<Option<NetdevConfig>>,
    /// The NICs' MACs in device order.
    pub macs: Vec<MacAddr>,
    pub env: Vec<String>,
    pub app_args: Vec<String>,
}

/// The Linux kernel hands every word after `--` (and a few before) to init as an argument
/// and every `K=V` word as an environment variable, 32 of each at most (counting its own),
/// and panics at boot beyond that. These limits keep a margin below.
pub const MAX_APP_ARGS: usize = 28;
pub const MAX_ENV: usize = 28;
/// The kernel's command line holds 2048 bytes on x86; drivers prepend their own options.
pub const MAX_LEN: usize = 1900;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootArgsError {
    #[error("{0} arguments do not fit on a boot command line (at most {MAX_APP_ARGS})")]
    TooManyArgs(usize),
    #[error("{0} environment variables do not fit on a boot command line (at most {MAX_ENV})")]
    TooManyEnv(usize),
    #[error("the boot command line would be {0} bytes long (at most {MAX_LEN})")]
    TooLong(usize),
    #[error("'{0}' cannot be passed on a boot command line: it holds a double quote or a control character")]
    Unrepresentable(String),
    #[error("bad netdev.ip entry '{0}'")]
    BadNetdev(String),
    #[error("bad weft.macs entry '{0}'")]
    BadMac(String),
    #[error("env.vars=[ is not closed by ]")]
    UnclosedEnv,
}

/// Whether a value can travel on a boot command line unchanged.
pub fn representable(value: &str) -> bool {
    !value.chars().any(|c| c == '"' || c.is_control())
}

fn quote(out: &mut String, value: &str) {
    if !value.is_empty() && !value.contains(char::is_whitespace) {
        out.push_str(value);
    } else {
        let _ = write!(out, "\"{value}\"");
    }
}

impl BootArgs {
    /// Renders the command line. Fails when an env entry or argument cannot be represented.
    pub fn render(&self) -> Result<String, BootArgsError> {
        if self.app_args.len() > MAX_APP_ARGS {
            return Err(BootArgsError::TooManyArgs(self.app_args.len()));
        }
        if self.env.len() > MAX_ENV {
            return Err(BootArgsError::TooManyEnv(self.env.len()));
        }
        for value in self.env.iter().chain(&self.app_args) {
            if !representable(value) {
                return Err(BootArgsError::Unrepresentable(value.clone()));
            }
        }

        let mut out = String::new();
        for netdev in &self.netdevs {
            out.push_str("netdev.ip=");
            if let Some(cfg) = netdev {
                let opt = |a: Option<Ipv4Addr>| a.map(|a| a.to_string()).unwrap_or_default();
                if let Some(cidr) = cfg.cidr {
                    out.push_str(&cidr.to_string());
                }
                let _ = write!(out, ":{}:{}", opt(cfg.gateway), opt(cfg.nameserver));
            }
            out.push(' ');
        }
        if !self.macs.is_empty() {
            let macs: Vec<String> = self.macs.iter().map(|m| m.to_string()).collect();
            let _ = write!(out, "weft.macs={} ", macs.join(","));
        }
        if !self.env.is_empty() {
            out.push_str("env.vars=[ ");
            for var in &self.env {
                let _ = write!(out, "\"{var}\" ");
            }
            out.push_str("] ");
        }
        out.push_str("--");
        for arg in &self.app_args {
            out.push(' ');
            quote(&mut out, arg);
        }
        if out.len() > MAX_LEN {
            return Err(BootArgsError::TooLong(out.len()));
        }
        Ok(out)
    }

    /// Parses a command line such as `/proc/cmdline`. Tokens it does not know (the kernel's
    /// own, such as `console=ttyS0`) are ignored.
    pub fn parse(cmdline: &str) -> Result<BootArgs, BootArgsError> {
        let tokens = tokenize(cmdline);
        let mut args = BootArgs::default();
        let mut iter = tokens.into_iter();

        while let Some(token) = iter.next() {
            if token == "--" {
                args.app_args = iter.collect();
                break;
            }
            if let Some(value) = token.strip_prefix("netdev.ip=") {
                args.netdevs.push(parse_netdev(value)?);
            } else if let Some(value) = token.strip_prefix("weft.macs=") {
                for mac in value.split(',').filter(|m| !m.is_empty()) {
                    let mac = mac
                        .parse()
                        .map_err(|_| BootArgsError::BadMac(mac.to_string()))?;
                    args.macs.push(mac);
                }
            } else if token == "env.vars=[" {
                loop {
                    match iter.next() {
                        Some(t) if t == "]" => break,
                        Some(t) => args.env.push(t),
                        None => return Err(BootArgsError::UnclosedEnv),
                    }
                }
            }
        }
        Ok(args)
    }
}

fn parse_netdev(value: &str) -> Result<Option<NetdevConfig>, BootArgsError> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || BootArgsError::BadNetdev(value.to_string());
    let mut parts = value.split(':');
    let cidr = parts.next().unwrap_or_default();
    let addr = |p: Option<&str>| -> Result<Option<Ipv4Addr>, BootArgsError> {
        match p {
            None | Some("") => Ok(None),
            Some(a) => a.parse().map(Some).map_err(|_| bad()),
        }
    };
    Ok(Some(NetdevConfig {
        cidr: if cidr.is_empty() {
            None
        } else {
            Some(cidr.parse().map_err(|_| bad())?)
        },
        gateway: addr(parts.next())?,
        nameserver: addr(parts.next())?,
    }))
}

/// Splits like the kernel's `next_arg`: whitespace separates tokens, double quotes group
/// and are removed.
fn tokenize(cmdline: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_token = false;
    let mut quoted = false;

    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_token = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_token {
                    tokens.push(std::mem::take(&mut current));
                    in_token = false;
                }
            }
            c => {
                current.push(c);
                in_token = true;
            }
        }
    }
    if in_token {
        tokens.push(current);
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BootArgs {
        BootArgs {
            netdevs: vec![
                Some(NetdevConfig {
                    cidr: Some("10.100.0.2/16".parse().unwrap()),
                    gateway: Some("10.100.255.254".parse().unwrap()),
                    nameserver: Some("10.100.255.254".parse().unwrap()),
                }),
                None,
                Some(NetdevConfig {
                    cidr: Some("172.30.5.2/24".parse().unwrap()),
                    ..Default::default()
                }),
            ],
            macs: vec![
                MacAddr([0x12, 0xb0, 10, 100, 0, 2]),
                MacAddr([0x12, 0xb1, 1, 2, 3, 4]),
            ],
            env: vec!["A=1".into(), "B=two words".into()],
            app_args: vec![
                "/bin/busybox".into(),
                "httpd".into(),
                "".into(),
                "a b".into(),
            ],
        }
    }

    #[test]
    fn renders_unikraft_convention() {
        let line = sample().render().unwrap();
        assert_eq!(
            line,
            "netdev.ip=10.100.0.2/16:10.100.255.254:10.100.255.254 netdev.ip= \
             netdev.ip=172.30.5.2/24:: weft.macs=12:b0:0a:64:00:02,12:b1:01:02:03:04 \
             env.vars=[ \"A=1\" \"B=two words\" ] -- /bin/busybox httpd \"\" \"a b\""
        );
    }

    #[test]
    fn round_trips_behind_kernel_arguments() {
        let args = sample();
        let line = format!("console=ttyS0 quiet {}", args.render().unwrap());
        assert_eq!(BootArgs::parse(&line).unwrap(), args);
    }

    #[test]
    fn refuses_unrepresentable_values() {
        let mut args = sample();
        args.app_args.push("say \"hi\"".into());
        assert!(matches!(
            args.render(),
            Err(BootArgsError::Unrepresentable(_))
        ));
        args.app_args.pop();
        args.env.push("X=a\nb".into());
        assert!(matches!(
            args.render(),
            Err(BootArgsError::Unrepresentable(_))
        ));
    }

    #[test]
    fn refuses_what_the_kernel_cannot_take() {
        let mut args = sample();
        args.app_args = vec!["x".into(); MAX_APP_ARGS + 1];
        assert_eq!(
            args.render(),
            Err(BootArgsError::TooManyArgs(MAX_APP_ARGS + 1))
        );
        args.app_args = vec!["x".into(); MAX_APP_ARGS];
        assert!(args.render().is_ok());
        args.env = vec!["A=1".into(); MAX_ENV + 1];
        assert_eq!(args.render(), Err(BootArgsError::TooManyEnv(MAX_ENV + 1)));
        args.env.clear();
        args.app_args = vec!["y".repeat(MAX_LEN)];
        assert!(matches!(args.render(), Err(BootArgsError::TooLong(_))));
    }

    #[test]
    fn rejects_bad_entries() {
        assert!(BootArgs::parse("netdev.ip=10.0.0.1:x --").is_err());
        assert!(BootArgs::parse("weft.macs=zz --").is_err());
        assert!(BootArgs::parse("env.vars=[ \"A=1\"").is_err());
    }
}
