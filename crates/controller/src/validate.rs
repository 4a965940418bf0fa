//! Checks of a create or patch request that need neither store nor host: sizes, args, env,
//! and what fits on a guest's boot command line.

use std::collections::BTreeMap;

use weft_model::bootargs::{representable, BootArgsError};
use weft_model::{BootArgs, Ipv4Cidr, MacAddr, NetdevConfig};

use crate::error::Error;
use crate::plan::PlannedInterface;
use crate::request::CreateRequest;

pub(crate) const VCPUS: (u32, u32) = (1, 64);

/// The least memory any guest gets; an image may ask for more (`min_memory_mb`).
pub(crate) const MEMORY_MB_MIN: u32 = 16;

/// Environment keys a Linux guest kernel would take as its own boot parameters: `env.vars`
/// entries travel on the kernel command line, where such a key changes how the guest boots
/// (or stops it from booting) instead of reaching the app.
const KERNEL_PARAMETERS: &[&str] = &[
    "init",
    "rdinit",
    "root",
    "rootfstype",
    "rootflags",
    "rootwait",
    "rootdelay",
    "ro",
    "rw",
    "console",
    "earlycon",
    "earlyprintk",
    "loglevel",
    "quiet",
    "debug",
    "panic",
    "oops",
    "panic_on_warn",
    "mem",
    "memmap",
    "maxcpus",
    "nr_cpus",
    "nosmp",
    "noapic",
    "nolapic",
    "acpi",
    "pci",
    "iommu",
    "nokaslr",
    "mitigations",
    "nomodule",
    "module_blacklist",
    "initcall_blacklist",
    "crashkernel",
    "reboot",
    "ip",
    "nfsroot",
    "noinitrd",
    "initrd",
    "retain_initrd",
    "clocksource",
    "tsc",
    "idle",
    "nohz",
    "isolcpus",
    "hugepages",
    "hugepagesz",
    "default_hugepagesz",
    "transparent_hugepage",
    "norandmaps",
    "vsyscall",
    "lsm",
    "security",
    "selinux",
    "apparmor",
    "audit",
    "nosmt",
    "noexec",
    "nx",
    "pti",
    "nopti",
    "spectre_v2",
    "kpti",
    "vdso",
    "swiotlb",
    "elevator",
    "rcupdate",
    "printk",
    "ignore_loglevel",
    "log_buf_len",
    "hardened_usercopy",
    "slub_debug",
    "page_poison",
    "init_on_alloc",
    "init_on_free",
    "no_hash_pointers",
    "cgroup_disable",
    "cgroup_enable",
    "numa",
    "nomce",
    "noefi",
    "efi",
    "noreplace-smp",
    "lpj",
    "profile",
    "resume",
    "hibernate",
    "softlockup_panic",
    "nmi_watchdog",
    "watchdog",
    "sysrq_always_enabled",
];

/// Checks `memory_mb` against what the image needs and what the host has.
pub(crate) fn check_memory(value: u32, image: &str, image_min: Option<u32>) -> Result<u32, Error> {
    let min = image_min.unwrap_or(MEMORY_MB_MIN).max(MEMORY_MB_MIN);
    if value < min {
        let why = match image_min {
            Some(_) => format!("image '{image}' needs at least {min}"),
            None => format!("it must be at least {min}"),
        };
        return Err(Error::bad_request(format!(
            "Invalid memory_mb {value}: {why}"
        )));
    }
    if let Some(host) = host_memory_mb() {
        if u64::from(value) > host {
            return Err(Error::bad_request(format!(
                "Invalid memory_mb {value}: the host has {host} MB in all"
            )));
        }
    }
    Ok(value)
}

/// The host's total memory in MB, from /proc/meminfo.
fn host_memory_mb() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// The words that follow `/v1/instances/` in the API's own paths. An instance of such a
/// name could not be addressed by name (`GET /v1/instances/wait` is the batch wait, not the
/// instance `wait`), so these names are refused.
pub(crate) const PATH_WORDS: &[&str] =
    &["wait", "start", "stop", "log", "templates", "checkpoints"];

