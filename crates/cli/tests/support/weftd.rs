//! A real weftd for the CLI's tests, in a test namespace, with the netns driver.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use weft_testkit::{Netns, Weftd};

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

/// weftd with the netns driver in `ns`: its guests are network namespaces that start in
/// milliseconds.
pub fn start_weftd(ns: &Netns, images: &Path) -> Weftd {
    Weftd::start_with("netns", ns, &weftd_binary(), images, "")
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
