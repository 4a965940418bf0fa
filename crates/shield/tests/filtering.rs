//! The shield between a client namespace and an "internet" namespace (see common/mod.rs):
//! DNS and TCP filtering. Real sockets, real routing, curl as the client. Run as root; under
//! CI=true a test that cannot run fails, elsewhere it is skipped with the reason printed.

mod common;

use std::time::{Duration, Instant};

use common::internet::{ALLOWED, BIG, CGNAT, CGNAT_ALLOWED, DENIED, METADATA, PRIVATE};
use common::{can_run, Net, CLIENT, RESOLVER};
use hickory_proto::op::ResponseCode;

#[test]
fn dns_answers_allowed_names_only() {
    if !can_run("dns_answers_allowed_names_only") {
        return;
    }
    let net = Net::new("dns");
    let shield = net.start_shield(&[]);

    // Answered from the address the client asked (the socket is connected to it).
    let api = net.dns("api.allowed.test", false);
    assert_eq!(api.code, Some(ResponseCode::NoError));
    assert_eq!(api.addrs, [ALLOWED]);
    shield.wait_line(&[
        &format!("weft-shield: allow client={CLIENT} proto=dns name=api.allowed.test"),
        &format!("dst={RESOLVER}:53 reason=allowed-name"),
    ]);

    let denied = net.dns("denied.test", false);
    assert_eq!(denied.code, Some(ResponseCode::Refused));
    assert!(denied.addrs.is_empty());
    shield.wait_line(&[
        &format!("weft-shield: deny client={CLIENT} proto=dns name=denied.test"),
        "reason=name-not-allowed",
    ]);
    // A wildcard covers names below it, not the name itself.
    assert_eq!(
        net.dns("allowed.test", false).code,
        Some(ResponseCode::Refused)
    );
    assert_eq!(
        net.dns("denied.test", true).code,
        Some(ResponseCode::Refused)
    );
    // An allowed name the upstream does not know.
    assert_eq!(
        net.dns("nowhere.allowed.test", false).code,
        Some(ResponseCode::NXDomain)
    );

    // Too big for UDP: the shield asks upstream over TCP, and the client does too.
    let big = net.dns("big.allowed.test", false);
    assert_eq!(big.code, Some(ResponseCode::NoError));
    assert!(big.truncated && big.addrs.is_empty(), "{big:?}");
    let big = net.dns("big.allowed.test", true);
    assert_eq!(big.addrs.len(), BIG);

    // The shield's own name answers with the address asked.
    assert_eq!(net.dns("weft-shield.internal", false).addrs, [RESOLVER]);

    let questions = net.seen.questions();
    assert!(questions.contains(&"api.allowed.test".to_string()));
    assert!(
        !questions
            .iter()
            .any(|q| q == "denied.test" || q == "allowed.test"),
        "refused names never reach the upstream: {questions:?}"
    );
}

