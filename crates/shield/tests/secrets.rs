//! Secret injection through the shield, and its CA (see common/mod.rs for the namespaces).
//! Run as root; under CI=true a test that cannot run fails, elsewhere it is skipped.

mod common;

use common::internet::{self, ALLOWED, ECHO};
use common::{can_run, Net, CLIENT, PLACEHOLDER, RESOLVER, SECRET_VALUE};

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

    // Many clients at once, each connection intercepted and rewritten.
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..16)
            .map(|i| {
                let (net, pin, shield_ca) = (&net, &pin, shield_ca);
                scope.spawn(move || {
                    let url = format!("https://api.allowed.test/parallel-{i}");
                    let auth = format!("Authorization: Bearer {PLACEHOLDER}");
                    net.curl(&["--cacert", shield_ca, "--resolve", pin, "-H", &auth, &url])
                })
            })
            .collect();
        for run in runs {
            let (code, body, err) = run.join().unwrap();
            assert_eq!((code, body.as_str()), (0, "ok\n"), "{err}");
        }
    });
    let got = net.seen.received(ALLOWED);
    assert_eq!(got.matches("GET /parallel-").count(), 16);
    assert_eq!(got.matches(&format!("Bearer {SECRET_VALUE}")).count(), 18);

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
    shield.wait_line(&["weft-shield: stats ", "inject.tls=18 "]);
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
