//! Boots real guests with the QEMU driver under TCG.
//!
//! Needs root, `/dev/net/tun`, `qemu-system-x86_64` and the base image (`WEFT_TEST_IMAGE`, a
//! directory holding `kernel` and `initrd`, by default the workspace's `image/out/base`).
//! Without them each test says why and passes, except under `CI=true`, where it fails.
//!
//! Every test runs its QEMU in a network namespace of its own: a thread unshares its network
//! namespace and spawns QEMU from there, so the TAP devices never touch the host's.

use std::ffi::CString;
use std::fs::File;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weft_model::{BootArgs, Ipv4Cidr, MacAddr, NetdevConfig};
use weft_vmm::qemu::{Accel, QemuConfig, QemuDriver};
use weft_vmm::{Driver, DriverError, GuestSpec, NicSpec};

/// How long a guest gets to reach its first console line under TCG (about 6 s normally).
const BOOT_BOUND: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(10);

/// `Some(reason)` when this host cannot run the tests. Under CI that is a failure.
fn missing_requirement(needs_image: bool) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    let qemu = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output();
    if !qemu.is_ok_and(|out| out.status.success()) {
        return Some("qemu-system-x86_64 does not run".into());
    }
    if needs_image {
        let image = image_dir();
        if !image.join("kernel").is_file() || !image.join("initrd").is_file() {
            return Some(format!(
                "no kernel and initrd in {} (build them with image/build.sh or set \
                 WEFT_TEST_IMAGE)",
                image.display()
            ));
        }
    }
    None
}

/// Whether the test can go on; panics under CI when it cannot.
fn can_run(test: &str, needs_image: bool) -> bool {
    let Some(reason) = missing_requirement(needs_image) else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run under CI: {reason}");
    }
    eprintln!("skipping {test}: {reason}");
    false
}

fn image_dir() -> PathBuf {
    match std::env::var_os("WEFT_TEST_IMAGE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../image/out/base"),
    }
}

/// Runs `body` on a thread of its own in a new network namespace, on a runtime of that thread,
/// so that every process it spawns starts in that namespace too.
fn in_netns<F, Fut>(body: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    let thread = std::thread::spawn(move || {
        // SAFETY: unshare only changes this thread's namespaces; it touches no memory of ours.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body())
    });
    match thread.join() {
        Ok(out) => out,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Attaches to the TAP device `name` in this thread's namespace, creating it if needed. While
/// the returned file is open, nobody else can attach.
fn attach_tap(name: &str, persist: bool) -> std::io::Result<File> {
    let path = CString::new("/dev/net/tun").unwrap();
    // SAFETY: the path is a valid NUL-terminated string; the result is checked.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just opened and is owned by nothing else.
    let file = unsafe { File::from_raw_fd(fd) };

    // SAFETY: ifreq is plain data, for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which lives across the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if persist {
        // SAFETY: TUNSETPERSIST takes an integer argument, no memory.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETPERSIST, 1) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(file)
}

/// Creates a TAP device that outlives this process's hold on it, as weftd's pool does.
fn create_tap(name: &str) {
    drop(attach_tap(name, true).unwrap_or_else(|err| panic!("create TAP {name}: {err}")));
}

/// A fresh run directory, removed on drop.
struct RunDir(PathBuf);

impl RunDir {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("weft-vmm-{}", &id[..12]));
        std::fs::create_dir_all(&dir).unwrap();
        RunDir(dir)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills a guest the test left running because it failed half-way.
struct KillOnDrop {
    pid: u32,
    name: String,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&self.name) {
            // SAFETY: kill takes two integers; the pid is checked to be our guest above.
            unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        }
    }
}

fn tcg_driver() -> QemuDriver {
    let driver = QemuDriver::new(QemuConfig {
        accel: Accel::Tcg,
        ..QemuConfig::default()
    });
    assert_eq!(driver.accel(), Accel::Tcg);
    driver
}

fn guest(run_dir: &Path, nics: Vec<NicSpec>, boot: &BootArgs) -> GuestSpec {
    let image = image_dir();
    GuestSpec {
        id: uuid::Uuid::new_v4().to_string(),
        kernel: image.join("kernel"),
        initrd: Some(image.join("initrd")),
        cmdline: boot.render().unwrap(),
        memory_mb: 256,
        vcpus: 1,
        nics,
        run_dir: run_dir.to_path_buf(),
    }
}

fn netdev(cidr: &str, gateway: Option<&str>) -> Option<NetdevConfig> {
    Some(NetdevConfig {
        cidr: Some(cidr.parse::<Ipv4Cidr>().unwrap()),
        gateway: gateway.map(|g| g.parse().unwrap()),
        nameserver: None,
    })
}

