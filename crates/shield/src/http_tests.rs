use super::*;

fn head(text: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
    parse_head(text.as_bytes())
}

fn complete(text: &str) -> RequestHead {
    head(text).unwrap().unwrap().0
}

fn refused(text: &str) -> &'static str {
    head(text).unwrap_err().reason()
}

#[test]
fn reads_host_and_framing() {
    let text =
        "POST /v1/x HTTP/1.1\r\nHost: API.Allowed.test:443\r\nContent-Length: 5\r\n\r\nhello";
    let (h, len) = head(text).unwrap().unwrap();
    assert_eq!(len, text.len() - 5);
    assert_eq!(h.raw, &text.as_bytes()[..len]);
    assert_eq!(h.method, "POST");
    assert_eq!(h.host.as_deref(), Some("api.allowed.test"));
    assert_eq!(h.name(), Some("api.allowed.test"));
    assert_eq!(h.body, Body::Length(5));
    assert!(!h.upgrade);

    let h = complete("POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(h.body, Body::Chunked);
    let h = complete("GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.body, Body::None);
    let h = complete("GET / HTTP/1.1\r\nHost: 10.1.2.3:80\r\n\r\n");
    assert_eq!(h.host.as_deref(), Some("10.1.2.3"));
    assert_eq!(h.name(), None);
    let h = complete("GET / HTTP/1.0\r\n\r\n");
    assert_eq!(h.host, None);
    let h = complete("GET http://a.test:80/x HTTP/1.1\r\nHost: a.test\r\n\r\n");
    assert_eq!(h.host.as_deref(), Some("a.test"));
    let h = complete(
        "GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    assert!(h.upgrade);
}

#[test]
fn waits_for_a_complete_head() {
    assert_eq!(head("GET / HTTP/1.1\r\nHost: a.te").unwrap(), None);
    assert_eq!(head("").unwrap(), None);
}

#[test]
fn refuses_ambiguous_requests() {
    let cases = [
        ("GET / HTTP/1.1\r\n\r\n", "no-host"),
        (
            "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
            "several-hosts",
        ),
        ("GET / HTTP/1.1\r\nHost: a test\r\n\r\n", "bad-host"),
        ("GET / HTTP/1.1\r\nHost: a.test:x\r\n\r\n", "bad-host"),
        (
            "GET http://b.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
            "target-host-mismatch",
        ),
        (
            "GET HTTP://B.test HTTP/1.1\r\nHost: a.test\r\n\r\n",
            "target-host-mismatch",
        ),
        (
            "GET http://a.test@b.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n",
            "userinfo-in-target",
        ),
        (
            "CONNECT b.test:443 HTTP/1.1\r\nHost: b.test\r\n\r\n",
            "connect-not-supported",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "length-and-chunked",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "bad-transfer-encoding",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "bad-content-length",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            "bad-content-length",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
            "bad-content-length",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
            "upgrade-not-websocket",
        ),
        ("GET\x01 / HTTP/1.1\r\n\r\n", "bad-request"),
    ];
    for (text, reason) in cases {
        assert_eq!(refused(text), reason, "{text:?}");
    }
    let many = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X: y\r\n".repeat(200)
    );
    assert_eq!(refused(&many), "head-too-large");
    let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
    assert_eq!(refused(&long), "head-too-large");
}

#[test]
fn parses_chunk_sizes() {
    assert_eq!(chunk_size(b"1a\r\n").unwrap(), 26);
    assert_eq!(chunk_size(b"0\r\n").unwrap(), 0);
    assert_eq!(chunk_size(b"FF;name=value\r\n").unwrap(), 255);
    for bad in [
        &b"\r\n"[..],
        b"zz\r\n",
        b"10",
        b"1234567890abcdef0\r\n",
        b"-1\r\n",
    ] {
        assert!(chunk_size(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn writes_its_own_responses() {
    let r = response(403, "Forbidden", "text/plain", b"no\n");
    let text = String::from_utf8(r).unwrap();
    assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"));
    assert!(text.contains("Content-Length: 3\r\n"));
    assert!(text.ends_with("\r\n\r\nno\n"));
}
