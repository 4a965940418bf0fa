//! weft-bench: measures weft's control plane, its scale, its data path and guest boot, each
//! figure beside its baseline in the same run, and writes a markdown report. It runs as root
//! and works only inside network namespaces it creates (see `weft-testkit`).

mod boot;
mod control;
mod datapath;
mod dns;
mod hostsetup;
mod report;
mod scale;
mod shield;
mod stats;
mod tcp;
mod tls;
mod world;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};

use report::Results;
use world::{load_average, Programs, World};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Section {
    All,
    /// The host network setup alone (part of `control`).
    Hostnet,
    Control,
    Scale,
    Datapath,
    Boot,
}

#[derive(Parser)]
#[command(about = "weft's benchmarks, in network namespaces of their own")]
struct Args {
    /// What to measure.
    #[arg(value_enum, default_value = "all")]
    section: Section,
    /// Where the markdown report goes.
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Fewer rounds and shorter runs, to check that everything works.
    #[arg(long)]
    quick: bool,
    /// Instances of the scale section.
    #[arg(long, default_value_t = 1000)]
    instances: usize,
    /// Images for the QEMU boot runs (an image `base` with a kernel).
    #[arg(long, default_value = "image/out")]
    images: PathBuf,
    /// QEMU boot runs (slow without KVM).
    #[arg(long, default_value_t = 3)]
    qemu_runs: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "weft-bench runs as root");
    let programs = Programs::find()?;
    let mut results = Results {
        command: command_line(&args),
        host: host_description(),
        ..Results::default()
    };

    let wants = |s: Section| args.section == Section::All || args.section == s;
    if args.section == Section::Hostnet {
        section(&mut results, "host network setup", |r| hostnet(r, &args));
    }
    if wants(Section::Control) {
        section(&mut results, "control plane", |r| {
            control(r, &args, &programs)
        });
    }
    if wants(Section::Scale) {
        section(&mut results, "scale", |r| scale(r, &args, &programs));
    }
    if wants(Section::Datapath) {
        section(&mut results, "data path", |r| datapath(r, &args, &programs));
    }
    if wants(Section::Boot) {
        section(&mut results, "guest boot", |r| boot(r, &args, &programs));
    }

    let text = report::render(&results);
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &text).with_context(|| format!("writing {}", args.out.display()))?;
    print!("{text}");
    eprintln!("weft-bench: report written to {}", args.out.display());
    anyhow::ensure!(results.failures.is_empty(), "some sections failed");
    Ok(())
}

/// Runs one section, noting the load average around it and its failure, if any.
fn section(
    results: &mut Results,
    name: &str,
    run: impl FnOnce(&mut Results) -> anyhow::Result<()>,
) {
    eprintln!("weft-bench: {name} (load average {})", load_average());
    let before = load_average();
    if let Err(e) = run(results) {
        eprintln!("weft-bench: {name} failed: {e:#}");
        results.failures.push((name.to_string(), format!("{e:#}")));
    }
    results
        .loads
        .push((name.to_string(), before, load_average()));
}

fn hostnet(r: &mut Results, args: &Args) -> anyhow::Result<()> {
    let rounds = if args.quick { 20 } else { 200 };
    r.hostsetup.push(hostsetup::run("wbh", rounds, 0)?);
    r.hostsetup.push(hostsetup::run("wbh", rounds, 4000)?);
    Ok(())
}

fn control(r: &mut Results, args: &Args, programs: &Programs) -> anyhow::Result<()> {
    hostnet(r, args)?;

    let taps = 2048;
    let world = World::start(
        "wbc",
        "netns",
        programs,
        None,
        &format!("[pool]\ntap_count = {taps}\n[limits]\ncreates_per_second = 0\n"),
    )?;
    r.control_start = Some((taps, world.start_time));
    let cycles = if args.quick { 20 } else { 200 };
    r.cycles.push(control::cycles(&world, 1, cycles)?);
    r.cycles.push(control::cycles(&world, 4, cycles)?);
    let secs = if args.quick { 3 } else { 10 };
    r.sustained = Some(control::sustained(
        &world,
        4,
        Duration::from_secs(secs),
        taps as usize - 16,
    )?);
    Ok(())
}

fn scale(r: &mut Results, args: &Args, programs: &Programs) -> anyhow::Result<()> {
    let instances = if args.quick { 100 } else { args.instances };
    let world = World::start(
        "wbs",
        "netns",
        programs,
        None,
        "[pool]\ntap_count = 4000\n[limits]\ncreates_per_second = 0\n",
    )?;
    r.scale = Some(scale::run(&world, instances, 4)?);
    Ok(())
}

fn datapath(r: &mut Results, args: &Args, programs: &Programs) -> anyhow::Result<()> {
    let secs = Duration::from_secs(if args.quick { 2 } else { 8 });
    let world = World::start("wbd", "netns", programs, None, "[pool]\ntap_count = 16\n")?;
    r.datapath = Some(datapath::run(
        &world,
        secs,
        if args.quick { 500 } else { 5000 },
    )?);
    r.shield = Some(shield::run(&world, programs, secs, 4)?);
    Ok(())
}

fn boot(r: &mut Results, args: &Args, programs: &Programs) -> anyhow::Result<()> {
    let httpd = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/"];
    let world = World::start("wbb", "netns", programs, None, "")?;
    let runs = if args.quick { 5 } else { 30 };
    r.boots.push(boot::run(
        &world,
        "netns",
        runs,
        Some(&httpd),
        Duration::from_secs(10),
    )?);
    drop(world);

    let images = std::fs::canonicalize(&args.images).unwrap_or(args.images.clone());
    if !images.join("base/kernel").is_file() {
        r.skipped.push((
            "QEMU boot".into(),
            format!("no image in {} (run image/build.sh)", args.images.display()),
        ));
        return Ok(());
    }
    let world = World::start("wbq", "qemu", programs, Some(&images), "")?;
    let runs = if args.quick { 1 } else { args.qemu_runs };
    r.boots.push(boot::run(
        &world,
        "qemu",
        runs,
        None,
        Duration::from_secs(180),
    )?);
    Ok(())
}

fn command_line(args: &Args) -> String {
    let mut s = String::from("weft-bench");
    if args.section != Section::All {
        s.push(' ');
        s.push_str(
            &args
                .section
                .to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default(),
        );
    } else {
        s.push_str(" all");
    }
    if args.quick {
        s.push_str(" --quick");
    }
    s
}

/// CPU, cores, memory, kernel and virtualization of the host, in one line.
fn host_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kvm = std::path::Path::new("/dev/kvm").exists();
    format!(
        "Host: {model}, {} cores, {mem_gib:.0} GiB, Linux {}, {}.",
        report::cores(),
        kernel.trim(),
        if kvm {
            "KVM available"
        } else {
            "no KVM (QEMU runs under TCG)"
        }
    )
}
