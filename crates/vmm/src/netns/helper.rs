//! The `weft-netns` process: the "VMM" of the netns driver.
//!
//! In the host's network namespace it attaches to each NIC's host TAP, exactly as QEMU would,
//! and reads the TAP's MTU. Then it moves itself into a new network and PID namespace, creates
//! one TAP per NIC there (`eth0`, `eth1`, ... with the NIC's MAC and that MTU, left down), and
//! starts `weft-guest --cmdline` as PID 1 of the new PID namespace. Until the guest exits, it
//! moves frames between each pair of TAPs, passes SIGTERM and SIGINT on to the guest, and
//! serves the guest's agent channel on `--agent-socket` (see [`super::agent`]).
//!
//! Nothing outlives it. The guest gets SIGKILL when weft-netns dies (`PR_SET_PDEATHSIG`);
//! when PID 1 of a PID namespace dies, the kernel kills everything else in it; the namespace
//! lives as long as a process in it, and the guest's TAPs as long as the namespace; the host
//! TAPs lose their carrier when weft-netns's files of them close.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use super::agent::{self, AgentPipe, AgentRelay};
use super::args::HelperArgs;
use super::forward::{Control, Forwarder, Wire};
use super::tap::{self, TapError};

/// The exit code of a setup failure (the guest never ran).
pub const SETUP_FAILED: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error("{what}: {source}")]
    Setup { what: String, source: io::Error },
}

fn setup(what: impl Into<String>) -> impl FnOnce(io::Error) -> HelperError {
    let what = what.into();
    move |source| HelperError::Setup { what, source }
}

/// Runs the guest of `args` and returns weft-netns's exit code: the guest's, or
/// [`SETUP_FAILED`] after printing why it could not start.
pub fn run(args: &HelperArgs) -> i32 {
    match boot(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("weft-netns: {err}");
            SETUP_FAILED
        }
    }
}

fn boot(args: &HelperArgs) -> Result<i32, HelperError> {
    // Before anything else, so that no signal is lost.
    let signals = Signals::block().map_err(setup("blocking signals"))?;
    // The guest must not hold the readiness pipe: its end tells the driver that we are gone.
    if let Some(fd) = args.ready_fd {
        set_cloexec(fd).map_err(setup(format!("readiness descriptor {fd}")))?;
    }

    // In the host's namespace, where the TAPs are.
    let mut host = Vec::with_capacity(args.nics.len());
    for nic in &args.nics {
        let fd = tap::attach_host(&nic.tap)?;
        let mtu = tap::mtu(&nic.tap)?;
        host.push((fd, mtu));
    }
    let this = pidfd_self().map_err(setup("opening a pidfd of weft-netns"))?;
    // The relay's thread starts before the namespaces change: a process that has unshared
    // its PID namespace can start no more threads. It needs no namespace of the guest's.
    let agent_pipe = match &args.agent_socket {
        Some(path) => {
            let pipe = AgentPipe::new().map_err(setup("creating the agent pipe"))?;
            AgentRelay::bind(path, pipe.read)
                .map_err(setup(format!("listening on {}", path.display())))?
                .spawn()
                .map_err(setup("starting the agent channel"))?;
            Some(pipe.write)
        }
        None => None,
    };

    // SAFETY: unshare only changes the calling thread's namespaces (and those of the
    // children it starts); it touches no memory of ours. The agent relay's thread, if any,
    // stays in the host's namespaces, where nothing it does depends on them.
    if unsafe { libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWPID) } != 0 {
        return Err(setup("creating the guest's namespaces")(
            io::Error::last_os_error(),
        ));
    }

    let mut wires = Vec::with_capacity(args.nics.len());
    for (index, (nic, (host, mtu))) in args.nics.iter().zip(host).enumerate() {
        let ifname = format!("eth{index}");
        let guest = tap::create_guest(&ifname, nic.mac, mtu)?;
        wires.push(Wire {
            tap: nic.tap.clone(),
            ifname,
            host,
            guest,
        });
    }

    let mut forwarder =
        Forwarder::new(wires, signals.fd.as_raw_fd()).map_err(setup("polling the TAP devices"))?;
    let guest_end = agent_pipe.as_ref().map(|write| write.as_raw_fd());
    let mut child = spawn_guest(args, &this, guest_end)
        .map_err(setup(format!("starting {}", args.guest.display())))?;
    drop(this);
    // Only the guest holds the writing end now: when it is gone, the pipe ends.
    drop(agent_pipe);
    // Everything is in place: from here on only the guest can fail, and it reports that
    // through its exit code.
    if let Some(fd) = args.ready_fd {
        signal_ready(fd);
    }

    let code = forwarder
        .run(|| signals.handle(&mut child))
        .map_err(setup("forwarding frames"))?;
    for line in forwarder.drop_report() {
        eprintln!("weft-netns: {line}");
    }
    if let Some(path) = &args.agent_socket {
        let _ = std::fs::remove_file(path);
    }
    Ok(code)
}

