//! Service groups: the connection handlers a published port may have, the
//! combinations Unikraft Cloud allows, and the routes the ingress proxy serves.

use std::fmt;
use std::net::Ipv4Addr;

/// A connection handler of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Handler {
    /// TLS is terminated by the proxy.
    Tls,
    /// The proxy forwards HTTP requests one by one rather than TCP connections.
    Http,
    /// Every request is answered with a redirect to HTTPS.
    Redirect,
}

impl Handler {
    pub fn as_str(self) -> &'static str {
        match self {
            Handler::Tls => "tls",
            Handler::Http => "http",
            Handler::Redirect => "redirect",
        }
    }

    pub fn parse(s: &str) -> Option<Handler> {
        match s {
            "tls" => Some(Handler::Tls),
            "http" => Some(Handler::Http),
            "redirect" => Some(Handler::Redirect),
            _ => None,
        }
    }
}

impl fmt::Display for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the proxy does on a published port: the meaning of its handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No handler: TCP connections are forwarded as they are.
    Tcp,
    /// `tls`: TLS is terminated and the plain stream forwarded.
    Tls,
    /// `http`: HTTP requests are forwarded one by one.
    Http,
    /// `http` and `tls`: TLS is terminated and HTTP requests are forwarded.
    Https,
    /// `redirect` (with `http` or alone): every request is redirected to HTTPS.
    Redirect,
}

/// The port of plain HTTP, where `http` and `redirect` belong.
pub const HTTP_PORT: u16 = 80;
/// The port of HTTPS, where `http` and `tls` come together.
pub const HTTPS_PORT: u16 = 443;

impl Mode {
    /// The mode of `handlers` on `port`, or `None` when the combination is not allowed there.
    /// Unikraft Cloud's rules: port 80 has `http` and no `tls` (and may redirect); port 443
    /// has `http` and `tls`; other ports have `tls` alone. weft also allows other ports
    /// without any handler, as plain TCP.
    pub fn of(port: u16, handlers: &[Handler]) -> Option<Mode> {
        let mut set = handlers.to_vec();
        set.sort();
        set.dedup();
        if set.len() != handlers.len() {
            return None;
        }
        use Handler::*;
        match (port, set.as_slice()) {
            (HTTP_PORT, [Http]) => Some(Mode::Http),
            (HTTP_PORT, [Http, Redirect] | [Redirect]) => Some(Mode::Redirect),
            (HTTPS_PORT, [Tls, Http]) => Some(Mode::Https),
            (HTTP_PORT | HTTPS_PORT, _) => None,
            (_, [Tls]) => Some(Mode::Tls),
            (_, []) => Some(Mode::Tcp),
            _ => None,
        }
    }

    /// The combinations allowed on `port`, as a user would write them.
    pub fn allowed_on(port: u16) -> &'static str {
        match port {
            HTTP_PORT => r#"["http"], ["http", "redirect"] or ["redirect"]"#,
            HTTPS_PORT => r#"["http", "tls"]"#,
            _ => r#"["tls"] or [] (plain TCP)"#,
        }
    }

    /// The handlers of a port whose request names none: the combination Unikraft Cloud
    /// requires there (`tls` on ports other than 80 and 443).
    pub fn default_handlers(port: u16) -> Vec<Handler> {
        match port {
            HTTP_PORT => vec![Handler::Http],
            HTTPS_PORT => vec![Handler::Http, Handler::Tls],
            _ => vec![Handler::Tls],
        }
    }

    /// The destination port of a service whose request names none: the published port
    /// itself, except that a redirect points at HTTPS.
    pub fn default_destination(self, port: u16) -> u16 {
        match self {
            Mode::Redirect => HTTPS_PORT,
            _ => port,
        }
    }

    /// Whether the proxy terminates TLS on the port (and so needs a certificate).
    pub fn terminates_tls(self) -> bool {
        matches!(self, Mode::Tls | Mode::Https)
    }
}

/// Handlers as a user writes them: `["http", "tls"]`.
pub fn handlers_text(handlers: &[Handler]) -> String {
    let quoted: Vec<String> = handlers.iter().map(|h| format!("\"{h}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A published port as the proxy serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub port: u16,
    pub mode: Mode,
    /// The port on the instances that connections and requests go to (for a redirect, the
    /// HTTPS port clients are sent to).
    pub destination_port: u16,
    /// The name of the service group, for messages.
    pub group: String,
    /// The group's running instances, each by its primary interface's address (R5).
    pub backends: Vec<Backend>,
}

/// A running instance that a route forwards to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub instance: String,
    /// The address of the instance's primary interface: the only one the proxy forwards to.
    pub primary: Ipv4Addr,
}

#[cfg(test)]
mod tests {
    use super::Handler::*;
    use super::*;

    #[test]
    fn the_combinations_of_unikraft_cloud() {
        assert_eq!(Mode::of(80, &[Http]), Some(Mode::Http));
        assert_eq!(Mode::of(80, &[Http, Redirect]), Some(Mode::Redirect));
        assert_eq!(Mode::of(80, &[Redirect, Http]), Some(Mode::Redirect));
        assert_eq!(Mode::of(80, &[Redirect]), Some(Mode::Redirect));
        assert_eq!(Mode::of(443, &[Http, Tls]), Some(Mode::Https));
        assert_eq!(Mode::of(443, &[Tls, Http]), Some(Mode::Https));
        assert_eq!(Mode::of(8443, &[Tls]), Some(Mode::Tls));
        assert_eq!(Mode::of(5432, &[]), Some(Mode::Tcp));
    }

    #[test]
    fn other_combinations_are_refused() {
        let refused: &[(u16, &[Handler])] = &[
            (80, &[]),
            (80, &[Tls]),
            (80, &[Http, Tls]),
            (443, &[]),
            (443, &[Tls]),
            (443, &[Http]),
            (443, &[Http, Tls, Redirect]),
            (8080, &[Http]),
            (8080, &[Http, Tls]),
            (8080, &[Redirect]),
            (8080, &[Tls, Tls]),
            (80, &[Http, Http]),
        ];
        for (port, handlers) in refused {
            assert_eq!(Mode::of(*port, handlers), None, "{port} {handlers:?}");
        }
    }

    #[test]
    fn defaults_are_allowed_combinations() {
        for port in [1, 22, 80, 443, 8080, 65535] {
            assert!(Mode::of(port, &Mode::default_handlers(port)).is_some());
        }
        assert_eq!(Mode::Redirect.default_destination(80), 443);
        assert_eq!(Mode::Http.default_destination(80), 80);
        assert_eq!(handlers_text(&[Http, Tls]), r#"["http", "tls"]"#);
        assert_eq!(handlers_text(&[]), "[]");
    }
}
