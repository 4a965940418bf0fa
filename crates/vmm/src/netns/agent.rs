//! The agent channel of a netns guest: what QEMU's virtio-serial port `weft.agent` with its
//! socket chardev is for a VM.
//!
//! weft-guest writes its port announcements into a pipe; weft-netns listens on a unix socket
//! (`agent.sock` in the run directory) and passes the bytes from the pipe, unchanged, to the
//! one client connected there (weftd). As with QEMU's chardev server:
//!
//! - one client at a time; when it goes, the next connection is accepted, so a restarted
//!   weftd simply connects again;
//! - with no client, the bytes are read and dropped;
//! - a client that does not read slows the guest down, not weft-netns: at most one read's
//!   worth of bytes waits here, and meanwhile the pipe is not read, so it fills and the
//!   guest's writes fail (weft-guest's) or wait (anyone else's).
//!
//! It runs on a thread of its own, apart from the frame forwarding.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// How much is read from the pipe at once; also the most that waits for a slow client.
const CHUNK: usize = 16 * 1024;

pub struct AgentRelay {
    listener: UnixListener,
    /// The reading end; `None` once every writer is gone.
    pipe: Option<std::fs::File>,
    client: Option<UnixStream>,
    /// Bytes read from the pipe that the client has not taken yet, from `sent` on.
    pending: Vec<u8>,
    sent: usize,
    buffer: Vec<u8>,
}

/// The pipe's ends: the relay reads one, the guest writes the other.
pub struct AgentPipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
}

impl AgentPipe {
    /// Both ends close on exec; the guest's end is opened across exec between fork and exec
    /// ([`keep_for_guest`]), at the same number.
    pub fn new() -> io::Result<AgentPipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two new descriptors into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned these descriptors and nothing else owns them.
        let (read, write) = unsafe {
            use std::os::fd::FromRawFd;
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        };
        Ok(AgentPipe { read, write })
    }
}

/// Keeps `fd` open across exec. It runs between fork and exec, so it only calls fcntl, which
/// is async-signal-safe.
pub fn keep_for_guest(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number with an integer flag.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl AgentRelay {
    /// Listens on `path`, replacing a socket file an earlier run left there.
    pub fn bind(path: &Path, pipe: OwnedFd) -> io::Result<AgentRelay> {
        match std::fs::remove_file(path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        set_nonblocking(pipe.as_raw_fd())?;
        Ok(AgentRelay {
            listener,
            pipe: Some(std::fs::File::from(pipe)),
            client: None,
            pending: Vec::with_capacity(CHUNK),
            sent: 0,
            buffer: vec![0; CHUNK],
        })
    }

    /// Runs the relay on a thread of its own, for as long as the process lives.
    pub fn spawn(mut self) -> io::Result<()> {
        std::thread::Builder::new()
            .name("agent".into())
            .spawn(move || {
                if let Err(err) = self.run() {
                    eprintln!("weft-netns: the agent channel stopped: {err}");
                }
            })?;
        Ok(())
    }

    fn run(&mut self) -> io::Result<()> {
        loop {
            self.step(-1)?;
        }
    }

    /// Waits up to `timeout_ms` (-1: no limit) for something to do, and does it.
    fn step(&mut self, timeout_ms: libc::c_int) -> io::Result<()> {
        const LISTENER: usize = 0;
        const CLIENT: usize = 1;
        const PIPE: usize = 2;
        let waiting = self.sent < self.pending.len();
        let mut fds = [
            poll_fd(
                self.listener.as_raw_fd(),
                self.client.is_none(),
                libc::POLLIN,
            ),
            match &self.client {
                Some(c) => {
                    let out = if waiting { libc::POLLOUT } else { 0 };
                    poll_fd(c.as_raw_fd(), true, libc::POLLIN | out)
                }
                None => poll_fd(-1, false, 0),
            },
            match &self.pipe {
                Some(p) => poll_fd(p.as_raw_fd(), !waiting, libc::POLLIN),
                None => poll_fd(-1, false, 0),
            },
        ];
        // SAFETY: poll reads and writes the three pollfd entries of the array, which lives
        // across the call; entries with a negative fd are ignored.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::Interrupted => Ok(()),
                _ => Err(err),
            };
        }

        if fds[CLIENT].revents != 0 {
            self.serve_client(fds[CLIENT].revents);
        }
        if fds[PIPE].revents != 0 {
            self.read_pipe();
        }
        if fds[LISTENER].revents != 0 && self.client.is_none() {
            self.accept();
        }
        Ok(())
    }

    fn accept(&mut self) {
        match self.listener.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(true).is_ok() {
                    self.client = Some(stream);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => eprintln!("weft-netns: agent channel: accepting a client: {err}"),
        }
    }

    /// The client sends nothing; reading tells when it went. Then sends what waits.
    fn serve_client(&mut self, revents: libc::c_short) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            let mut sink = [0u8; 512];
            match client.read(&mut sink) {
                Ok(0) => return self.drop_client(),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return self.drop_client(),
            }
        }
        self.flush();
    }

    fn drop_client(&mut self) {
        self.client = None;
        self.pending.clear();
        self.sent = 0;
    }

    /// Writes what waits, as far as the client takes it.
    fn flush(&mut self) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        while self.sent < self.pending.len() {
            match client.write(&self.pending[self.sent..]) {
                Ok(0) => return self.drop_client(),
                Ok(n) => self.sent += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.drop_client(),
            }
        }
        self.pending.clear();
        self.sent = 0;
    }

    fn read_pipe(&mut self) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        match pipe.read(&mut self.buffer) {
            // Every writer is gone: the guest ended.
            Ok(0) => self.pipe = None,
            Ok(n) => {
                if self.client.is_some() {
                    self.pending.extend_from_slice(&self.buffer[..n]);
                    self.flush();
                }
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(err) => {
                eprintln!("weft-netns: agent channel: reading the guest's pipe: {err}");
                self.pipe = None;
            }
        }
    }
}

