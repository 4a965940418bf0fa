//! The QEMU driver: one `qemu-system-x86_64` process per guest, booting the image's kernel
//! directly, with KVM where the host can use it and TCG emulation elsewhere.
//!
//! Each guest keeps its files in its run directory: `console.log` (the serial console,
//! emptied at each boot and appended to by QEMU), `qemu.log` (QEMU's own messages),
//! `qmp.sock`, `agent.sock` (the virtio-serial port [`AGENT_PORT`] for the guest agent) and
//! `qemu.pid`.
//!
//! A guest's exit code is its app's: weft-guest hands it to QEMU's `isa-debug-exit` device,
//! and [`exit`] reads it back from QEMU's exit status.
//!
//! QEMU runs in a process group of its own: a Ctrl-C on weftd's terminal signals the
//! terminal's foreground group, and that must not take the guests down with weftd. Guests
//! outlive weftd on purpose; a restarted weftd finds them again by pid, and [`Driver::stop`]
//! works from the pid alone.

mod args;
mod config;
mod exit;
mod qmp;

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{debug, info, warn};

pub use args::AGENT_PORT;
pub use config::{Accel, QemuConfig};

use crate::process::{self, Ended};
use crate::{Driver, DriverError, GuestSpec, RunningGuest};
use args::RunFiles;
use config::HostVirt;

/// How long QEMU gets to come up (answer QMP) or fail. It normally takes a fraction of a
/// second; past this bound a QEMU that still runs is taken as started.
const START_BOUND: Duration = Duration::from_secs(3);
/// How long a QEMU that died while its QMP socket failed gets to report its exit.
const EXIT_REPORT_BOUND: Duration = Duration::from_millis(500);
/// How long a killed QEMU gets to disappear.
const KILL_BOUND: Duration = Duration::from_secs(5);
/// How much of the end of `qemu.log` an early exit reports.
const LOG_TAIL_BYTES: u64 = 2048;

pub struct QemuDriver {
    config: QemuConfig,
    /// `Kvm` or `Tcg`, never `Auto`.
    accel: Accel,
}

impl QemuDriver {
    /// Resolves `Accel::Auto` against this host once, here.
    pub fn new(config: QemuConfig) -> Self {
        let host = HostVirt::probe();
        let accel = config::resolve_accel(config.accel, host);
        info!(
            accel = accel.qemu_name(),
            requested = ?config.accel,
            kvm_device = host.kvm_device,
            cpu_extensions = host.cpu_extensions,
            "QEMU guests will run with {}",
            accel.qemu_name()
        );
        if accel == Accel::Kvm && !host.kvm_usable() {
            warn!(
                kvm_device = host.kvm_device,
                cpu_extensions = host.cpu_extensions,
                "KVM is configured but this host does not look able to run KVM guests"
            );
        }
        QemuDriver { config, accel }
    }

    /// The accelerator guests run with: `Kvm` or `Tcg`.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    pub fn config(&self) -> &QemuConfig {
        &self.config
    }
}

