//! Failpoints: named places in create, start, stop and delete where a test makes weftd fail
//! on purpose, to prove crash safety and rollback. They are read once from the environment:
//!
//! ```text
//! WEFT_FAILPOINTS="create.after_claim=abort;delete.after_host_detach=error"
//! ```
//!
//! `abort` kills weftd on the spot with SIGKILL (no destructor, no flush, as a crash or an
//! OOM kill would); `error` makes the step fail with an error that names the failpoint;
//! `delay:<ms>` holds the step that long (a slow disk or host), then lets it go on. With
//! the variable unset (as in production) a failpoint costs one relaxed look at an empty map.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::error::Error;

/// The environment variable that sets failpoints.
pub const ENV: &str = "WEFT_FAILPOINTS";

/// Every failpoint, in the order an operation meets them. Tests iterate over this list.
pub const ALL: &[&str] = &[
    // create
    "create.after_check",
    "create.before_store_write",
    "create.after_claim",
    "create.after_service_group",
    "create.after_pool_attach",
    "create.after_relay",
    "create.after_host_attach",
    "create.before_spawn",
    "create.after_spawn",
    "create.after_running_write",
    "create.before_reply",
    // start
    "start.after_host_attach",
    "start.after_spawn",
    // stop
    "stop.after_stopping_write",
    "stop.after_guest_stop",
    "stop.after_exit_write",
    // delete
    "delete.after_check",
    "delete.after_stopping_write",
    "delete.after_guest_stop",
    "delete.after_exit_write",
    "delete.after_host_detach",
    "delete.after_store_delete",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Abort,
    Error,
    Delay(std::time::Duration),
}

fn registry() -> &'static HashMap<String, Action> {
    static POINTS: OnceLock<HashMap<String, Action>> = OnceLock::new();
    POINTS.get_or_init(|| {
        let text = std::env::var(ENV).unwrap_or_default();
        let points = parse(&text);
        if !points.is_empty() {
            tracing::warn!(failpoints = %text, "failpoints are set: weftd will fail on purpose");
        }
        points
    })
}

/// Parses `name=action` pairs separated by `;` or `,`; unknown names or actions are ignored
/// with a warning, so a typo never makes weftd fail where it should not.
fn parse(text: &str) -> HashMap<String, Action> {
    let mut points = HashMap::new();
    for pair in text
        .split([';', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (name, action) = pair.split_once('=').unwrap_or((pair, "error"));
        let action = match action.trim() {
            "abort" => Action::Abort,
            "error" => Action::Error,
            delay if delay.starts_with("delay:") => match delay["delay:".len()..].parse() {
                Ok(ms) => Action::Delay(std::time::Duration::from_millis(ms)),
                Err(_) => {
                    tracing::warn!(failpoint = name, action = delay, "bad failpoint delay");
                    continue;
                }
            },
            other => {
                tracing::warn!(failpoint = name, action = other, "unknown failpoint action");
                continue;
            }
        };
        let name = name.trim();
        if !ALL.contains(&name) {
            tracing::warn!(failpoint = name, "unknown failpoint");
            continue;
        }
        points.insert(name.to_string(), action);
    }
    points
}

/// Reads the failpoints now (so that a bad setting is logged at start, not at first use).
pub fn init() {
    let _ = registry();
}

/// Passes the failpoint `name`: nothing happens unless it is set.
pub fn hit(name: &str) -> Result<(), Error> {
    debug_assert!(ALL.contains(&name), "failpoint {name} is not listed");
    let points = registry();
    if points.is_empty() {
        return Ok(());
    }
    match points.get(name) {
        None => Ok(()),
        Some(Action::Error) => {
            tracing::warn!(failpoint = name, "failpoint: failing the step");
            Err(Error::step(name, "injected failure (WEFT_FAILPOINTS)"))
        }
        Some(Action::Delay(pause)) => {
            tracing::warn!(failpoint = name, ?pause, "failpoint: holding the step");
            // Off the runtime's worker, so that only this request waits.
            tokio::task::block_in_place(|| std::thread::sleep(*pause));
            Ok(())
        }
        Some(Action::Abort) => {
            tracing::warn!(failpoint = name, "failpoint: killing weftd");
            // SAFETY: kill with our own pid; SIGKILL cannot be caught, so this never returns.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            std::process::abort()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_ignores_unknown_ones() {
        let points = parse("create.after_claim=abort; delete.after_check=error,nope=abort,x");
        assert_eq!(points.len(), 2);
        assert_eq!(points["create.after_claim"], Action::Abort);
        assert_eq!(points["delete.after_check"], Action::Error);
        assert!(parse("create.after_check=boom").is_empty());
        assert!(parse("create.after_check=delay:soon").is_empty());
        let points = parse("create.before_spawn=delay:250");
        assert_eq!(
            points["create.before_spawn"],
            Action::Delay(std::time::Duration::from_millis(250))
        );
    }

    #[test]
    fn names_are_unique() {
        let set: std::collections::HashSet<_> = ALL.iter().collect();
        assert_eq!(set.len(), ALL.len());
        assert!(ALL.len() >= 20);
    }
}
