//! The command line of `weft-netns`, built by the driver and parsed by the helper, so that
//! both sides agree on it.
//!
//! ```text
//! weft-netns --name weft-<id> --guest PATH [--nic TAP,MAC]... [--ready-fd N]
//!            [--resolv-conf PATH] [--agent-socket PATH] --cmdline STRING
//! ```

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::PathBuf;

use weft_model::MacAddr;

use crate::NicSpec;

/// At most this many NICs per guest, as for QEMU guests.
pub const MAX_NICS: usize = 8;

pub const USAGE: &str = "\
usage: weft-netns --name NAME --guest PATH [--nic TAP,MAC]... [--ready-fd N]
                  [--resolv-conf PATH] [--agent-socket PATH] --cmdline STRING

Runs PATH (weft-guest) as PID 1 of a new PID and network namespace, with one TAP device per
--nic inside (eth0, eth1, ... in order) carrying MAC and the MTU of the host's TAP device,
and moves frames between each host TAP and its namespace's TAP until the guest exits.
NAME only names the process (weft-<instance id>). Once the guest runs, one byte is written
to descriptor N. With --agent-socket, the port announcements weft-guest writes to the pipe
it gets with --agent-fd go to the one client connected to the unix socket PATH. SIGTERM is
passed on to the guest. The exit code is the guest's, or 128 plus the signal that ended
it.";

/// What one `weft-netns` process runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelperArgs {
    /// `weft-<id>`: how [`crate::Driver::stop`] recognizes the process.
    pub name: String,
    /// The `weft-guest` binary.
    pub guest: PathBuf,
    /// Host TAP devices and guest MACs, in device order.
    pub nics: Vec<NicSpec>,
    /// The boot arguments handed to `weft-guest --cmdline`.
    pub cmdline: String,
    /// A descriptor to write one byte to once the guest runs.
    pub ready_fd: Option<RawFd>,
    /// Where `weft-guest` writes the nameservers (`--resolv-conf`); the guest shares the
    /// host's files, so this is never `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// The unix socket where weft-netns serves the guest's agent channel.
    pub agent_socket: Option<PathBuf>,
}

impl HelperArgs {
    /// The arguments after the program name.
    pub fn to_argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![
            "--name".into(),
            self.name.clone().into(),
            "--guest".into(),
            self.guest.clone().into(),
        ];
        for nic in &self.nics {
            argv.push("--nic".into());
            argv.push(format!("{},{}", nic.tap, nic.mac).into());
        }
        if let Some(fd) = self.ready_fd {
            argv.push("--ready-fd".into());
            argv.push(fd.to_string().into());
        }
        if let Some(path) = &self.resolv_conf {
            argv.push("--resolv-conf".into());
            argv.push(path.clone().into());
        }
        if let Some(path) = &self.agent_socket {
            argv.push("--agent-socket".into());
            argv.push(path.clone().into());
        }
        argv.push("--cmdline".into());
        argv.push(self.cmdline.clone().into());
        argv
    }

    /// Parses the arguments after the program name. `Ok(None)` asks for the usage text.
    pub fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Option<HelperArgs>, String> {
        let mut argv = argv.into_iter();
        let mut name = None;
        let mut guest = None;
        let mut nics = Vec::new();
        let mut cmdline = None;
        let mut ready_fd = None;
        let mut resolv_conf = None;
        let mut agent_socket = None;

        while let Some(flag) = argv.next() {
            let flag = flag
                .into_string()
                .map_err(|f| format!("unknown argument {f:?}"))?;
            if flag == "-h" || flag == "--help" {
                return Ok(None);
            }
            let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let text = || {
                value
                    .to_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("the value of {flag} is not UTF-8"))
            };
            match flag.as_str() {
                "--name" => name = Some(text()?),
                "--guest" => guest = Some(PathBuf::from(&value)),
                "--nic" => nics.push(parse_nic(&text()?)?),
                "--cmdline" => cmdline = Some(text()?),
                "--ready-fd" => {
                    let given = text()?;
                    let fd = given.parse::<RawFd>().ok().filter(|fd| *fd > 2);
                    ready_fd = Some(fd.ok_or_else(|| {
                        format!("--ready-fd '{given}' is not a descriptor above 2")
                    })?);
                }
                "--resolv-conf" => resolv_conf = Some(PathBuf::from(&value)),
                "--agent-socket" => agent_socket = Some(PathBuf::from(&value)),
                other => return Err(format!("unknown argument '{other}'")),
            }
        }

        if nics.len() > MAX_NICS {
            return Err(format!(
                "{} NICs given, at most {MAX_NICS} are supported",
                nics.len()
            ));
        }
        Ok(Some(HelperArgs {
            name: name.ok_or("--name is missing")?,
            guest: guest.ok_or("--guest is missing")?,
            nics,
            cmdline: cmdline.ok_or("--cmdline is missing")?,
            ready_fd,
            resolv_conf,
            agent_socket,
        }))
    }
}