#[async_trait::async_trait]
impl Driver for QemuDriver {
    fn name(&self) -> &'static str {
        "qemu"
    }

    async fn start(&self, spec: &GuestSpec) -> Result<RunningGuest, DriverError> {
        args::validate(spec)?;
        let files = RunFiles::new(&spec.run_dir);

        // Leftovers of an earlier boot would be mistaken for this one's.
        for stale in [&files.qmp_socket, &files.agent_socket, &files.pidfile] {
            remove_if_present(stale)?;
        }
        let log = File::create(&files.qemu_log)?;
        let log_err = log.try_clone()?;
        // QEMU appends to the console log: empty it, so that it holds this boot only.
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&files.console)?;

        let argv = args::build(&self.config.machine, self.accel, spec);
        debug!(instance = %spec.id, args = ?argv, "starting QEMU");
        let mut child = tokio::process::Command::new(&self.config.binary)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|err| {
                DriverError::Spawn(format!(
                    "cannot run {}: {err}",
                    self.config.binary.display()
                ))
            })?;
        let pid = child
            .id()
            .ok_or_else(|| DriverError::Spawn("QEMU exited before its pid was read".into()))?;

        // The waiter owns the child. Until `start` sends `keep`, QEMU is on probation: if
        // `start` is abandoned half-way (its future dropped), the waiter kills it, so that no
        // guest runs that nobody knows the pid of.
        let (keep_tx, keep_rx) = oneshot::channel::<()>();
        let (exit_tx, mut exit_rx) = oneshot::channel::<Option<ExitStatus>>();
        let instance = spec.id.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                kept = keep_rx => {
                    if kept.is_err() {
                        warn!(instance, pid, "start was abandoned: killing QEMU");
                        let _ = child.start_kill();
                    }
                    child.wait().await
                }
            };
            let status = match status {
                Ok(status) => {
                    debug!(instance, pid, ?status, "QEMU exited");
                    Some(status)
                }
                Err(err) => {
                    warn!(instance, pid, error = %err, "cannot wait for QEMU");
                    None
                }
            };
            let _ = exit_tx.send(status);
        });

        let ready = tokio::select! {
            status = &mut exit_rx => Err(status),
            ready = qmp::wait_ready(&files.qmp_socket, START_BOUND) => Ok(ready),
        };
        let exited = match ready {
            Ok(Ok(())) => None,
            Err(status) => Some(status),
            Ok(Err(err)) => {
                // A QEMU that is going down closes its socket first: tell that from a slow one.
                let status = tokio::time::timeout(EXIT_REPORT_BOUND, &mut exit_rx)
                    .await
                    .ok();
                if status.is_none() {
                    warn!(instance = %spec.id, pid, error = %err, "QEMU runs but did not answer QMP");
                }
                status
            }
        };
        if let Some(status) = exited {
            // QEMU's own status: it failed before the guest ran.
            let code = status.ok().flatten().map_or(-1, process::exit_code);
            return Err(early_exit(code, &files.qemu_log));
        }

        let _ = keep_tx.send(());
        info!(instance = %spec.id, pid, accel = self.accel.qemu_name(), "guest started");

        // From now on QEMU's status is the guest's: decode the app's exit code from it.
        let (code_tx, code_rx) = oneshot::channel();
        let instance = spec.id.clone();
        tokio::spawn(async move {
            if let Ok(status) = exit_rx.await {
                let code = status.map_or(-1, exit::guest_exit_code);
                debug!(instance, pid, code, "guest exited");
                let _ = code_tx.send(code);
            }
        });
        Ok(RunningGuest {
            pid,
            exited: code_rx,
        })
    }

    async fn stop(&self, spec: &GuestSpec, pid: u32, grace: Duration) -> Result<(), DriverError> {
        // QEMU ends cleanly on SIGTERM: it stops the guest and releases TAP devices and
        // sockets. QMP `quit` would do the same, but needs a socket that may be gone.
        let name = args::process_name(&spec.id);
        let ended = process::terminate(pid, &name, libc::SIGTERM, grace, KILL_BOUND)
            .await
            .map_err(|err| DriverError::Stop(format!("process {pid}: {err}")))?;
        match ended {
            Ended::AlreadyGone => debug!(instance = %spec.id, pid, "guest was already gone"),
            Ended::Politely => debug!(instance = %spec.id, pid, "guest stopped"),
            Ended::Killed => warn!(
                instance = %spec.id,
                pid,
                grace_ms = grace.as_millis() as u64,
                "QEMU ignored SIGTERM and was killed"
            ),
        }
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

fn early_exit(code: i32, qemu_log: &Path) -> DriverError {
    let detail = log_tail(qemu_log).unwrap_or_default();
    let detail = if detail.is_empty() {
        "QEMU wrote no message".to_string()
    } else {
        detail
    };
    DriverError::EarlyExit { code, detail }
}

/// The last lines of `qemu.log`, joined into one line.
fn log_tail(path: &Path) -> std::io::Result<String> {
    crate::logtail::last_lines(path, LOG_TAIL_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_exit_reports_the_log_tail() {
        let path = std::env::temp_dir().join(format!("weft-qemu-log-{}", std::process::id()));
        std::fs::write(
            &path,
            "qemu-system-x86_64: -netdev tap,id=nic0: could not configure /dev/net/tun \
             (t0): Device or resource busy\n\n",
        )
        .unwrap();
        let err = early_exit(1, &path);
        assert_eq!(
            err.to_string(),
            "the guest exited during boot with code 1: qemu-system-x86_64: -netdev \
             tap,id=nic0: could not configure /dev/net/tun (t0): Device or resource busy"
        );

        let long: String = (0..500).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, long).unwrap();
        let tail = log_tail(&path).unwrap();
        assert!(tail.ends_with("line 499"));
        assert!(tail.len() <= 2 * LOG_TAIL_BYTES as usize);
        assert!(tail.starts_with("line "), "{tail}");

        std::fs::write(&path, "").unwrap();
        assert!(early_exit(1, &path)
            .to_string()
            .ends_with("QEMU wrote no message"));
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn missing_binary_is_a_spawn_error() {
        let dir = std::env::temp_dir().join(format!("weft-qemu-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kernel"), b"k").unwrap();
        let driver = QemuDriver::new(QemuConfig {
            binary: "weft-no-such-qemu".into(),
            accel: Accel::Tcg,
            machine: "pc".into(),
        });
        let spec = GuestSpec {
            id: "i1".into(),
            kernel: dir.join("kernel"),
            initrd: None,
            cmdline: String::new(),
            memory_mb: 64,
            vcpus: 1,
            nics: vec![],
            run_dir: dir.clone(),
        };
        let err = driver.start(&spec).await.err().expect("no such binary");
        assert!(
            err.to_string().contains("cannot run weft-no-such-qemu"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
