//! The `http` handler: HTTP/1.1 requests forwarded one by one, each to the next running
//! instance, with `X-Forwarded-For` and `X-Forwarded-Proto`; and the `redirect` handler.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use weft_model::services::{Route, HTTPS_PORT};

use crate::forward::{self, Unavailable};
use crate::{Context, Counters};

type Body = BoxBody<Bytes, hyper::Error>;

/// How long a client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers that describe one hop of a connection, not the request; never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Serves HTTP/1.1 on a client's connection, forwarding each request.
pub(crate) async fn serve<S>(
    io: S,
    peer: SocketAddr,
    scheme: &'static str,
    route: watch::Receiver<Route>,
    turn: Arc<AtomicUsize>,
    context: Arc<Context>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        // Each request reads the route afresh: an instance that stopped meanwhile is no
        // longer chosen, even on a connection that was opened before.
        let route = route.borrow().clone();
        let (turn, context) = (Arc::clone(&turn), Arc::clone(&context));
        async move { Ok::<_, Infallible>(forward(req, peer, scheme, &route, &turn, &context).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
}

async fn forward(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    scheme: &'static str,
    route: &Route,
    turn: &AtomicUsize,
    context: &Context,
) -> Response<Body> {
    let counters = &context.counters;
    let upstream = match forward::connect(route, turn).await {
        Ok((stream, _)) => stream,
        Err(Unavailable::NoInstance) => {
            Counters::bump(&counters.no_instance);
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "No instance of service group '{}' is running\n",
                    route.group
                ),
            );
        }
        Err(Unavailable::NoAnswer) => {
            Counters::bump(&counters.unreachable);
            return bad_gateway(route);
        }
    };

    let upgrade = upgrade_of(req.headers());
    strip_hop_by_hop(req.headers_mut(), upgrade.as_ref());
    forwarded_headers(req.headers_mut(), peer, scheme);
    if let Some(path) = req.uri().path_and_query().cloned() {
        // The instance gets the origin form, even from a client that sent an absolute URI.
        *req.uri_mut() = Uri::from(path);
    }
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));

    let Ok((mut sender, conn)) =
        hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await
    else {
        Counters::bump(&counters.unreachable);
        return bad_gateway(route);
    };
    tokio::spawn(conn.with_upgrades());
    let mut resp = match sender.send_request(req).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(group = %route.group, error = %e, "instance failed the request");
            Counters::bump(&counters.unreachable);
            return bad_gateway(route);
        }
    };
    Counters::bump(&counters.requests);

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) {
                    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
            return resp.map(|b| b.boxed());
        }
    }
    let upgrade = upgrade_of(resp.headers());
    strip_hop_by_hop(resp.headers_mut(), upgrade.as_ref());
    resp.map(|b| b.boxed())
}

/// Serves the `redirect` handler: every request is sent to the same host and path over
/// HTTPS, on the route's destination port.
pub(crate) async fn redirect<S>(io: S, route: watch::Receiver<Route>, context: Arc<Context>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let port = route.borrow().destination_port;
        Counters::bump(&context.counters.redirects);
        async move { Ok::<_, Infallible>(redirect_answer(&req, port)) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

fn redirect_answer<B>(req: &Request<B>, port: u16) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let Some(host) = host.map(|h| host_without_port(&h).to_string()) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "A redirect to HTTPS needs the request's Host header\n".into(),
        );
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = if port == HTTPS_PORT {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    let Ok(value) = HeaderValue::from_str(&location) else {
        return plain(StatusCode::BAD_REQUEST, "Invalid Host header\n".into());
    };
    let mut resp = plain(
        StatusCode::MOVED_PERMANENTLY,
        format!("Moved to {location}\n"),
    );
    resp.headers_mut().insert(header::LOCATION, value);
    resp
}

/// `example.com:80` → `example.com`; `[2001:db8::1]:80` → `[2001:db8::1]`.
fn host_without_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i)
            if !host[i..].contains(']') && host[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &host[..i]
        }
        _ => host,
    }
}

/// The protocol a request or response asks to switch to, when it does.
fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Removes the headers of one hop, and those the `Connection` header names; an upgrade
/// being asked for is kept, as it must reach the other side.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<&HeaderValue>) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
}

/// Tells the instance who the client is and how it came: the client's address is added to
/// `X-Forwarded-For`, and `X-Forwarded-Proto` is set to what the proxy served.
fn forwarded_headers(headers: &mut HeaderMap, peer: SocketAddr, scheme: &'static str) {
    let client = peer.ip().to_canonical().to_string();
    let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) if !earlier.trim().is_empty() => format!("{earlier}, {client}"),
        _ => client,
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(scheme));
}

fn bad_gateway(route: &Route) -> Response<Body> {
    plain(
        StatusCode::BAD_GATEWAY,
        format!(
            "No instance of service group '{}' answered on port {}\n",
            route.group, route.destination_port
        ),
    )
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let body = Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_host_and_path() {
        let req = |host: &str, path: &str| {
            Request::builder()
                .uri(path)
                .header(header::HOST, host)
                .body(())
                .unwrap()
        };
        let location = |resp: Response<Body>| {
            assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
            resp.headers()[header::LOCATION]
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            location(redirect_answer(&req("example.com", "/a?b=1"), 443)),
            "https://example.com/a?b=1"
        );
        assert_eq!(
            location(redirect_answer(&req("example.com:80", "/"), 8443)),
            "https://example.com:8443/"
        );
        assert_eq!(
            location(redirect_answer(&req("[2001:db8::1]:80", "/"), 443)),
            "https://[2001:db8::1]/"
        );
        let no_host = Request::builder().uri("/").body(()).unwrap();
        assert_eq!(
            redirect_answer(&no_host, 443).status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn hop_by_hop_headers_are_not_forwarded() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        headers.insert("x-secret", "1".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut headers, None);
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-kept"]);

        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        headers.insert(header::UPGRADE, "websocket".parse().unwrap());
        let upgrade = upgrade_of(&headers);
        strip_hop_by_hop(&mut headers, upgrade.as_ref());
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");
    }

    #[test]
    fn forwarded_headers_name_the_client() {
        let peer: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let mut headers = HeaderMap::new();
        forwarded_headers(&mut headers, peer, "https");
        assert_eq!(headers["x-forwarded-for"], "192.0.2.1");
        assert_eq!(headers["x-forwarded-proto"], "https");

        headers.insert("x-forwarded-proto", "ftp".parse().unwrap());
        headers.insert("x-forwarded-for", "198.51.100.7".parse().unwrap());
        forwarded_headers(&mut headers, peer, "http");
        assert_eq!(headers["x-forwarded-for"], "198.51.100.7, 192.0.2.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
    }
}