#[test]
fn tcp_reaches_allowed_names_at_their_addresses_only() {
    if !can_run("tcp_reaches_allowed_names_at_their_addresses_only") {
        return;
    }
    let net = Net::new("tcp");
    let shield = net.start_shield(&[]);
    let internet_ca = net.path("internet-ca.pem");
    let internet_ca = internet_ca.to_str().unwrap();
    let resolve = |name: &str, port: u16, ip: std::net::Ipv4Addr| format!("{name}:{port}:{ip}");

    // Allowed, over HTTP and over HTTPS; www has no secrets, so its TLS is spliced and the
    // client sees the real server's certificate.
    let api = net.resolve("api.allowed.test");
    let www = net.resolve("www.allowed.test");
    let (code, body, err) = net.curl(&[
        "--resolve",
        &resolve("api.allowed.test", 80, api),
        "http://api.allowed.test/plain",
    ]);
    assert_eq!((code, body.as_str()), (0, "ok\n"), "{err}");
    let (code, body, err) = net.curl(&[
        "--cacert",
        internet_ca,
        "--resolve",
        &resolve("www.allowed.test", 443, www),
        "https://www.allowed.test/spliced",
    ]);
    assert_eq!((code, body.as_str()), (0, "ok\n"), "{err}");
    shield.wait_line(&[&format!("allow client={CLIENT} proto=http name=api.allowed.test dst={ALLOWED}:80 reason=allowed-name")]);
    shield.wait_line(&[&format!("allow client={CLIENT} proto=tls name=www.allowed.test dst={ALLOWED}:443 reason=allowed-name")]);

    // A denied name, over both.
    let (_, status, _) = net.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--resolve",
        &resolve("denied.test", 80, DENIED),
        "http://denied.test/",
    ]);
    assert_eq!(status, "403");
    let (code, _, _) = net.curl(&[
        "--cacert",
        internet_ca,
        "--resolve",
        &resolve("denied.test", 443, DENIED),
        "https://denied.test/",
    ]);
    assert_ne!(code, 0, "TLS to a denied name fails");
    shield.wait_line(&[&format!(
        "deny client={CLIENT} proto=tls name=denied.test dst={DENIED}:443 reason=name-not-allowed"
    )]);

    // An allowed name sent to an address its DNS never gave: refused by SNI and by Host.
    let (code, _, _) = net.curl(&[
        "--cacert",
        internet_ca,
        "--resolve",
        &resolve("api.allowed.test", 443, DENIED),
        "https://api.allowed.test/",
    ]);
    assert_ne!(code, 0);
    shield.wait_line(&[&format!("deny client={CLIENT} proto=tls name=api.allowed.test dst={DENIED}:443 reason=address-not-resolved")]);
    let (_, status, _) = net.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Host: api.allowed.test",
        &format!("http://{DENIED}/"),
    ]);
    assert_eq!(status, "403");
    assert_eq!(
        net.seen.received(DENIED),
        "",
        "the denied server never got a byte"
    );

    // Private, CGNAT and metadata addresses, even for an allowed name that resolves there;
    // a CGNAT address inside the allowed CIDR goes through.
    let private = net.resolve("private.allowed.test");
    assert_eq!(private, PRIVATE);
    let cases = [
        (format!("http://{PRIVATE}/"), None, "private-address"),
        (format!("http://{CGNAT}/"), None, "cgnat-address"),
        (
            format!("http://{METADATA}/latest/meta-data/"),
            None,
            "metadata-address",
        ),
        (
            "http://private.allowed.test/".to_string(),
            Some(resolve("private.allowed.test", 80, PRIVATE)),
            "private-address",
        ),
    ];
    for (url, pin, reason) in cases {
        let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        if let Some(pin) = &pin {
            args.extend(["--resolve", pin.as_str()]);
        }
        args.push(&url);
        let (_, status, _) = net.curl(&args);
        assert_eq!(status, "403", "{url}");
        shield.wait_line(&[
            &format!("deny client={CLIENT} proto=http"),
            &format!("reason={reason}"),
        ]);
    }
    for ip in [PRIVATE, CGNAT, METADATA] {
        assert_eq!(net.seen.received(ip), "", "{ip} never got a byte");
    }
    let (code, body, err) = net.curl(&[&format!("http://{CGNAT_ALLOWED}/by-address")]);
    assert_eq!(code, 0, "{err}");
    assert!(body.starts_with("GET /by-address HTTP/1.1"), "{body}");
    shield.wait_line(&[&format!(
        "allow client={CLIENT} proto=http name=- dst={CGNAT_ALLOWED}:80 reason=allowed-cidr"
    )]);

    // Other ports: refused at once, logged, counted.
    let started = Instant::now();
    let (code, _, err) = net.curl(&[&format!("http://{ALLOWED}:22/")]);
    assert_eq!(code, 7, "connection refused: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused, not timed out"
    );
    shield.wait_line(&[&format!(
        "deny client={CLIENT} proto=tcp name=- dst={ALLOWED}:22 reason=port-not-allowed"
    )]);

    // Other UDP: dropped, logged, counted.
    net.client.enter(|| {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.send_to(b"hello", (ALLOWED, 5000)).unwrap();
    });
    shield.wait_line(&[&format!(
        "deny client={CLIENT} proto=udp name=- dst={ALLOWED}:5000 reason=port-not-allowed"
    )]);

    let metrics = net
        .curl(&[
            "--resolve",
            &resolve("weft-shield.internal", 80, RESOLVER),
            "http://weft-shield.internal/metrics",
        ])
        .1;
    assert!(
        metrics.contains("weft_shield_decisions_total{decision=\"deny\",proto=\"tcp\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_shield_decisions_total{decision=\"allow\",proto=\"tls\"} 1\n"),
        "{metrics}"
    );
}
