//! A weftd process in a host namespace, with its own state directory and configuration.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::{wait_for, Api, Netns};

pub const TOKEN: &str = "acme-token-0123456789abcdef";
pub const LISTEN: &str = "127.0.0.1:7070";

pub struct Weftd {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub api: Api,
    ns: String,
    binary: PathBuf,
    config: PathBuf,
    /// Environment variables weftd is started with (set by [`Weftd::set_env`]).
    env: Vec<(String, String)>,
}

impl Weftd {
    /// The default test configuration: a small pool, the `acme` account with every
    /// permission, plus `extra` TOML appended (which may override keys of its own sections).
    pub fn config(images_dir: &Path, state_dir: &Path, extra: &str) -> String {
        Self::config_for("qemu", images_dir, state_dir, extra)
    }

    /// The test configuration with another VMM driver.
    pub fn config_for(driver: &str, images_dir: &Path, state_dir: &Path, extra: &str) -> String {
        let base = format!(
            r#"listen = "{LISTEN}"
driver = "{driver}"
state_dir = "{state}"
store = "{state}/weft.db"
images_dir = "{images}"

[pool]
addresses = "10.100.0.0/16"
tap_prefix = "wt"
tap_count = 8
uplink = "eth0"

[[accounts]]
name = "acme"
tokens = ["{TOKEN}"]
permissions = ["net_manager"]
license = ["custom_network_configuration", "branching", "checkpointing"]
"#,
            state = state_dir.display(),
            images = images_dir.display(),
        );
        // `extra` may set keys of the tables above (say `[pool]`); arrays of tables it
        // holds (more `[[accounts]]`) are added.
        let mut config: toml::Table = base.parse().expect("base config parses");
        let extra: toml::Table = extra.parse().expect("extra config parses");
        merge(&mut config, extra);
        toml::to_string(&config).expect("config serializes")
    }
    /// Starts weftd with the QEMU driver in `ns` and waits until its API answers.
    pub fn start(ns: &Netns, binary: &Path, images_dir: &Path, extra: &str) -> Weftd {
        Self::start_with("qemu", ns, binary, images_dir, extra)
    }

    /// Starts weftd with `driver` (`qemu` or `netns`) in `ns` and waits until its API answers.
    pub fn start_with(
        driver: &str,
        ns: &Netns,
        binary: &Path,
        images_dir: &Path,
        extra: &str,
    ) -> Weftd {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state");
        let config = dir.path().join("weftd.toml");
        let text = Self::config_for(driver, images_dir, &state, extra);
        std::fs::write(&config, text).expect("config written");

        let mut weftd = Weftd {
            child: None,
            api: Api::new(ns, &format!("http://{LISTEN}"), TOKEN),
            dir,
            ns: ns.name().to_string(),
            binary: binary.to_path_buf(),
            config,
            env: Vec::new(),
        };
        weftd.spawn();
        weftd
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info,weft=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("weftd starts");
        self.child = Some(child);

        // With the API on TLS the plain client cannot ask; a TLS port that accepts will do.
        let tls = std::fs::read_to_string(&self.config).is_ok_and(|t| t.contains("[api.tls]"));
        let up = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("weftd exited with {status}:\n{}", self.log());
            }
            let answers = if tls {
                self.api.get("/v1/healthz").0 != 0
                    || Netns::existing(&self.ns)
                        .enter(|| std::net::TcpStream::connect(LISTEN).is_ok())
            } else {
                self.api.get("/v1/healthz").0 == 200
            };
            answers.then_some(())
        });
        assert!(
            up.is_some(),
            "weftd did not answer within 30 s:\n{}",
            self.log()
        );
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("weftd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The network namespace of a running netns guest, named `ns_name` for the test (see
    /// [`Netns::attach`]), with the resolv.conf weft-guest wrote for it: commands run with
    /// `exec` resolve names as the guest was told to. Found through the pid of the guest's
    /// `weft-netns`, whose command line names the instance.
    pub fn guest_netns(&self, instance: &str, ns_name: &str) -> Netns {
        let (code, body) = self.api.get(&format!("/v1/instances/{instance}"));
        assert_eq!(code, 200, "{body}");
        let uuid = body["data"]["instances"][0]["uuid"]
            .as_str()
            .expect("an instance has a uuid")
            .to_string();
        self.guest_netns_of_uuid(&uuid, ns_name)
    }

    /// [`Weftd::guest_netns`] of the instance `uuid`, of any account.
    pub fn guest_netns_of_uuid(&self, uuid: &str, ns_name: &str) -> Netns {
        let instance = uuid;
        let uuid = uuid.to_string();
        let resolv = self
            .state_dir()
            .join("instances")
            .join(&uuid)
            .join("resolv.conf");
        let found = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
            let text = std::fs::read_to_string(&resolv).ok()?;
            let pid = guest_pid(&uuid)?;
            Some((pid, text))
        });
        let (pid, text) = found.unwrap_or_else(|| {
            panic!("no weft-netns process or resolv.conf for instance {instance} ({uuid})")
        });
        Netns::attach(ns_name, pid, &text)
    }

    /// Stops weftd with SIGTERM (guests keep running) and waits for it.
    pub fn stop(&mut self) {
        self.terminate();
        if let Some(mut child) = self.child.take() {
            let gone = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
                child.try_wait().ok().flatten()
            });
            if gone.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Sets (or with `None` removes) an environment variable for the next start of weftd.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.env.push((key.to_string(), value.to_string()));
        }
    }

    /// Sends weftd SIGTERM and returns at once, so that a test can watch what it does.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            // SAFETY: kill with a pid we spawned; at worst the process is already gone.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
    }

    /// Waits at most `limit` for weftd to exit on its own; its status once it has.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let status = wait_for(limit, Duration::from_millis(20), || {
            child.try_wait().ok().flatten()
        })?;
        self.child = None;
        Some(status)
    }

    /// Kills weftd with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts weftd again after it exited or was killed (see [`Weftd::wait_exit`]).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "weftd is still running");
        self.spawn();
    }

    /// Stops weftd and starts it again on the same store and configuration.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Weftd {
    /// Stops weftd, then kills what it left running: guests outlive weftd on purpose, but
    /// must not outlive the test (their namespaces, its state directory are going away).
    fn drop(&mut self) {
        self.stop();
        let state = self.dir.path().join("state");
        let left = processes_mentioning(&state.to_string_lossy());
        for pid in &left {
            // SAFETY: kill with a pid just read from /proc; at worst it is already gone.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let gone = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
            left.iter()
                .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
                .then_some(())
        });
        if gone.is_none() {
            eprintln!("guests of weftd outlived it: {left:?}");
        }
    }
}

/// The processes whose command line holds `text` (for guests: their run directory).
fn processes_mentioning(text: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(text))
        })
        .collect()
}

/// The pid of the `weft-netns` process of instance `uuid`, which lives in the guest's network
/// namespace.
fn guest_pid(uuid: &str) -> Option<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", &format!("weft-netns --name weft-{uuid} ")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut pids = text.split_whitespace().filter_map(|p| p.parse().ok());
    match (pids.next(), pids.next()) {
        (Some(pid), None) => Some(pid),
        _ => None,
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (Some(toml::Value::Array(b)), toml::Value::Array(o)) => b.extend(o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}
