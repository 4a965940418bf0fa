//! What the shield serves itself, over plain HTTP at `weft-shield.internal` on any address:
//! its CA certificate (`/ca.pem`), which clients must trust for interception, and its
//! counters (`/metrics`). Nothing secret is served.

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::http::{response, RequestHead};
use crate::log::{Decision, Proto};
use crate::tcp::Conn;

pub async fn serve<W: AsyncWrite + Unpin>(conn: &Conn, head: &RequestHead, client_w: &mut W) {
    let path = request_path(&head.raw);
    let name = Some(crate::dns::SHIELD_NAME);
    let reply = match (head.method.as_str(), path.as_str()) {
        ("GET", "/ca.pem") => {
            conn.log(Decision::Allow, Proto::Http, name, "shield-ca");
            let pem = conn.shield.ca.cert_pem();
            response(200, "OK", "application/x-pem-file", pem.as_bytes())
        }
        ("GET", "/metrics") => {
            conn.log(Decision::Allow, Proto::Http, name, "shield-metrics");
            let text = conn.shield.log.metrics();
            response(200, "OK", "text/plain; version=0.0.4", text.as_bytes())
        }
        _ => {
            conn.log(Decision::Deny, Proto::Http, name, "shield-not-found");
            response(
                404,
                "Not Found",
                "text/plain",
                b"weft-shield: /ca.pem or /metrics\n",
            )
        }
    };
    let _ = client_w.write_all(&reply).await;
    let _ = client_w.shutdown().await;
}

/// The path of the request line, without query.
fn request_path(raw: &[u8]) -> String {
    let line = raw.split(|b| *b == b'\r').next().unwrap_or_default();
    let target = line.split(|b| *b == b' ').nth(1).unwrap_or_default();
    let target = String::from_utf8_lossy(target);
    let path = match target.find("://") {
        Some(at) => {
            let rest = &target[at + 3..];
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        None => &target,
    };
    path.split(['?', '#']).next().unwrap_or("/").to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_path() {
        let path = |raw: &str| super::request_path(raw.as_bytes());
        assert_eq!(path("GET /ca.pem HTTP/1.1\r\nHost: x\r\n\r\n"), "/ca.pem");
        assert_eq!(path("GET /metrics?x=1 HTTP/1.1\r\n\r\n"), "/metrics");
        assert_eq!(
            path("GET http://weft-shield.internal/ca.pem HTTP/1.1\r\n\r\n"),
            "/ca.pem"
        );
        assert_eq!(
            path("GET http://weft-shield.internal HTTP/1.1\r\n\r\n"),
            "/"
        );
    }
}
