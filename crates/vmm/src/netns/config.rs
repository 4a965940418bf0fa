//! The `[netns]` section of weftd's configuration and where the driver's two programs are.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The program the driver runs per guest.
pub const HELPER_PROGRAM: &str = "weft-netns";
/// The init and agent that runs as the guest's PID 1.
pub const GUEST_PROGRAM: &str = "weft-guest";

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetnsConfig {
    /// The `weft-netns` binary. Default: the one next to the running program, else the first
    /// in `PATH`.
    pub helper: Option<PathBuf>,
    /// The `weft-guest` binary. Default: found the same way.
    pub guest: Option<PathBuf>,
}

/// Where `program` is: the configured path, else next to the running executable, else in
/// `PATH`. A configured bare name is looked up in `PATH` as well. `None` when it is nowhere.
pub(crate) fn locate(configured: Option<&Path>, program: &str) -> Option<PathBuf> {
    let beside_exe = || {
        let exe = std::env::current_exe().ok()?;
        let candidate = exe.parent()?.join(program);
        is_executable(&candidate).then_some(candidate)
    };
    match configured {
        Some(path) if path.components().count() > 1 || path.is_absolute() => {
            Some(path.to_path_buf())
        }
        Some(name) => in_path(name),
        None => beside_exe().or_else(|| in_path(Path::new(program))),
    }
}

fn in_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_section() {
        let empty: NetnsConfig = toml::from_str("").unwrap();
        assert_eq!(empty, NetnsConfig::default());
        assert_eq!(empty.helper, None);

        let set: NetnsConfig =
            toml::from_str("helper = \"/opt/weft/weft-netns\"\nguest = \"/opt/weft/weft-guest\"\n")
                .unwrap();
        assert_eq!(set.helper, Some(PathBuf::from("/opt/weft/weft-netns")));
        assert_eq!(set.guest, Some(PathBuf::from("/opt/weft/weft-guest")));

        assert!(toml::from_str::<NetnsConfig>("helpr = \"x\"\n").is_err());
    }

    #[test]
    fn finds_programs() {
        assert_eq!(
            locate(Some(Path::new("/no/such/weft-netns")), HELPER_PROGRAM),
            Some(PathBuf::from("/no/such/weft-netns")),
            "a configured path is taken as it is"
        );
        let sh = locate(Some(Path::new("sh")), "sh").expect("sh is in PATH");
        assert!(sh.is_absolute());
        assert_eq!(locate(Some(Path::new("weft-no-such-program")), "x"), None);
        assert_eq!(locate(None, "weft-no-such-program"), None);
    }
}
