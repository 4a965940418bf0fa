//! The `[qemu]` section of weftd's configuration and the choice between KVM and TCG.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How QEMU runs guest code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM where this host can use it, TCG elsewhere.
    #[default]
    Auto,
    /// Hardware virtualization; QEMU refuses to start where KVM does not work.
    Kvm,
    /// Emulation: slow, but runs on any host.
    Tcg,
}

impl Accel {
    /// The value of QEMU's `accel=` machine option. `Auto` has none: resolve it first.
    pub(crate) fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg | Accel::Auto => "tcg",
        }
    }

    /// The `-cpu` model: the host's own under KVM, everything TCG can emulate otherwise.
    pub(crate) fn cpu_model(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg | Accel::Auto => "max",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QemuConfig {
    /// The QEMU binary; a bare name is looked up in `PATH`.
    pub binary: PathBuf,
    pub accel: Accel,
    /// QEMU's machine type. It must have a PCI bus (`pc`, `q35`): NICs sit on fixed PCI slots.
    pub machine: String,
}

impl Default for QemuConfig {
    fn default() -> Self {
        QemuConfig {
            binary: PathBuf::from("qemu-system-x86_64"),
            accel: Accel::Auto,
            machine: "pc".to_string(),
        }
    }
}

/// What the host offers for hardware virtualization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostVirt {
    /// `/dev/kvm` opens for reading and writing.
    pub kvm_device: bool,
    /// The CPU advertises VT-x (`vmx`) or AMD-V (`svm`).
    pub cpu_extensions: bool,
}

impl HostVirt {
    pub(crate) fn probe() -> Self {
        let kvm_device = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(Path::new("/dev/kvm"))
            .is_ok();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        HostVirt {
            kvm_device,
            cpu_extensions: cpu_has_virt_extensions(&cpuinfo),
        }
    }

    /// Both are needed: a `/dev/kvm` can exist (nested setups, containers) on a CPU that
    /// cannot run guests, and then every KVM guest would fail at its first instruction.
    pub(crate) fn kvm_usable(self) -> bool {
        self.kvm_device && self.cpu_extensions
    }
}

/// Whether any `flags` line of `/proc/cpuinfo` text names `vmx` or `svm`.
pub(crate) fn cpu_has_virt_extensions(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| key.trim() == "flags")
        .any(|(_, flags)| flags.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// The accelerator QEMU is started with: never `Auto`.
pub(crate) fn resolve_accel(requested: Accel, host: HostVirt) -> Accel {
    match requested {
        Accel::Auto if host.kvm_usable() => Accel::Kvm,
        Accel::Auto => Accel::Tcg,
        explicit => explicit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTEL: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\n\
        flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge vmx ssse3\n";
    const AMD: &str = "processor\t: 0\nflags\t\t: fpu vme svm sse4a\n";
    const PLAIN: &str = "processor\t: 0\nflags\t\t: fpu vme de hypervisor\n\
        vmx flags\t: vnmi preemption_timer\n";

    #[test]
    fn finds_virtualization_flags() {
        assert!(cpu_has_virt_extensions(INTEL));
        assert!(cpu_has_virt_extensions(AMD));
        // A `vmx flags` line alone does not count, nor does a flag that only contains "vmx".
        assert!(!cpu_has_virt_extensions(PLAIN));
        assert!(!cpu_has_virt_extensions("flags\t: vmxnet svmx\n"));
        assert!(!cpu_has_virt_extensions(""));
    }

    #[test]
    fn auto_needs_both_device_and_cpu() {
        let host = |kvm_device, cpu_extensions| HostVirt {
            kvm_device,
            cpu_extensions,
        };
        assert_eq!(resolve_accel(Accel::Auto, host(true, true)), Accel::Kvm);
        // The case of a /dev/kvm that opens on a CPU without vmx or svm.
        assert_eq!(resolve_accel(Accel::Auto, host(true, false)), Accel::Tcg);
        assert_eq!(resolve_accel(Accel::Auto, host(false, true)), Accel::Tcg);
        assert_eq!(resolve_accel(Accel::Auto, host(false, false)), Accel::Tcg);
    }

    #[test]
    fn explicit_choice_wins() {
        let none = HostVirt {
            kvm_device: false,
            cpu_extensions: false,
        };
        let full = HostVirt {
            kvm_device: true,
            cpu_extensions: true,
        };
        assert_eq!(resolve_accel(Accel::Kvm, none), Accel::Kvm);
        assert_eq!(resolve_accel(Accel::Tcg, full), Accel::Tcg);
    }

    #[test]
    fn cpu_model_follows_accel() {
        assert_eq!(Accel::Kvm.cpu_model(), "host");
        assert_eq!(Accel::Tcg.cpu_model(), "max");
        assert_eq!(Accel::Kvm.qemu_name(), "kvm");
        assert_eq!(Accel::Tcg.qemu_name(), "tcg");
    }

    #[test]
    fn config_section_defaults() {
        let empty: QemuConfig = toml::from_str("").unwrap();
        assert_eq!(empty, QemuConfig::default());
        assert_eq!(empty.binary, PathBuf::from("qemu-system-x86_64"));
        assert_eq!(empty.accel, Accel::Auto);
        assert_eq!(empty.machine, "pc");

        let set: QemuConfig =
            toml::from_str("binary = \"/opt/qemu/bin/qemu-system-x86_64\"\naccel = \"tcg\"\n")
                .unwrap();
        assert_eq!(set.accel, Accel::Tcg);
        assert_eq!(set.machine, "pc");
        assert_eq!(
            set.binary,
            PathBuf::from("/opt/qemu/bin/qemu-system-x86_64")
        );
    }

    #[test]
    fn config_section_is_strict() {
        assert!(toml::from_str::<QemuConfig>("accel = \"hvf\"\n").is_err());
        assert!(toml::from_str::<QemuConfig>("acel = \"tcg\"\n").is_err());
    }
}
