//! `weft instance logs`: the console output, decoded from the API's base64 windows.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use super::{instance, Ctx};
use crate::cli::LogsArgs;
use crate::client::path_segment;
use crate::error::{Failure, Result};
use crate::output;

/// The most one request asks for (weftd's own cap is 1 MiB).
const CHUNK: u64 = 256 * 1024;
/// How far back `--tail` looks at most.
const TAIL_MAX: u64 = 1024 * 1024;
/// `--follow` polls this often while output comes, and backs off to the longest while none
/// does.
const FOLLOW_FASTEST: Duration = Duration::from_millis(250);
const FOLLOW_SLOWEST: Duration = Duration::from_secs(2);

/// A window of the console output.
struct Window {
    output: Vec<u8>,
    end: u64,
    start: u64,
    /// Where all the output there is ends, when weftd says.
    available: Option<u64>,
}

fn fetch(ctx: &Ctx, id: &str, offset: i64, limit: u64) -> Result<Window> {
    let item = ctx.client.item(
        "GET",
        &format!(
            "/v1/instances/{}/log?offset={offset}&limit={limit}",
            path_segment(id)
        ),
        None,
    )?;
    let output = base64::engine::general_purpose::STANDARD
        .decode(item["output"].as_str().unwrap_or_default())
        .map_err(|e| {
            Failure::other(format!("weftd sent console output that is not base64: {e}"))
        })?;
    let number = |v: &Value| v.as_u64().unwrap_or_default();
    Ok(Window {
        end: number(&item["range"]["end"]),
        start: number(&item["range"]["start"]),
        available: item["available"]["end"].as_u64(),
        output,
    })
}

fn write(bytes: &[u8]) {
    output::print(&String::from_utf8_lossy(bytes));
}

pub fn run(ctx: &Ctx, args: LogsArgs) -> Result<()> {
    let id = &args.instance;
    let mut offset = match args.tail {
        Some(lines) => tail(ctx, id, lines)?,
        None => {
            let mut offset = 0;
            loop {
                let w = fetch(ctx, id, offset as i64, CHUNK)?;
                write(&w.output);
                offset = w.end;
                if w.output.is_empty() || w.available.is_some_and(|a| w.end >= a) {
                    break offset;
                }
            }
        }
    };
    if !args.follow {
        return Ok(());
    }

    let mut pause = FOLLOW_FASTEST;
    let mut stopped = false;
    loop {
        let w = fetch(ctx, id, offset as i64, CHUNK)?;
        if w.available.is_some_and(|a| a < offset) {
            // The console started over (a new boot): follow the new one from its start.
            offset = 0;
            continue;
        }
        if !w.output.is_empty() {
            write(&w.output);
            offset = w.end;
            pause = FOLLOW_FASTEST;
            continue;
        }
        // Nothing new. After the instance stopped, one more look has been taken: done.
        if stopped {
            return Ok(());
        }
        stopped = instance::fetch(ctx, id)?["state"] == "stopped";
        if !stopped {
            std::thread::sleep(pause);
            pause = (pause * 2).min(FOLLOW_SLOWEST);
        }
    }
}

/// Prints the last `lines` lines and returns the offset after them.
fn tail(ctx: &Ctx, id: &str, lines: usize) -> Result<u64> {
    let mut span = 64 * 1024;
    loop {
        let w = fetch(ctx, id, -(span as i64), span)?;
        let enough = newlines(&w.output) > lines || w.start == 0 || span >= TAIL_MAX;
        if enough {
            write(last_lines(&w.output, lines));
            return Ok(w.end);
        }
        span = (span * 4).min(TAIL_MAX);
    }
}

fn newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

/// The last `n` lines of `bytes`; a last line without its newline counts as one.
pub fn last_lines(bytes: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &bytes[i + 1..];
            }
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn tails() {
        let text = b"one\ntwo\nthree\n";
        assert_eq!(last_lines(text, 1), b"three\n");
        assert_eq!(last_lines(text, 2), b"two\nthree\n");
        assert_eq!(last_lines(text, 3), text);
        assert_eq!(last_lines(text, 9), text);
        assert_eq!(last_lines(text, 0), b"");
        assert_eq!(last_lines(b"one\ntwo", 1), b"two");
        assert_eq!(last_lines(b"", 3), b"");
    }
}
