//! The life of netns guests: exit codes, stops of stubborn apps, a killed weft-netns, start
//! failures, and many guests with four NICs each. Whatever happens, nothing may be left:
//! no process, no namespace, no TAP with a carrier.
//!
//! Needs root, `/dev/net/tun`, `ip` and `/bin/busybox`. Without them each test says why and
//! passes, except under `CI=true`, where it fails.

mod netns_support;

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use netns_support::*;
use weft_model::{BootArgs, MacAddr};
use weft_vmm::netns::{NetnsConfig, NetnsDriver};
use weft_vmm::{Driver, DriverError, GuestSpec, NicSpec};

const START_BOUND: Duration = Duration::from_secs(10);

fn app(args: &[&str]) -> BootArgs {
    BootArgs {
        app_args: args.iter().map(|a| a.to_string()).collect(),
        ..BootArgs::default()
    }
}

/// The inode of the network namespace of process `pid`.
fn netns_of(pid: u32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .expect("the process runs")
        .ino()
}

/// The processes in the network namespace with inode `netns`.
fn processes_in(netns: u64) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == netns)
        })
        .collect()
}

async fn wait_namespace_empty(netns: u64, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        let left = processes_in(netns);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes {left:?} remain in the guest's namespace"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn netns_app_exit_code_is_the_guest_exit_code() {
    if !can_run("netns_app_exit_code_is_the_guest_exit_code", &[]) {
        return;
    }
    in_netns(|| async {
        let run = RunDir::new();
        let spec = guest(&run, vec![], &app(&["/bin/sh", "-c", "exit 7"]));
        let driver = driver();
        let guest = driver.start(&spec).await.expect("start");
        let code = tokio::time::timeout(START_BOUND, guest.exited)
            .await
            .expect("the guest ends with its app")
            .expect("exit code sent");
        assert_eq!(code, 7);
        let console = std::fs::read_to_string(driver.console_path(&spec)).unwrap();
        assert!(console.contains("weft-guest: app exit 7"), "{console}");
        // A guest that ended by itself is stopped already.
        driver
            .stop(&spec, guest.pid, Duration::from_secs(1))
            .await
            .expect("stop");
    });
}

#[test]
fn netns_stubborn_app_is_killed_after_grace() {
    if !can_run("netns_stubborn_app_is_killed_after_grace", &[]) {
        return;
    }
    in_netns(|| async {
        let run = RunDir::new();
        create_tap("t0", 1500);
        let boot = BootArgs {
            netdevs: vec![netdev("10.100.0.2/16", Some("10.100.255.254"))],
            macs: vec!["12:b0:0a:64:00:02".parse::<MacAddr>().unwrap()],
            ..app(&["/bin/sh", "-c", "trap '' TERM; sleep 1000; true"])
        };
        let spec = guest(&run, vec![nic("t0", "12:b0:0a:64:00:02")], &boot);
        let _cleanup = KillOnDrop(run.path().to_str().unwrap().to_string());
        let driver = driver();
        let guest = driver.start(&spec).await.expect("start");
        let netns = netns_of(guest.pid);
        wait_console(
            &driver.console_path(&spec),
            START_BOUND,
            "the app start",
            |c| c.contains("weft-guest: app start /bin/sh"),
        )
        .await;
        // Let the shell set its trap.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            processes_in(netns).len() >= 4,
            "weft-netns, weft-guest, sh, sleep"
        );

        let grace = Duration::from_secs(1);
        let stopping = Instant::now();
        driver.stop(&spec, guest.pid, grace).await.expect("stop");
        let stop_time = stopping.elapsed();
        assert!(
            stop_time >= grace,
            "the app ignores SIGTERM, stop took {stop_time:?}"
        );
        assert!(stop_time < grace + Duration::from_secs(2), "{stop_time:?}");

        // stop returns once the guest's PID 1 is gone, and with it its whole PID namespace.
        assert_eq!(processes_in(netns), Vec::<u32>::new());
        let code = tokio::time::timeout(Duration::from_secs(5), guest.exited)
            .await
            .expect("exit reported")
            .expect("exit code sent");
        assert_eq!(code, 128 + libc::SIGKILL);
        assert!(!has_carrier("t0"));
        eprintln!("stop with a 1 s grace took {stop_time:?}");
    });
}

