//! The world a benchmark runs in: the testkit's namespaces (host, internet, user), one weftd
//! in the host namespace, and the helpers to act inside namespaces. Nothing runs in the
//! namespace the benchmark was started in.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use weft_testkit::{Topology, Weftd};

/// Runs `f` on a thread inside the network namespace at `ns` (a `/run/netns/<name>` or
/// `/proc/<pid>/ns/net` path) and returns what it returns. Sockets it opens live there, and
/// so do processes it spawns.
pub fn run_in<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(ns).unwrap_or_else(|e| panic!("{e:#}"));
                f()
            })
            .join()
            .expect("benchmark thread")
    })
}

/// Moves the calling thread into the network namespace at `ns`.
pub fn enter(ns: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd as _;
    let file = std::fs::File::open(ns).with_context(|| format!("opening {}", ns.display()))?;
    // SAFETY: the descriptor is an open namespace file for the whole call; setns changes
    // only the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "setns {}: {}",
            ns.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/run/netns/{name}"))
}

/// The programs the benchmark runs, all from the directory of its own binary (a release
/// build puts them side by side).
pub struct Programs {
    pub weftd: PathBuf,
    pub shield: PathBuf,
}

impl Programs {
    pub fn find() -> anyhow::Result<Programs> {
        let exe = std::env::current_exe().context("locating weft-bench")?;
        let dir = exe.parent().context("weft-bench has no directory")?;
        for name in ["weftd", "weft-netns", "weft-guest", "weft-shield"] {
            if !dir.join(name).is_file() {
                bail!(
                    "{name} is missing beside weft-bench in {}: build with `cargo build --release --workspace --bins`",
                    dir.display()
                );
            }
        }
        Ok(Programs {
            weftd: dir.join("weftd"),
            shield: dir.join("weft-shield"),
        })
    }
}

/// An images directory with an image `base` that needs no kernel (for the netns driver).
pub fn netns_images() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("base"))?;
    std::fs::write(
        dir.path().join("base/image.toml"),
        "default_args = [\"/bin/busybox\", \"sleep\", \"100000\"]\n",
    )?;
    Ok(dir)
}

/// A weftd in a fresh topology. Dropping it deletes every instance it still has, stops
/// weftd, ends any guest process left over and removes the namespaces.
pub struct World {
    weftd: Option<Weftd>,
    pub topo: Topology,
    /// How long weftd took from spawn to its first healthy answer (pool setup included).
    pub start_time: Duration,
    _images: Option<tempfile::TempDir>,
}

impl World {
    /// Starts weftd with `driver` and the testkit's configuration plus `extra` TOML.
    pub fn start(
        tag: &str,
        driver: &str,
        programs: &Programs,
        images: Option<&Path>,
        extra: &str,
    ) -> anyhow::Result<World> {
        let tag = format!("{tag}{}", std::process::id() % 10_000);
        let topo = Topology::new(&tag);
        let (own_images, images) = match images {
            Some(dir) => (None, dir.to_path_buf()),
            None => {
                let dir = netns_images()?;
                let path = dir.path().to_path_buf();
                (Some(dir), path)
            }
        };
        let started = Instant::now();
        let weftd = Weftd::start_with(driver, &topo.host, &programs.weftd, &images, extra);
        let start_time = started.elapsed();
        Ok(World {
            weftd: Some(weftd),
            topo,
            start_time,
            _images: own_images,
        })
    }

    pub fn weftd(&self) -> &Weftd {
        self.weftd.as_ref().expect("weftd runs")
    }

    pub fn host_ns(&self) -> PathBuf {
        netns_path(self.topo.host.name())
    }

    pub fn inet_ns(&self) -> PathBuf {
        netns_path(self.topo.inet.name())
    }

    /// The pid of this world's weftd (`ip netns exec` runs it in place).
    pub fn weftd_pid(&self) -> Option<u32> {
        let config = self.weftd().dir.path().join("weftd.toml");
        find_process(|args| {
            args.iter().any(|a| a.ends_with("weftd")) && args.iter().any(|a| Path::new(a) == config)
        })
        .into_iter()
        .next()
    }

    /// weftd's resident memory (`VmRSS`), in bytes.
    pub fn weftd_rss(&self) -> anyhow::Result<u64> {
        let pid = self.weftd_pid().context("weftd's process not found")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")?;
        Ok(kb * 1024)
    }

