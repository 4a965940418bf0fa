use super::*;
use crate::policy::{replace_placeholders, NamePattern, Secret};

fn secret() -> Secret {
    Secret {
        name: "API".into(),
        placeholder: "WEFT_SECRET_API".into(),
        value: "real-value".into(),
        hosts: vec![NamePattern::parse("a.test").unwrap()],
    }
}

/// Runs the request side over `input` the way the TLS interception does: every request must
/// be for a.test, and placeholders in heads are replaced.
async fn run(input: &[u8]) -> (Vec<u8>, Ending, usize) {
    let secrets = [secret()];
    let mut incoming = Incoming::new(input, Activity::new());
    let first = incoming.read_head().await.unwrap().unwrap();
    let first_out = replace_placeholders(&first.raw, &secrets)
        .map(|(bytes, _)| bytes)
        .unwrap_or_else(|| first.raw.clone());
    let mut judged = 0;
    let mut judge = |head: &RequestHead| {
        judged += 1;
        if head.host.as_deref() != Some("a.test") {
            return Verdict::Refuse("host-mismatch");
        }
        match replace_placeholders(&head.raw, &secrets) {
            Some((bytes, _)) => Verdict::Rewrite(bytes),
            None => Verdict::Forward,
        }
    };
    let mut out = Vec::new();
    let ending = forward_requests(
        &mut incoming,
        &mut out,
        (&first, &first_out),
        None,
        &mut judge,
    )
    .await
    .unwrap();
    (out, ending, judged)
}

#[tokio::test]
async fn rewrites_every_request_of_a_keep_alive_connection() {
    let input = b"POST /one HTTP/1.1\r\nHost: a.test\r\nAuthorization: Bearer WEFT_SECRET_API\r\n\
Content-Length: 20\r\n\r\nbody WEFT_SECRET_API\
POST /two?k=WEFT_SECRET_API HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\nhello\r\n10\r\nWEFT_SECRET_API!\r\n0\r\nX-Trailer: t\r\n\r\n\
GET /three HTTP/1.1\r\nHost: A.test\r\nX-Key: WEFT_SECRET_API\r\n\r\n";
    let (out, ending, judged) = run(input).await;
    let out = String::from_utf8(out).unwrap();
    assert_eq!(ending, Ending::Closed);
    assert_eq!(judged, 2);
    let expected = "POST /one HTTP/1.1\r\nHost: a.test\r\nAuthorization: Bearer real-value\r\n\
Content-Length: 20\r\n\r\nbody WEFT_SECRET_API\
POST /two?k=real-value HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\nhello\r\n10\r\nWEFT_SECRET_API!\r\n0\r\nX-Trailer: t\r\n\r\n\
GET /three HTTP/1.1\r\nHost: A.test\r\nX-Key: real-value\r\n\r\n";
    // Heads are rewritten, bodies pass as they are, request boundaries stay where they were.
    assert_eq!(out, expected);
}

#[tokio::test]
async fn stops_at_a_request_for_another_host() {
    let input = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n\
GET / HTTP/1.1\r\nHost: echo.test\r\nX: WEFT_SECRET_API\r\n\r\n\
GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let (out, ending, _) = run(input).await;
    assert_eq!(ending, Ending::Refused("host-mismatch"));
    assert_eq!(out, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
}

#[tokio::test]
async fn a_body_cannot_hide_a_request() {
    // The second "request" is body bytes of the first: forwarded as body, never judged.
    let input = b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 35\r\n\r\n\
GET / HTTP/1.1\r\nHost: echo.test\r\n\r\n";
    let (out, ending, judged) = run(input).await;
    assert_eq!(ending, Ending::Closed);
    assert_eq!(judged, 0);
    assert_eq!(out, input);
}

#[tokio::test]
async fn malformed_bodies_and_heads_end_the_connection() {
    let cases: [(&[u8], &str); 4] = [
        (b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad-chunk"),
        (b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nshort", "truncated-body"),
        (b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\nGET / HTTP/1.1\r\nHost: a.te", "truncated-request"),
        (
            b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\nGET / HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n\r\n",
            "upgrade-not-first",
        ),
    ];
    for (input, reason) in cases {
        let (_, ending, _) = run(input).await;
        assert_eq!(
            ending,
            Ending::Refused(reason),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[tokio::test]
async fn upgrades_only_when_the_server_switches() {
    let request = b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n\r\nframes";
    for (status, switched) in [
        (&b"HTTP/1.1 101 Switching"[..], true),
        (b"HTTP/1.1 400 Bad", false),
    ] {
        let (sender, receiver) = oneshot::channel();
        let mut response_out = Vec::new();
        let mut from = status;
        copy_responses(&mut from, &mut response_out, &Activity::new(), Some(sender))
            .await
            .unwrap();
        assert_eq!(response_out, status);

        let mut incoming = Incoming::new(&request[..], Activity::new());
        let first = incoming.read_head().await.unwrap().unwrap();
        let mut out = Vec::new();
        let mut judge = |_: &RequestHead| Verdict::Forward;
        let ending = forward_requests(
            &mut incoming,
            &mut out,
            (&first, &first.raw.clone()),
            Some(receiver),
            &mut judge,
        )
        .await
        .unwrap();
        if switched {
            assert_eq!(ending, Ending::Upgraded);
            assert_eq!(out, request);
        } else {
            assert_eq!(ending, Ending::Closed);
            assert_eq!(out, &request[..request.len() - 6]);
        }
    }
}

#[tokio::test]
async fn idle_returns_after_the_quiet_time() {
    let activity = Activity::new();
    let start = Instant::now();
    activity.idle(Duration::from_millis(50)).await;
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn a_head_past_the_limit_is_refused() {
    let mut input =
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\nGET / HTTP/1.1\r\nHost: a.test\r\nX: ".to_vec();
    input.extend(std::iter::repeat_n(b'x', MAX_HEAD));
    input.extend_from_slice(b"\r\n\r\n");
    let (out, ending, _) = run(&input).await;
    assert_eq!(ending, Ending::Refused("head-too-large"));
    assert_eq!(out, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
}
