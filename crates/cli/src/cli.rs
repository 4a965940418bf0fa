//! The command line: every command, flag and example of `weft`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

const MAIN_EXAMPLES: &str = "\
Examples:
  weft login --url http://10.0.0.5:7070 --token \"$TOKEN\"
  weft instance create base --name web -- /bin/busybox httpd -f -p 8080
  weft ps
  weft net ls
  weft api /v1/instances

Connection: --url, else WEFT_URL, else the profile's url, else http://127.0.0.1:7070;
the same order for --token and WEFT_TOKEN. Profiles live in
$XDG_CONFIG_HOME/weft/config.toml (default ~/.config/weft/config.toml).

Exit codes: 0 success, 1 other failure, 2 usage error, 3 refused by weftd,
4 weftd unreachable.";

#[derive(Debug, Parser)]
#[command(
    name = "weft",
    version,
    about = "Run microVM instances with custom network configuration on weftd",
    after_help = MAIN_EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    /// weftd's API address [env: WEFT_URL]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub url: Option<String>,

    /// The account's API token [env: WEFT_TOKEN]
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        help_heading = "Global options"
    )]
    pub token: Option<String>,

    /// The saved profile to use (default: "default") [env: WEFT_PROFILE]
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        help_heading = "Global options"
    )]
    pub profile: Option<String>,

    /// Output format: tables for people, JSON or YAML for scripts
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table, help_heading = "Global options")]
    pub output: Format,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Save weftd's address and a token as a profile
    #[command(after_help = "\
Saves --url and --token (or WEFT_URL and WEFT_TOKEN) as the profile named by --profile,
\"default\" without one. The file is readable by its owner only.

Examples:
  weft login --url http://10.0.0.5:7070 --token \"$TOKEN\"
  weft login --profile staging --url http://10.0.0.6:7070 --token \"$STAGING_TOKEN\"
  weft --profile staging ps")]
    Login,

    /// Create, list and control instances
    #[command(
        subcommand,
        visible_alias = "i",
        after_help = "\
Examples:
  weft instance create base --name web --wait
  weft i ls
  weft i logs web --follow
  weft i rm web"
    )]
    Instance(InstanceCommand),

    /// List instances (same as `weft instance ls`)
    #[command(after_help = "\
Examples:
  weft ps
  weft ps -o json")]
    Ps,

    /// Show the network interfaces of the account's instances
    #[command(
        subcommand,
        after_help = "\
Examples:
  weft net ls
  weft net get web-eth0"
    )]
    Net(NetCommand),

    /// Create, list and delete service groups
    #[command(
        subcommand,
        after_help = "\
Examples:
  weft service create web --port 443:8080/tls+http
  weft service ls"
    )]
    Service(ServiceCommand),

    /// Send a request to the API and print its JSON answer
    #[command(after_help = "\
Examples:
  weft api /v1/instances
  weft api /v1/instances -X POST -d '{\"image\": \"base\", \"autostart\": false}'
  weft api /v1/instances -X POST -d @create.json
  echo '{\"image\": \"base\"}' | weft api /v1/instances -d -
  weft api /v1/instances/web -X DELETE

Without -X the method is GET, or POST when a body is given. The body is sent as it is.
A refusal still prints the answer, and exits with 3.")]
    Api(ApiArgs),

    /// Print a shell completion script
    #[command(after_help = "\
Examples:
  weft completion bash > /etc/bash_completion.d/weft
  weft completion zsh > \"${fpath[1]}/_weft\"
  weft completion fish > ~/.config/fish/completions/weft.fish")]
    Completion {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Create an instance (and start it unless --no-start)
    #[command(after_help = CREATE_EXAMPLES)]
    Create(CreateArgs),

    /// List instances
    #[command(
        visible_alias = "list",
        after_help = "\
Examples:
  weft instance ls
  weft i ls -o yaml"
    )]
    Ls,

    /// Show an instance and its network interfaces
    #[command(after_help = "\
Examples:
  weft instance get web
  weft i get web -o json")]
    Get {
        /// The instance's name or uuid
        instance: String,
    },

    /// Delete instances, releasing their addresses and TAP devices
    #[command(
        visible_alias = "delete",
        after_help = "\
Examples:
  weft instance rm web
  weft i rm web db worker"
    )]
    Rm(Several),

    /// Start stopped instances
    #[command(after_help = "\
Examples:
  weft instance start web
  weft i start web db --wait")]
    Start(StartArgs),

    /// Stop running instances
    #[command(after_help = "\
Examples:
  weft instance stop web
  weft i stop web db")]
    Stop(Several),

    /// Print an instance's console output
    #[command(after_help = "\
Examples:
  weft instance logs web
  weft i logs web --tail 20
  weft i logs web --follow

--follow polls for new output until the instance stops or you press Ctrl-C.")]
    Logs(LogsArgs),

    /// Wait until an instance is in a state
    #[command(after_help = "\
Examples:
  weft instance wait web
  weft i wait web --state stopped --timeout 2m

Exits with 3 when the instance is not in the state before the timeout.")]
    Wait(WaitArgs),
}

const CREATE_EXAMPLES: &str = "\
Examples:
  weft instance create base
  weft i create base --name web --wait -- /bin/busybox httpd -f -p 8080
  weft i create base --name db --memory 256 --env ROLE=db --no-start
  weft i create base --name db \\
      --net '' \\
      --net tap=custtap0,ip=172.30.5.2/24,name=db0,autoconfig=false
  weft i create base --name worker --net relay=shield-eth0,relay-dns=false
  weft i create base --net tap=custtap0,ip=172.30.5.2/24 \\
      --gateway 172.30.5.1 --nameserver 172.30.5.1

