//! The agent: announces the guest's listening TCP ports to the controller.
//!
//! A thread of its own scans the listeners every [`POLL`] and writes the whole current set
//! as one line (`weft_model::announce`) whenever it changed, and every [`REPEAT`] anyway, so
//! that a controller that connected late (or restarted) learns the state. The channel does not
//! use the guest's network:
//!
//! - in a VM, the virtio-serial port named `weft.agent`, found by its name in
//!   `/sys/class/virtio-ports`; it is opened for each line and closed after it;
//! - in netns mode, a descriptor `weft-netns` hands over (`--agent-fd`).
//!
//! Writes never wait: a line that cannot go out at once (no controller reading, the port held
//! by another process, no such port) is dropped and sent again at the next scan. The console
//! shows `agent announces on <channel>` when lines go out, and `agent waits: <reason>` once
//! when they stop going out.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use weft_model::announce::{Announcement, Listener};

use crate::listeners;

/// How often the listeners are scanned.
const POLL: Duration = Duration::from_millis(200);
/// How often the set is sent even when it did not change.
const REPEAT: Duration = Duration::from_secs(10);

/// The name of the virtio-serial port (`weft_vmm::qemu::AGENT_PORT`).
const PORT_NAME: &str = "weft.agent";
const VIRTIO_PORTS: &str = "/sys/class/virtio-ports";

/// Where the lines go.
pub enum Channel {
    /// The virtio-serial port of a VM.
    VirtioPort,
    /// A descriptor of the netns driver, already open for writing.
    Fd(File),
}

impl Channel {
    /// A descriptor handed over by number; it is kept from the app (close-on-exec).
    pub fn from_fd(fd: OwnedFd) -> io::Result<Channel> {
        use std::os::fd::AsRawFd;
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own, with integer arguments only.
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
        // SAFETY: as above.
        let set = |cmd: libc::c_int, arg: libc::c_int| unsafe { libc::fcntl(raw, cmd, arg) };
        if flags < 0
            || set(libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
            || set(libc::F_SETFD, libc::FD_CLOEXEC) < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(Channel::Fd(File::from(fd)))
    }

    /// Writes one whole line without waiting; returns where it went.
    fn send(&mut self, line: &[u8]) -> io::Result<String> {
        match self {
            Channel::Fd(file) => {
                write_whole(file, line)?;
                Ok("descriptor".into())
            }
            Channel::VirtioPort => {
                let path = find_port()?;
                let mut port = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(&path)?;
                write_whole(&mut port, line)?;
                Ok(path.display().to_string())
            }
        }
    }
}

/// One write: a line is small enough for the port and for a pipe to take it at once, or not
/// at all; a partial write (which would cut the line) is reported as an error.
fn write_whole(out: &mut impl Write, line: &[u8]) -> io::Result<()> {
    let written = out.write(line)?;
    if written != line.len() {
        return Err(io::Error::other(format!(
            "only {written} of {} bytes written",
            line.len()
        )));
    }
    Ok(())
}

/// `/dev/<vportNpM>` of the port named [`PORT_NAME`].
fn find_port() -> io::Result<PathBuf> {
    for entry in std::fs::read_dir(VIRTIO_PORTS)? {
        let entry = entry?;
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim_end() == PORT_NAME {
            return Ok(PathBuf::from("/dev").join(entry.file_name()));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no virtio-serial port named {PORT_NAME}"),
    ))
}

/// Starts the agent: the first announcement goes out (or fails) before this returns, so its
/// console line comes before the app's; a thread of its own does the rest until the process
/// ends.
pub fn start(channel: Channel) {
    let mut agent = Agent::new(channel);
    agent.round(listeners::scan());
    let spawned = std::thread::Builder::new()
        .name("agent".into())
        .spawn(move || loop {
            std::thread::sleep(POLL);
            agent.round(listeners::scan());
        });
    if let Err(err) = spawned {
        fail!("starting the agent: {err}");
    }
}

struct Agent {
    channel: Channel,
    /// The set last sent, and when.
    sent: Option<(Announcement, Instant)>,
    /// Whether the last send failed: only the first failure of a run of them is printed.
    failing: bool,
}

impl Agent {
    fn new(channel: Channel) -> Agent {
        Agent {
            channel,
            sent: None,
            failing: false,
        }
    }

    /// Sends the current set of listeners if it changed or is due again.
    fn round(&mut self, listeners: Vec<Listener>) {
        let current = Announcement::new(listeners);
        let due = match &self.sent {
            None => true,
            Some((last, at)) => *last != current || at.elapsed() >= REPEAT,
        };
        if !due {
            return;
        }
        match self.channel.send(current.encode().as_bytes()) {
            Ok(target) => {
                if self.sent.is_none() || self.failing {
                    say!("agent announces on {target}");
                }
                self.failing = false;
                self.sent = Some((current, Instant::now()));
            }
            Err(err) => {
                // Not an error line: a VMM without the channel, or a controller that is not
                // reading, is a state the guest cannot change.
                if !self.failing {
                    say!("agent waits: {err}");
                }
                self.failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::Ipv4Addr;
    use std::os::fd::FromRawFd;

    fn pipe() -> (File, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two new descriptors into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just created and are owned here only.
        unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn announces_changes_once_each() {
        let (mut reader, writer) = pipe();
        let channel = Channel::from_fd(writer).unwrap();
        let sets = [
            vec![],
            vec![Listener::tcp(Ipv4Addr::UNSPECIFIED, 8080)],
            vec![Listener::tcp(Ipv4Addr::UNSPECIFIED, 8080)],
            vec![
                Listener::tcp(Ipv4Addr::new(10, 0, 0, 2), 22),
                Listener::tcp(Ipv4Addr::UNSPECIFIED, 8080),
            ],
            vec![],
        ];
        let mut agent = Agent::new(channel);
        for set in sets {
            agent.round(set);
        }
        drop(agent);

        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"v":1,"listeners":[]}"#,
                r#"{"v":1,"listeners":[{"addr":"0.0.0.0","port":8080,"proto":"tcp"}]}"#,
                r#"{"v":1,"listeners":[{"addr":"0.0.0.0","port":8080,"proto":"tcp"},{"addr":"10.0.0.2","port":22,"proto":"tcp"}]}"#,
                r#"{"v":1,"listeners":[]}"#,
            ]
        );
    }

    #[test]
    fn a_full_channel_drops_the_line_and_sends_it_later() {
        let (mut reader, writer) = pipe();
        let mut channel = Channel::from_fd(writer).unwrap();
        // Fill the pipe: a write that would wait fails instead.
        let filler = vec![b'x'; 4096];
        while channel.send(&filler).is_ok() {}
        let err = channel.send(b"{}\n").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

        // A round now fails and sends nothing...
        let mut agent = Agent::new(channel);
        let set = vec![Listener::tcp(Ipv4Addr::UNSPECIFIED, 80)];
        agent.round(set.clone());
        assert!(agent.failing && agent.sent.is_none());

        // ...and once the reader drained the pipe, the next round sends the same set.
        let mut buf = vec![0; 1 << 20];
        let _ = reader.read(&mut buf).unwrap();
        agent.round(set);
        assert!(!agent.failing && agent.sent.is_some());
        drop(agent);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(String::from_utf8_lossy(&rest).contains(r#""port":80"#));
    }
}
