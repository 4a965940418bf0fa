//! Ending a guest's process by pid, whoever spawned it.
//!
//! weftd finds its guests again by pid after a restart, so stopping never relies on a child
//! handle. A pidfd pins the process while it is checked and signalled, so a pid that was freed
//! and reused meanwhile never gets a signal meant for a guest.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The exit code a guest's `exited` channel reports: the process's own code, or 128 plus the
/// signal that ended it, as shells do.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    }
}

/// Whether a NUL-separated command line (`/proc/<pid>/cmdline`) passes `-name <name>` or
/// `--name <name>`, or `-name <name>,<options>`.
pub(crate) fn cmdline_names(cmdline: &[u8], name: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2).any(|pair| {
        (pair[0] == b"-name" || pair[0] == b"--name")
            && (pair[1] == name.as_bytes()
                || pair[1]
                    .strip_prefix(name.as_bytes())
                    .is_some_and(|rest| rest.starts_with(b",")))
    })
}

/// A process file descriptor: it refers to one process for as long as it is open.
pub(crate) struct Pidfd {
    pid: i32,
    fd: AsyncFd<OwnedFd>,
}

impl Pidfd {
    /// `None` when no process has this pid.
    pub(crate) fn open(pid: i32) -> io::Result<Option<Pidfd>> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no
        // memory is shared with the kernel.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ESRCH) => Ok(None),
                _ => Err(err),
            };
        }
        // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: the descriptor is owned by the `OwnedFd` moved into the `AsyncFd`, so it
        // stays open and the same for as long as the registration lives.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
        Ok(Some(Pidfd { pid, fd }))
    }

    /// Sends `signal`; `false` when the process has already ended.
    pub(crate) fn signal(&self, signal: i32) -> io::Result<bool> {
        // SAFETY: pidfd_send_signal reads only its arguments; a null siginfo means the
        // kernel fills in the sender's details itself.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ESRCH) => Ok(false),
            _ => Err(err),
        }
    }

    /// Waits at most `bound` for the process to end; a zombie has ended. `true` once it has.
    pub(crate) async fn wait_exit(&self, bound: Duration) -> bool {
        // A pidfd turns readable when its process exits, child of ours or not.
        tokio::time::timeout(bound, self.fd.readable())
            .await
            .is_ok_and(|ready| ready.is_ok())
    }

    /// The process's command line; empty once it is a zombie.
    pub(crate) fn cmdline(&self) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut out = Vec::new();
        File::open(format!("/proc/{}/cmdline", self.pid))?.read_to_end(&mut out)?;
        Ok(out)
    }
}

/// How [`terminate`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// There was no such guest process to begin with.
    AlreadyGone,
    /// It exited after the polite signal.
    Politely,
    /// It had to be killed after `grace`.
    Killed,
}

/// Ends the process `pid` if it is the one named `name`: `polite` first, SIGKILL after
/// `grace`, then waits at most `kill_bound` for it to be gone.
pub(crate) async fn terminate(
    pid: u32,
    name: &str,
    polite: i32,
    grace: Duration,
    kill_bound: Duration,
) -> io::Result<Ended> {
    terminate_with(pid, name, polite, grace, kill_bound, |_| Vec::new()).await
}

/// [`terminate`], killing also the processes `companions` picks when the grace has passed,
/// just before the SIGKILL of `pid`; returns once all of them are gone.
pub(crate) async fn terminate_with(
    pid: u32,
    name: &str,
    polite: i32,
    grace: Duration,
    kill_bound: Duration,
    companions: impl FnOnce(i32) -> Vec<Pidfd>,
) -> io::Result<Ended> {
    let pid = i32::try_from(pid)
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a process id"))?;

    let Some(process) = Pidfd::open(pid)? else {
        return Ok(Ended::AlreadyGone);
    };

    // A pid that now belongs to another process means the guest is gone; a zombie has an
    // empty command line and is gone as well.
    let cmdline = match process.cmdline() {
        Ok(cmdline) => cmdline,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Ended::AlreadyGone),
        Err(err) => return Err(err),
    };
    if !cmdline_names(&cmdline, name) {
        tracing::debug!(
            pid,
            name,
            "the pid belongs to another process: the guest is gone"
        );
        return Ok(Ended::AlreadyGone);
    }

    if !process.signal(polite)? {
        return Ok(Ended::AlreadyGone);
    }
    if process.wait_exit(grace).await {
        return Ok(Ended::Politely);
    }

    let companions = companions(pid);
    process.signal(libc::SIGKILL)?;
    for companion in &companions {
        companion.signal(libc::SIGKILL)?;
    }
    for waited in std::iter::once(&process).chain(&companions) {
        if !waited.wait_exit(kill_bound).await {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "process {} still runs {kill_bound:?} after SIGKILL",
                    waited.pid
                ),
            ));
        }
    }
    Ok(Ended::Killed)
}

