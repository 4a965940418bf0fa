//! Why a command failed, and the exit code each reason maps to.

use std::fmt;

/// Exit codes: 0 for success, and one per kind of failure, so that scripts can tell a
/// mistyped command from a refusal and from a daemon that is not there.
pub mod exit {
    /// Anything else: a config file that cannot be written, an answer that is not JSON.
    pub const OTHER: i32 = 1;
    /// The command line is wrong (clap's own errors, and local checks of `--net` and co).
    pub const USAGE: i32 = 2;
    /// weftd answered, and refused (HTTP 4xx/5xx, or an item that failed).
    pub const REFUSED: i32 = 3;
    /// weftd could not be reached at all.
    pub const UNREACHABLE: i32 = 4;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A mistake on the command line, found before anything was sent.
    Usage(String),
    /// weftd answered with an error; `message` is its own text, shown verbatim.
    Refused { http: u16, message: String },
    /// Nothing answered at `url`.
    Unreachable { url: String, detail: String },
    /// Anything else.
    Other(String),
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::Usage(message.into())
    }

    pub fn other(message: impl Into<String>) -> Failure {
        Failure::Other(message.into())
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Usage(_) => exit::USAGE,
            Failure::Refused { .. } => exit::REFUSED,
            Failure::Unreachable { .. } => exit::UNREACHABLE,
            Failure::Other(_) => exit::OTHER,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Other(m) => f.write_str(m),
            Failure::Refused { message, .. } => f.write_str(message),
            Failure::Unreachable { url, detail } => {
                write!(f, "cannot reach weftd at {url}: {detail}")
            }
        }
    }
}

impl std::error::Error for Failure {}

pub type Result<T> = std::result::Result<T, Failure>;