/// Starts `weft-guest` as the first process of the new PID namespace: its PID 1. With an
/// agent pipe, the guest inherits its writing end (`--agent-fd`).
fn spawn_guest(args: &HelperArgs, this: &OwnedFd, agent_fd: Option<RawFd>) -> io::Result<Child> {
    let mut command = Command::new(&args.guest);
    command.arg("--cmdline").arg(&args.cmdline);
    if let Some(path) = &args.resolv_conf {
        command.arg("--resolv-conf").arg(path);
    }
    if let Some(fd) = agent_fd {
        command.arg("--agent-fd").arg(fd.to_string());
    }

    // The guest starts with SIGTERM, SIGINT and SIGCHLD still blocked, as weft-netns has
    // them: weft-guest blocks exactly those itself, and a SIGTERM passed on before it did so
    // waits for it instead of being dropped (PID 1 of a namespace ignores signals it has no
    // handler for).
    let this = this.as_raw_fd();
    // SAFETY: the closure runs between fork and exec, and calls only fcntl, prctl and poll,
    // which are async-signal-safe and allocate nothing (another thread may hold a lock).
    unsafe {
        command.pre_exec(move || {
            if let Some(fd) = agent_fd {
                agent::keep_for_guest(fd)?;
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // weft-netns may have died before the line above: then no signal will come.
            let mut parent = libc::pollfd {
                fd: this,
                events: libc::POLLIN,
                revents: 0,
            };
            if libc::poll(&mut parent, 1, 0) != 0 {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    command.spawn()
}

/// A pidfd of this process: it turns readable once the process is gone.
fn pidfd_self() -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD on a descriptor number takes an integer flag; a bad number fails.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes the readiness byte and closes the descriptor. A driver that stopped listening is
/// no reason to stop the guest.
fn signal_ready(fd: RawFd) {
    // SAFETY: the descriptor was handed to us for this one use; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: write reads one byte from a static buffer.
    let rc = unsafe { libc::write(fd.as_raw_fd(), b"R".as_ptr().cast(), 1) };
    if rc != 1 {
        eprintln!(
            "weft-netns: signalling readiness: {}",
            io::Error::last_os_error()
        );
    }
}

/// The signals weft-netns acts on, taken through a signalfd in the forwarding loop.
struct Signals {
    fd: OwnedFd,
}

const HANDLED: [libc::c_int; 3] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT];

impl Signals {
    fn block() -> io::Result<Signals> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before sigaddset,
        // sigprocmask and signalfd read it; all of them only touch the set we own.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in HANDLED {
                libc::sigaddset(&mut set, signal);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Signals {
                fd: OwnedFd::from_raw_fd(fd),
            })
        }
    }

    /// Takes the pending signals: SIGTERM and SIGINT go on to the guest, SIGCHLD may mean
    /// that it exited.
    fn handle(&self, guest: &mut Child) -> io::Result<Control> {
        loop {
            // SAFETY: signalfd_siginfo is plain data, for which all zeroes is a valid value.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: the kernel writes at most `size` bytes into `info`.
            let read = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    size,
                )
            };
            if read < 0 {
                let err = io::Error::last_os_error();
                return match err.kind() {
                    io::ErrorKind::WouldBlock => Ok(Control::Continue),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(err),
                };
            }

            let signal = info.ssi_signo as libc::c_int;
            if signal == libc::SIGCHLD {
                if let Some(status) = guest.try_wait()? {
                    return Ok(Control::Exit(crate::process::exit_code(status)));
                }
            } else if let Ok(pid) = libc::pid_t::try_from(guest.id()) {
                // SAFETY: kill takes two integers; the pid is our own child, not yet reaped,
                // so it cannot belong to another process.
                unsafe { libc::kill(pid, signal) };
            }
        }
    }
}
