//! Test networks for the shield, all in namespaces the test creates:
//!
//! ```text
//! client (cl0 10.77.0.2/24, default via 10.77.0.1)
//!   └─ veth ─ shield (relay0 10.77.0.1/24; up0 203.0.113.2/24, default via 203.0.113.1)
//!                └─ veth ─ internet (inet0 203.0.113.1/24; servers on lo, see internet.rs)
//! ```
//!
//! The client's default route plays the host that forwards everything a relayed interface
//! sends to the relay. The client asks DNS at 192.0.2.53, an address nobody has: only the
//! shield's any-address routing can answer there. The internet is the testkit's.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
pub use weft_testkit::dns::Answer;
pub use weft_testkit::internet;
use weft_testkit::{privileged_or_skip, wait_for, Netns};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The client's resolver: an address that exists nowhere.
pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
pub const SECRET_VALUE: &str = "s3cr3t-value-42";
pub const PLACEHOLDER: &str = "WEFT_SECRET_API";

/// Whether this test can run: root, namespaces, and curl for the client.
pub fn can_run(test: &str) -> bool {
    if !privileged_or_skip(test) {
        return false;
    }
    if Command::new("curl").arg("--version").output().is_err() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test} cannot run under CI: curl is missing");
        }
        eprintln!("skipping {test}: curl is missing");
        return false;
    }
    true
}

pub struct Net {
    pub client: Netns,
    pub shield: Netns,
    pub internet: Netns,
    pub dir: tempfile::TempDir,
    pub test_ca: internet::TestCa,
    pub seen: internet::Seen,
}

impl Net {
    pub fn new(tag: &str) -> Net {
        let id = std::process::id();
        let client = Netns::create(&format!("wsh-{tag}-c-{id}"));
        let shield = Netns::create(&format!("wsh-{tag}-s-{id}"));
        let internet = Netns::create(&format!("wsh-{tag}-i-{id}"));

        weft_testkit::netns::sh(&[
            "ip",
            "link",
            "add",
            "cl0",
            "netns",
            client.name(),
            "type",
            "veth",
            "peer",
            "name",
            "relay0",
            "netns",
            shield.name(),
        ]);
        weft_testkit::netns::sh(&[
            "ip",
            "link",
            "add",
            "up0",
            "netns",
            shield.name(),
            "type",
            "veth",
            "peer",
            "name",
            "inet0",
            "netns",
            internet.name(),
        ]);
        client.ip(&["addr", "add", "10.77.0.2/24", "dev", "cl0"]);
        client.ip(&["link", "set", "cl0", "up"]);
        client.ip(&["route", "add", "default", "via", "10.77.0.1"]);
        shield.ip(&["addr", "add", "10.77.0.1/24", "dev", "relay0"]);
        shield.ip(&["link", "set", "relay0", "up"]);
        shield.ip(&["addr", "add", "203.0.113.2/24", "dev", "up0"]);
        shield.ip(&["link", "set", "up0", "up"]);
        shield.ip(&["route", "add", "default", "via", "203.0.113.1"]);
        internet.ip(&["addr", "add", "203.0.113.1/24", "dev", "inet0"]);
        internet.ip(&["link", "set", "inet0", "up"]);

        let test_ca = internet::TestCa::new();
        let seen = internet::start(&internet, &test_ca);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("internet-ca.pem"), &test_ca.pem).unwrap();
        Net {
            client,
            shield,
            internet,
            dir,
            test_ca,
            seen,
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The test policy's flags: the shield trusts the test internet's CA unless told not to.
    pub fn policy_args(&self, trust_internet_ca: bool) -> Vec<String> {
        let mut args: Vec<String> = [
            "--nic",
            "relay0",
            "--upstream-dns",
            "198.51.100.53",
            "--allow",
            "*.allowed.test",
            "--allow-cidrs",
            "100.64.7.0/24",
            "--stats-interval",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if trust_internet_ca {
            let ca = self.path("internet-ca.pem");
            args.extend([
                "--upstream-ca".to_string(),
                ca.to_str().unwrap().to_string(),
            ]);
        }
        args
    }

    /// The shield with the test policy, plus `extra` flags; waits for its ready line.
    pub fn start_shield(&self, extra: &[&str]) -> ShieldProc {
        let mut args = self.policy_args(true);
        args.extend(extra.iter().map(|s| s.to_string()));
        self.start_with(&args, &[])
    }

    /// The shield with these flags and environment, and the test secret.
    pub fn start_with(&self, args: &[String], env: &[(&str, &str)]) -> ShieldProc {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let secret = format!("{PLACEHOLDER}|{SECRET_VALUE}|api.allowed.test");
        let mut env = env.to_vec();
        env.push(("SHIELD_SECRET_API", &secret));
        let shield = ShieldProc::spawn(self, &args, &env);
        let ready = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            let log = shield.log();
            (log.contains("weft-shield: ready") || log.contains("weft-shield: error"))
                .then_some(log)
        })
        .expect("the shield starts within 20 s");
        assert!(
            ready.contains("weft-shield: ready"),
            "the shield failed to start:\n{ready}"
        );
        shield
    }

    /// Runs curl in the client namespace: (exit code, body, stderr).
    pub fn curl(&self, args: &[&str]) -> (i32, String, String) {
        let out = self
            .client
            .command("curl")
            .args([
                "-sS",
                "--noproxy",
                "*",
                "--connect-timeout",
                "5",
                "--max-time",
                "10",
            ])
            .args(args)
            .output()
            .expect("curl runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Resolves a name through the shield (UDP, or TCP), from the client.
    pub fn dns(&self, name: &str, tcp: bool) -> Answer {
        let name = name.to_string();
        self.client
            .enter(move || weft_testkit::dns::query(RESOLVER, &name, tcp))
    }

    /// The address a name resolves to through the shield; panics when it does not.
    pub fn resolve(&self, name: &str) -> Ipv4Addr {
        let answer = self.dns(name, false);
        assert_eq!(answer.code, Some(ResponseCode::NoError), "{name}");
        answer.addrs[0]
    }
}

/// A weft-shield process in the shield namespace, its stdout in a file. Killed when dropped.
pub struct ShieldProc {
    pub child: Child,
    log: PathBuf,
}

impl ShieldProc {
    pub fn spawn(net: &Net, args: &[&str], env: &[(&str, &str)]) -> ShieldProc {
        let log = net.path(&format!("shield-{}.log", rand::random::<u32>()));
        let file = std::fs::File::create(&log).unwrap();
        // WEFT_SHIELD_BIN runs the tests against another build, such as the static one.
        let binary = std::env::var("WEFT_SHIELD_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_weft-shield").to_string());
        let mut command = net.shield.command(&binary);
        command
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (key, value) in env {
            command.env(key, value);
        }
        ShieldProc {
            child: command.spawn().expect("weft-shield starts"),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds a line containing every one of `parts`.
    pub fn wait_line(&self, parts: &[&str]) -> String {
        let found = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
            self.log()
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_string)
        });
        found.unwrap_or_else(|| panic!("no log line with {parts:?} in:\n{}", self.log()))
    }

    /// The exit code, waiting at most `limit`.
    pub fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ShieldProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