/// Waits until the console holds every one of `lines`; returns how long that took.
async fn wait_console(path: &Path, lines: &[String], bound: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let console = std::fs::read_to_string(path).unwrap_or_default();
        if lines
            .iter()
            .all(|want| console.lines().any(|l| l.trim_end() == want))
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < bound,
            "the console did not show {lines:?} within {bound:?}; it holds:\n{console}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn boots_a_guest_with_two_nics_and_stops_it() {
    if !can_run("boots_a_guest_with_two_nics_and_stops_it", true) {
        return;
    }
    in_netns(|| async {
        let run = RunDir::new();
        create_tap("wtest0");
        create_tap("wtest1");
        let macs = [
            MacAddr([0x12, 0xb0, 10, 100, 0, 2]),
            MacAddr([0x12, 0xb1, 0x0a, 0x0b, 0x0c, 0x0d]),
        ];
        let boot = BootArgs {
            netdevs: vec![
                netdev("10.100.0.2/16", Some("10.100.255.254")),
                netdev("172.30.5.2/24", None),
            ],
            macs: macs.to_vec(),
            env: vec![],
            app_args: vec![],
        };
        let nics = vec![
            NicSpec {
                tap: "wtest0".into(),
                mac: macs[0],
            },
            NicSpec {
                tap: "wtest1".into(),
                mac: macs[1],
            },
        ];
        let spec = guest(&run.0, nics, &boot);
        let driver = tcg_driver();

        let started = Instant::now();
        let mut guest = driver.start(&spec).await.expect("start");
        let start_time = started.elapsed();
        let _cleanup = KillOnDrop {
            pid: guest.pid,
            name: format!("weft-{}", spec.id),
        };

        // While it runs: its pid file, its sockets, and a process group of its own.
        let pidfile = std::fs::read_to_string(run.0.join("qemu.pid")).unwrap();
        assert_eq!(pidfile.trim(), guest.pid.to_string());
        assert!(run.0.join("qmp.sock").exists());
        assert!(run.0.join("agent.sock").exists());
        // SAFETY: getpgid takes a pid and returns a number.
        assert_eq!(unsafe { libc::getpgid(guest.pid as i32) }, guest.pid as i32);
        assert!(
            attach_tap("wtest0", false).is_err(),
            "QEMU should hold the TAP"
        );

        // The NICs reach the guest in order, each with its MAC.
        let expected = [
            "weft-guest: iface eth0 mac 12:b0:0a:64:00:02 addr 10.100.0.2/16".to_string(),
            "weft-guest: iface eth1 mac 12:b1:0a:0b:0c:0d addr 172.30.5.2/24".to_string(),
            "weft-guest: app none: idle until SIGTERM".to_string(),
        ];
        let console = driver.console_path(&spec);
        let boot_time = wait_console(&console, &expected, BOOT_BOUND).await;
        assert!(
            guest.exited.try_recv().is_err(),
            "the guest is still running"
        );

        let stopping = Instant::now();
        driver.stop(&spec, guest.pid, GRACE).await.expect("stop");
        let stop_time = stopping.elapsed();
        assert!(
            stop_time < GRACE,
            "QEMU should end on SIGTERM, took {stop_time:?}"
        );
        let code = tokio::time::timeout(Duration::from_secs(5), guest.exited)
            .await
            .expect("exit reported")
            .expect("exit code sent");
        assert_eq!(code, 0, "QEMU exits 0 on SIGTERM");
        // Reaped once its exit was reported (until then it was a zombie, which counts as
        // gone for stop).
        // SAFETY: kill with signal 0 only checks that the process exists.
        assert_ne!(unsafe { libc::kill(guest.pid as i32, 0) }, 0);

        // The TAP devices are free again, and stopping twice is fine.
        attach_tap("wtest0", false).expect("TAP wtest0 free after stop");
        attach_tap("wtest1", false).expect("TAP wtest1 free after stop");
        driver
            .stop(&spec, guest.pid, GRACE)
            .await
            .expect("second stop");

        eprintln!(
            "start returned after {start_time:?}, console complete {boot_time:?} later, \
             stop took {stop_time:?}"
        );
    });
}

