//! The shield fails closed: it refuses to start without its routing or listeners, and
//! when it dies its clients have no egress (see common/mod.rs for the namespaces). Run as
//! root; under CI=true a test that cannot run fails, elsewhere it is skipped.

mod common;

use std::time::{Duration, Instant};

use common::internet::{ALLOWED, ECHO};
use common::{can_run, Net};

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