#[test]
fn netns_killed_helper_takes_its_guest_along() {
    if !can_run("netns_killed_helper_takes_its_guest_along", &[]) {
        return;
    }
    in_netns(|| async {
        let run = RunDir::new();
        create_tap("t0", 1500);
        let boot = BootArgs {
            netdevs: vec![None],
            macs: vec!["12:b0:0a:64:00:02".parse::<MacAddr>().unwrap()],
            ..app(&["/bin/sh", "-c", "sleep 1000; true"])
        };
        let spec = guest(&run, vec![nic("t0", "12:b0:0a:64:00:02")], &boot);
        let _cleanup = KillOnDrop(run.path().to_str().unwrap().to_string());
        let driver = driver();
        let guest = driver.start(&spec).await.expect("start");
        let netns = netns_of(guest.pid);
        wait_console(
            &driver.console_path(&spec),
            START_BOUND,
            "the app start",
            |c| c.contains("weft-guest: app start"),
        )
        .await;
        let console = std::fs::read_to_string(driver.console_path(&spec)).unwrap();
        assert!(
            console.contains("weft-guest: iface eth0 mac 12:b0:0a:64:00:02 addr none"),
            "an interface without autoconfig is left alone: {console}"
        );

        // SAFETY: kill takes two integers; the pid is the weft-netns just started.
        unsafe { libc::kill(guest.pid as i32, libc::SIGKILL) };
        let code = tokio::time::timeout(Duration::from_secs(5), guest.exited)
            .await
            .expect("exit reported")
            .expect("exit code sent");
        assert_eq!(code, 128 + libc::SIGKILL);
        wait_namespace_empty(netns, Duration::from_secs(2)).await;
        assert!(!has_carrier("t0"));
    });
}

/// Starts `spec`, which must fail, and checks that nothing of it remains.
async fn failed_start(driver: &NetnsDriver, spec: &GuestSpec) -> DriverError {
    let marker = format!("weft-{}", spec.id);
    let started = Instant::now();
    let err = match driver.start(spec).await {
        Ok(guest) => {
            let _ = driver.stop(spec, guest.pid, Duration::ZERO).await;
            panic!("the guest started");
        }
        Err(err) => err,
    };
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(processes_with(&marker), Vec::<u32>::new());
    err
}

fn early_exit_detail(err: DriverError) -> String {
    match err {
        DriverError::EarlyExit { code, detail } => {
            assert_eq!(code, 1);
            detail
        }
        other => panic!("expected an early exit, got: {other}"),
    }
}

#[test]
fn netns_start_failures_name_their_cause() {
    if !can_run("netns_start_failures_name_their_cause", &[]) {
        return;
    }
    in_netns(|| async {
        let run = RunDir::new();
        let driver = driver();
        let mac = "12:b0:0a:64:00:02";
        let idle = BootArgs::default();

        // A missing TAP, and none is created on the way.
        let spec = guest(&run, vec![nic("nosuch0", mac)], &idle);
        let detail = early_exit_detail(failed_start(&driver, &spec).await);
        assert_eq!(detail, "weft-netns: TAP device nosuch0 does not exist");
        let probe = std::process::Command::new("ip")
            .args(["link", "show", "nosuch0"])
            .output()
            .unwrap();
        assert!(!probe.status.success(), "no device nosuch0 may appear");

        // A TAP that another guest holds; the first one is not disturbed.
        create_tap("t0", 1500);
        let first = guest(&run, vec![nic("t0", mac)], &idle);
        let holder = driver.start(&first).await.expect("first guest");
        // Each instance has its own run directory, and so its own console.
        let second_run = RunDir::new();
        let second = guest(&second_run, vec![nic("t1", mac), nic("t0", mac)], &idle);
        create_tap("t1", 1500);
        let detail = early_exit_detail(failed_start(&driver, &second).await);
        assert_eq!(
            detail,
            "weft-netns: TAP device t0 is in use by another process"
        );
        assert!(
            !has_carrier("t1"),
            "the TAP attached before the failure is released"
        );
        assert!(has_carrier("t0"));
        driver
            .stop(&first, holder.pid, Duration::from_secs(5))
            .await
            .unwrap();

        // A device that is not a TAP.
        sh(&["ip", "tuntap", "add", "dev", "d0", "mode", "tun"]);
        let spec = guest(&run, vec![nic("d0", mac)], &idle);
        let detail = early_exit_detail(failed_start(&driver, &spec).await);
        assert_eq!(detail, "weft-netns: d0 is not a single-queue TAP device");

        // Programs that are not there.
        let spec = guest(&run, vec![], &idle);
        let missing = NetnsDriver::new(NetnsConfig {
            helper: Some(PathBuf::from(env!("CARGO_BIN_EXE_weft-netns"))),
            guest: Some(PathBuf::from("/nonexistent/weft-guest")),
        });
        let err = failed_start(&missing, &spec).await;
        assert!(matches!(err, DriverError::Spawn(_)), "{err}");
        assert!(
            err.to_string()
                .contains("/nonexistent/weft-guest does not exist"),
            "{err}"
        );
        let missing = NetnsDriver::new(NetnsConfig {
            helper: Some(PathBuf::from("/nonexistent/weft-netns")),
            guest: Some(guest_program()),
        });
        let err = failed_start(&missing, &spec).await;
        assert!(
            err.to_string()
                .contains("cannot run /nonexistent/weft-netns"),
            "{err}"
        );

        // A start abandoned half-way leaves nothing either.
        let spec = guest(&run, vec![nic("t0", mac)], &idle);
        let abandoned = tokio::time::timeout(Duration::from_micros(500), driver.start(&spec)).await;
        if let Ok(Ok(guest)) = abandoned {
            driver.stop(&spec, guest.pid, Duration::ZERO).await.unwrap();
        }
        wait_gone(&format!("weft-{}", spec.id), Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!has_carrier("t0"));
    });
}

