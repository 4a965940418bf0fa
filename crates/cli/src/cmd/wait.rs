//! Waiting for an instance to reach a state: `weft instance wait`, and `--wait` of create
//! and start.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::{instance, Ctx};
use crate::cli::WaitArgs;
use crate::client::path_segment;
use crate::error::{Failure, Result};
use crate::output::{self, Format};

/// How often the state is polled when weftd has no wait endpoint.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How much longer than the wait itself the request to the wait endpoint may take.
const REQUEST_MARGIN: Duration = Duration::from_secs(30);

pub fn run(ctx: &Ctx, args: WaitArgs) -> Result<()> {
    let instance = until(ctx, &args.instance, &args.state, args.timeout)?;
    match ctx.format {
        Format::Table => {
            output::print(&format!(
                "{} is {}\n",
                instance["name"].as_str().unwrap_or(&args.instance),
                args.state
            ));
            Ok(())
        }
        format => output::print_data(format, &instance),
    }
}

/// Waits until the instance is in `state` and returns it; a timeout is a refusal, with the
/// message weftd's own wait gives.
pub fn until(ctx: &Ctx, id: &str, state: &str, timeout: Duration) -> Result<Value> {
    let spinner = spinner(format!("Waiting for {id} to be {state}"));
    let result = wait_endpoint(ctx, id, state, timeout)
        .transpose()
        .unwrap_or_else(|| poll(ctx, id, state, timeout));
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    result
}

/// `GET /v1/instances/{id}/wait`; `None` when weftd does not serve it.
fn wait_endpoint(ctx: &Ctx, id: &str, state: &str, timeout: Duration) -> Result<Option<Value>> {
    let path = format!(
        "/v1/instances/{}/wait?state={state}&timeout_ms={}",
        path_segment(id),
        timeout.as_millis()
    );
    let answer = ctx
        .client
        .send("GET", &path, None, Some(timeout + REQUEST_MARGIN))?;
    if answer.is_missing_endpoint() {
        return Ok(None);
    }
    answer.into_success()?;
    // The wait's own item may be a short one; the full instance is what callers print.
    instance::fetch(ctx, id).map(Some)
}

fn poll(ctx: &Ctx, id: &str, state: &str, timeout: Duration) -> Result<Value> {
    let started = Instant::now();
    loop {
        let current = instance::fetch(ctx, id)?;
        let now = current["state"].as_str().unwrap_or_default().to_string();
        if now == state {
            return Ok(current);
        }
        let name = current["name"].as_str().unwrap_or(id);
        // A guest whose app ended will not run again on its own.
        if state == "running" && now == "stopped" && !current["exit_code"].is_null() {
            return Err(Failure::Refused {
                http: 0,
                message: format!(
                    "Instance '{name}' stopped with exit code {} while waiting for it to be running",
                    current["exit_code"]
                ),
            });
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            return Err(Failure::Refused {
                http: 408,
                message: format!(
                    "Timed out after {} ms waiting for instance '{name}' to be {state}; it is {now}",
                    timeout.as_millis()
                ),
            });
        }
        std::thread::sleep(POLL_EVERY.min(timeout - elapsed));
    }
}

/// A spinner with the elapsed time on stderr, when stderr is a terminal.
fn spinner(message: String) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}
