//! Console logs, kept bounded. A guest writes its console to `console.log` in append mode
//! (whatever it prints, weftd does not stop it). A keeper copies a log that grew past
//! [`CAP`] to `console.log.1` and truncates it, so an instance never holds more than twice
//! [`CAP`] on disk; `console.base` remembers how much output came before the current file,
//! so offsets in the API stay those of the whole output.
//!
//! The copy and the truncation are two steps: output written between them is lost, at most
//! what a guest prints in that instant.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The size at which a console log is rotated.
pub const CAP: u64 = 1 << 20;

/// The most output one log request returns.
pub const READ_MAX: u64 = 1 << 20;

/// A window of an instance's console output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogChunk {
    pub output: Vec<u8>,
    /// The offsets of `output` in the whole output since the guest booted.
    pub start: u64,
    pub end: u64,
    /// The output still kept: older output was dropped to bound the log.
    pub available_start: u64,
    pub available_end: u64,
}

struct Files {
    current: PathBuf,
    previous: PathBuf,
    base: PathBuf,
}

impl Files {
    fn of(console: &Path) -> Files {
        let name = |suffix: &str| {
            let mut name = console.file_name().unwrap_or_default().to_os_string();
            name.push(suffix);
            console.with_file_name(name)
        };
        Files {
            current: console.to_path_buf(),
            previous: name(".1"),
            base: name(".base"),
        }
    }

    fn base(&self) -> u64 {
        std::fs::read_to_string(&self.base)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Forgets the output of an earlier boot (the driver starts `console.log` afresh).
pub fn reset(console: &Path) {
    let files = Files::of(console);
    let _ = std::fs::remove_file(&files.previous);
    let _ = std::fs::remove_file(&files.base);
}

/// Rotates the log when it grew past the cap. Returns how many bytes left the current file.
pub fn keep(console: &Path) -> std::io::Result<u64> {
    let files = Files::of(console);
    let size = len(&files.current);
    if size <= CAP {
        return Ok(0);
    }
    let mut data = Vec::with_capacity(size as usize);
    File::open(&files.current)?.read_to_end(&mut data)?;
    std::fs::write(&files.previous, &data)?;
    // The writer appends, so after truncation it writes at the new end.
    File::options()
        .write(true)
        .open(&files.current)?
        .set_len(0)?;
    std::fs::write(&files.base, (files.base() + data.len() as u64).to_string())?;
    Ok(data.len() as u64)
}

/// Reads a window of the output. A negative offset counts from the end, as in Unikraft
/// Cloud's API.
pub fn read(console: &Path, offset: i64, limit: u64) -> std::io::Result<LogChunk> {
    let files = Files::of(console);
    let base = files.base();
    let previous_len = if base > 0 {
        len(&files.previous).min(base)
    } else {
        0
    };
    let available_start = base - previous_len;
    let available_end = base + len(&files.current);

    let start = if offset < 0 {
        available_end.saturating_sub(offset.unsigned_abs())
    } else {
        offset as u64
    }
    .clamp(available_start, available_end);
    let end = (start + limit.min(READ_MAX)).min(available_end);

    let mut output = Vec::with_capacity((end - start) as usize);
    if start < base {
        let upto = end.min(base);
        read_range(
            &files.previous,
            start - available_start,
            upto - start,
            &mut output,
        )?;
    }
    if end > base {
        let from = start.max(base);
        read_range(&files.current, from - base, end - from, &mut output)?;
    }
    let end = start + output.len() as u64;
    Ok(LogChunk {
        output,
        start,
        end,
        available_start,
        available_end,
    })
}

fn read_range(path: &Path, at: u64, count: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(at))?;
    file.take(count).read_to_end(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn rotation_keeps_offsets_and_bounds_the_files() {
        let dir = tempfile_dir();
        let console = dir.join("console.log");
        let mut writer = File::options()
            .create(true)
            .append(true)
            .open(&console)
            .unwrap();

        // Three rounds of output, each just over the cap, with rotation after each.
        let mut written = Vec::new();
        for round in 0..3u8 {
            let chunk: Vec<u8> = (0..CAP + 10)
                .map(|i| b'a' + ((i % 26) as u8 + round) % 26)
                .collect();
            writer.write_all(&chunk).unwrap();
            written.extend_from_slice(&chunk);
            assert_eq!(keep(&console).unwrap(), CAP + 10);
        }
        writer.write_all(b"tail").unwrap();
        written.extend_from_slice(b"tail");

        assert!(len(&console) <= CAP && len(&dir.join("console.log.1")) <= CAP + 10);
        let total = written.len() as u64;
        let chunk = read(&console, -4, 100).unwrap();
        assert_eq!(
            (chunk.output.as_slice(), chunk.end, chunk.available_end),
            (&b"tail"[..], total, total)
        );

        // A window across both files matches what was written there.
        let chunk = read(&console, (total - 20) as i64, 1000).unwrap();
        assert_eq!(chunk.output, written[(total - 20) as usize..]);
        // Dropped output is not served: the window starts where the kept output starts.
        let chunk = read(&console, 0, 10).unwrap();
        assert_eq!(chunk.start, chunk.available_start);
        assert_eq!(chunk.available_start, total - 4 - (CAP + 10));
        assert_eq!(
            chunk.output,
            written[chunk.start as usize..chunk.end as usize]
        );

        reset(&console);
        std::fs::write(&console, b"fresh").unwrap();
        let chunk = read(&console, 0, 100).unwrap();
        assert_eq!(
            (chunk.output.as_slice(), chunk.available_start),
            (&b"fresh"[..], 0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weft-console-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
