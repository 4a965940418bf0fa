//! Persistent TAP devices, made through the tun driver's ioctls.
//!
//! The tun driver cannot create devices over rtnetlink (it refuses `RTM_NEWLINK`), so a TAP is
//! made by opening `/dev/net/tun`, binding the file to a new device with `TUNSETIFF` and
//! marking the device persistent with `TUNSETPERSIST`; closing the file then leaves the device
//! in place for a VMM to attach to. The device lands in the network namespace of the calling
//! thread.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use crate::link::valid_ifname;
use crate::HostNetError;

const TUN_DEVICE: &str = "/dev/net/tun";

/// Flags of the pool's devices: layer 2, no packet-info header, and the virtio-net header that
/// VMMs use for checksum and segmentation offload.
pub(crate) const POOL_TAP_FLAGS: libc::c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;

/// Creates the persistent device `name` with `flags` (`IFF_TAP` or `IFF_TUN`, plus options).
/// Called for a device that does not exist yet: on an existing one of the same type the
/// kernel would attach to it instead.
pub(crate) fn create_persistent(name: &str, flags: libc::c_int) -> Result<(), HostNetError> {
    let file = open(name, flags)?;

    // SAFETY: the fd is open and owned by `file` for the whole call; TUNSETPERSIST takes its
    // argument by value, not as a pointer, so nothing is read or written through it.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) };
    if rc < 0 {
        let source = io::Error::last_os_error();
        return Err(HostNetError::Tap {
            tap: name.to_string(),
            source,
        });
    }

    // Dropping `file` detaches it; the device stays because it is persistent. Had TUNSETPERSIST
    // failed, the drop would have removed the new device again.
    Ok(())
}

/// Opens `/dev/net/tun` bound to the device `name` (created when missing, as a non-persistent
/// device), the way a VMM attaches to a TAP.
pub(crate) fn open(name: &str, flags: libc::c_int) -> Result<File, HostNetError> {
    let tap_error = |source: io::Error| HostNetError::Tap {
        tap: name.to_string(),
        source,
    };

    if !valid_ifname(name) {
        return Err(tap_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a valid interface name",
        )));
    }
    let c_name = CString::new(name).map_err(|e| tap_error(io::Error::other(e)))?;

    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(TUN_DEVICE)
        .map_err(tap_error)?;

    // SAFETY: `ifreq` is a plain C struct (a name array and a union of integers, addresses and
    // a pointer) for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(c_name.as_bytes_with_nul()) {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = flags as libc::c_short;

    // SAFETY: the fd is an open /dev/net/tun file owned by `file` for the whole call, and
    // TUNSETIFF reads and writes one `ifreq`, which `req` is and outlives the call.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::TUNSETIFF,
            &mut req as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(tap_error(io::Error::last_os_error()));
    }

    Ok(file)
}
