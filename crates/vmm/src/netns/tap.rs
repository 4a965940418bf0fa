//! The TAP devices of a netns guest, through the tun driver's ioctls: attaching to a host
//! TAP as a VMM does, and creating the guest's own `eth<n>` inside its namespace.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use weft_model::MacAddr;

const TUN_DEVICE: &std::ffi::CStr = c"/dev/net/tun";

/// Layer 2, without the packet-info header, with a virtio-net header in front of each frame,
/// as a VMM's virtio-net device attaches.
const TAP_FLAGS: libc::c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;

/// The size of the virtio-net header on both TAPs of a NIC. Being the same on both sides, a
/// frame read from one is written to the other as it is, header included. (12 is what
/// virtio 1.0 devices use; a persistent device keeps the size its last user set.)
pub const VNET_HDR_LEN: usize = 12;

/// The offloads both TAPs of a NIC take: checksums and TCP segmentation, as a virtio-net
/// device offers them. Frames then travel as TCP segments of up to 64 KiB with their
/// checksum left to the receiver, one read and one write each, and whatever one side's
/// kernel sends the other side's kernel accepts.
const OFFLOADS: libc::c_uint =
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("TAP device {tap} does not exist")]
    Missing { tap: String },
    #[error("TAP device {tap} is in use by another process")]
    Busy { tap: String },
    #[error("{tap} is not a single-queue TAP device")]
    NotTap { tap: String },
    #[error("TAP device {tap}: {action}: {source}")]
    Io {
        tap: String,
        action: &'static str,
        source: io::Error,
    },
}

fn io_error(tap: &str, action: &'static str) -> impl FnOnce(io::Error) -> TapError {
    let tap = tap.to_string();
    move |source| TapError::Io {
        tap,
        action,
        source,
    }
}

/// An `ifreq` naming `name`, everything else zero.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let c_name = CString::new(name)?;
    let bytes = c_name.as_bytes_with_nul();
    // SAFETY: ifreq is plain data, for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if bytes.len() > req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

