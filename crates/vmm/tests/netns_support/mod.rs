//! What the netns driver's tests share: the requirements check, the two programs, a network
//! namespace per test, TAP devices and process look-ups.
//!
//! Every test runs on a thread of its own that first moves into a new network namespace; the
//! TAPs it makes, the commands it runs (`ip`, `ping`, `curl`) and the weft-netns processes the
//! driver spawns all start from that thread, so the host's own namespace is never touched.
//! The namespace and its TAPs vanish with the thread and the processes.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use weft_model::{BootArgs, Ipv4Cidr, MacAddr, NetdevConfig};
use weft_vmm::netns::{NetnsConfig, NetnsDriver};
use weft_vmm::{GuestSpec, NicSpec};

/// `Some(reason)` when this host cannot run the tests.
fn missing_requirement(commands: &[&str]) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    if !Path::new("/bin/busybox").is_file() {
        return Some("no /bin/busybox (package busybox-static)".into());
    }
    for command in ["ip"].iter().chain(commands) {
        if Command::new(command).arg("-V").output().is_err() {
            return Some(format!("the {command} command is missing"));
        }
    }
    None
}

/// Whether the test can go on; panics under CI when it cannot. `commands` are the programs
/// it runs besides `ip`.
pub fn can_run(test: &str, commands: &[&str]) -> bool {
    let Some(reason) = missing_requirement(commands) else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run under CI: {reason}");
    }
    eprintln!("skipping {test}: {reason}");
    false
}

/// The `weft-guest` binary of this build, built on first use with the same profile as the
/// `weft-netns` under test.
pub fn guest_program() -> PathBuf {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST.get_or_init(build_guest).clone()
}

fn build_guest() -> PathBuf {
    let helper = Path::new(env!("CARGO_BIN_EXE_weft-netns"));
    let profile = helper
        .parent()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .map(|name| if name == "debug" { "dev" } else { name })
        .unwrap_or("dev")
        .to_string();
    let out = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--message-format=json", "--profile"])
        .arg(&profile)
        .args(["-p", "weft-guest", "--bin", "weft-guest"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building weft-guest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["target"]["name"] == "weft-guest")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the weft-guest executable")
}

pub fn driver() -> NetnsDriver {
    NetnsDriver::new(NetnsConfig {
        helper: Some(PathBuf::from(env!("CARGO_BIN_EXE_weft-netns"))),
        guest: Some(guest_program()),
    })
}

/// Runs `body` on a thread of its own in a new network namespace, on a runtime of that
/// thread, so that every process it spawns starts in that namespace too. `lo` is up.
pub fn in_netns<F, Fut>(body: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: Send + 'static,
{
    // Built before the namespace exists: a slow first build must not hold up a test's timing.
    guest_program();
    let thread = std::thread::spawn(move || {
        // SAFETY: unshare only changes this thread's namespaces; it touches no memory of ours.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        sh(&["ip", "link", "set", "lo", "up"]);
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

/// Runs a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|err| panic!("{args:?}: {err}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A persistent TAP device, up, with `mtu`, as weftd's pool makes them.
pub fn create_tap(name: &str, mtu: u32) {
    sh(&["ip", "tuntap", "add", "dev", name, "mode", "tap"]);
    sh(&["ip", "link", "set", name, "mtu", &mtu.to_string(), "up"]);
}

/// A host TAP set up as weftd does for a pool interface: the gateway address on it and a
/// route to the guest's address through it.
pub fn pool_tap(name: &str, gateway: &str, guest: &str, mtu: u32) {
    create_tap(name, mtu);
    sh(&["ip", "addr", "add", &format!("{gateway}/32"), "dev", name]);
    sh(&["ip", "route", "add", &format!("{guest}/32"), "dev", name]);
}

/// Whether a line of `ip -o link` shows a carrier. `LOWER_UP` is the carrier itself;
/// `NO-CARRIER` follows the operational state, which the kernel updates up to a second later.
fn carrier_in(line: &str) -> bool {
    line.split(['<', '>'])
        .nth(1)
        .is_some_and(|flags| flags.split(',').any(|flag| flag == "LOWER_UP"))
}

/// Whether the device `name` of this thread's namespace has a carrier: a process holds it.
pub fn has_carrier(name: &str) -> bool {
    let out = sh(&["ip", "-o", "link", "show", "dev", name]);
    carrier_in(&String::from_utf8_lossy(&out.stdout))
}

/// The names of the TAP devices of this thread's namespace that have a carrier.
pub fn taps_with_carrier() -> Vec<String> {
    let out = sh(&["ip", "-o", "link", "show", "type", "tun"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| carrier_in(line))
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

/// A fresh run directory, removed on drop. Its path is unique, and every guest process
/// started for it carries the path on its command line.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("weft-netns-{}", &id[..12]));
        std::fs::create_dir_all(&dir).unwrap();
        RunDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Pids of the processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let me = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
        })
        .collect()
}

/// Kills what a test left running because it failed half-way: every process whose command
/// line holds the marker.
pub struct KillOnDrop(pub String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in processes_with(&self.0) {
            // SAFETY: kill takes two integers; the process carries this test's marker.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

pub fn netdev(cidr: &str, gateway: Option<&str>) -> Option<NetdevConfig> {
    Some(NetdevConfig {
        cidr: Some(cidr.parse::<Ipv4Cidr>().unwrap()),
        gateway: gateway.map(|g| g.parse().unwrap()),
        nameserver: None,
    })
}

/// A guest of `run` with `nics` and `boot`. Kernel, memory and vcpus mean nothing to the
/// netns driver.
pub fn guest(run: &RunDir, nics: Vec<NicSpec>, boot: &BootArgs) -> GuestSpec {
    GuestSpec {
        id: uuid::Uuid::new_v4().to_string(),
        kernel: PathBuf::from("/nonexistent/kernel"),
        initrd: None,
        cmdline: boot.render().unwrap(),
        memory_mb: 0,
        vcpus: 0,
        nics,
        run_dir: run.path().to_path_buf(),
    }
}

pub fn nic(tap: &str, mac: &str) -> NicSpec {
    NicSpec {
        tap: tap.into(),
        mac: mac.parse::<MacAddr>().unwrap(),
    }
}

/// Waits until `check` holds on the console's text; returns how long that took.
pub async fn wait_console(
    path: &Path,
    bound: Duration,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let console = std::fs::read_to_string(path).unwrap_or_default();
        if check(&console) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < bound,
            "the console did not show {what} within {bound:?}; it holds:\n{console}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the console holds every one of `lines`, each as a whole line.
pub fn has_lines(console: &str, lines: &[&str]) -> bool {
    lines
        .iter()
        .all(|want| console.lines().any(|l| l.trim_end() == *want))
}

/// Waits until no process carries `marker` any more.
pub async fn wait_gone(marker: &str, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        let left = processes_with(marker);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes {left:?} of {marker} remain"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
