//! HTTP/1 request heads: where a request goes (Host, or the authority of an absolute target)
//! and how its body is framed, so that every request of a keep-alive connection is checked
//! and rewritten, not only the first.

use std::net::Ipv4Addr;

use crate::policy::normalize_name;

/// The longest request head the shield reads; longer ones are refused.
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The head exactly as received, blank line included.
    pub raw: Vec<u8>,
    pub method: String,
    /// Host without port, lower case: a DNS name or an IPv4 address literal.
    pub host: Option<String>,
    pub body: Body,
    /// A WebSocket upgrade: after its response the connection carries no more HTTP.
    pub upgrade: bool,
}

impl RequestHead {
    /// The host as a DNS name; None when absent or an address literal.
    pub fn name(&self) -> Option<&str> {
        self.host
            .as_deref()
            .filter(|h| h.parse::<Ipv4Addr>().is_err())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("request head too large")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

impl HeadError {
    /// The reason written in the log.
    pub fn reason(&self) -> &'static str {
        match self {
            HeadError::TooLarge => "head-too-large",
            HeadError::Malformed(reason) => reason,
        }
    }
}

/// Parses a request head at the start of `buf`: Ok(None) while it is incomplete, else the
/// head and its length.
pub fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("bad-request")),
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let method = request.method.unwrap_or_default().to_string();
    let target = request.path.unwrap_or_default();
    let http11 = request.version == Some(1);
    let header = |name: &str| header_values(request.headers, name).into_iter();

    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(HeadError::Malformed("connect-not-supported"));
    }

    let hosts: Vec<String> = header("host").collect();
    let host = match hosts.as_slice() {
        [] if http11 => return Err(HeadError::Malformed("no-host")),
        [] => None,
        [one] => Some(host_of(one)?),
        _ => return Err(HeadError::Malformed("several-hosts")),
    };
    // Servers must prefer an absolute target's authority to Host: both must agree, or
    // the check would look at one name while the server serves the other.
    if let Some(authority) = absolute_authority(target) {
        if authority.contains('@') {
            return Err(HeadError::Malformed("userinfo-in-target"));
        }
        if host.as_deref() != Some(host_of(authority)?.as_str()) {
            return Err(HeadError::Malformed("target-host-mismatch"));
        }
    }

    let body = body_of(
        header("transfer-encoding").collect(),
        header("content-length").collect(),
    )?;
    let upgrade = header("upgrade").next().is_some();
    if upgrade {
        let websocket = header("upgrade").all(|v| v.eq_ignore_ascii_case("websocket"));
        if !websocket || !method.eq_ignore_ascii_case("GET") || body != Body::None {
            return Err(HeadError::Malformed("upgrade-not-websocket"));
        }
    }

    let head = RequestHead {
        raw: buf[..len].to_vec(),
        method,
        host,
        body,
        upgrade,
    };
    Ok(Some((head, len)))
}

fn header_values(headers: &[httparse::Header<'_>], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        .collect()
}

/// `name[:port]` or `a.b.c.d[:port]`, normalised without the port.
fn host_of(value: &str) -> Result<String, HeadError> {
    let bad = HeadError::Malformed("bad-host");
    let host = match value.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return Err(bad),
        None => value,
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(ip.to_string());
    }
    normalize_name(host).ok_or(bad)
}

/// The authority of `http://authority/...` or `https://...`, if the target has that form.
fn absolute_authority(target: &str) -> Option<&str> {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return None;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// How a request's body is framed. Both headers at once, or a transfer coding other than a
/// final chunked, are refused: either could make the server see different requests than
/// the shield checked.
fn body_of(transfer_encoding: Vec<String>, content_length: Vec<String>) -> Result<Body, HeadError> {
    if !transfer_encoding.is_empty() {
        if !content_length.is_empty() {
            return Err(HeadError::Malformed("length-and-chunked"));
        }
        let codings = transfer_encoding.join(",");
        let last = codings.rsplit(',').next().unwrap_or("").trim();
        if !last.eq_ignore_ascii_case("chunked") {
            return Err(HeadError::Malformed("bad-transfer-encoding"));
        }
        return Ok(Body::Chunked);
    }
    let mut length = None;
    for value in content_length.iter().flat_map(|v| v.split(',')) {
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeadError::Malformed("bad-content-length"));
        }
        let n: u64 = value
            .parse()
            .map_err(|_| HeadError::Malformed("bad-content-length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(HeadError::Malformed("bad-content-length"));
        }
        length = Some(n);
    }
    Ok(match length {
        Some(0) | None => Body::None,
        Some(n) => Body::Length(n),
    })
}

/// The size of a chunk from its size line (`1a;ext=x\r\n`).
pub fn chunk_size(line: &[u8]) -> Result<u64, HeadError> {
    let bad = HeadError::Malformed("bad-chunk");
    let line = line.strip_suffix(b"\r\n").ok_or(bad.clone())?;
    let digits = line.split(|b| *b == b';').next().unwrap_or_default();
    let digits = std::str::from_utf8(digits)
        .map_err(|_| bad.clone())?
        .trim_end();
    if digits.is_empty() || digits.len() > 15 {
        return Err(bad);
    }
    u64::from_str_radix(digits, 16).map_err(|_| bad)
}

/// A complete response the shield writes itself, closing the connection after it.
pub fn response(status: u16, reason: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