/// Checks the name of a new instance: a DNS label that is not one of the API's path words.
pub(crate) fn check_instance_name(field: &str, name: &str) -> Result<(), Error> {
    weft_model::names::check_name(name)
        .map_err(|e| Error::bad_request(format!("Invalid {field} '{name}': it {e}")))?;
    if PATH_WORDS.contains(&name) {
        return Err(Error::bad_request(format!(
            "Invalid {field} '{name}': it is reserved, since /v1/instances/{name} is an endpoint \
             of the API and the instance could not be addressed by name"
        )));
    }
    Ok(())
}

pub(crate) fn in_range(field: &str, value: u32, (min, max): (u32, u32)) -> Result<u32, Error> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Error::bad_request(format!(
            "Invalid {field} {value}: it must be from {min} to {max}"
        )))
    }
}

pub(crate) fn refuse_unsupported(req: &CreateRequest) -> Result<(), Error> {
    let unsupported = [
        ("timeout_s", req.timeout_s.is_some()),
        (
            "features",
            req.features.as_ref().is_some_and(|f| !f.is_empty()),
        ),
    ];
    match unsupported.iter().find(|(_, used)| *used) {
        Some((field, _)) => Err(Error::bad_request(format!(
            "'{field}' is not available in this version of weft"
        ))),
        None => Ok(()),
    }
}

/// Renders the boot arguments with the longest network entries possible, so that a request
/// whose args and env could not reach the guest is refused before anything is claimed.
pub(crate) fn check_boot_args_fit(
    req: &CreateRequest,
    planned: &[PlannedInterface],
    default_args: &[String],
) -> Result<(), Error> {
    let app_args = match &req.args {
        Some(args) if !args.is_empty() => args.as_slice(),
        _ => default_args,
    };
    let empty = BTreeMap::new();
    boot_args_fit(app_args, req.env.as_ref().unwrap_or(&empty), planned.len())
}

/// Whether these args and env fit on the boot command line of a guest with `nics` network
/// interfaces, whatever their addresses.
pub(crate) fn boot_args_fit(
    app_args: &[String],
    env: &BTreeMap<String, String>,
    nics: usize,
) -> Result<(), Error> {
    let widest = std::net::Ipv4Addr::new(255, 255, 255, 255);
    let widest_netdev = NetdevConfig {
        cidr: Some(Ipv4Cidr::new(widest, 32).expect("valid")),
        gateway: Some(widest),
        nameserver: Some(widest),
    };
    let args = BootArgs {
        netdevs: vec![Some(widest_netdev); nics],
        macs: vec![MacAddr([0xff; 6]); nics],
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        app_args: app_args.to_vec(),
    };
    args.render().map(|_| ()).map_err(|e| {
        let field = match e {
            BootArgsError::TooManyEnv(_) => "env",
            _ => "args",
        };
        Error::bad_request(format!("Invalid {field}: {e}"))
    })
}

pub(crate) fn check_args_env(req: &CreateRequest) -> Result<(), Error> {
    for (i, arg) in req.args.iter().flatten().enumerate() {
        if !representable(arg) {
            return Err(Error::bad_request(format!(
                "Invalid args[{i}] {arg:?}: arguments cannot hold double quotes or control characters"
            )));
        }
    }
    let empty = BTreeMap::new();
    for (key, value) in req.env.as_ref().unwrap_or(&empty) {
        let key_ok = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            return Err(Error::bad_request(format!(
                "Invalid env key {key:?}: use letters, digits and '_', not starting with a digit"
            )));
        }
        if KERNEL_PARAMETERS.contains(&key.as_str()) {
            return Err(Error::bad_request(format!(
                "Invalid env key {key:?}: it is a boot parameter of the guest kernel, which \
                 would take it instead of the app"
            )));
        }
        if !representable(value) {
            return Err(Error::bad_request(format!(
                "Invalid env value of {key}, {value:?}: values cannot hold double quotes or \
                 control characters"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_labels_but_not_path_words() {
        assert!(check_instance_name("name", "web-1").is_ok());
        assert!(check_instance_name("name", "waiter").is_ok());
        for word in PATH_WORDS {
            let err = check_instance_name("name", word).unwrap_err();
            assert!(
                err.message
                    .starts_with(&format!("Invalid name '{word}': it is reserved")),
                "{err}"
            );
        }
        let err = check_instance_name("checkpoint_name", "A b").unwrap_err();
        assert!(err
            .message
            .starts_with("Invalid checkpoint_name 'A b': it may only hold"));
    }
}