fn poll_fd(fd: RawFd, active: bool, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd: if active { fd } else { -1 },
        events,
        revents: 0,
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    struct Setup {
        relay: AgentRelay,
        guest: std::fs::File,
        path: std::path::PathBuf,
        _dir: tempdir::Dir,
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn setup(tag: &str) -> Setup {
        let dir = std::env::temp_dir().join(format!("weft-agent-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.sock");
        let pipe = AgentPipe::new().unwrap();
        let relay = AgentRelay::bind(&path, pipe.read).unwrap();
        Setup {
            relay,
            guest: std::fs::File::from(pipe.write),
            path,
            _dir: tempdir::Dir(dir),
        }
    }

    /// Runs the relay's steps until `done` holds, for at most two seconds.
    fn pump(relay: &mut AgentRelay, mut done: impl FnMut(&AgentRelay) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !done(relay) {
            assert!(Instant::now() < deadline, "relay made no progress");
            relay.step(10).unwrap();
        }
    }

    fn read_some(client: &mut UnixStream, want: usize) -> Vec<u8> {
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut got = vec![0; want];
        client.read_exact(&mut got).unwrap();
        got
    }

    #[test]
    fn passes_lines_to_the_client_and_drops_them_without_one() {
        let mut s = setup("pass");
        // Read and dropped: nobody listens yet.
        s.guest.write_all(b"before anyone listens\n").unwrap();
        for _ in 0..5 {
            s.relay.step(10).unwrap();
        }

        let mut client = UnixStream::connect(&s.path).unwrap();
        pump(&mut s.relay, |r| r.client.is_some());
        s.guest.write_all(b"{\"v\":1,\"listeners\":[]}\n").unwrap();
        for _ in 0..5 {
            s.relay.step(10).unwrap();
        }
        // The first bytes the client gets are this line's.
        assert_eq!(read_some(&mut client, 23), b"{\"v\":1,\"listeners\":[]}\n");

        // The client goes; the next one is served.
        drop(client);
        pump(&mut s.relay, |r| r.client.is_none());
        let mut again = UnixStream::connect(&s.path).unwrap();
        pump(&mut s.relay, |r| r.client.is_some());
        s.guest.write_all(b"second\n").unwrap();
        for _ in 0..5 {
            s.relay.step(10).unwrap();
        }
        assert_eq!(read_some(&mut again, 7), b"second\n");
    }

    #[test]
    fn a_client_that_does_not_read_fills_the_pipe_not_the_relay() {
        let mut s = setup("slow");
        let _client = UnixStream::connect(&s.path).unwrap();
        pump(&mut s.relay, |r| r.client.is_some());
        set_nonblocking(s.guest.as_raw_fd()).unwrap();

        // Write until the guest's side refuses: the relay holds at most one chunk.
        let block = vec![b'x'; 4096];
        let mut refused = false;
        for _ in 0..10_000 {
            match s.guest.write(&block) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    // The relay may still move bytes on; once it cannot, the pipe stays full.
                    s.relay.step(10).unwrap();
                    if s.guest.write(&block).is_err() {
                        refused = true;
                        break;
                    }
                }
                Err(err) => panic!("{err}"),
            }
            s.relay.step(0).unwrap();
        }
        assert!(refused, "the guest's writes never blocked");
        assert!(s.relay.pending.len() <= CHUNK);
        assert!(s.relay.pending.capacity() <= 2 * CHUNK);
    }

    #[test]
    fn the_guest_ending_closes_the_pipe_and_a_client_stays_served() {
        let mut s = setup("end");
        let _client = UnixStream::connect(&s.path).unwrap();
        drop(s.guest);
        pump(&mut s.relay, |r| r.pipe.is_none() && r.client.is_some());
        s.relay.step(10).unwrap();
        assert!(s.relay.client.is_some());
    }
}