/// `TAP,MAC`, for example `weft-tap0,12:b0:0a:64:00:02`.
fn parse_nic(value: &str) -> Result<NicSpec, String> {
    let (tap, mac) = value
        .split_once(',')
        .ok_or_else(|| format!("--nic '{value}' is not TAP,MAC"))?;
    if !valid_ifname(tap) {
        return Err(format!(
            "--nic '{value}': '{tap}' is not a valid interface name"
        ));
    }
    let mac = mac
        .parse::<MacAddr>()
        .map_err(|err| format!("--nic '{value}': {err}"))?;
    Ok(NicSpec {
        tap: tap.to_string(),
        mac,
    })
}

/// Whether the kernel takes `name` as an interface name: 1 to 15 bytes, no slash, colon,
/// white space or NUL, and not `.` or `..`.
pub(crate) fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HelperArgs {
        HelperArgs {
            name: "weft-0b1c".into(),
            guest: "/usr/lib/weft/weft-guest".into(),
            nics: vec![
                NicSpec {
                    tap: "weft-tap0".into(),
                    mac: "12:b0:0a:64:00:02".parse().unwrap(),
                },
                NicSpec {
                    tap: "custtap0".into(),
                    mac: "12:b1:01:02:03:04".parse().unwrap(),
                },
            ],
            cmdline: "netdev.ip=10.100.0.2/16:10.100.255.254: netdev.ip= -- /bin/sh -c 'exit 7'"
                .into(),
            ready_fd: Some(5),
            resolv_conf: Some("/run/weft/i/resolv.conf".into()),
            agent_socket: Some("/run/weft/i/agent.sock".into()),
        }
    }

    #[test]
    fn round_trips() {
        let args = sample();
        let argv = args.to_argv();
        assert_eq!(argv[0], "--name");
        assert_eq!(argv[1], "weft-0b1c");
        assert_eq!(HelperArgs::parse(argv).unwrap(), Some(args));

        let bare = HelperArgs {
            nics: vec![],
            ready_fd: None,
            resolv_conf: None,
            agent_socket: None,
            ..sample()
        };
        assert_eq!(HelperArgs::parse(bare.to_argv()).unwrap(), Some(bare));
    }

    #[test]
    fn refuses_bad_input() {
        let parse = |args: &[&str]| HelperArgs::parse(args.iter().map(OsString::from));
        let base = ["--name", "weft-x", "--guest", "/g", "--cmdline", ""];
        assert!(parse(&base).unwrap().is_some());
        assert_eq!(parse(&["--help"]).unwrap(), None);

        let with = |extra: &[&str]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            parse(&all).unwrap_err()
        };
        assert!(with(&["--nic", "t0"]).contains("not TAP,MAC"));
        assert!(with(&["--nic", "t0,12:b0"]).contains("not a MAC address"));
        assert!(with(&["--nic", "a-name-longer-than-15,12:b0:00:00:00:01"])
            .contains("not a valid interface name"));
        assert!(with(&["--ready-fd", "1"]).contains("above 2"));
        assert!(with(&["--bogus", "x"]).contains("unknown argument"));
        assert!(with(&["--cmdline"]).contains("needs a value"));
        let many: Vec<String> = (0..9)
            .flat_map(|i| ["--nic".to_string(), format!("t{i},12:b0:00:00:00:0{i}")])
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(with(&many).contains("at most 8"));
        assert!(parse(&["--guest", "/g", "--cmdline", ""])
            .unwrap_err()
            .contains("--name is missing"));
    }

    #[test]
    fn interface_names() {
        assert!(valid_ifname("weft-tap0"));
        assert!(valid_ifname("a23456789012345"));
        assert!(!valid_ifname("a234567890123456"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("a b"));
        assert!(!valid_ifname(".."));
    }
}
