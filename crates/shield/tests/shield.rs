//! The shield between a client namespace and an "internet" namespace (see common/mod.rs):
//! real sockets, real routing, curl as the client. Run as root; under CI=true a test that
//! cannot run fails, elsewhere it is skipped with the reason printed.

mod common;

use std::time::{Duration, Instant};

use common::internet::{self, ALLOWED, BIG, CGNAT, CGNAT_ALLOWED, DENIED, ECHO, METADATA, PRIVATE};
use common::{can_run, Net, CLIENT, PLACEHOLDER, RESOLVER, SECRET_VALUE};
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

#[test]
fn secrets_reach_only_their_hosts() {
    if !can_run("secrets_reach_only_their_hosts") {
        return;
    }
    let net = Net::new("sec");
    let shield = net.start_shield(&[]);
    let internet_ca = net.path("internet-ca.pem");
    let internet_ca = internet_ca.to_str().unwrap();

    // The client fetches the CA it must trust from the shield, by name.
    let shield_ip = net.resolve("weft-shield.internal");
    let shield_ca = net.path("shield-ca.pem");
    let (code, _, err) = net.curl(&[
        "-o",
        shield_ca.to_str().unwrap(),
        "--resolve",
        &format!("weft-shield.internal:80:{shield_ip}"),
        "http://weft-shield.internal/ca.pem",
    ]);
    assert_eq!(code, 0, "{err}");
    let shield_ca = shield_ca.to_str().unwrap();
    assert!(std::fs::read_to_string(shield_ca)
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));

    // Placeholders become the secret in the head of every request to the bound host: two
    // requests on one connection, in a header and in the query.
    let api = net.resolve("api.allowed.test");
    let pin = format!("api.allowed.test:443:{api}");
    let (code, body, err) = net.curl(&[
        "-w",
        "connects=%{num_connects}\n",
        "--cacert",
        shield_ca,
        "--resolve",
        &pin,
        "-H",
        &format!("Authorization: Bearer {PLACEHOLDER}"),
        "https://api.allowed.test/one",
        &format!("https://api.allowed.test/two?key={PLACEHOLDER}"),
    ]);
    // The second request reuses the first one's connection.
    assert_eq!(
        (code, body.as_str()),
        (0, "ok\nconnects=1\nok\nconnects=0\n"),
        "{err}"
    );
    let got = net.seen.received(ALLOWED);
    assert_eq!(
        got.matches(&format!("Authorization: Bearer {SECRET_VALUE}"))
            .count(),
        2,
        "{got}"
    );
    assert!(
        got.contains(&format!("GET /two?key={SECRET_VALUE} HTTP/1.1")),
        "{got}"
    );
    assert!(!got.contains(PLACEHOLDER), "{got}");
    shield.wait_line(&[&format!("inject client={CLIENT} proto=tls name=api.allowed.test dst={ALLOWED}:443 reason=secret:API")]);

    // Plain HTTP carries no secret, even to the bound host.
    let (code, _, _) = net.curl(&[
        "--resolve",
        &format!("api.allowed.test:80:{api}"),
        "-H",
        &format!("X-Key: {PLACEHOLDER}"),
        "http://api.allowed.test/plain",
    ]);
    assert_eq!(code, 0);
    assert!(net
        .seen
        .received(ALLOWED)
        .contains(&format!("X-Key: {PLACEHOLDER}")));

    // The echo host is allowed but has no secret: it gets the placeholder, whatever the
    // client tries.
    let echo = net.resolve("echo.allowed.test");
    assert_eq!(echo, ECHO);
    let auth = format!("Authorization: Bearer {PLACEHOLDER}");
    let (code, body, err) = net.curl(&[
        "--cacert",
        internet_ca,
        "--resolve",
        &format!("echo.allowed.test:443:{echo}"),
        "-H",
        &auth,
        "https://echo.allowed.test/direct",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(body.contains(&auth), "the echo got the placeholder: {body}");

    // SNI of the bound host, Host of the echo host: refused before anything is sent.
    let (_, status, _) = net.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        shield_ca,
        "--resolve",
        &pin,
        "-H",
        "Host: echo.allowed.test",
        "-H",
        &auth,
        "https://api.allowed.test/fronted",
    ]);
    assert_eq!(status, "421");
    shield.wait_line(&[&format!("deny client={CLIENT} proto=tls name=api.allowed.test dst={ALLOWED}:443 reason=host-mismatch")]);
    // SNI of the bound host sent to the echo server's address.
    let (code, _, _) = net.curl(&[
        "--cacert",
        shield_ca,
        "--resolve",
        &format!("api.allowed.test:443:{ECHO}"),
        "-H",
        &auth,
        "https://api.allowed.test/misdirected",
    ]);
    assert_ne!(code, 0);
    // Host of the bound host over plain HTTP to the echo server's address.
    let (_, status, _) = net.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Host: api.allowed.test",
        "-H",
        &auth,
        &format!("http://{ECHO}/host-trick"),
    ]);
    assert_eq!(status, "403");
    // An absolute target naming the echo host inside a connection for the bound host.
    let (_, status, _) = net.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        shield_ca,
        "--resolve",
        &pin,
        "-H",
        &auth,
        "--request-target",
        "https://echo.allowed.test/absolute",
        "https://api.allowed.test/",
    ]);
    assert_eq!(status, "400");

    let echo_got = net.seen.received(ECHO);
    assert!(echo_got.contains(PLACEHOLDER), "{echo_got}");
    for server in internet::ADDRESSES.into_iter().filter(|ip| *ip != ALLOWED) {
        assert!(
            !net.seen.received(server).contains(SECRET_VALUE),
            "{server} got the secret"
        );
    }
    assert!(
        !shield.log().contains(SECRET_VALUE),
        "the log never holds the secret"
    );

    // Counters on demand.
    shield_signal(&shield, "USR1");
    shield.wait_line(&["weft-shield: stats ", "inject.tls=2 "]);
}

