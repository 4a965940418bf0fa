//! weft-guest: the init and agent of weft's guest images.
//!
//! As PID 1 of a VM it mounts the kernel filesystems, loads the image's modules and reads the
//! boot arguments from /proc/cmdline. Given `--cmdline` or `WEFT_CMDLINE` (by the netns
//! driver, inside a network namespace) it leaves mounts, modules and power alone. In both
//! cases it then configures the network with netlink, prints what the kernel holds, starts
//! the agent that announces listening ports (see [`agent`]), runs the app and reports its
//! exit code.
//!
//! Every line it prints starts with `weft-guest: `; tests rely on their exact format.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use weft_model::BootArgs;

/// Prints one `weft-guest: ` line on stdout (the console). A console that fails is ignored:
/// PID 1 must not die over a log line.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = std::io::Write::write_fmt(
            &mut std::io::stdout().lock(),
            format_args!("weft-guest: {}\n", format_args!($($arg)*)),
        );
    }};
}

/// Prints one `weft-guest: error: ` line on stdout, in order with the others.
macro_rules! fail {
    ($($arg:tt)*) => { say!("error: {}", format_args!($($arg)*)) };
}

mod agent;
mod app;
mod init;
mod listeners;
mod net;
mod netlink;
mod plan;
mod policy;

/// Environment variable holding the command line outside a VM.
pub const CMDLINE_ENV: &str = "WEFT_CMDLINE";

const USAGE: &str = "\
usage: weft-guest --cmdline STRING [--resolv-conf PATH] [--agent-fd N]
       WEFT_CMDLINE=STRING weft-guest [--resolv-conf PATH] [--agent-fd N]

As the init of a VM (PID 1, neither --cmdline nor WEFT_CMDLINE) it reads /proc/cmdline
and announces listening ports on the virtio-serial port weft.agent.
Otherwise it configures the network namespace it runs in from STRING, writes the
nameservers to PATH only when --resolv-conf is given, announces listening ports on the
open descriptor N when --agent-fd is given, runs the app after `--` and exits with its
exit code.";

/// Where the boot arguments come from, where the resolver file goes, and where port
/// announcements go.
struct Options {
    cmdline: String,
    resolv_conf: Option<PathBuf>,
    agent_fd: Option<RawFd>,
}

fn main() {
    // Before any thread exists, so that every thread inherits the mask.
    if let Err(err) = app::block_signals() {
        fail!("blocking signals: {err}");
    }

    // A command line given explicitly means the netns driver runs us, even as PID 1 of a
    // PID namespace. As a VM's init, the kernel passes the app's args as our argv: ignore them.
    let explicit = std::env::args().nth(1).is_some_and(|a| a.starts_with("--"))
        || std::env::var_os(CMDLINE_ENV).is_some();
    let vm = std::process::id() == 1 && !explicit;

    let options = if vm {
        init::early();
        vm_options()
    } else {
        match cli_options(std::env::args().skip(1)) {
            Ok(options) => options,
            Err(message) => {
                eprintln!("weft-guest: {message}\n\n{USAGE}");
                std::process::exit(2);
            }
        }
    };

    let args = BootArgs::parse(&options.cmdline).unwrap_or_else(|err| {
        fail!("boot arguments: {err}");
        BootArgs::default()
    });

    net::configure(&args, options.resolv_conf.as_deref());
    if let Some(channel) = agent_channel(vm, options.agent_fd) {
        agent::start(channel);
    }

    let code = app::run(&args.app_args, &args.env, vm);
    if vm {
        init::power_off(code);
    }
    std::process::exit(code);
}

/// A VM announces on its virtio-serial port; netns mode only on a descriptor it was given.
fn agent_channel(vm: bool, fd: Option<RawFd>) -> Option<agent::Channel> {
    if vm {
        return Some(agent::Channel::VirtioPort);
    }
    let fd = fd?;
    // SAFETY: the descriptor was handed to us for this one use (--agent-fd); checking it with
    // F_GETFD first keeps a wrong number from being adopted.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        fail!("--agent-fd {fd}: {}", std::io::Error::last_os_error());
        return None;
    }
    // SAFETY: the descriptor is open (checked above) and nothing else in this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    agent::Channel::from_fd(fd)
        .inspect_err(|err| fail!("--agent-fd: {err}"))
        .ok()
}

fn vm_options() -> Options {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_else(|err| {
        fail!("reading /proc/cmdline: {err}");
        String::new()
    });
    Options {
        cmdline,
        resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
        agent_fd: None,
    }
}

fn cli_options(mut argv: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut cmdline = None;
    let mut resolv_conf = None;
    let mut agent_fd = None;
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--cmdline" => cmdline = Some(argv.next().ok_or("--cmdline needs a value")?),
            "--resolv-conf" => {
                resolv_conf = Some(PathBuf::from(
                    argv.next().ok_or("--resolv-conf needs a value")?,
                ))
            }
            "--agent-fd" => {
                let value = argv.next().ok_or("--agent-fd needs a value")?;
                let fd = value.parse::<RawFd>().ok().filter(|fd| *fd > 2);
                agent_fd =
                    Some(fd.ok_or(format!("--agent-fd '{value}' is not a descriptor above 2"))?);
            }
            "-h" | "--help" => {
                let _ = std::io::Write::write_all(
                    &mut std::io::stdout(),
                    format!("{USAGE}\n").as_bytes(),
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let cmdline = match cmdline {
        Some(cmdline) => cmdline,
        None => std::env::var(CMDLINE_ENV)
            .map_err(|_| format!("no boot arguments: pass --cmdline or set {CMDLINE_ENV}"))?,
    };
    Ok(Options {
        cmdline,
        resolv_conf,
        agent_fd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> impl Iterator<Item = String> {
        args.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn takes_the_command_line_and_resolver_path_from_options() {
        let options = cli_options(argv(&[
            "--cmdline",
            "netdev.ip= -- /bin/true",
            "--resolv-conf",
            "/r",
        ]))
        .unwrap();
        assert_eq!(options.cmdline, "netdev.ip= -- /bin/true");
        assert_eq!(options.resolv_conf, Some(PathBuf::from("/r")));
        assert_eq!(options.agent_fd, None);

        let options = cli_options(argv(&["--cmdline", "", "--agent-fd", "3"])).unwrap();
        assert_eq!(options.agent_fd, Some(3));
    }

    #[test]
    fn rejects_unknown_and_incomplete_options() {
        assert!(cli_options(argv(&["--bogus"])).is_err());
        assert!(cli_options(argv(&["--cmdline"])).is_err());
        assert!(cli_options(argv(&["--cmdline", "", "--agent-fd", "1"])).is_err());
        assert!(cli_options(argv(&["--cmdline", "", "--agent-fd", "x"])).is_err());
    }
}
