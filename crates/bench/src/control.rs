//! The control plane through weftd's API with the netns driver: create and delete latency
//! with one and four interfaces, and creates per second sustained by several clients.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::stats::Samples;
use crate::world::{run_in, trivial, Client, World};

/// Latencies of create and delete, one instance at a time.
pub struct Cycle {
    pub nics: usize,
    pub create: Samples,
    pub delete: Samples,
    pub both: Samples,
    /// The server's own time for the create (`op_time_us`).
    pub create_server: Samples,
}

/// `rounds` create/delete cycles of an instance with `nics` pool interfaces.
pub fn cycles(world: &World, nics: usize, rounds: usize) -> anyhow::Result<Cycle> {
    let api = Client::new();
    run_in(&world.host_ns(), || {
        let api = api.connect();
        let mut out = Cycle {
            nics,
            create: Samples::new(),
            delete: Samples::new(),
            both: Samples::new(),
            create_server: Samples::new(),
        };
        for round in 0..rounds + 3 {
            let name = format!("lat{nics}-{round}");
            let started = Instant::now();
            let (code, answer) = api.call("POST", "/v1/instances", Some(&trivial(&name, nics)));
            let created = started.elapsed();
            anyhow::ensure!(code == 200, "create {name}: HTTP {code}: {answer}");
            let state = &answer["data"]["instances"][0]["state"];
            anyhow::ensure!(state == "running", "create {name}: state {state}");

            let started = Instant::now();
            api.delete(&name)?;
            let deleted = started.elapsed();

            // The first rounds warm up weftd, the store and the page cache.
            if round >= 3 {
                out.create.push(created);
                out.delete.push(deleted);
                out.both.push(created + deleted);
                if let Some(us) = answer["op_time_us"].as_u64() {
                    out.create_server.push(Duration::from_micros(us));
                }
            }
        }
        Ok(out)
    })
}

pub struct Sustained {
    pub clients: usize,
    pub created: usize,
    pub failed: usize,
    pub elapsed: Duration,
    pub deleted: usize,
    pub delete_elapsed: Duration,
}

impl Sustained {
    pub fn creates_per_s(&self) -> f64 {
        self.created as f64 / self.elapsed.as_secs_f64()
    }

    pub fn deletes_per_s(&self) -> f64 {
        self.deleted as f64 / self.delete_elapsed.as_secs_f64()
    }
}

/// `clients` threads create one-interface instances for `duration` (at most `cap` in all),
/// then the same threads delete them all.
pub fn sustained(
    world: &World,
    clients: usize,
    duration: Duration,
    cap: usize,
) -> anyhow::Result<Sustained> {
    let api = Client::new();
    let ns = world.host_ns();
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error = std::sync::Mutex::new(None::<String>);

    let started = Instant::now();
    let names: Vec<Vec<String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let (api, ns) = (&api, &ns);
                let (next, failed, stop, first_error) = (&next, &failed, &stop, &first_error);
                scope.spawn(move || {
                    run_in(ns, || {
                        let api = api.connect();
                        let mut mine = Vec::new();
                        while !stop.load(Ordering::Relaxed) && started.elapsed() < duration {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            if n >= cap {
                                break;
                            }
                            let name = format!("sus-{n}");
                            match api.create(&trivial(&name, 1)) {
                                Ok(_) => mine.push(name),
                                Err(e) => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    first_error.lock().unwrap().get_or_insert(e.to_string());
                                    // A failing weftd is not a benchmark: stop early.
                                    if failed.load(Ordering::Relaxed) > 10 {
                                        stop.store(true, Ordering::Relaxed);
                                    }
                                }
                            }
                        }
                        mine
                    })
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let created: usize = names.iter().map(Vec::len).sum();
    if let Some(e) = first_error.lock().unwrap().take() {
        eprintln!("weft-bench: sustained creates: first failure: {e}");
    }

    let deleted = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for mine in &names {
            let (api, ns, deleted) = (&api, &ns, &deleted);
            scope.spawn(move || {
                run_in(ns, || {
                    let api = api.connect();
                    for name in mine {
                        if api.delete(name).is_ok() {
                            deleted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            });
        }
    });
    Ok(Sustained {
        clients,
        created,
        failed: failed.into_inner(),
        elapsed,
        deleted: deleted.into_inner(),
        delete_elapsed: started.elapsed(),
    })
}
