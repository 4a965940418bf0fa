//! Accounts: who may call the API, with which permissions and license features (R9).

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use crate::config::{AccountConfig, ConfigError, LICENSE_CUSTOM_NETWORK, NET_MANAGER};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub permissions: Vec<String>,
    pub license: Vec<String>,
}

impl Account {
    /// Whether the account may use `network_interfaces`, `gateway` and `nameserver` at all.
    pub fn is_net_manager(&self) -> bool {
        self.permissions.iter().any(|p| p == NET_MANAGER)
    }

    pub fn licensed_for_custom_network(&self) -> bool {
        self.license.iter().any(|f| f == LICENSE_CUSTOM_NETWORK)
    }
}

/// Bearer tokens and the accounts they open.
pub struct Accounts {
    by_token: HashMap<String, Account>,
}

impl Accounts {
    /// Resolves the configured accounts, creating missing token files.
    pub fn load(configs: &[AccountConfig]) -> Result<Accounts, ConfigError> {
        let mut by_token = HashMap::new();
        for config in configs {
            let account = Account {
                name: config.name.clone(),
                permissions: config.permissions.clone(),
                license: config.license.clone(),
            };
            let mut tokens = config.tokens.clone();
            if let Some(path) = &config.token_file {
                tokens.push(read_or_create_token(path)?);
            }
            for token in tokens {
                if token.len() < 16 {
                    return Err(ConfigError::Invalid(format!(
                        "a token of account '{}' is shorter than 16 characters",
                        config.name
                    )));
                }
                if by_token.insert(token, account.clone()).is_some() {
                    return Err(ConfigError::Invalid(format!(
                        "a token of account '{}' is also another account's token",
                        config.name
                    )));
                }
            }
        }
        Ok(Accounts { by_token })
    }

    pub fn authenticate(&self, token: &str) -> Option<&Account> {
        self.by_token.get(token)
    }
}

fn read_or_create_token(path: &Path) -> Result<String, ConfigError> {
    let err = |source| ConfigError::TokenFile {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(err)?;
            }
            let token = weft_model::names::random_suffix(40);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(err)?;
            writeln!(file, "{token}").map_err(err)?;
            Ok(token)
        }
        Err(e) => Err(err(e)),
    }
}
