//! Guest boot: from the create call to `running`, and to the guest's first port
//! announcement (`net_time_us`), for a driver.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::stats::Samples;
use crate::world::{run_in, Client, World};

pub struct Boot {
    pub driver: String,
    pub runs: usize,
    /// The create call, which returns once the guest runs.
    pub create: Samples,
    /// `boot_time_us` as weftd measured it.
    pub boot: Samples,
    /// `net_time_us`: from the start of the boot to the first port announcement.
    pub net: Samples,
    /// Whether the API has `net_time_us` at all.
    pub net_field: bool,
    /// Runs whose guest announced nothing in time.
    pub net_missing: usize,
}

/// Boots `runs` guests one after the other with `args` (the image's default args when
/// `None`), each waited for up to `bound` for its announcement, then deleted.
pub fn run(
    world: &World,
    driver: &str,
    runs: usize,
    args: Option<&[&str]>,
    bound: Duration,
) -> anyhow::Result<Boot> {
    let api = Client::new();
    run_in(&world.host_ns(), || {
        let api = api.connect();
        let mut out = Boot {
            driver: driver.to_string(),
            runs,
            create: Samples::new(),
            boot: Samples::new(),
            net: Samples::new(),
            net_field: false,
            net_missing: 0,
        };
        for i in 0..runs {
            let name = format!("boot-{driver}-{i}");
            let mut body = json!({"name": name, "image": "base"});
            if let Some(args) = args {
                body["args"] = json!(args);
            }
            let started = Instant::now();
            let created = api.create(&body)?;
            let mut instance = created.clone();
            while instance["state"] != "running" && started.elapsed() < bound {
                std::thread::sleep(Duration::from_millis(20));
                instance = api.get(&name)?;
            }
            anyhow::ensure!(
                instance["state"] == "running",
                "{name} is {} after {bound:?}",
                instance["state"]
            );
            out.create.push(started.elapsed());

            out.net_field |= instance.get("net_time_us").is_some();
            let net = loop {
                if let Some(us) = micros(&instance, "net_time_us") {
                    break Some(us);
                }
                if !out.net_field || started.elapsed() > bound {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(10));
                instance = api.get(&name)?;
            };
            match net {
                Some(us) => out.net.push(us),
                None => out.net_missing += 1,
            }
            if let Some(us) = micros(&instance, "boot_time_us") {
                out.boot.push(us);
            }
            api.delete(&name)?;
        }
        Ok(out)
    })
}

fn micros(instance: &Value, field: &str) -> Option<Duration> {
    instance[field].as_u64().map(Duration::from_micros)
}