#[test]
fn netns_fifty_guests_with_four_nics_leave_nothing() {
    if !can_run("netns_fifty_guests_with_four_nics_leave_nothing", &[]) {
        return;
    }
    in_netns(|| async {
        const GUESTS: usize = 50;
        const NICS: usize = 4;
        let driver = driver();
        let runs: Vec<RunDir> = (0..GUESTS).map(|_| RunDir::new()).collect();
        let _cleanup: Vec<KillOnDrop> = runs
            .iter()
            .map(|run| KillOnDrop(run.path().to_str().unwrap().to_string()))
            .collect();

        let mut specs = Vec::new();
        for (g, run) in runs.iter().enumerate() {
            let mut nics = Vec::new();
            let mut boot = BootArgs::default();
            for n in 0..NICS {
                let tap = format!("t{g}-{n}");
                create_tap(&tap, 1500);
                let mac = MacAddr([0x12, 0xb0, 10, 100 + n as u8, 0, g as u8 + 1]);
                nics.push(NicSpec { tap, mac });
                boot.macs.push(mac);
                boot.netdevs
                    .push(netdev(&format!("10.{}.0.{}/16", 100 + n, g + 1), None));
            }
            specs.push(guest(run, nics, &boot));
        }

        let started = Instant::now();
        let mut guests = Vec::new();
        for spec in &specs {
            guests.push(driver.start(spec).await.expect("start"));
        }
        let start_time = started.elapsed();
        assert_eq!(taps_with_carrier().len(), GUESTS * NICS);
        let namespaces: Vec<u64> = guests.iter().map(|g| netns_of(g.pid)).collect();
        let mut distinct = namespaces.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), GUESTS, "one namespace per guest");

        // Each guest configured its four NICs.
        for spec in &specs {
            wait_console(
                &driver.console_path(spec),
                START_BOUND,
                "four addresses",
                |c| c.lines().filter(|l| l.contains(" addr 10.")).count() == NICS,
            )
            .await;
        }

        let stopping = Instant::now();
        for (spec, guest) in specs.iter().zip(&guests) {
            driver
                .stop(spec, guest.pid, Duration::from_secs(5))
                .await
                .expect("stop");
        }
        let stop_time = stopping.elapsed();

        for (guest, netns) in guests.into_iter().zip(namespaces) {
            let code = tokio::time::timeout(Duration::from_secs(5), guest.exited)
                .await
                .expect("exit reported")
                .expect("exit code sent");
            assert_eq!(code, 0, "weft-guest without an app ends with 0 on SIGTERM");
            assert_eq!(processes_in(netns), Vec::<u32>::new());
        }
        for run in &runs {
            assert_eq!(
                processes_with(run.path().to_str().unwrap()),
                Vec::<u32>::new()
            );
        }
        assert_eq!(taps_with_carrier(), Vec::<String>::new());
        eprintln!(
            "{GUESTS} guests with {NICS} NICs: start {:?} and stop {:?} per guest",
            start_time / GUESTS as u32,
            stop_time / GUESTS as u32
        );
    });
}
