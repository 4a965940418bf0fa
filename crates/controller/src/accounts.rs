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

/// Bearer tokens and the accounts they open. Only the tokens' SHA-256 digests are kept, and
/// a presented token's digest is compared with every known one in constant time.
pub struct Accounts {
    digests: Vec<([u8; 32], Account)>,
}

/// The SHA-256 digest of a token.
pub fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Accounts {
    /// Resolves the configured accounts, creating missing token files.
    pub fn load(configs: &[AccountConfig]) -> Result<Accounts, ConfigError> {
        let mut by_token: HashMap<[u8; 32], Account> = HashMap::new();
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
            let mut digests = Vec::new();
            for token in tokens {
                if token.len() < 16 {
                    return Err(ConfigError::Invalid(format!(
                        "a token of account '{}' is shorter than 16 characters",
                        config.name
                    )));
                }
                digests.push(token_digest(&token));
            }
            for text in &config.token_sha256 {
                let digest = parse_digest(text).ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "a token_sha256 of account '{}' is not 'sha256:' and 64 hex digits",
                        config.name
                    ))
                })?;
                digests.push(digest);
            }
            for digest in digests {
                if by_token.insert(digest, account.clone()).is_some() {
                    return Err(ConfigError::Invalid(format!(
                        "a token of account '{}' is also another account's token",
                        config.name
                    )));
                }
            }
        }
        Ok(Accounts {
            digests: by_token.into_iter().collect(),
        })
    }

    /// The account of a token. Every known digest is compared, in constant time, so that the
    /// time taken says nothing about which tokens exist.
    pub fn authenticate(&self, token: &str) -> Option<&Account> {
        use subtle::ConstantTimeEq as _;
        let digest = token_digest(token);
        let mut found = None;
        for (known, account) in &self.digests {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(account);
            }
        }
        found
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, tokens: &[&str], digests: &[&str]) -> AccountConfig {
        AccountConfig {
            name: name.into(),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            token_sha256: digests.iter().map(|t| t.to_string()).collect(),
            token_file: None,
            permissions: vec![],
            license: vec![],
        }
    }

    #[test]
    fn tokens_and_digests_open_their_accounts_only() {
        let hidden = "hidden-token-0123456789";
        let digest: String = token_digest(hidden)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let accounts = Accounts::load(&[
            config("a", &["token-of-a-0123456789"], &[]),
            config("b", &[], &[&format!("sha256:{digest}")]),
        ])
        .unwrap();
        assert_eq!(
            accounts.authenticate("token-of-a-0123456789").unwrap().name,
            "a"
        );
        assert_eq!(accounts.authenticate(hidden).unwrap().name, "b");
        assert!(accounts.authenticate("token-of-a-012345678").is_none());
        assert!(accounts.authenticate("").is_none());
        assert!(accounts.authenticate(&format!("sha256:{digest}")).is_none());
    }

    #[test]
    fn bad_tokens_are_refused_at_load() {
        assert!(Accounts::load(&[config("a", &["short"], &[])]).is_err());
        assert!(Accounts::load(&[config("a", &[], &["sha256:xyz"])]).is_err());
        let same = "same-token-0123456789";
        assert!(Accounts::load(&[config("a", &[same], &[]), config("b", &[same], &[])]).is_err());
    }
}
