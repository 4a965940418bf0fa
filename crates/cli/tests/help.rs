//! The `--help` of every command, compared with the snapshots in `tests/snapshots/`.
//! `WEFT_UPDATE_SNAPSHOTS=1 cargo test -p weft-cli --test help` rewrites them.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory as _;
use weft_cli::cli::Cli;

/// Every command path: `[]`, `["instance"]`, `["instance", "create"]`, ...
fn paths(command: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let mut path = prefix.clone();
        path.push(sub.get_name().to_string());
        paths(sub, path, out);
    }
}

fn snapshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

fn snapshot_file(path: &[String]) -> PathBuf {
    let mut name = vec!["weft".to_string()];
    name.extend_from_slice(path);
    snapshot_dir().join(format!("{}.txt", name.join("-")))
}

fn help_of(path: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(path)
        .arg("--help")
        .env_remove("WEFT_URL")
        .env_remove("WEFT_TOKEN")
        .env_remove("WEFT_PROFILE")
        .output()
        .expect("weft runs");
    assert!(out.status.success(), "weft {path:?} --help failed");
    assert!(
        out.stderr.is_empty(),
        "weft {path:?} --help wrote to stderr"
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

#[test]
fn help_matches_snapshots() {
    let mut all = Vec::new();
    paths(&Cli::command(), Vec::new(), &mut all);
    let update = std::env::var("WEFT_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
    if update {
        std::fs::create_dir_all(snapshot_dir()).unwrap();
    }

    let mut mismatched = Vec::new();
    for path in &all {
        let help = help_of(path);
        let file = snapshot_file(path);
        if update {
            std::fs::write(&file, &help).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&file).unwrap_or_default();
        if expected != help {
            eprintln!("--- {}\n{help}", file.display());
            mismatched.push(file.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(
        mismatched.is_empty(),
        "help differs from the snapshots {mismatched:?}; \
         if the change is meant, run with WEFT_UPDATE_SNAPSHOTS=1"
    );

    // A snapshot of a command that no longer exists is stale.
    let known: Vec<PathBuf> = all.iter().map(|p| snapshot_file(p)).collect();
    for entry in std::fs::read_dir(snapshot_dir()).unwrap() {
        let file = entry.unwrap().path();
        if update && !known.contains(&file) {
            std::fs::remove_file(&file).unwrap();
        } else {
            assert!(known.contains(&file), "stale snapshot {}", file.display());
        }
    }
}

#[test]
fn every_command_has_examples() {
    let mut all = Vec::new();
    paths(&Cli::command(), Vec::new(), &mut all);
    for path in all {
        let help = help_of(&path);
        assert!(
            help.contains("\nExamples:\n"),
            "weft {path:?} has no examples"
        );
    }
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["instance", "frobnicate"][..],
        &["instance", "create"],
        &["instance", "wait", "web", "--state", "sleeping"],
        &["instance", "wait", "web", "--timeout", "soon"],
        &["-o", "xml", "ps"],
        &["instance", "create", "base", "--no-start", "--wait"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "weft {args:?}");
        assert!(out.stdout.is_empty());
    }
}
