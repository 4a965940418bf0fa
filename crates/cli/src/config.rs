//! Where the CLI finds weftd and its token: flags, then the environment, then a profile
//! saved by `weft login`, then the default address.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Failure, Result};

/// weftd's own default listen address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7070";
/// The profile used when none is selected.
pub const DEFAULT_PROFILE: &str = "default";

pub const ENV_URL: &str = "WEFT_URL";
pub const ENV_TOKEN: &str = "WEFT_TOKEN";
pub const ENV_PROFILE: &str = "WEFT_PROFILE";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The config file: named profiles.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// What a command talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub url: String,
    pub token: Option<String>,
}

/// The values each source offers; `resolve` picks per field.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub flag_url: Option<String>,
    pub flag_token: Option<String>,
    pub env_url: Option<String>,
    pub env_token: Option<String>,
    pub profile: Option<Profile>,
}

impl Sources {
    /// Reads the environment; empty variables count as unset.
    pub fn from_env(flag_url: Option<String>, flag_token: Option<String>) -> Sources {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        Sources {
            flag_url,
            flag_token,
            env_url: var(ENV_URL),
            env_token: var(ENV_TOKEN),
            profile: None,
        }
    }
}

/// Flag over environment over profile over the default, for the URL and the token each.
pub fn resolve(sources: &Sources) -> Settings {
    let profile = sources.profile.clone().unwrap_or_default();
    let url = sources
        .flag_url
        .clone()
        .or_else(|| sources.env_url.clone())
        .or(profile.url)
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let token = sources
        .flag_token
        .clone()
        .or_else(|| sources.env_token.clone())
        .or(profile.token);
    Settings {
        url: url.trim_end_matches('/').to_string(),
        token,
    }
}

/// `$XDG_CONFIG_HOME/weft/config.toml`, else `~/.config/weft/config.toml`.
pub fn config_path() -> Result<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = match xdg {
        Some(dir) => dir,
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".config"))
            .ok_or_else(|| {
                Failure::other(
                    "cannot find the config directory: neither XDG_CONFIG_HOME nor HOME is set",
                )
            })?,
    };
    Ok(base.join("weft").join("config.toml"))
}

impl ConfigFile {
    /// The file at `path`, or an empty one when it does not exist.
    pub fn load(path: &Path) -> Result<ConfigFile> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| Failure::other(format!("cannot read {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(e) => Err(Failure::other(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Writes the file readable by its owner only: it holds tokens.
    pub fn save(&self, path: &Path) -> Result<()> {
        let fail =
            |e: std::io::Error| Failure::other(format!("cannot write {}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let text = toml::to_string(self).map_err(|e| Failure::other(e.to_string()))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(fail)?;
        // A file that existed before keeps its mode through open(); tighten it.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(fail)?;
        file.write_all(text.as_bytes()).map_err(fail)
    }

    /// The profile `selected` names; without a selection, the default profile if there is
    /// one. Naming a profile that does not exist is a usage error.
    pub fn pick(&self, selected: Option<&str>, path: &Path) -> Result<Option<Profile>> {
        match selected {
            None => Ok(self.profiles.get(DEFAULT_PROFILE).cloned()),
            Some(name) => self.profiles.get(name).cloned().map(Some).ok_or_else(|| {
                Failure::usage(format!(
                    "No profile '{name}' in {}; save one with: weft login --profile {name} --url URL --token TOKEN",
                    path.display()
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(url: &str, token: &str) -> Option<Profile> {
        Some(Profile {
            url: Some(url.into()),
            token: Some(token.into()),
        })
    }

    #[test]
    fn flag_beats_env_beats_profile_beats_default() {
        let mut s = Sources::default();
        assert_eq!(
            resolve(&s),
            Settings {
                url: DEFAULT_URL.into(),
                token: None
            }
        );

        s.profile = profile("http://p:1", "ptoken");
        assert_eq!(resolve(&s).url, "http://p:1");
        assert_eq!(resolve(&s).token.as_deref(), Some("ptoken"));

        s.env_url = Some("http://e:2/".into());
        s.env_token = Some("etoken".into());
        assert_eq!(resolve(&s).url, "http://e:2", "a trailing slash is dropped");
        assert_eq!(resolve(&s).token.as_deref(), Some("etoken"));

        s.flag_url = Some("http://f:3".into());
        assert_eq!(resolve(&s).url, "http://f:3");
        assert_eq!(
            resolve(&s).token.as_deref(),
            Some("etoken"),
            "each field is resolved on its own"
        );
        s.flag_token = Some("ftoken".into());
        assert_eq!(resolve(&s).token.as_deref(), Some("ftoken"));
    }

    #[test]
    fn profile_fills_only_what_it_has() {
        let s = Sources {
            env_token: Some("etoken".into()),
            profile: Some(Profile {
                url: Some("http://p:1".into()),
                token: None,
            }),
            ..Sources::default()
        };
        assert_eq!(
            resolve(&s),
            Settings {
                url: "http://p:1".into(),
                token: Some("etoken".into())
            }
        );
    }

    #[test]
    fn save_load_and_pick() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft/config.toml");
        let mut file = ConfigFile::load(&path).unwrap();
        assert!(file.profiles.is_empty());
        assert_eq!(file.pick(None, &path).unwrap(), None);

        file.profiles
            .insert("default".into(), profile("http://d:1", "dt").unwrap());
        file.profiles
            .insert("prod".into(), profile("http://p:1", "pt").unwrap());
        file.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let back = ConfigFile::load(&path).unwrap();
        assert_eq!(back, file);
        assert_eq!(back.pick(None, &path).unwrap(), profile("http://d:1", "dt"));
        assert_eq!(
            back.pick(Some("prod"), &path).unwrap(),
            profile("http://p:1", "pt")
        );
        let missing = back.pick(Some("staging"), &path).unwrap_err();
        assert_eq!(missing.exit_code(), crate::error::exit::USAGE);
        assert!(missing.to_string().starts_with("No profile 'staging' in "));
    }

    #[test]
    fn an_existing_file_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        ConfigFile::default().save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
