//! One module per command group; `dispatch` picks the one the command line names.

mod api;
mod instance;
mod lifecycle;
mod login;
mod logs;
mod net;
mod service;
mod show;
mod wait;

use clap::CommandFactory as _;

use crate::cli::{Cli, Command, InstanceCommand, NetCommand, ServiceCommand};
use crate::client::Client;
use crate::config::{self, ConfigFile, Settings, Sources};
use crate::error::Result;
use crate::output::Format;

/// What every command that talks to weftd needs.
pub struct Ctx {
    pub client: Client,
    pub format: Format,
}

pub fn dispatch(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Completion { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "weft", &mut std::io::stdout());
            return Ok(());
        }
        Command::Login => return login::run(&cli),
        _ => {}
    }

    let ctx = Ctx {
        client: Client::new(&settings(&cli)?),
        format: cli.output,
    };
    match cli.command {
        Command::Login | Command::Completion { .. } => unreachable!("handled above"),
        Command::Ps => instance::list(&ctx),
        Command::Instance(command) => match command {
            InstanceCommand::Create(args) => instance::create(&ctx, args),
            InstanceCommand::Ls => instance::list(&ctx),
            InstanceCommand::Get { instance } => instance::get(&ctx, &instance),
            InstanceCommand::Rm(which) => lifecycle::remove(&ctx, &which.instances),
            InstanceCommand::Start(args) => lifecycle::start(&ctx, args),
            InstanceCommand::Stop(which) => lifecycle::stop(&ctx, &which.instances),
            InstanceCommand::Logs(args) => logs::run(&ctx, args),
            InstanceCommand::Wait(args) => wait::run(&ctx, args),
        },
        Command::Net(command) => match command {
            NetCommand::Ls => net::list(&ctx),
            NetCommand::Get { interface } => net::get(&ctx, &interface),
        },
        Command::Service(command) => match command {
            ServiceCommand::Create(args) => service::create(&ctx, args),
            ServiceCommand::Ls => service::list(&ctx),
            ServiceCommand::Get { service } => service::get(&ctx, &service),
            ServiceCommand::Rm { services } => service::remove(&ctx, &services),
        },
        Command::Api(args) => api::run(&ctx, args),
    }
}

/// The profile named by `--profile` or `WEFT_PROFILE`, if any.
fn selected_profile(cli: &Cli) -> Option<String> {
    cli.profile.clone().or_else(|| {
        std::env::var(config::ENV_PROFILE)
            .ok()
            .filter(|p| !p.is_empty())
    })
}

/// URL and token from flags, environment and profile, in that order.
fn settings(cli: &Cli) -> Result<Settings> {
    let mut sources = Sources::from_env(cli.url.clone(), cli.token.clone());
    let selected = selected_profile(cli);
    let complete = (sources.flag_url.is_some() || sources.env_url.is_some())
        && (sources.flag_token.is_some() || sources.env_token.is_some());
    if selected.is_some() {
        let path = config::config_path()?;
        sources.profile = ConfigFile::load(&path)?.pick(selected.as_deref(), &path)?;
    } else if !complete {
        // Without a home there is no default profile, and nothing to complain about.
        if let Ok(path) = config::config_path() {
            sources.profile = ConfigFile::load(&path)?.pick(None, &path)?;
        }
    }
    Ok(config::resolve(&sources))
}
