//! Runs the app of the boot arguments and supervises it: reaps every child (as PID 1 that
//! includes orphans), forwards SIGTERM and SIGINT to the app, and returns its exit code.
//!
//! The signals are blocked at startup and taken with `sigwaitinfo`, so none is lost between
//! starting the app and waiting for it, and no handler runs concurrently with the rest.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{anyhow, Context, Result};

/// Where the app's `argv[0]` is looked up, and the `PATH` it gets as PID 1's child.
pub const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit code reported when the app cannot be started, as a shell does.
const NOT_STARTED: i32 = 127;

const SIGNALS: [libc::c_int; 3] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT];

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before sigaddset and any
    // reader use it, and both only write into the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks the signals the supervisor waits for. Call before any thread starts, so every
/// thread inherits the mask.
pub fn block_signals() -> io::Result<()> {
    set_mask(libc::SIG_BLOCK)
}

/// Blocks or unblocks the supervisor's signals in the calling thread. Only calls that are
/// safe between fork and exec.
fn set_mask(how: libc::c_int) -> io::Result<()> {
    let set = signal_set();
    // SAFETY: `set` is an initialised sigset_t; the old mask is not asked for (null).
    let rc = unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Starts the app and waits for it; returns its exit code (128 + signal when killed). With
/// no app it idles, reaping children, until SIGTERM or SIGINT, and returns 0.
pub fn run(args: &[String], env_vars: &[String], clean_env: bool) -> i32 {
    let app = if args.is_empty() {
        say!("app none: idle until SIGTERM");
        None
    } else {
        say!("app start {}", args.join(" "));
        match spawn(args, env_vars, clean_env) {
            Ok(pid) => Some(pid),
            Err(err) => {
                fail!("{err:#}");
                say!("app exit {NOT_STARTED}");
                return NOT_STARTED;
            }
        }
    };

    let code = supervise(app);
    if app.is_some() {
        say!("app exit {code}");
    }
    code
}

fn spawn(args: &[String], env_vars: &[String], clean_env: bool) -> Result<libc::pid_t> {
    let program = find_program(&args[0]).ok_or_else(|| anyhow!("{}: not found", args[0]))?;
    let mut command = Command::new(&program);
    // argv[0] stays as given, so busybox picks the applet from a bare name like `httpd`.
    command.arg0(&args[0]).args(&args[1..]);
    // A spawned process keeps its parent's signal mask: without this the app would start
    // with SIGTERM and SIGINT blocked and could not be stopped.
    // SAFETY: the closure runs between fork and exec and only calls sigemptyset, sigaddset
    // and pthread_sigmask, which are async-signal-safe and allocate nothing.
    unsafe {
        command.pre_exec(|| set_mask(libc::SIG_UNBLOCK));
    }

    if clean_env {
        command
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", "/")
            .env("TERM", "linux");
    } else {
        command.env_remove(crate::CMDLINE_ENV);
    }
    for var in env_vars {
        match var.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                command.env(key, value);
            }
            _ => fail!("ignoring env.vars entry '{var}': not KEY=VALUE"),
        }
    }

    let child = command
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    libc::pid_t::try_from(child.id()).context("process id out of range")
}

/// Resolves a bare program name in [`PATH`]; a name with a slash is taken as it is.
fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    PATH.split(':')
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|path| {
            path.metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

fn supervise(app: Option<libc::pid_t>) -> i32 {
    let set = signal_set();
    loop {
        // SAFETY: `set` is an initialised sigset_t holding signals this thread blocks; the
        // siginfo out-pointer may be null.
        let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        match sig {
            libc::SIGCHLD => {
                if let Some(code) = reap(app) {
                    return code;
                }
            }
            libc::SIGTERM | libc::SIGINT => match app {
                Some(pid) => {
                    // SAFETY: kill has no memory effects; `pid` is our own child, not yet
                    // reaped, so the id cannot have been reused.
                    if unsafe { libc::kill(pid, sig) } != 0 {
                        fail!(
                            "forwarding signal {sig} to the app: {}",
                            io::Error::last_os_error()
                        );
                    }
                }
                None => return 0,
            },
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    fail!("waiting for signals: {err}");
                    // Without signals nothing can be supervised; avoid a busy loop.
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }
    }
}

/// Reaps every child that has exited; returns the app's exit code if the app was one.
fn reap(app: Option<libc::pid_t>) -> Option<i32> {
    let mut app_code = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into the local integer it is given.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return app_code;
        }
        if Some(pid) == app {
            app_code = Some(exit_code(status));
        }
    }
}

fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_in_path_and_keeps_paths() {
        assert_eq!(
            find_program("/no/such/app"),
            Some(PathBuf::from("/no/such/app"))
        );
        assert_eq!(find_program("weft-no-such-program"), None);
        let sh = find_program("sh").expect("sh is in PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"));
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGKILL), 128 + 9);
    }
}
