//! Many resident instances: weftd's memory, the list call, and whether creates slow down as
//! instances accumulate.

use std::time::{Duration, Instant};

use crate::stats::Samples;
use crate::world::{run_in, trivial, Client, World};

pub struct Scale {
    pub instances: usize,
    pub nics: usize,
    /// weftd's start with the pool made for this run (TAP devices, rules).
    pub start_time: Duration,
    pub rss_empty: u64,
    pub rss_full: u64,
    /// Create latency of each instance, in order.
    pub creates: Samples,
    pub list_one: Samples,
    pub list_full: Samples,
    pub get_full: Samples,
    pub deletes: Samples,
}

const LIST_CALLS: usize = 20;

/// Creates `instances` instances with `nics` pool interfaces each, one after the other,
/// measures, then deletes them all.
pub fn run(world: &World, instances: usize, nics: usize) -> anyhow::Result<Scale> {
    let api = Client::new();
    let rss_empty = world.weftd_rss()?;
    let mut out = Scale {
        instances,
        nics,
        start_time: world.start_time,
        rss_empty,
        rss_full: 0,
        creates: Samples::new(),
        list_one: Samples::new(),
        list_full: Samples::new(),
        get_full: Samples::new(),
        deletes: Samples::new(),
    };

    run_in(&world.host_ns(), || -> anyhow::Result<()> {
        let api = api.connect();
        for i in 0..instances {
            let name = format!("scale-{i}");
            let started = Instant::now();
            api.create(&trivial(&name, nics))?;
            out.creates.push(started.elapsed());
            if i == 0 {
                for _ in 0..LIST_CALLS {
                    let started = Instant::now();
                    anyhow::ensure!(api.list()?.len() == 1, "list of one");
                    out.list_one.push(started.elapsed());
                }
            }
            if (i + 1) % 100 == 0 {
                eprintln!("weft-bench: scale: {} instances", i + 1);
            }
        }
        Ok(())
    })?;

    // Let the guests settle (their agents connect, consoles are written) before measuring.
    std::thread::sleep(Duration::from_secs(3));
    out.rss_full = world.weftd_rss()?;

    run_in(&world.host_ns(), || -> anyhow::Result<()> {
        let api = api.connect();
        for _ in 0..LIST_CALLS {
            let started = Instant::now();
            let n = api.list()?.len();
            out.list_full.push(started.elapsed());
            anyhow::ensure!(n == instances, "list has {n} instances");
        }
        for i in (0..instances).step_by((instances / LIST_CALLS).max(1)) {
            let started = Instant::now();
            api.get(&format!("scale-{i}"))?;
            out.get_full.push(started.elapsed());
        }
        for i in (0..instances).rev() {
            let started = Instant::now();
            api.delete(&format!("scale-{i}"))?;
            out.deletes.push(started.elapsed());
        }
        Ok(())
    })?;
    Ok(out)
}
