//! The QEMU driver.
