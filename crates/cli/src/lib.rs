//! `weft`, the command line client of weftd's API.
//!
//! The modules that hold rules worth testing on their own are public: the `--net` grammar,
//! profiles and their precedence, tables, and the client's handling of answers.

pub mod cli;
pub mod client;
mod cmd;
pub mod config;
pub mod error;
pub mod netspec;
pub mod output;

use clap::Parser as _;

/// Runs the command line of this process and returns its exit code.
pub fn run() -> i32 {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; mistakes to stderr with 2.
            let _ = e.print();
            return e.exit_code();
        }
    };
    match cmd::dispatch(cli) {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.exit_code()
        }
    }
}
