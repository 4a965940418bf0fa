//! `weft login`: saves an address and a token as a profile.

use crate::cli::Cli;
use crate::config::{self, ConfigFile, Profile, Sources};
use crate::error::{Failure, Result};
use crate::output;

pub fn run(cli: &Cli) -> Result<()> {
    let sources = Sources::from_env(cli.url.clone(), cli.token.clone());
    let url = sources.flag_url.or(sources.env_url).ok_or_else(|| {
        Failure::usage("weft login needs --url (or WEFT_URL): the address of weftd's API")
    })?;
    let token = sources.flag_token.or(sources.env_token).ok_or_else(|| {
        Failure::usage("weft login needs --token (or WEFT_TOKEN): the account's API token")
    })?;
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(Failure::usage(format!(
            "Invalid --url '{url}': expected http://HOST:PORT or https://HOST:PORT"
        )));
    }

    let name = super::selected_profile(cli).unwrap_or_else(|| config::DEFAULT_PROFILE.into());
    let path = config::config_path()?;
    let mut file = ConfigFile::load(&path)?;
    let url = url.trim_end_matches('/').to_string();
    file.profiles.insert(
        name.clone(),
        Profile {
            url: Some(url.clone()),
            token: Some(token),
        },
    );
    file.save(&path)?;
    output::print(&format!(
        "Saved profile '{name}' ({url}) in {}\n",
        path.display()
    ));
    Ok(())
}
