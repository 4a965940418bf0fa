//! QEMU's command line for one guest, built from its spec without touching the system.

use std::path::{Path, PathBuf};

use crate::{DriverError, GuestSpec};

use super::config::Accel;

/// PCI slot of the first NIC; the others follow in order, so the guest enumerates them in
/// device order. Slots 0 to 2 are left to the machine's own devices.
pub(crate) const FIRST_NIC_SLOT: u8 = 0x03;
/// NICs are placed on slots `FIRST_NIC_SLOT..AGENT_SLOT`.
pub(crate) const MAX_NICS: usize = 8;
/// PCI slot of the virtio-serial controller that carries the agent channel.
pub(crate) const AGENT_SLOT: u8 = 0x10;
/// Name of the virtio-serial port the guest agent opens.
pub const AGENT_PORT: &str = "weft.agent";

/// Longest TAP name the kernel takes (`IFNAMSIZ` less the terminating NUL).
const MAX_TAP_NAME: usize = 15;
/// Longest path a unix socket address holds (`sun_path` less the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// What the kernel command line starts with: the serial console, an immediate exit on panic
/// (with `-no-reboot`, a reboot ends QEMU), and only warnings and worse from the kernel.
const KERNEL_PREFIX: &str = "console=ttyS0 panic=-1 quiet";

/// I/O port of the `isa-debug-exit` device, where weft-guest writes the app's exit code just
/// before it would power off; QEMU then exits with `(code << 1) | 1`.
pub(crate) const EXIT_PORT: &str = "0xf4";

/// The files QEMU keeps in the guest's run directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunFiles {
    pub console: PathBuf,
    pub qemu_log: PathBuf,
    pub agent_socket: PathBuf,
    pub qmp_socket: PathBuf,
    pub pidfile: PathBuf,
}

impl RunFiles {
    pub(crate) fn new(run_dir: &Path) -> Self {
        RunFiles {
            console: run_dir.join("console.log"),
            qemu_log: run_dir.join("qemu.log"),
            agent_socket: run_dir.join("agent.sock"),
            qmp_socket: run_dir.join("qmp.sock"),
            pidfile: run_dir.join("qemu.pid"),
        }
    }
}

/// The name QEMU is started with (`-name`); `stop` recognizes the guest's process by it.
pub(crate) fn process_name(id: &str) -> String {
    format!("weft-{id}")
}

fn invalid(message: String) -> DriverError {
    DriverError::Spawn(message)
}

fn utf8<'a>(what: &str, path: &'a Path) -> Result<&'a str, DriverError> {
    path.to_str()
        .ok_or_else(|| invalid(format!("the {what} path {} is not UTF-8", path.display())))
}

/// Checks what QEMU would otherwise report late or not at all.
pub(crate) fn validate(spec: &GuestSpec) -> Result<(), DriverError> {
    if spec.id.is_empty() || spec.id.contains(|c: char| c == ',' || c.is_control()) {
        return Err(invalid(format!(
            "'{}' is not a usable instance id",
            spec.id
        )));
    }
    if !spec.kernel.is_file() {
        return Err(invalid(format!(
            "the kernel {} does not exist or is not a file",
            spec.kernel.display()
        )));
    }
    if let Some(initrd) = &spec.initrd {
        if !initrd.is_file() {
            return Err(invalid(format!(
                "the initrd {} does not exist or is not a file",
                initrd.display()
            )));
        }
    }
    if spec.memory_mb == 0 || spec.vcpus == 0 {
        return Err(invalid(format!(
            "a guest needs memory and a vCPU (memory_mb {}, vcpus {})",
            spec.memory_mb, spec.vcpus
        )));
    }
    if spec.cmdline.contains(|c: char| c.is_control()) {
        return Err(invalid(
            "the boot arguments hold a control character".into(),
        ));
    }

    if spec.nics.len() > MAX_NICS {
        return Err(invalid(format!(
            "{} NICs asked for, the QEMU driver places at most {MAX_NICS}",
            spec.nics.len()
        )));
    }
    for (i, nic) in spec.nics.iter().enumerate() {
        let tap = &nic.tap;
        if tap.is_empty() {
            return Err(invalid(format!("NIC {i} has no TAP device name")));
        }
        let bad_char = tap
            .chars()
            .any(|c| c == ',' || c == '/' || c == '=' || c.is_whitespace() || c.is_control());
        if tap.len() > MAX_TAP_NAME || bad_char {
            return Err(invalid(format!(
                "NIC {i}: '{tap}' is not a TAP device name"
            )));
        }
    }

    utf8("kernel", &spec.kernel)?;
    if let Some(initrd) = &spec.initrd {
        utf8("initrd", initrd)?;
    }
    let files = RunFiles::new(&spec.run_dir);
    for socket in [&files.agent_socket, &files.qmp_socket] {
        let path = utf8("socket", socket)?;
        if path.len() > MAX_SOCKET_PATH {
            return Err(invalid(format!(
                "the socket path {path} is longer than the {MAX_SOCKET_PATH} bytes a unix socket \
                 takes: use a shorter run directory"
            )));
        }
    }
    utf8("console", &files.console)?;
    utf8("pid file", &files.pidfile)?;
    Ok(())
}

