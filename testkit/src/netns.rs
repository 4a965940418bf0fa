//! Network namespaces made for one test, removed when dropped.

use std::process::{Command, Output};

pub struct Netns {
    name: String,
    /// `/etc/netns/<name>`, made by [`Netns::attach`] and removed with the name.
    etc: Option<std::path::PathBuf>,
}

impl Netns {
    /// Creates a namespace with `lo` up. An old namespace of the same name is replaced.
    pub fn create(name: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        sh(&["ip", "netns", "add", name]);
        let ns = Netns {
            name: name.to_string(),
            etc: None,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A handle on a namespace someone else owns: dropping it removes nothing.
    pub fn existing(name: &str) -> std::mem::ManuallyDrop<Netns> {
        std::mem::ManuallyDrop::new(Netns {
            name: name.to_string(),
            etc: None,
        })
    }

    /// Names the network namespace of process `pid` (a netns guest's), as `ip netns attach`
    /// does, so that everything here runs in it. Commands run with [`Netns::exec`] see
    /// `resolv_conf` as `/etc/resolv.conf` (`ip netns exec` binds `/etc/netns/<name>/*` over
    /// `/etc`). Dropping the handle removes the name and that file, not the namespace.
    pub fn attach(name: &str, pid: u32, resolv_conf: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        let etc = std::path::Path::new("/etc/netns").join(name);
        std::fs::create_dir_all(&etc).expect("/etc/netns/<name> is made");
        std::fs::write(etc.join("resolv.conf"), resolv_conf).expect("resolv.conf written");
        let ns = Netns {
            name: name.to_string(),
            etc: Some(etc),
        };
        sh(&["ip", "netns", "attach", name, &pid.to_string()]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> <args>`, panicking with its output on failure.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs a command inside the namespace and returns its output, whatever its status.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec runs")
    }

    /// Runs a command inside the namespace; true when it exits with 0.
    pub fn succeeds(&self, args: &[&str]) -> bool {
        self.exec(args).status.success()
    }

    /// A command that will run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `f` on a thread inside the namespace: sockets it opens live there.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("namespace file opens");
            use std::os::fd::AsRawFd as _;
            // SAFETY: the fd is a valid open namespace file; setns only changes this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns into {path}: {}",
                std::io::Error::last_os_error()
            );
            f()
        })
        .join()
        .expect("namespace thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        if let Some(etc) = &self.etc {
            let _ = std::fs::remove_dir_all(etc);
        }
    }
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("command runs");
    assert!(
        out.status.success(),
        "{:?} failed: {}{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
