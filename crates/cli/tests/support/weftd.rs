//! A real weftd for the CLI's tests, in a test namespace, with the netns driver.

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

/// An images directory with a `base` image whose kernel is not a kernel: the netns driver
/// boots none.
pub fn fake_images(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(images.join("base")).unwrap();
    std::fs::write(images.join("base/kernel"), b"not a kernel").unwrap();
    images
}

/// weftd with the netns driver in a test namespace: its guests are network namespaces that
/// start in milliseconds.
pub struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts weftd in `ns` with the testkit's configuration and `driver = "netns"`, and
    /// waits until its API answers.
    pub fn start(ns: &Netns, images: &Path) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("weftd.toml");
        // The driver is a top-level key: it goes before the configuration's tables.
        let text = Weftd::config(images, &dir.path().join("state"), "");
        std::fs::write(&config, format!("driver = \"netns\"\n{text}")).unwrap();
        let log_path = dir.path().join("weftd.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = ns
            .command(weftd_binary().to_str().unwrap())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,weft=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("weftd starts");
        let mut daemon = Daemon { child, dir };

        let up = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("weftd exited with {status}:\n{log}");
            }
            let health = Cli::new(ns, Path::new("/nonexistent")).run(&["api", "/v1/healthz"]);
            (health.code == 0).then_some(())
        });
        assert!(
            up.is_some(),
            "weftd did not answer within 30 s:\n{}",
            daemon.log()
        );
        daemon
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weftd.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
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
        // Before the command: after a create's `--`, it would be an arg of the app.
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        let text = self.ok(&full);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("weft {args:?}: {e}: {text}"))
    }
}
