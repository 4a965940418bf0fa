//! The netns driver: a guest is `weft-guest` and its app in a Linux network namespace (and
//! PID namespace) of their own, with one TAP device per NIC inside, wired to the NIC's host
//! TAP by the `weft-netns` program. On the host side everything is as for a VM: the same pool
//! and own TAP devices, attached the same way, with the same routes and rules.
//!
//! The guest's port announcements reach weftd through `agent.sock` in the run directory, as
//! for a VM (see [`agent`]).
//!
//! It is for hosts without virtualization and for fast tests. It is no security boundary:
//! the app shares the host's kernel, filesystem and users.

mod agent;
mod args;
mod config;
mod driver;
mod forward;
pub mod helper;
mod tap;

pub use args::{HelperArgs, MAX_NICS, USAGE};
pub use config::{NetnsConfig, GUEST_PROGRAM, HELPER_PROGRAM};
pub use driver::NetnsDriver;
pub use tap::TapError;