--net SPEC adds one network interface (at most 4; the first is the primary one).
SPEC is a comma-separated list of key=value:
  name=NAME            the interface's name (default <instance>-eth<index>)
  ip=CIDR              own address, as 172.30.5.2/24 (needs tap=)
  tap=DEVICE           own TAP device on the host (needs ip=)
  autoconfig=BOOL      whether the guest configures the interface (default true)
  relay=INTERFACE      send all traffic through another instance's interface
  relay-dns=BOOL       whether DNS goes through the relay too (default true)
An empty SPEC ('') is an interface from the host's pools. Without --net the instance
gets one pool interface.";

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The image to boot, as `base`
    pub image: String,

    /// Arguments for the image's app (after `--` when they start with `-`)
    pub args: Vec<String>,

    /// The instance's name (default: one made up by weftd)
    #[arg(long)]
    pub name: Option<String>,

    /// An environment variable for the app, as KEY=VALUE (repeatable)
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Memory in MiB (weftd's default: 128)
    #[arg(long, short = 'm', value_name = "MB")]
    pub memory: Option<u32>,

    /// Virtual CPUs (weftd's default: 1)
    #[arg(long, value_name = "N")]
    pub vcpus: Option<u32>,

    /// Create the instance stopped
    #[arg(long, conflicts_with = "wait")]
    pub no_start: bool,

    /// A network interface (repeatable, at most 4; see below)
    #[arg(long = "net", value_name = "SPEC")]
    pub net: Vec<String>,

    /// The default gateway the guest is told
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,

    /// The nameserver the guest is told
    #[arg(long, value_name = "IP")]
    pub nameserver: Option<String>,

    /// Wait until the instance runs
    #[arg(long)]
    pub wait: bool,

    /// How long --wait waits
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct Several {
    /// Names or uuids of instances
    #[arg(required = true, value_name = "INSTANCE")]
    pub instances: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub which: Several,

    /// Wait until every instance runs
    #[arg(long)]
    pub wait: bool,

    /// How long --wait waits for each instance
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The instance's name or uuid
    pub instance: String,

    /// Keep printing new output
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// Print only the last N lines
    #[arg(long, short = 'n', value_name = "N")]
    pub tail: Option<usize>,
}

/// The states an instance can be in (SPEC section 1).
pub const STATES: [&str; 7] = [
    "stopped", "starting", "running", "draining", "stopping", "standby", "template",
];

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The instance's name or uuid
    pub instance: String,

    /// The state to wait for
    #[arg(long, default_value = "running", value_parser = STATES)]
    pub state: String,

    /// How long to wait, as 500ms, 60s, 2m
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// List the account's network interfaces
    #[command(
        visible_alias = "list",
        after_help = "\
Examples:
  weft net ls
  weft net ls -o json

SOURCE is `pool` for an address and TAP device from the host's pools, `own` for an
interface the user brought. RELAY FOR lists the interfaces that use this one as their
relay."
    )]
    Ls,

    /// Show one network interface
    #[command(after_help = "\
Examples:
  weft net get web-eth0
  weft net get shield-eth0 -o yaml")]
    Get {
        /// The interface's name or uuid
        interface: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a service group
    #[command(after_help = "\
Examples:
  weft service create web --port 443:8080/tls+http
  weft service create web -p 80:8080/http+redirect -p 443:8080/tls+http
  weft service create ssh -p 2222:22/tls

PORT is PUBLIC[:DESTINATION][/HANDLER[+HANDLER...]], with handlers tls, http and
redirect; the destination defaults to the public port.")]
    Create(ServiceCreateArgs),

    /// List service groups
    #[command(
        visible_alias = "list",
        after_help = "\
Examples:
  weft service ls
  weft service ls -o json"
    )]
    Ls,

    /// Show a service group
    #[command(after_help = "\
Examples:
  weft service get web")]
    Get {
        /// The service group's name or uuid
        service: String,
    },

    /// Delete service groups
    #[command(
        visible_alias = "delete",
        after_help = "\
Examples:
  weft service rm web
  weft service rm web ssh"
    )]
    Rm {
        /// Names or uuids of service groups
        #[arg(required = true, value_name = "SERVICE")]
        services: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct ServiceCreateArgs {
    /// The service group's name
    pub name: String,

    /// A published port (repeatable, at least one)
    #[arg(long = "port", short = 'p', value_name = "PORT", required = true)]
    pub ports: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The path, as /v1/instances
    pub path: String,

    /// The HTTP method
    #[arg(short = 'X', long = "method", value_name = "METHOD")]
    pub method: Option<String>,

    /// The body: JSON text, @FILE, or - for standard input
    #[arg(short = 'd', long = "data", value_name = "BODY")]
    pub data: Option<String>,
}

/// Parses `500ms`, `60s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 500ms, 60s or 2m"))?;
    let unit_ms = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "'{text}' is not a duration such as 500ms, 60s or 2m"
            ))
        }
    };
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("'{text}' is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn create_takes_options_after_the_image_and_args_after_dashes() {
        let cli = Cli::try_parse_from([
            "weft", "i", "create", "base", "--name", "web", "--net", "", "--", "/bin/sh", "-c",
            "echo hi",
        ])
        .unwrap();
        let Command::Instance(InstanceCommand::Create(args)) = cli.command else {
            panic!("not a create");
        };
        assert_eq!(args.image, "base");
        assert_eq!(args.name.as_deref(), Some("web"));
        assert_eq!(args.net, vec![String::new()]);
        assert_eq!(args.args, vec!["/bin/sh", "-c", "echo hi"]);
    }
}