#[test]
fn killing_the_shield_leaves_the_client_without_egress() {
    if !can_run("killing_the_shield_leaves_the_client_without_egress") {
        return;
    }
    let net = Net::new("kill");
    let mut shield = net.start_shield(&[]);
    let api = net.resolve("api.allowed.test");
    let pin = format!("api.allowed.test:80:{api}");
    assert_eq!(
        net.curl(&["--resolve", &pin, "http://api.allowed.test/"]).0,
        0
    );

    shield.child.kill().unwrap();
    let status = shield.child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let before = net.seen.received(ALLOWED).len();

    let started = Instant::now();
    let (code, _, _) = net.curl(&[
        "--connect-timeout",
        "3",
        "--resolve",
        &pin,
        "http://api.allowed.test/after",
    ]);
    assert_ne!(code, 0, "no egress without the shield");
    assert_ne!(
        net.curl(&["--connect-timeout", "3", &format!("http://{ECHO}/")])
            .0,
        0
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        net.dns("api.allowed.test", false).code,
        None,
        "no DNS either"
    );
    assert_eq!(net.seen.received(ALLOWED).len(), before);
    assert!(net.seen.received(ECHO).is_empty());
}

#[test]
fn refuses_to_start_without_its_routing_or_listeners() {
    if !can_run("refuses_to_start_without_its_routing_or_listeners") {
        return;
    }
    let net = Net::new("start");

    // A bad policy: exit 2 with the reason.
    let mut bad = common::ShieldProc::spawn(&net, &["--allow", "exa mple.com"], &[]);
    assert_eq!(bad.exit_code(Duration::from_secs(10)), Some(2));
    assert!(
        bad.log()
            .contains("weft-shield: error: bad policy: --allow (SHIELD_ALLOW): 'exa mple.com'"),
        "{}",
        bad.log()
    );

    // No such NIC: the routing cannot be set up.
    let args = [
        "--nic",
        "nosuch0",
        "--upstream-dns",
        "198.51.100.53",
        "--allow",
        "a.test",
    ];
    let mut no_nic = common::ShieldProc::spawn(&net, &args, &[]);
    assert_eq!(no_nic.exit_code(Duration::from_secs(10)), Some(1));
    assert!(
        no_nic
            .log()
            .contains("the relay NIC nosuch0 does not exist"),
        "{}",
        no_nic.log()
    );

    // Port 80 already taken in the shield's namespace.
    let _taken = net
        .shield
        .enter(|| std::net::TcpListener::bind("0.0.0.0:80").unwrap());
    let args = [
        "--nic",
        "relay0",
        "--upstream-dns",
        "198.51.100.53",
        "--allow",
        "a.test",
    ];
    let mut busy = common::ShieldProc::spawn(&net, &args, &[]);
    assert_eq!(busy.exit_code(Duration::from_secs(10)), Some(1));
    assert!(
        busy.log().contains("listening on tcp port 80"),
        "{}",
        busy.log()
    );
}