/// Pidfds of the children of `parent`, which must not end while this runs (a pidfd of it
/// held open does that). Each is checked to be a child of `parent` once pinned.
pub(crate) fn children(parent: i32) -> Vec<Pidfd> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| parent_of(*pid) == Some(parent))
        .filter_map(|pid| Pidfd::open(pid).ok().flatten())
        // The pid could have been freed and reused between the look-up and the pidfd.
        .filter(|child| parent_of(child.pid) == Some(parent))
        .collect()
}

/// The parent pid of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces and parentheses: skip past the last.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Instant;

    #[test]
    fn recognizes_the_guest_name() {
        let line = b"qemu-system-x86_64\0-name\0weft-abc\0-m\x00128\0";
        assert!(cmdline_names(line, "weft-abc"));
        assert!(!cmdline_names(line, "weft-ab"));
        assert!(!cmdline_names(line, "weft-abcd"));
        assert!(cmdline_names(b"q\0-name\0weft-abc,process=x\0", "weft-abc"));
        assert!(cmdline_names(b"weft-netns\0--name\0weft-abc\0", "weft-abc"));
        assert!(!cmdline_names(
            b"weft-netns\0---name\0weft-abc\0",
            "weft-abc"
        ));
        assert!(!cmdline_names(b"q\0weft-abc\0", "weft-abc"));
        assert!(!cmdline_names(b"", "weft-abc"));
    }

    #[tokio::test]
    async fn finds_children() {
        let mut child = Command::new("sleep").arg("10").spawn().unwrap();
        let me = std::process::id() as i32;
        assert_eq!(parent_of(child.id() as i32), Some(me));
        let found: Vec<i32> = children(me).iter().map(|c| c.pid).collect();
        assert!(found.contains(&(child.id() as i32)), "{found:?}");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn exit_codes() {
        let status = Command::new("sh").args(["-c", "exit 3"]).status().unwrap();
        assert_eq!(exit_code(status), 3);
        let status = Command::new("sh")
            .args(["-c", "kill -9 $$"])
            .status()
            .unwrap();
        assert_eq!(exit_code(status), 128 + 9);
    }

    /// A stand-in guest: a shell whose command line carries `-name <name>`. It ignores
    /// SIGTERM when `stubborn`.
    fn fake_guest(name: &str, stubborn: bool) -> std::process::Child {
        let script = if stubborn {
            "trap '' TERM; while :; do sleep 0.05; done"
        } else {
            "while :; do sleep 0.05; done"
        };
        let child = Command::new("sh")
            .args(["-c", script, "sh", "-name", name])
            .spawn()
            .unwrap();
        // Until the shell has been exec'd, the child still shows the test's command line.
        let deadline = Instant::now() + Duration::from_secs(5);
        let path = format!("/proc/{}/cmdline", child.id());
        while !std::fs::read(&path).is_ok_and(|c| cmdline_names(&c, name)) {
            assert!(
                Instant::now() < deadline,
                "the stand-in guest did not start"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    /// Reaps `child` in the background, as tokio does for a guest's own child.
    fn reap(mut child: std::process::Child) -> std::thread::JoinHandle<i32> {
        std::thread::spawn(move || exit_code(child.wait().unwrap()))
    }

    #[tokio::test]
    async fn polite_stop() {
        let child = fake_guest("weft-polite", false);
        let pid = child.id();
        let waiter = reap(child);

        let ended = terminate(
            pid,
            "weft-polite",
            libc::SIGTERM,
            Duration::from_secs(5),
            Duration::from_secs(5),
        );
        assert_eq!(ended.await.unwrap(), Ended::Politely);
        assert_eq!(waiter.join().unwrap(), 128 + libc::SIGTERM);
    }

    #[tokio::test]
    async fn kills_after_grace() {
        let child = fake_guest("weft-stubborn", true);
        let pid = child.id();
        let waiter = reap(child);
        // Let the shell install its trap before it is signalled.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let started = Instant::now();
        let ended = terminate(
            pid,
            "weft-stubborn",
            libc::SIGTERM,
            Duration::from_millis(300),
            Duration::from_secs(5),
        );
        assert_eq!(ended.await.unwrap(), Ended::Killed);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(waiter.join().unwrap(), 128 + libc::SIGKILL);
    }

    #[tokio::test]
    async fn leaves_other_processes_alone() {
        let mut child = fake_guest("weft-someone-else", false);
        let pid = child.id();

        let ended = terminate(
            pid,
            "weft-mine",
            libc::SIGTERM,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        assert_eq!(ended.await.unwrap(), Ended::AlreadyGone);
        assert!(
            child.try_wait().unwrap().is_none(),
            "another process was signalled"
        );

        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn gone_processes_are_stopped_already() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let ended = terminate(
            pid,
            "weft-x",
            libc::SIGTERM,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        assert_eq!(ended.await.unwrap(), Ended::AlreadyGone);

        let err = terminate(0, "weft-x", libc::SIGTERM, Duration::ZERO, Duration::ZERO).await;
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
