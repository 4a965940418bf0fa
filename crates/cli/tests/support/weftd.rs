//! A real weftd for the CLI's tests, in a test namespace: the QEMU driver with an image that
//! never boots (instances are created stopped), or the netns driver where weftd has it, whose
//! guests start in milliseconds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use weft_testkit::{wait_for, Netns, Weftd};

use super::{run, weft_binary, weft_command, Run};

/// weftd, weft-netns and weft-guest, built next to `weft` (the same profile) once per run.
pub fn weftd_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build).clone()
}

fn build() -> PathBuf {
    let dir = Path::new(weft_binary()).parent().expect("a target dir");
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let out = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--profile", &profile])
        .args([
            "-p",
            "weftd",
            "-p",
            "weft-vmm",
            "-p",
            "weft-guest",
            "--bins",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building weftd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let weftd = dir.join("weftd");
    assert!(weftd.is_file(), "no weftd at {}", weftd.display());
    weftd
}

/// An images directory whose `base` kernel is not a kernel: enough for creates that do not
/// boot, and for the netns driver, which boots no kernel.
pub fn fake_images(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(images.join("base")).unwrap();
    std::fs::write(images.join("base/kernel"), b"not a kernel").unwrap();
    images
}

/// weftd as the tests run it: the testkit's QEMU one, or a netns one started here.
pub enum Daemon {
    Qemu(Weftd),
    Netns(NetnsWeftd),
}

impl Daemon {
    /// weftd with the netns driver when it has one, else with QEMU.
    pub fn start(ns: &Netns, images: &Path) -> Daemon {
        match NetnsWeftd::try_start(ns, images) {
            Ok(weftd) => Daemon::Netns(weftd),
            Err(why) => {
                eprintln!("weftd runs with the QEMU driver, instances stay stopped: {why}");
                Daemon::Qemu(Weftd::start(ns, &weftd_binary(), images, ""))
            }
        }
    }

    pub fn boots(&self) -> bool {
        matches!(self, Daemon::Netns(_))
    }

    pub fn log(&self) -> String {
        match self {
            Daemon::Qemu(w) => w.log(),
            Daemon::Netns(w) => {
                std::fs::read_to_string(w.dir.path().join("weftd.log")).unwrap_or_default()
            }
        }
    }
}

pub struct NetnsWeftd {
    child: Child,
    dir: tempfile::TempDir,
}

impl NetnsWeftd {
    fn try_start(ns: &Netns, images: &Path) -> Result<NetnsWeftd, String> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("weftd.toml");
        let text = Weftd::config(images, &dir.path().join("state"), "");
        std::fs::write(&config, format!("driver = \"netns\"\n{text}")).unwrap();
        let log = std::fs::File::create(dir.path().join("weftd.log")).unwrap();
        let mut child = ns
            .command(weftd_binary().to_str().unwrap())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,weft=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("weftd starts");

        let up = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            let health = Cli::new(ns, Path::new("/nonexistent")).run(&["api", "/v1/healthz"]);
            (health.code == 0).then_some(Ok(()))
        });
        let log = || std::fs::read_to_string(dir.path().join("weftd.log")).unwrap_or_default();
        match up {
            Some(Ok(())) => Ok(NetnsWeftd { child, dir }),
            Some(Err(status)) => Err(format!(
                "weftd with driver = \"netns\" exited with {status}: {}",
                log().trim()
            )),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("weftd did not answer within 30 s:\n{}", log());
            }
        }
    }
}

impl Drop for NetnsWeftd {
    fn drop(&mut self) {
        // SAFETY: kill with a pid this test spawned; at worst it is already gone.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let gone = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
            self.child.try_wait().ok().flatten()
        });
        if gone.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `weft` inside a namespace, talking to the weftd there with the test account's token.
pub struct Cli<'a> {
    ns: &'a Netns,
    home: PathBuf,
    pub url: String,
    pub token: String,
}

impl<'a> Cli<'a> {
    pub fn new(ns: &'a Netns, home: &Path) -> Cli<'a> {
        Cli {
            ns,
            home: home.to_path_buf(),
            url: format!("http://{}", weft_testkit::weftd::LISTEN),
            token: weft_testkit::weftd::TOKEN.to_string(),
        }
    }

    /// `weft` without `--url` and `--token`.
    pub fn bare(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let cmd = weft_command(self.ns.command(weft_binary()), &self.home);
        run(cmd, args, stdin)
    }

    /// `weft --url ... --token ... args`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut full = vec!["--url", &self.url, "--token", &self.token];
        full.extend_from_slice(args);
        self.bare(&full, None)
    }

    /// Runs and expects exit code 0.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "weft {args:?}: {out:?}");
        out.stdout
    }

    /// Runs with `-o json` and parses the answer.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = args.to_vec();
        full.extend_from_slice(&["-o", "json"]);
        let text = self.ok(&full);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("weft {args:?}: {e}: {text}"))
    }
}