/// Whether the machine type has the ISA bus the `isa-debug-exit` device sits on: the PC
/// machines (`pc`, `q35`, their versioned `pc-...` names, `isapc`) and `microvm`.
pub(crate) fn has_isa_bus(machine: &str) -> bool {
    matches!(machine, "pc" | "q35" | "isapc" | "microvm") || machine.starts_with("pc-")
}

/// A value inside a QEMU option list, where a comma separates options and `,,` stands for one.
fn opt(value: &str) -> String {
    value.replace(',', ",,")
}

/// A path already checked by [`validate`].
fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// The kernel command line: the driver's prefix, then the rendered boot arguments.
pub(crate) fn kernel_cmdline(boot_args: &str) -> String {
    let boot_args = boot_args.trim();
    if boot_args.is_empty() {
        KERNEL_PREFIX.to_string()
    } else {
        format!("{KERNEL_PREFIX} {boot_args}")
    }
}

/// QEMU's arguments (without the program) for a validated spec; `accel` is resolved.
pub(crate) fn build(machine: &str, accel: Accel, spec: &GuestSpec) -> Vec<String> {
    let files = RunFiles::new(&spec.run_dir);
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));

    push(&["-name", &process_name(&spec.id)]);
    push(&[
        "-machine",
        &format!("{},accel={}", opt(machine), accel.qemu_name()),
    ]);
    push(&["-cpu", accel.cpu_model()]);
    push(&["-m", &spec.memory_mb.to_string()]);
    push(&["-smp", &spec.vcpus.to_string()]);
    push(&["-nodefaults", "-no-reboot", "-display", "none"]);

    push(&["-kernel", path_str(&spec.kernel)]);
    if let Some(initrd) = &spec.initrd {
        push(&["-initrd", path_str(initrd)]);
    }
    push(&["-append", &kernel_cmdline(&spec.cmdline)]);

    // Appending, so that whoever caps the log's size can copy and truncate it while QEMU
    // writes on at the new end. The driver empties the file before each boot.
    push(&[
        "-chardev",
        &format!(
            "file,id=console,path={},append=on",
            opt(path_str(&files.console))
        ),
    ]);
    push(&["-serial", "chardev:console"]);
    if has_isa_bus(machine) {
        push(&[
            "-device",
            &format!("isa-debug-exit,iobase={EXIT_PORT},iosize=0x04"),
        ]);
    }

    for (i, nic) in spec.nics.iter().enumerate() {
        let slot = FIRST_NIC_SLOT + i as u8;
        push(&[
            "-netdev",
            &format!(
                "tap,id=nic{i},ifname={},script=no,downscript=no,vhost=off",
                nic.tap
            ),
        ]);
        push(&[
            "-device",
            &format!(
                "virtio-net-pci,netdev=nic{i},mac={},addr={slot:02x}",
                nic.mac
            ),
        ]);
    }

    push(&[
        "-device",
        &format!("virtio-serial-pci,id=agent,addr={AGENT_SLOT:02x}"),
    ]);
    push(&[
        "-chardev",
        &format!(
            "socket,id=agentsock,path={},server=on,wait=off",
            opt(path_str(&files.agent_socket))
        ),
    ]);
    push(&[
        "-device",
        &format!("virtserialport,bus=agent.0,chardev=agentsock,name={AGENT_PORT}"),
    ]);

    push(&[
        "-qmp",
        &format!(
            "unix:{},server=on,wait=off",
            opt(path_str(&files.qmp_socket))
        ),
    ]);
    push(&["-pidfile", path_str(&files.pidfile)]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NicSpec;
    use weft_model::MacAddr;

    fn spec(run_dir: &Path) -> GuestSpec {
        GuestSpec {
            id: "3f0c1a8e-0000-4000-8000-000000000001".into(),
            kernel: run_dir.join("kernel"),
            initrd: Some(run_dir.join("initrd")),
            cmdline: "netdev.ip=10.100.0.2/16:10.100.255.254:10.100.255.254 -- /app".into(),
            memory_mb: 256,
            vcpus: 2,
            nics: vec![
                NicSpec {
                    tap: "weft0".into(),
                    mac: MacAddr([0x12, 0xb0, 10, 100, 0, 2]),
                },
                NicSpec {
                    tap: "own-tap".into(),
                    mac: MacAddr([0x12, 0xb1, 0xde, 0xad, 0xbe, 0xef]),
                },
            ],
            run_dir: run_dir.to_path_buf(),
        }
    }

    /// The value following each occurrence of `flag`.
    fn values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    fn one<'a>(args: &'a [String], flag: &str) -> &'a str {
        let found = values(args, flag);
        assert_eq!(found.len(), 1, "{flag} in {args:?}");
        found[0]
    }

    #[test]
    fn machine_cpu_and_size() {
        let s = spec(Path::new("/run/weft/i1"));
        let tcg = build("pc", Accel::Tcg, &s);
        assert_eq!(one(&tcg, "-machine"), "pc,accel=tcg");
        assert_eq!(one(&tcg, "-cpu"), "max");
        assert_eq!(one(&tcg, "-m"), "256");
        assert_eq!(one(&tcg, "-smp"), "2");
        assert_eq!(
            one(&tcg, "-name"),
            "weft-3f0c1a8e-0000-4000-8000-000000000001"
        );

        let kvm = build("q35", Accel::Kvm, &s);
        assert_eq!(one(&kvm, "-machine"), "q35,accel=kvm");
        assert_eq!(one(&kvm, "-cpu"), "host");
    }

    #[test]
    fn no_default_devices_and_no_reboot() {
        let args = build("pc", Accel::Tcg, &spec(Path::new("/run/weft/i1")));
        assert!(args.iter().any(|a| a == "-nodefaults"));
        assert!(args.iter().any(|a| a == "-no-reboot"));
        assert_eq!(one(&args, "-display"), "none");
    }

    #[test]
    fn kernel_initrd_and_cmdline() {
        let s = spec(Path::new("/run/weft/i1"));
        let args = build("pc", Accel::Tcg, &s);
        assert_eq!(one(&args, "-kernel"), "/run/weft/i1/kernel");
        assert_eq!(one(&args, "-initrd"), "/run/weft/i1/initrd");
        assert_eq!(
            one(&args, "-append"),
            "console=ttyS0 panic=-1 quiet \
             netdev.ip=10.100.0.2/16:10.100.255.254:10.100.255.254 -- /app"
        );

        let mut bare = s.clone();
        bare.initrd = None;
        bare.cmdline = String::new();
        let args = build("pc", Accel::Tcg, &bare);
        assert!(values(&args, "-initrd").is_empty());
        assert_eq!(one(&args, "-append"), "console=ttyS0 panic=-1 quiet");
    }

    #[test]
    fn nics_in_order_with_macs_and_slots() {
        let args = build("pc", Accel::Tcg, &spec(Path::new("/run/weft/i1")));
        assert_eq!(
            values(&args, "-netdev"),
            [
                "tap,id=nic0,ifname=weft0,script=no,downscript=no,vhost=off",
                "tap,id=nic1,ifname=own-tap,script=no,downscript=no,vhost=off",
            ]
        );
        let nics: Vec<_> = values(&args, "-device")
            .into_iter()
            .filter(|d| d.starts_with("virtio-net-pci"))
            .collect();
        assert_eq!(
            nics,
            [
                "virtio-net-pci,netdev=nic0,mac=12:b0:0a:64:00:02,addr=03",
                "virtio-net-pci,netdev=nic1,mac=12:b1:de:ad:be:ef,addr=04",
            ]
        );
    }

    #[test]
    fn most_nics_stay_below_the_agent_slot() {
        assert!(usize::from(FIRST_NIC_SLOT) + MAX_NICS <= usize::from(AGENT_SLOT));
    }

    #[test]
    fn guest_without_nics() {
        let mut s = spec(Path::new("/run/weft/i1"));
        s.nics.clear();
        let args = build("pc", Accel::Tcg, &s);
        assert!(values(&args, "-netdev").is_empty());
        assert!(!args.iter().any(|a| a.starts_with("virtio-net-pci")));
    }

    #[test]
    fn files_live_in_the_run_dir() {
        let args = build("pc", Accel::Tcg, &spec(Path::new("/run/weft/i1")));
        assert_eq!(
            values(&args, "-chardev"),
            [
                "file,id=console,path=/run/weft/i1/console.log,append=on",
                "socket,id=agentsock,path=/run/weft/i1/agent.sock,server=on,wait=off",
            ]
        );
        assert_eq!(one(&args, "-serial"), "chardev:console");
        assert_eq!(
            one(&args, "-qmp"),
            "unix:/run/weft/i1/qmp.sock,server=on,wait=off"
        );
        assert_eq!(one(&args, "-pidfile"), "/run/weft/i1/qemu.pid");
        let devices = values(&args, "-device");
        assert!(devices.contains(&"virtio-serial-pci,id=agent,addr=10"));
        assert!(devices.contains(&"virtserialport,bus=agent.0,chardev=agentsock,name=weft.agent"));
    }

    #[test]
    fn debug_exit_device_on_machines_with_an_isa_bus() {
        let s = spec(Path::new("/run/weft/i1"));
        let exit_device = |machine: &str| {
            build(machine, Accel::Tcg, &s)
                .iter()
                .filter(|a| a.starts_with("isa-debug-exit"))
                .count()
        };
        for machine in ["pc", "q35", "pc-i440fx-7.2", "pc-q35-8.0", "microvm"] {
            assert_eq!(exit_device(machine), 1, "{machine}");
        }
        for machine in ["virt", "none", "xenpv"] {
            assert_eq!(exit_device(machine), 0, "{machine}");
        }
        let args = build("pc", Accel::Tcg, &s);
        assert!(values(&args, "-device").contains(&"isa-debug-exit,iobase=0xf4,iosize=0x04"));
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        let args = build("pc", Accel::Tcg, &spec(Path::new("/run/a,b")));
        assert_eq!(
            one(&args, "-qmp"),
            "unix:/run/a,,b/qmp.sock,server=on,wait=off"
        );
        assert_eq!(
            values(&args, "-chardev")[0],
            "file,id=console,path=/run/a,,b/console.log,append=on"
        );
        // Plain arguments are not option lists and stay as they are.
        assert_eq!(one(&args, "-kernel"), "/run/a,b/kernel");
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weft-vmm-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kernel"), b"k").unwrap();
        std::fs::write(dir.join("initrd"), b"i").unwrap();
        dir
    }

    fn refused(spec: &GuestSpec) -> String {
        match validate(spec) {
            Err(DriverError::Spawn(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn validation() {
        let dir = temp_dir("validate");
        let good = spec(&dir);
        validate(&good).unwrap();

        let mut s = good.clone();
        s.kernel = dir.join("missing-kernel");
        assert!(refused(&s).contains("missing-kernel does not exist"));

        let mut s = good.clone();
        s.kernel = dir.clone();
        assert!(refused(&s).contains("is not a file"));

        let mut s = good.clone();
        s.initrd = Some(dir.join("missing-initrd"));
        assert!(refused(&s).contains("initrd"));

        let mut s = good.clone();
        s.nics[1].tap = String::new();
        assert_eq!(refused(&s), "NIC 1 has no TAP device name");

        for bad in ["a,b", "sixteen-chars-xx", "a b", "a/b"] {
            let mut s = good.clone();
            s.nics[0].tap = bad.into();
            assert!(refused(&s).contains("is not a TAP device name"), "{bad}");
        }

        let mut s = good.clone();
        s.nics = vec![good.nics[0].clone(); MAX_NICS + 1];
        assert!(refused(&s).contains("at most 8"));

        let mut s = good.clone();
        s.memory_mb = 0;
        assert!(refused(&s).contains("memory_mb 0"));

        let mut s = good.clone();
        s.cmdline = "a\nb".into();
        assert!(refused(&s).contains("control character"));

        let mut s = good.clone();
        s.run_dir = dir.join("x".repeat(100));
        assert!(refused(&s).contains("shorter run directory"));

        std::fs::remove_dir_all(&dir).unwrap();
    }
}
