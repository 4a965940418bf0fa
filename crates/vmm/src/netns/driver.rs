//! The netns driver: one `weft-netns` process per guest (see [`super::helper`]).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::args::{self, HelperArgs, MAX_NICS};
use super::config::{self, NetnsConfig, GUEST_PROGRAM, HELPER_PROGRAM};
use crate::process::{self, Ended};
use crate::{Driver, DriverError, GuestSpec, RunningGuest};

/// How long weft-netns gets to attach the TAPs and start the guest. It takes milliseconds;
/// one that has not done it by then is killed.
const START_BOUND: Duration = Duration::from_secs(5);
/// How long a weft-netns that closed its readiness pipe without a byte gets to exit.
const EXIT_REPORT_BOUND: Duration = Duration::from_secs(2);
/// How long killed processes get to disappear.
const KILL_BOUND: Duration = Duration::from_secs(5);
/// How much of the end of the console an early exit reports.
const LOG_TAIL_BYTES: u64 = 2048;
/// The environment of weft-netns, and so of the guest and its app: the same as a VM's init
/// gives its app, and nothing of weftd's own.
const GUEST_ENV: [(&str, &str); 3] = [
    ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    ("HOME", "/"),
    ("TERM", "linux"),
];

pub struct NetnsDriver {
    config: NetnsConfig,
    helper: Option<PathBuf>,
    guest: Option<PathBuf>,
}

impl NetnsDriver {
    /// Finds the two programs once, here; a missing one fails each `start` with a message
    /// that says where it was looked for.
    pub fn new(config: NetnsConfig) -> Self {
        let helper = config::locate(config.helper.as_deref(), HELPER_PROGRAM);
        let guest = config::locate(config.guest.as_deref(), GUEST_PROGRAM);
        match (&helper, &guest) {
            (Some(helper), Some(guest)) => info!(
                helper = %helper.display(),
                guest = %guest.display(),
                "netns guests will run weft-guest in network namespaces"
            ),
            _ => warn!(
                helper = ?helper,
                guest = ?guest,
                "the netns driver is missing a program: guests will not start"
            ),
        }
        NetnsDriver {
            config,
            helper,
            guest,
        }
    }

    pub fn config(&self) -> &NetnsConfig {
        &self.config
    }

    fn program(&self, found: &Option<PathBuf>, name: &str) -> Result<PathBuf, DriverError> {
        found.clone().ok_or_else(|| {
            DriverError::Spawn(format!(
                "cannot find {name}: not configured, not next to this program, not in PATH"
            ))
        })
    }
}

/// The name weft-netns is started with (`--name`); `stop` recognizes the process by it.
fn process_name(id: &str) -> String {
    format!("weft-{id}")
}

/// Longest path a unix socket address holds (`sun_path` less the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Checks what weft-netns would otherwise report only after it was spawned.
fn validate(spec: &GuestSpec, guest: &Path, agent_socket: &Path) -> Result<(), DriverError> {
    if spec.nics.len() > MAX_NICS {
        return Err(DriverError::Spawn(format!(
            "{} NICs requested, the netns driver supports at most {MAX_NICS}",
            spec.nics.len()
        )));
    }
    if let Some(nic) = spec.nics.iter().find(|nic| !args::valid_ifname(&nic.tap)) {
        return Err(DriverError::Spawn(format!(
            "'{}' is not a valid TAP device name",
            nic.tap
        )));
    }
    let socket_len = agent_socket.as_os_str().len();
    if socket_len > MAX_SOCKET_PATH {
        return Err(DriverError::Spawn(format!(
            "the socket path {} is longer than the {MAX_SOCKET_PATH} bytes a unix socket \
             takes: use a shorter run directory",
            agent_socket.display()
        )));
    }
    if !guest.is_file() {
        return Err(DriverError::Spawn(format!(
            "the guest program {} does not exist",
            guest.display()
        )));
    }
    Ok(())
}