#[test]
fn guest_reports_its_app_exit_code_and_console_appends() {
    if !can_run("guest_reports_its_app_exit_code_and_console_appends", true) {
        return;
    }
    in_netns(|| async {
        let run = RunDir::new();
        let boot = BootArgs {
            app_args: vec![
                "/bin/sh".into(),
                "-c".into(),
                "sleep 2; echo app still writes; exit 3".into(),
            ],
            ..BootArgs::default()
        };
        let spec = guest(&run.0, vec![], &boot);
        let driver = tcg_driver();
        let console = driver.console_path(&spec);
        std::fs::write(&console, "a line of an earlier boot\n").unwrap();

        let started = Instant::now();
        let guest = driver.start(&spec).await.expect("start");
        let _cleanup = KillOnDrop {
            pid: guest.pid,
            name: format!("weft-{}", spec.id),
        };
        let app_start = "weft-guest: app start /bin/sh -c sleep 2; echo app still writes; exit 3";
        wait_console(&console, &[app_start.to_string()], BOOT_BOUND).await;
        let before = std::fs::read_to_string(&console).unwrap();
        assert!(!before.contains("earlier boot"), "{before}");

        // What a keeper of the log's size does: copy it away, then truncate it in place.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&console)
            .unwrap()
            .set_len(0)
            .unwrap();

        let code = tokio::time::timeout(BOOT_BOUND, guest.exited)
            .await
            .expect("the guest powers off after its app")
            .expect("exit code sent");
        assert_eq!(code, 3, "the app's exit code, not QEMU's");

        // QEMU went on at the new end of the file, not at its old offset.
        let after = std::fs::read(&console).unwrap();
        let after = String::from_utf8_lossy(&after);
        assert!(!after.starts_with('\0'), "a hole where the old lines were");
        assert!(after.starts_with("app still writes"), "{after}");
        assert!(after.contains("weft-guest: app exit 3"), "{after}");
        eprintln!(
            "guest booted, ran its app and powered off in {:?}",
            started.elapsed()
        );
    });
}

/// Pids of the processes whose command line names `name`.
fn processes_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.split(|b| *b == 0).any(|arg| arg == name.as_bytes())
        })
        .collect()
}

#[test]
fn abandoned_start_leaves_no_qemu() {
    if !can_run("abandoned_start_leaves_no_qemu", true) {
        return;
    }
    in_netns(|| async {
        let run = RunDir::new();
        let spec = guest(&run.0, vec![], &BootArgs::default());
        let name = format!("weft-{}", spec.id);
        let driver = tcg_driver();

        // QEMU is spawned at once but answers QMP only after some 100 ms: drop start before.
        let abandoned = tokio::time::timeout(Duration::from_millis(30), driver.start(&spec)).await;
        if let Ok(finished) = &abandoned {
            let outcome = finished.as_ref().err().map(|e| e.to_string());
            panic!("start should not have finished yet; it ended with {outcome:?}");
        }

        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_named(&name).is_empty() {
            assert!(
                Instant::now() < deadline,
                "QEMU still runs after an abandoned start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn busy_tap_is_an_early_exit() {
    if !can_run("busy_tap_is_an_early_exit", false) {
        return;
    }
    in_netns(|| async {
        let run = RunDir::new();
        // QEMU opens TAP devices before it reads the kernel, so any file will do here.
        std::fs::write(run.0.join("kernel"), b"not a kernel").unwrap();
        let _holder = attach_tap("wbusy0", true).unwrap();

        let spec = GuestSpec {
            id: uuid::Uuid::new_v4().to_string(),
            kernel: run.0.join("kernel"),
            initrd: None,
            cmdline: String::new(),
            memory_mb: 64,
            vcpus: 1,
            nics: vec![NicSpec {
                tap: "wbusy0".into(),
                mac: MacAddr([0x12, 0xb0, 10, 100, 0, 9]),
            }],
            run_dir: run.0.clone(),
        };

        let started = Instant::now();
        let result = tcg_driver().start(&spec).await;
        let elapsed = started.elapsed();
        match result {
            Err(DriverError::EarlyExit { code, detail }) => {
                assert_ne!(code, 0);
                assert!(detail.contains("wbusy0"), "{detail}");
                assert!(detail.contains("Device or resource busy"), "{detail}");
            }
            Err(other) => panic!("expected an early exit, got: {other}"),
            Ok(guest) => {
                // SAFETY: kill takes two integers; the pid is the guest just started.
                unsafe { libc::kill(guest.pid as i32, libc::SIGKILL) };
                panic!("QEMU started on a busy TAP");
            }
        }
        assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    });
}

#[test]
fn missing_kernel_is_refused_before_spawning() {
    let run = RunDir::new();
    let spec = GuestSpec {
        id: "i1".into(),
        kernel: run.0.join("no-kernel"),
        initrd: None,
        cmdline: String::new(),
        memory_mb: 64,
        vcpus: 1,
        nics: vec![],
        run_dir: run.0.clone(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let err = runtime
        .block_on(tcg_driver().start(&spec))
        .err()
        .expect("no kernel");
    assert!(matches!(err, DriverError::Spawn(_)));
    assert!(
        err.to_string().contains("no-kernel does not exist"),
        "{err}"
    );
    assert!(
        !run.0.join("qemu.log").exists(),
        "QEMU should not have been started"
    );
}
