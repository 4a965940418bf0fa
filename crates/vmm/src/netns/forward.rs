//! The wire between each host TAP and its guest TAP: one thread, one epoll set over every
//! TAP file of the guest, and a frame read from one side written whole to the other, with its
//! virtio-net header (both TAPs use the same header size and offloads, see `tap`).
//!
//! Writes never wait. A TAP write hands the frame to the kernel's receive path, which drops
//! it itself when its queues are full; a write that fails anyway (the guest's NIC is down,
//! the queue is full) drops the frame, as a NIC does when its peer cannot take it. The reading
//! side is the one that pushes back: frames wait in the TAP's own queue until they are read,
//! and the kernel drops them there when that queue overflows.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Room for the largest frame a TAP passes: a segmentation-offload frame of up to 64 KiB, or
/// an MTU of up to 65535, plus the virtio-net, Ethernet and VLAN headers, with margin. A read
/// into a smaller buffer would lose the frame.
const FRAME_BUFFER: usize = 128 * 1024;

/// Frames moved per readable file before the others get their turn.
const BATCH: usize = 64;

/// The epoll token of the events that are not frames.
const CONTROL: u64 = u64::MAX;

/// Whether `side` (see [`Forwarder::sides`]) reads from the host's TAP.
fn from_host(side: usize) -> bool {
    side & 1 == 0
}

/// One NIC: the host's TAP and the guest's.
pub struct Wire {
    /// The host TAP's name, for messages.
    pub tap: String,
    /// The guest's interface name, for messages.
    pub ifname: String,
    pub host: OwnedFd,
    pub guest: OwnedFd,
}

/// Frames dropped in one direction of one wire, and why the first one was.
#[derive(Debug, Default)]
struct Drops {
    count: u64,
    first: Option<io::Error>,
}

struct Side {
    /// Still polled: a file that failed is dropped from the set for good.
    live: bool,
    drops: Drops,
}

/// What the control source says when it is readable.
pub enum Control {
    /// Nothing that ends forwarding.
    Continue,
    /// The guest is gone with this exit code.
    Exit(i32),
}

pub struct Forwarder {
    epoll: OwnedFd,
    wires: Vec<Wire>,
    /// Two per wire: host to guest at `2 * i`, guest to host at `2 * i + 1`.
    sides: Vec<Side>,
    buffer: Vec<u8>,
}

impl Forwarder {
    /// Polls every TAP of `wires` and `control` (a signalfd, say).
    pub fn new(wires: Vec<Wire>, control: RawFd) -> io::Result<Forwarder> {
        // SAFETY: epoll_create1 takes a flag and returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor was just created and nothing else owns it.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };

        let forwarder = Forwarder {
            sides: (0..wires.len() * 2)
                .map(|_| Side {
                    live: true,
                    drops: Drops::default(),
                })
                .collect(),
            wires,
            epoll,
            buffer: vec![0; FRAME_BUFFER],
        };
        forwarder.watch(control, CONTROL)?;
        for (index, wire) in forwarder.wires.iter().enumerate() {
            forwarder.watch(wire.host.as_raw_fd(), 2 * index as u64)?;
            forwarder.watch(wire.guest.as_raw_fd(), 2 * index as u64 + 1)?;
        }
        Ok(forwarder)
    }

    fn watch(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: epoll_ctl reads one epoll_event, which lives across the call.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Moves frames until `control` reports the guest's exit code, which it returns.
    pub fn run(&mut self, mut control: impl FnMut() -> io::Result<Control>) -> io::Result<i32> {
        // SAFETY: epoll_event is plain data, for which all zeroes is a valid value.
        let mut events: Vec<libc::epoll_event> = vec![unsafe { std::mem::zeroed() }; 16];
        loop {
            // SAFETY: the kernel writes at most `events.len()` entries into the vector.
            let ready = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as libc::c_int,
                    -1,
                )
            };
            if ready < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }

            for event in &events[..ready as usize] {
                let (token, flags) = (event.u64, event.events);
                if token == CONTROL {
                    if let Control::Exit(code) = control()? {
                        return Ok(code);
                    }
                    continue;
                }
                self.pump(token as usize, flags);
            }
        }
    }

    /// Moves up to [`BATCH`] frames out of the file of `side`.
    fn pump(&mut self, side: usize, flags: u32) {
        if !self.sides[side].live {
            return;
        }
        let wire = &self.wires[side / 2];
        let (from, to) = if from_host(side) {
            (&wire.host, &wire.guest)
        } else {
            (&wire.guest, &wire.host)
        };

        for _ in 0..BATCH {
            // SAFETY: the kernel writes at most `buffer.len()` bytes into the buffer.
            let read = unsafe {
                libc::read(
                    from.as_raw_fd(),
                    self.buffer.as_mut_ptr().cast(),
                    self.buffer.len(),
                )
            };
            if read < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => {
                        // An error or hang-up with nothing to read would be reported again
                        // and again: such a file is done.
                        if flags & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                            self.retire(side, io::Error::other("the device went away"));
                        }
                        return;
                    }
                    io::ErrorKind::Interrupted => continue,
                    _ => return self.retire(side, err),
                }
            }
            if read == 0 {
                return self.retire(side, io::Error::other("end of file"));
            }

            let frame = &self.buffer[..read as usize];
            // SAFETY: the kernel reads `frame.len()` bytes from the frame, which is borrowed
            // for the call.
            let written =
                unsafe { libc::write(to.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
            if written < 0 {
                let drops = &mut self.sides[side].drops;
                drops.count += 1;
                if drops.first.is_none() {
                    drops.first = Some(io::Error::last_os_error());
                }
            }
        }
    }

    /// Stops polling the file of `side` after it failed with `err`.
    fn retire(&mut self, side: usize, err: io::Error) {
        let wire = &self.wires[side / 2];
        let (fd, what) = if from_host(side) {
            (wire.host.as_raw_fd(), format!("host TAP {}", wire.tap))
        } else {
            (
                wire.guest.as_raw_fd(),
                format!("guest interface {}", wire.ifname),
            )
        };
        eprintln!("weft-netns: {what} failed, its frames are no longer forwarded: {err}");
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer, which may be null.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
        self.sides[side].live = false;
    }

    /// One line per direction that dropped frames, for the end of the guest's console.
    pub fn drop_report(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (side, state) in self.sides.iter().enumerate() {
            let Some(first) = &state.drops.first else {
                continue;
            };
            let wire = &self.wires[side / 2];
            let direction = if from_host(side) {
                format!("{} to {}", wire.tap, wire.ifname)
            } else {
                format!("{} to {}", wire.ifname, wire.tap)
            };
            let count = state.drops.count;
            let frames = if count == 1 { "frame" } else { "frames" };
            // A TAP whose interface is down refuses writes with EIO: a guest NIC that
            // weft-guest has not set up (yet, or at all, without autoconfig).
            let why = match first.raw_os_error() {
                Some(libc::EIO) => "the receiving interface was down".to_string(),
                _ => first.to_string(),
            };
            lines.push(format!(
                "dropped {count} {frames} from {direction} (first: {why})"
            ));
        }
        lines
    }
}