#[test]
fn intercepts_all_with_a_given_ca_and_verifies_servers() {
    if !can_run("intercepts_all_with_a_given_ca_and_verifies_servers") {
        return;
    }
    use base64::Engine as _;
    let net = Net::new("all");
    let given = internet::TestCa::new();
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let (cert, key) = (b64(&given.pem), b64(&given.key_pem()));
    let env = [
        ("SHIELD_CA_CERT", cert.as_str()),
        ("SHIELD_CA_KEY", key.as_str()),
    ];
    let mut args = net.policy_args(true);
    args.extend(["--intercept".to_string(), "all".to_string()]);
    let shield = net.start_with(&args, &env);

    let served = net.curl(&[
        "--resolve",
        &format!("weft-shield.internal:80:{RESOLVER}"),
        "http://weft-shield.internal/ca.pem",
    ]);
    assert_eq!(served.1, given.pem, "the shield serves the CA it was given");
    let given_ca = net.path("given-ca.pem");
    std::fs::write(&given_ca, &given.pem).unwrap();
    let internet_ca = net.path("internet-ca.pem");

    // www has no secret, but everything is intercepted: the client sees the shield's leaf.
    let www = net.resolve("www.allowed.test");
    let pin = format!("www.allowed.test:443:{www}");
    let (code, body, err) = net.curl(&[
        "--cacert",
        given_ca.to_str().unwrap(),
        "--resolve",
        &pin,
        "https://www.allowed.test/",
    ]);
    assert_eq!((code, body.as_str()), (0, "ok\n"), "{err}");
    let (code, _, _) = net.curl(&[
        "--cacert",
        internet_ca.to_str().unwrap(),
        "--resolve",
        &pin,
        "https://www.allowed.test/",
    ]);
    assert_eq!(
        code, 60,
        "the real server's CA does not verify the shield's leaf"
    );
    drop(shield);

    // A restart finds its routing in place. Without the test internet's CA among its roots,
    // the shield refuses the servers' certificates: intercepted clients get 502.
    let shield = net.start_with(&net.policy_args(false), &env);
    net.resolve("api.allowed.test");
    let (_, status, _) = net.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        given_ca.to_str().unwrap(),
        "--resolve",
        &format!("api.allowed.test:443:{ALLOWED}"),
        "-H",
        &format!("X-Key: {PLACEHOLDER}"),
        "https://api.allowed.test/",
    ]);
    assert_eq!(status, "502");
    shield.wait_line(&[
        "deny client=",
        "name=api.allowed.test",
        "reason=upstream-certificate-refused",
    ]);
    assert!(!net.seen.received(ALLOWED).contains(SECRET_VALUE));
}

fn shield_signal(shield: &common::ShieldProc, signal: &str) {
    let pid = shield.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-s", signal, &pid])
        .status()
        .unwrap();
    assert!(status.success());
}
