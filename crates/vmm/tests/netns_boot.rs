//! Boots netns guests and talks to them over their TAPs: ping, HTTP, jumbo frames and a bulk
//! TCP transfer, from a host side set up as weftd sets up a pool interface.
//!
//! Needs root, `/dev/net/tun`, `ip`, `ping`, `curl` and `/bin/busybox`. Without them each
//! test says why and passes, except under `CI=true`, where it fails.

mod netns_support;

use std::io::Write as _;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use netns_support::*;
use weft_model::{BootArgs, MacAddr};
use weft_vmm::Driver;

const GUEST_IP: &str = "10.100.0.2";
const GATEWAY: &str = "10.100.255.254";
const MAC: &str = "12:b0:0a:64:00:02";
const BOOT_BOUND: Duration = Duration::from_secs(15);
const GRACE: Duration = Duration::from_secs(5);

fn pool_boot(app_args: &[&str]) -> BootArgs {
    BootArgs {
        netdevs: vec![netdev(&format!("{GUEST_IP}/16"), Some(GATEWAY))],
        macs: vec![MAC.parse::<MacAddr>().unwrap()],
        env: vec![],
        app_args: app_args.iter().map(|a| a.to_string()).collect(),
    }
}

/// `curl` until the guest's server answers.
fn fetch(url: &str, bound: Duration) -> String {
    let started = Instant::now();
    loop {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "2", url])
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap();
        }
        assert!(
            started.elapsed() < bound,
            "{url} did not answer within {bound:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn netns_guest_serves_http_and_stops_clean() {
    if !can_run("netns_guest_serves_http_and_stops_clean", &["ping", "curl"]) {
        return;
    }
    in_netns(|| async {
        let run = RunDir::new();
        let www = run.path().join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(www.join("index.html"), "hello from a netns guest\n").unwrap();
        pool_tap("t0", GATEWAY, GUEST_IP, 1500);

        let www = www.to_str().unwrap();
        let boot = pool_boot(&["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", www]);
        let spec = guest(&run, vec![nic("t0", MAC)], &boot);
        let marker = run.path().to_str().unwrap().to_string();
        let _cleanup = KillOnDrop(marker.clone());
        let driver = driver();
        assert!(!driver.boots_kernel());

        let started = Instant::now();
        let mut guest = driver.start(&spec).await.expect("start");
        let start_time = started.elapsed();
        assert!(has_carrier("t0"), "weft-netns holds the TAP");
        // SAFETY: getpgid takes a pid and returns a number.
        assert_eq!(unsafe { libc::getpgid(guest.pid as i32) }, guest.pid as i32);

        let console = driver.console_path(&spec);
        let expected = [
            "weft-guest: iface eth0 mac 12:b0:0a:64:00:02 addr 10.100.0.2/16",
            "weft-guest: route default via 10.100.255.254 dev eth0",
        ];
        let config_time = wait_console(&console, BOOT_BOUND, "the network lines", |c| {
            has_lines(c, &expected)
        })
        .await;

        sh(&["ping", "-c", "3", "-i", "0.2", "-W", "2", GUEST_IP]);
        let page = fetch(&format!("http://{GUEST_IP}:8080/"), BOOT_BOUND);
        assert_eq!(page, "hello from a netns guest\n");
        let text = std::fs::read_to_string(&console).unwrap();
        assert!(
            text.contains(&format!(
                "weft-guest: app start /bin/busybox httpd -f -p 8080 -h {www}"
            )),
            "{text}"
        );
        assert!(guest.exited.try_recv().is_err(), "the guest still runs");
        // weft-netns, weft-guest and httpd, all carrying the run directory or the id.
        assert!(processes_with(&marker).len() >= 2);

        let stopping = Instant::now();
        driver.stop(&spec, guest.pid, GRACE).await.expect("stop");
        let stop_time = stopping.elapsed();
        assert!(
            stop_time < GRACE,
            "httpd ends on SIGTERM, took {stop_time:?}"
        );
        let code = tokio::time::timeout(Duration::from_secs(5), guest.exited)
            .await
            .expect("exit reported")
            .expect("exit code sent");
        assert_eq!(code, 128 + libc::SIGTERM, "httpd was ended by SIGTERM");

        assert_eq!(processes_with(&marker), Vec::<u32>::new());
        assert_eq!(
            processes_with(&format!("weft-{}", spec.id)),
            Vec::<u32>::new()
        );
        assert!(!has_carrier("t0"), "nobody holds the TAP any more");
        // Free to attach again: a second guest on the same TAP starts.
        let again = driver.start(&spec).await.expect("restart on the same TAP");
        driver
            .stop(&spec, again.pid, GRACE)
            .await
            .expect("second stop");
        driver
            .stop(&spec, again.pid, GRACE)
            .await
            .expect("stop of a gone guest");
        wait_gone(&marker, Duration::from_secs(2)).await;

        eprintln!(
            "start returned after {start_time:?}, network configured {config_time:?} later, \
             stop took {stop_time:?}"
        );
    });
}