/// A pipe whose ends are both closed on exec; the child's end is made inheritable between
/// fork and exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned these descriptors and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[async_trait::async_trait]
impl Driver for NetnsDriver {
    fn name(&self) -> &'static str {
        "netns"
    }

    fn boots_kernel(&self) -> bool {
        false
    }

    async fn start(&self, spec: &GuestSpec) -> Result<RunningGuest, DriverError> {
        let helper = self.program(&self.helper, HELPER_PROGRAM)?;
        let guest = self.program(&self.guest, GUEST_PROGRAM)?;
        let agent_socket = self.agent_socket(spec);
        validate(spec, &guest, &agent_socket)?;

        let console_path = self.console_path(spec);
        // A new boot starts an empty log, written in append mode so that weftd can copy and
        // truncate it to keep it bounded while the guest writes on.
        File::create(&console_path)?;
        let console = File::options().append(true).open(&console_path)?;
        let console_err = console.try_clone()?;
        let (ready_rx, ready_tx) = pipe()?;
        let ready_fd = ready_tx.as_raw_fd();

        let argv = HelperArgs {
            name: process_name(&spec.id),
            guest,
            nics: spec.nics.clone(),
            cmdline: spec.cmdline.clone(),
            ready_fd: Some(ready_fd),
            resolv_conf: Some(spec.run_dir.join("resolv.conf")),
            agent_socket: Some(agent_socket),
        }
        .to_argv();
        debug!(instance = %spec.id, args = ?argv, "starting weft-netns");

        let mut command = tokio::process::Command::new(&helper);
        command
            .args(&argv)
            .env_clear()
            .envs(GUEST_ENV)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err)
            .process_group(0)
            .kill_on_drop(false);
        // SAFETY: the closure runs between fork and exec and calls only fcntl, which is
        // async-signal-safe; the descriptor stays open in the parent until after spawn.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(ready_fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|err| DriverError::Spawn(format!("cannot run {}: {err}", helper.display())))?;
        // Only weft-netns may hold the writing end now: its closing is the end of the wait.
        drop(ready_tx);
        let pid = child.id().ok_or_else(|| {
            DriverError::Spawn("weft-netns exited before its pid was read".into())
        })?;

        // The waiter owns the child. Until `start` sends `keep`, weft-netns is on probation:
        // if `start` fails or is abandoned half-way (its future dropped), the waiter kills it,
        // so that no guest runs that nobody knows the pid of.
        let (keep_tx, keep_rx) = oneshot::channel::<()>();
        let (exit_tx, mut exit_rx) = oneshot::channel();
        let instance = spec.id.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                kept = keep_rx => {
                    if kept.is_err() {
                        warn!(instance, pid, "start failed or was abandoned: killing weft-netns");
                        let _ = child.start_kill();
                    }
                    child.wait().await
                }
            };
            let code = match status {
                Ok(status) => process::exit_code(status),
                Err(err) => {
                    warn!(instance, pid, error = %err, "cannot wait for weft-netns");
                    -1
                }
            };
            debug!(instance, pid, code, "weft-netns exited");
            let _ = exit_tx.send(code);
        });

        let mut ready = tokio::net::unix::pipe::Receiver::from_owned_fd(ready_rx)?;
        let mut byte = [0u8; 1];
        match tokio::time::timeout(START_BOUND, ready.read(&mut byte)).await {
            Ok(Ok(1)) => {}
            Ok(Ok(_)) | Ok(Err(_)) => {
                let code = tokio::time::timeout(EXIT_REPORT_BOUND, &mut exit_rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(-1);
                return Err(early_exit(code, &console_path));
            }
            Err(_) => {
                return Err(DriverError::Spawn(format!(
                    "weft-netns did not start the guest within {} s",
                    START_BOUND.as_secs()
                )));
            }
        }

        let _ = keep_tx.send(());
        info!(instance = %spec.id, pid, "guest started");
        Ok(RunningGuest {
            pid,
            exited: exit_rx,
        })
    }

    async fn stop(&self, spec: &GuestSpec, pid: u32, grace: Duration) -> Result<(), DriverError> {
        // SIGTERM reaches weft-guest through weft-netns, and weft-guest passes it to the app.
        // Should the app ignore it, the guest (PID 1 of its namespace) is killed along with
        // weft-netns, which ends every process of the namespace before stop returns.
        let name = process_name(&spec.id);
        let ended = process::terminate_with(
            pid,
            &name,
            libc::SIGTERM,
            grace,
            KILL_BOUND,
            process::children,
        )
        .await
        .map_err(|err| DriverError::Stop(format!("process {pid}: {err}")))?;
        match ended {
            Ended::AlreadyGone => debug!(instance = %spec.id, pid, "guest was already gone"),
            Ended::Politely => debug!(instance = %spec.id, pid, "guest stopped"),
            Ended::Killed => warn!(
                instance = %spec.id,
                pid,
                grace_ms = grace.as_millis() as u64,
                "the guest ignored SIGTERM and was killed"
            ),
        }
        Ok(())
    }
}

fn early_exit(code: i32, console: &Path) -> DriverError {
    let detail = crate::logtail::last_lines(console, LOG_TAIL_BYTES).unwrap_or_default();
    let detail = if detail.is_empty() {
        "weft-netns wrote no message".to_string()
    } else {
        detail
    };
    DriverError::EarlyExit { code, detail }
}