    /// Deletes every instance, relay clients first, with a bounded number of rounds.
    pub fn delete_all(&self) {
        let api = Client::new();
        run_in(&self.host_ns(), || {
            let api = api.connect();
            for _ in 0..4 {
                let Ok(list) = api.list() else { return };
                if list.is_empty() {
                    return;
                }
                for name in list.iter().filter_map(|i| i["name"].as_str()) {
                    let _ = api.delete(name);
                }
            }
        });
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if self.weftd.is_some() {
            self.delete_all();
        }
        if let Some(mut weftd) = self.weftd.take() {
            let state = weftd.state_dir();
            weftd.stop();
            // Guests outlive weftd on purpose; a benchmark's must not.
            let state = state.to_string_lossy().into_owned();
            for pid in find_process(|args| args.iter().any(|a| a.contains(&state))) {
                // SAFETY: kill takes two integers; the pid was just read from /proc.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// The pids of processes whose command line `pick` accepts.
pub fn find_process(pick: impl Fn(&[String]) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                let args: Vec<String> = raw
                    .split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                pick(&args)
            })
        })
        .collect()
}

/// The network namespace of an instance's guest: that of its `weft-netns` process.
pub fn guest_ns(uuid: &str) -> anyhow::Result<PathBuf> {
    let name = format!("weft-{uuid}");
    let pid = find_process(|args| args.windows(2).any(|w| w[0] == "--name" && w[1] == name))
        .into_iter()
        .next()
        .with_context(|| format!("no weft-netns process for {uuid}"))?;
    Ok(PathBuf::from(format!("/proc/{pid}/ns/net")))
}

/// What a client needs to talk to weftd; [`Client::connect`] makes the connection on the
/// thread that will use it, which must be inside the host namespace.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
}

pub struct Connected {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Client {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Client {
        Client {
            base: format!("http://{}", weft_testkit::weftd::LISTEN),
            token: weft_testkit::weftd::TOKEN.to_string(),
        }
    }

    pub fn connect(&self) -> Connected {
        Connected {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(180))
                .build(),
            base: self.base.clone(),
            token: self.token.clone(),
        }
    }
}

impl Connected {
    /// Sends a request over the kept-alive connection; the HTTP status and the JSON answer.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token));
        let result = match body {
            Some(body) => req.send_json(body.clone()),
            None => req.call(),
        };
        match result {
            Ok(resp) => (resp.status(), resp.into_json().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_json().unwrap_or(Value::Null)),
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    /// Creates an instance and returns it as the API answered.
    pub fn create(&self, body: &Value) -> anyhow::Result<Value> {
        let (code, answer) = self.call("POST", "/v1/instances", Some(body));
        if code != 200 {
            bail!("create {}: HTTP {code}: {answer}", body["name"]);
        }
        Ok(answer["data"]["instances"][0].clone())
    }

    pub fn delete(&self, id: &str) -> anyhow::Result<()> {
        let (code, answer) = self.call("DELETE", &format!("/v1/instances/{id}"), None);
        if code != 200 {
            bail!("delete {id}: HTTP {code}: {answer}");
        }
        Ok(())
    }

    pub fn get(&self, id: &str) -> anyhow::Result<Value> {
        let (code, answer) = self.call("GET", &format!("/v1/instances/{id}"), None);
        if code != 200 {
            bail!("get {id}: HTTP {code}: {answer}");
        }
        Ok(answer["data"]["instances"][0].clone())
    }

    pub fn list(&self) -> anyhow::Result<Vec<Value>> {
        let (code, answer) = self.call("GET", "/v1/instances", None);
        if code != 200 {
            bail!("list: HTTP {code}: {answer}");
        }
        Ok(answer["data"]["instances"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

/// A create request for a trivial app with `nics` pool interfaces.
pub fn trivial(name: &str, nics: usize) -> Value {
    json!({
        "name": name,
        "image": "base",
        "args": ["/bin/busybox", "sleep", "100000"],
        "network_interfaces": vec![json!({}); nics],
    })
}

/// The host's load averages (1, 5, 15 minutes) as `/proc/loadavg` has them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Calls `f` until it succeeds or `limit` has passed; the last failure when it never did.
pub fn retry<T>(limit: Duration, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
