//! What weft-guest does only as PID 1 of a VM: mount the kernel filesystems, get a console,
//! load the modules the image lists, and power the VM off at the end.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The modules to load, one path per line, in order (written by the image build).
const MODULE_LIST: &str = "/lib/modules/weft-load";

const HOSTNAME: &str = "weft";

struct Mount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: libc::c_ulong,
    data: &'static str,
}

const MOUNTS: &[Mount] = &[
    Mount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: "",
    },
    Mount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: "",
    },
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: libc::MS_NOSUID,
        data: "mode=0755",
    },
    Mount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: "mode=0620,ptmxmode=0666",
    },
    Mount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=0755",
    },
    Mount {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=1777",
    },
];

/// Prepares the VM for the network setup and the app. Failures are printed, not fatal.
pub fn early() {
    mount_all();
    ensure_console();
    set_hostname();
    load_modules(Path::new(MODULE_LIST));
}

fn mount_all() {
    for m in MOUNTS {
        if let Err(err) = mount(m) {
            fail!("mounting {} on {}: {err}", m.fstype, m.target);
        }
    }
}

fn mount(m: &Mount) -> io::Result<()> {
    std::fs::create_dir_all(m.target)?;
    let source = CString::new(m.source)?;
    let target = CString::new(m.target)?;
    let fstype = CString::new(m.fstype)?;
    let data = CString::new(m.data)?;
    // SAFETY: all pointers are NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            m.flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        // Already mounted (by the kernel or a previous init) is what we want anyway.
        if err.raw_os_error() != Some(libc::EBUSY) {
            return Err(err);
        }
    }
    Ok(())
}

/// The kernel opens /dev/console for init only if the initramfs has that node; otherwise
/// open it now that devtmpfs is mounted, so the lines and the app's output are seen.
fn ensure_console() {
    // SAFETY: F_GETFD on a descriptor number only queries it.
    if unsafe { libc::fcntl(1, libc::F_GETFD) } != -1 {
        return;
    }
    let Ok(console) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    else {
        return;
    };
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which nothing else holds yet.
        unsafe { libc::dup2(console.as_raw_fd(), fd) };
    }
}

fn set_hostname() {
    // SAFETY: the pointer and length describe the bytes of a static string.
    let rc = unsafe { libc::sethostname(HOSTNAME.as_ptr().cast(), HOSTNAME.len()) };
    if rc != 0 {
        fail!("setting the hostname: {}", io::Error::last_os_error());
    }
}

/// Loads each module of the list in order; a module that is already loaded is fine.
fn load_modules(list: &Path) {
    let text = match std::fs::read_to_string(list) {
        Ok(text) => text,
        // An image without modules (everything built in) has no list.
        Err(err) if err.kind() == io::ErrorKind::NotFound => return,
        Err(err) => return fail!("reading {}: {err}", list.display()),
    };
    for path in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Err(err) = load_module(Path::new(path)) {
            fail!("loading module {path}: {err}");
        }
    }
}

fn load_module(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    let params = c"";
    // SAFETY: finit_module reads the module from an open descriptor we own and the
    // parameters from a NUL-terminated static string; flags 0 asks for no special checks.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            0 as libc::c_int,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(err);
        }
    }
    Ok(())
}

/// The I/O port of QEMU's `isa-debug-exit` device, which the QEMU driver adds to the VM.
#[cfg(target_arch = "x86_64")]
const EXIT_PORT: u16 = 0xf4;

/// Ends the VM with the app's exit code: flushes the filesystems and the console, then tells
/// the VMM the code through the `isa-debug-exit` port, and powers off when that did not end
/// the VM (a VMM without the device, or another architecture). Never returns: PID 1 must
/// not exit.
pub fn power_off(code: i32) -> ! {
    // SAFETY: sync takes no arguments.
    unsafe { libc::sync() };
    drain_console();
    #[cfg(target_arch = "x86_64")]
    report_exit_code(code);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = code;

    // SAFETY: reboot takes no pointers; RB_POWER_OFF is what PID 1 may ask for.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    fail!("power off: {}", io::Error::last_os_error());
    loop {
        // SAFETY: pause only suspends the thread until a signal arrives.
        unsafe { libc::pause() };
    }
}

/// Waits until the serial console has sent everything written to it: the VMM may end the
/// VM the moment the exit code is written, and the last lines must not be lost.
fn drain_console() {
    for fd in [1, 2] {
        // SAFETY: tcdrain only waits on the descriptor; on one that is not a terminal it
        // fails with ENOTTY, which is fine.
        unsafe { libc::tcdrain(fd) };
    }
}

/// The byte written to the exit port for an exit code. QEMU exits with `(byte << 1) | 1`, and
/// a process's exit status keeps only 8 bits of that, so 0 to 127 arrive exactly and larger
/// codes (128 + N after signal N) saturate at 127.
#[cfg(any(target_arch = "x86_64", test))]
fn exit_port_value(code: i32) -> u8 {
    code.clamp(0, 127) as u8
}

/// Writes the exit code to the `isa-debug-exit` port; with the device, QEMU ends here.
#[cfg(target_arch = "x86_64")]
fn report_exit_code(code: i32) {
    // SAFETY: ioperm only changes this process's I/O permission bitmap; PID 1 runs as root
    // with CAP_SYS_RAWIO.
    if unsafe { libc::ioperm(libc::c_ulong::from(EXIT_PORT), 1, 1) } != 0 {
        return fail!("exit port: {}", io::Error::last_os_error());
    }
    let value = exit_port_value(code);
    // SAFETY: ioperm granted access to this port just above. The write reaches the VMM's
    // debug-exit device, or no device at all, where it is ignored; it touches no memory of
    // this process.
    unsafe {
        std::arch::asm!(
            "out dx, al",
            in("dx") EXIT_PORT,
            in("al") value,
            options(nomem, nostack, preserves_flags)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_saturate_at_what_an_exit_status_can_carry() {
        assert_eq!(exit_port_value(0), 0);
        assert_eq!(exit_port_value(3), 3);
        assert_eq!(exit_port_value(127), 127);
        assert_eq!(exit_port_value(128 + 9), 127);
        assert_eq!(exit_port_value(255), 127);
        assert_eq!(exit_port_value(-1), 0);
    }
}
