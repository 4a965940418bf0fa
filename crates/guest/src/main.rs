//! weft-guest: the init and agent of weft's guest images.
//!
//! As PID 1 of a VM it mounts the kernel filesystems, loads the image's modules and reads the
//! boot arguments from /proc/cmdline. Given `--cmdline` or `WEFT_CMDLINE` (by the netns
//! driver, inside a network namespace) it leaves mounts, modules and power alone. In both
//! cases it then configures the network with netlink, prints what the kernel holds, runs the
//! app and reports its exit code.
//!
//! Every line it prints starts with `weft-guest: `; tests rely on their exact format.

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

mod app;
mod init;
mod net;
mod netlink;
mod plan;
mod policy;

/// Environment variable holding the command line outside a VM.
pub const CMDLINE_ENV: &str = "WEFT_CMDLINE";

const USAGE: &str = "\
usage: weft-guest --cmdline STRING [--resolv-conf PATH]
       WEFT_CMDLINE=STRING weft-guest [--resolv-conf PATH]

As the init of a VM (PID 1, neither --cmdline nor WEFT_CMDLINE) it reads /proc/cmdline.
Otherwise it configures the network namespace it runs in from STRING, writes the
nameservers to PATH only when --resolv-conf is given, runs the app after `--` and exits
with its exit code.";

/// Where the boot arguments come from and where the resolver file goes.
struct Options {
    cmdline: String,
    resolv_conf: Option<PathBuf>,
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

    let code = app::run(&args.app_args, &args.env, vm);
    if vm {
        init::power_off(code);
    }
    std::process::exit(code);
}

fn vm_options() -> Options {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_else(|err| {
        fail!("reading /proc/cmdline: {err}");
        String::new()
    });
    Options {
        cmdline,
        resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
    }
}

fn cli_options(mut argv: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut cmdline = None;
    let mut resolv_conf = None;
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--cmdline" => cmdline = Some(argv.next().ok_or("--cmdline needs a value")?),
            "--resolv-conf" => {
                resolv_conf = Some(PathBuf::from(
                    argv.next().ok_or("--resolv-conf needs a value")?,
                ))
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
    }

    #[test]
    fn rejects_unknown_and_incomplete_options() {
        assert!(cli_options(argv(&["--bogus"])).is_err());
        assert!(cli_options(argv(&["--cmdline"])).is_err());
    }
}
