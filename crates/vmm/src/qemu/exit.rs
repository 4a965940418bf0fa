//! The guest's exit code from QEMU's exit status.
//!
//! weft-guest writes its app's exit code to the `isa-debug-exit` device just before it would
//! power the VM off, and QEMU then exits with `(code << 1) | 1`: an odd status. A status keeps
//! 8 bits, so codes 0 to 127 arrive (weft-guest sends 127 for anything larger). A guest that
//! powers off without the device, and QEMU on SIGTERM, exit 0.

use std::process::ExitStatus;

use crate::process;

/// What a guest's `exited` channel reports once QEMU is gone: odd status `s` is the app's
/// code `s >> 1`; 0 is a power-off without a code, reported as 0; other even statuses are
/// QEMU's own failures and stay as they are; a signal gives 128 plus its number.
pub(crate) fn guest_exit_code(status: ExitStatus) -> i32 {
    match status.code() {
        Some(code) if code & 1 == 1 => code >> 1,
        _ => process::exit_code(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn odd_statuses_carry_the_app_code() {
        assert_eq!(guest_exit_code(exited(1)), 0);
        assert_eq!(guest_exit_code(exited((3 << 1) | 1)), 3);
        assert_eq!(guest_exit_code(exited((127 << 1) | 1)), 127);
    }

    #[test]
    fn power_off_failures_and_signals() {
        assert_eq!(guest_exit_code(exited(0)), 0);
        assert_eq!(guest_exit_code(exited(2)), 2);
        assert_eq!(
            guest_exit_code(ExitStatus::from_raw(libc::SIGKILL)),
            128 + 9
        );
    }
}