#[test]
fn netns_guest_passes_jumbo_frames() {
    if !can_run("netns_guest_passes_jumbo_frames", &["ping"]) {
        return;
    }
    in_netns(|| async {
        let run = RunDir::new();
        pool_tap("t0", GATEWAY, GUEST_IP, 9000);
        // The guest checks its MTU and pings the host with 8000-byte packets that must not be
        // fragmented, then waits to be pinged the same way.
        let script = run.path().join("app.sh");
        std::fs::write(
            &script,
            format!(
                "ip -o link show eth0 | grep -q 'mtu 9000' && echo GUEST-MTU-9000\n\
                 ping -M do -s 8000 -c 3 -i 0.2 -W 2 {GATEWAY} >/dev/null && echo GUEST-PING-OK\n\
                 exec sleep 1000\n"
            ),
        )
        .unwrap();
        let boot = pool_boot(&["/bin/sh", script.to_str().unwrap()]);
        let spec = guest(&run, vec![nic("t0", MAC)], &boot);
        let _cleanup = KillOnDrop(run.path().to_str().unwrap().to_string());
        let driver = driver();

        let guest = driver.start(&spec).await.expect("start");
        let console = driver.console_path(&spec);
        wait_console(&console, BOOT_BOUND, "the guest's checks", |c| {
            has_lines(c, &["GUEST-MTU-9000", "GUEST-PING-OK"])
        })
        .await;
        sh(&[
            "ping", "-M", "do", "-s", "8000", "-c", "3", "-i", "0.2", "-W", "2", GUEST_IP,
        ]);

        driver.stop(&spec, guest.pid, GRACE).await.expect("stop");
    });
}

/// A deterministic stream of `len` bytes that no compression or pattern could fake.
fn payload(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn netns_guest_receives_100_mb_intact() {
    if !can_run("netns_guest_receives_100_mb_intact", &[]) {
        return;
    }
    in_netns(|| async {
        const LEN: usize = 100 * 1024 * 1024;
        let run = RunDir::new();
        pool_tap("t0", GATEWAY, GUEST_IP, 1500);
        let data = payload(LEN);

        // The guest shares the host's files: it writes what it receives where the test reads.
        let received = run.path().join("received");
        let script = run.path().join("app.sh");
        std::fs::write(
            &script,
            format!("/bin/busybox nc -l -p 9000 > {}\n", received.display()),
        )
        .unwrap();
        let boot = pool_boot(&["/bin/sh", script.to_str().unwrap()]);
        let spec = guest(&run, vec![nic("t0", MAC)], &boot);
        let _cleanup = KillOnDrop(run.path().to_str().unwrap().to_string());
        let driver = driver();
        let guest = driver.start(&spec).await.expect("start");

        let deadline = Instant::now() + BOOT_BOUND;
        let mut stream = loop {
            match TcpStream::connect((GUEST_IP, 9000)) {
                Ok(stream) => break stream,
                Err(err) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot connect to the guest: {err}"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let sending = Instant::now();
        stream.write_all(&data).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        drop(stream);

        // The app ends once it has read everything and the sender has closed.
        let code = tokio::time::timeout(Duration::from_secs(60), guest.exited)
            .await
            .expect("the guest's app ends after the transfer")
            .expect("exit code sent");
        let elapsed = sending.elapsed();
        let console = std::fs::read_to_string(driver.console_path(&spec)).unwrap();
        assert_eq!(code, 0, "{console}");

        let got = std::fs::read(&received).unwrap();
        assert_eq!(got.len(), LEN, "bytes received");
        if let Some(at) = got.iter().zip(&data).position(|(a, b)| a != b) {
            panic!("the received stream differs from the sent one at byte {at}");
        }
        eprintln!(
            "100 MiB host to guest in {elapsed:?}: {:.0} MB/s",
            LEN as f64 / elapsed.as_secs_f64() / 1e6
        );
    });
}
