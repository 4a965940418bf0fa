//! weft's VMM drivers. Every driver boots a guest from a [`GuestSpec`] behind the same
//! [`Driver`] trait, so the controller never knows which one runs an instance.

use std::path::PathBuf;
use std::time::Duration;

use weft_model::MacAddr;

mod logtail;
pub mod netns;
mod process;
pub mod qemu;

/// One NIC of a guest: the host-side TAP device it attaches to and the MAC it shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicSpec {
    pub tap: String,
    pub mac: MacAddr,
}

/// Everything a driver needs to boot one guest.
#[derive(Clone, Debug)]
pub struct GuestSpec {
    /// The instance's uuid, used to name processes and files.
    pub id: String,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// The rendered boot arguments (`weft_model::BootArgs::render`); the driver prepends what
    /// its platform needs (console and the like).
    pub cmdline: String,
    pub memory_mb: u32,
    pub vcpus: u32,
    /// NICs in device order.
    pub nics: Vec<NicSpec>,
    /// A directory of this instance's own, which exists; the driver keeps its console log,
    /// sockets and pid file there.
    pub run_dir: PathBuf,
}

/// A started guest. `exited` resolves with the exit code once the guest is gone, whatever
/// ended it.
pub struct RunningGuest {
    pub pid: u32,
    pub exited: tokio::sync::oneshot::Receiver<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot start the guest: {0}")]
    Spawn(String),
    #[error("the guest exited during boot with code {code}: {detail}")]
    EarlyExit { code: i32, detail: String },
    #[error("cannot stop the guest: {0}")]
    Stop(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[async_trait::async_trait]
pub trait Driver: Send + Sync {
    /// The driver's name as written in the configuration (`qemu`, `netns`).
    fn name(&self) -> &'static str;

    /// Boots the guest and returns once its process runs. The NICs' TAP devices exist.
    async fn start(&self, spec: &GuestSpec) -> Result<RunningGuest, DriverError>;

    /// Stops the guest with process `pid`: politely first, then by force after `grace`.
    /// Returns once the process is gone. Stopping a guest that is already gone succeeds.
    async fn stop(&self, spec: &GuestSpec, pid: u32, grace: Duration) -> Result<(), DriverError>;

    /// Whether guests boot the image's kernel. A driver that does not (netns) runs only the
    /// image's `weft-guest` and app on the host's kernel, so an image needs no kernel for it.
    fn boots_kernel(&self) -> bool {
        true
    }

    /// The path of the guest's console output (kernel, init and app).
    fn console_path(&self, spec: &GuestSpec) -> PathBuf {
        spec.run_dir.join("console.log")
    }

    /// The unix socket of the guest's agent channel, where the driver (QEMU's chardev,
    /// weft-netns) listens while the guest runs and the controller connects to read port
    /// announcements. One client at a time; a client that goes may connect again.
    fn agent_socket(&self, spec: &GuestSpec) -> PathBuf {
        spec.run_dir.join("agent.sock")
    }
}