/// Opens `/dev/net/tun` non-blocking; the file's network namespace is the caller's.
fn open_tun() -> io::Result<OwnedFd> {
    // SAFETY: the path is a NUL-terminated static string; the result is checked.
    let fd = unsafe {
        libc::open(
            TUN_DEVICE.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Binds a tun file to the device named in `req`, creating it when missing.
fn set_iff(fd: &OwnedFd, req: &mut libc::ifreq) -> io::Result<()> {
    req.ifr_ifru.ifru_flags = TAP_FLAGS as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `req` is and outlives the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, req as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the header size and the offloads of a tun file's device.
fn set_vnet(fd: &OwnedFd) -> io::Result<()> {
    let size = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int, which `size` is and outlives the call.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETVNETHDRSZ,
            &size as *const libc::c_int,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TUNSETOFFLOAD takes its argument by value, not as a pointer.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            OFFLOADS as libc::c_ulong,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The index of interface `name` in the caller's network namespace, if there is one.
fn if_index(name: &str) -> Option<u32> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: the pointer is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Attaches to the existing TAP device `tap` in the caller's network namespace, exactly as a
/// VMM does. The device's carrier is on while the returned file is open.
pub fn attach_host(tap: &str) -> Result<OwnedFd, TapError> {
    let missing = || TapError::Missing {
        tap: tap.to_string(),
    };
    // TUNSETIFF would create a missing device: look first, so that none appears even briefly.
    if if_index(tap).is_none() {
        return Err(missing());
    }

    let fd = open_tun().map_err(io_error(tap, "opening /dev/net/tun"))?;
    let mut req = ifreq(tap).map_err(io_error(tap, "naming the device"))?;
    if let Err(err) = set_iff(&fd, &mut req) {
        return Err(match err.raw_os_error() {
            Some(libc::EBUSY) => TapError::Busy {
                tap: tap.to_string(),
            },
            Some(libc::EINVAL) => TapError::NotTap {
                tap: tap.to_string(),
            },
            _ => io_error(tap, "attaching")(err),
        });
    }

    // The device can have been deleted between the look-up and the attach, and then the
    // kernel made a new, non-persistent one: dropping `fd` removes it again.
    // SAFETY: TUNGETIFF writes one ifreq, which `req` is and outlives the call.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNGETIFF,
            &mut req as *mut libc::ifreq,
        )
    } < 0
    {
        return Err(io_error(tap, "reading its flags")(
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: TUNGETIFF filled in the flags member of the union.
    let flags = libc::c_int::from(unsafe { req.ifr_ifru.ifru_flags });
    if flags & libc::IFF_PERSIST == 0 {
        return Err(missing());
    }

    set_vnet(&fd).map_err(io_error(tap, "setting offloads"))?;
    Ok(fd)
}

/// A datagram socket of the caller's network namespace, for interface ioctls.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes three integers; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The MTU of interface `name` in the caller's network namespace.
pub fn mtu(name: &str) -> Result<u32, TapError> {
    let read = || -> io::Result<u32> {
        let socket = ioctl_socket()?;
        let mut req = ifreq(name)?;
        // SAFETY: SIOCGIFMTU reads the name from and writes the MTU into one ifreq, which
        // `req` is and outlives the call.
        let rc = unsafe {
            libc::ioctl(
                socket.as_raw_fd(),
                libc::SIOCGIFMTU,
                &mut req as *mut libc::ifreq,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: SIOCGIFMTU filled in the MTU member of the union.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        u32::try_from(mtu).map_err(|_| io::Error::other("negative MTU"))
    };
    read().map_err(io_error(name, "reading its MTU"))
}

/// Creates the TAP device `name` in the caller's network namespace with `mac` and `mtu`, and
/// leaves it down.
///
/// The device is persistent: it goes with its namespace, when the last process in it is
/// gone, not when the file closes. The kernel then removes all of a namespace's devices in
/// one batch, in the background; closing the file of a non-persistent device instead removes
/// it on the spot, which costs some 25 ms per device in the exiting process.
pub fn create_guest(name: &str, mac: MacAddr, mtu: u32) -> Result<OwnedFd, TapError> {
    let fd = open_tun().map_err(io_error(name, "opening /dev/net/tun"))?;
    let mut req = ifreq(name).map_err(io_error(name, "naming the device"))?;
    set_iff(&fd, &mut req).map_err(io_error(name, "creating"))?;
    set_vnet(&fd).map_err(io_error(name, "setting offloads"))?;
    // SAFETY: TUNSETPERSIST takes its argument by value, not as a pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
        return Err(io_error(name, "making it persistent")(
            io::Error::last_os_error(),
        ));
    }

    let mut req = ifreq(name).map_err(io_error(name, "naming the device"))?;
    req.ifr_ifru.ifru_hwaddr = hwaddr(mac);
    // SAFETY: the tun driver handles SIOCSIFHWADDR on its own file, reading one ifreq,
    // which `req` is and outlives the call.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SIOCSIFHWADDR,
            &mut req as *mut libc::ifreq,
        )
    } < 0
    {
        return Err(io_error(name, "setting its MAC")(io::Error::last_os_error()));
    }

    let set_mtu = || -> io::Result<()> {
        let socket = ioctl_socket()?;
        let mut req = ifreq(name)?;
        req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU out of range"))?;
        // SAFETY: SIOCSIFMTU reads one ifreq, which `req` is and outlives the call.
        let rc = unsafe {
            libc::ioctl(
                socket.as_raw_fd(),
                libc::SIOCSIFMTU,
                &mut req as *mut libc::ifreq,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    set_mtu().map_err(io_error(name, "setting its MTU"))?;
    Ok(fd)
}

/// `mac` as the hardware address of an Ethernet device.
fn hwaddr(mac: MacAddr) -> libc::sockaddr {
    // SAFETY: sockaddr is plain data, for which all zeroes is a valid value.
    let mut addr: libc::sockaddr = unsafe { std::mem::zeroed() };
    addr.sa_family = libc::ARPHRD_ETHER;
    for (dst, src) in addr.sa_data.iter_mut().zip(mac.0) {
        *dst = src as libc::c_char;
    }
    addr
}
