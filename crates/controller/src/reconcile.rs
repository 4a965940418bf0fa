//! Reconciliation: the store is the truth, and the host is brought in line with it.
//!
//! At start (before the API serves), after whatever ended the previous weftd:
//! 1. intents left in the journal are finished: a create that never answered is rolled back,
//!    a delete that was accepted is completed;
//! 2. every instance's state is settled: a guest that outlived weftd is adopted (`running`),
//!    one caught stopping is stopped, and one without a guest is `stopped`;
//! 3. guest processes of this weftd's state directory that no instance owns are stopped;
//! 4. the host: weft's table and pool TAPs are reinstalled when incomplete, routes, `guests`
//!    elements and relays that no instance owns are removed, and what an instance owns but is
//!    missing is attached again.
//!
//! While weftd runs, [`Controller::keep_reconciled`] checks weft's table every
//! [`CHECK_EVERY`] (someone may flush the ruleset) and repeats steps 3 and 4 when it is not
//! whole and every [`FULL_EVERY`] anyway.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use weft_hostnet::Relayed;
use weft_store::State;
use weft_vmm::GuestSpec;

use crate::error::Error;
use crate::journal::Intent;
use crate::pools::Lease;
use crate::{Controller, Record};

/// How often weft's table is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How often everything is reconciled even when the table looks whole.
pub const FULL_EVERY: Duration = Duration::from_secs(30);
/// How long an orphan guest gets to stop on its own before it is killed.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

impl Controller {
    /// Runs once at start, before the API serves: nothing else changes instances meanwhile.
    pub(crate) async fn reconcile_at_start(self: &Arc<Self>) -> Result<(), Error> {
        let guests = guest_processes(&self.instances_dir());
        for (uuid, intent) in self.journal.pending() {
            if let Ok(record) = self.find_by_uuid(&uuid).await {
                for (pid, _) in guests.iter().filter(|(_, u)| *u == uuid) {
                    self.stop_orphan(&uuid, *pid).await;
                }
                self.discard(&record, &leases_of(&record)).await;
                match intent {
                    Intent::Create => tracing::warn!(uuid, instance = %record.instance.name,
                        "a create was cut short by a crash: rolled back"),
                    Intent::Delete => tracing::warn!(uuid, instance = %record.instance.name,
                        "a delete was cut short by a crash: finished"),
                }
            }
            self.journal.end(&uuid, intent);
        }
        self.remove_stale_run_dirs().await?;
        self.recover().await?;
        self.sweep_guests().await;
        self.reconcile_host().await
    }

    /// Reconciles every [`CHECK_EVERY`] while weftd runs (see the module's documentation).
    pub(crate) async fn keep_reconciled(self: Arc<Self>) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_full = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let pool = self.config.pool_net();
            let intact = match self.hostnet.pool_intact(&pool).await {
                Ok(intact) => intact,
                Err(e) => {
                    tracing::warn!(error = %e, "checking weft's table");
                    false
                }
            };
            if intact && last_full.elapsed() < FULL_EVERY {
                continue;
            }
            if !intact {
                tracing::warn!("weft's nftables table or pool TAPs are incomplete: repairing");
            }
            last_full = tokio::time::Instant::now();
            self.sweep_guests().await;
            if let Err(e) = self.reconcile_host().await {
                tracing::error!(error = %e, "reconciling the host");
            }
        }
    }

    /// Stops guest processes of this state directory that no instance owns: one whose
    /// instance is gone, or whose instance records another pid or none (a guest spawned just
    /// before a crash, before its pid was written). Each is judged under its instance's lock,
    /// so a guest being started right now is never taken for an orphan.
    async fn sweep_guests(&self) {
        for (pid, uuid) in guest_processes(&self.instances_dir()) {
            let lock = self.op_lock(&uuid);
            let _op = lock.lock().await;
            let owned = match self.find_by_uuid(&uuid).await {
                Ok(record) => record.instance.pid == Some(pid),
                Err(e) if e.code == crate::Code::NotFound => false,
                Err(e) => {
                    tracing::warn!(uuid, error = %e, "looking up a guest's instance");
                    true
                }
            };
            if !owned && crate::lifecycle::guest_alive(pid, &uuid) {
                tracing::warn!(
                    uuid,
                    pid,
                    "a guest process that no instance owns: stopping it"
                );
                self.stop_orphan(&uuid, pid).await;
            }
            if self.find_by_uuid(&uuid).await.is_err() {
                drop(_op);
                self.forget_op_lock(&uuid);
            }
        }
    }

    /// Removes the run directories of instances that are gone (a delete cut short after its
    /// rows went). Only at start: a create makes its directory after its rows.
    async fn remove_stale_run_dirs(&self) -> Result<(), Error> {
        let Ok(entries) = std::fs::read_dir(self.instances_dir()) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let Ok(uuid) = entry.file_name().into_string() else {
                continue;
            };
            if self.store.find_instance_any(&uuid).await?.is_none() {
                tracing::info!(uuid, "removing the run directory of a deleted instance");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    async fn stop_orphan(&self, uuid: &str, pid: u32) {
        let spec = GuestSpec {
            id: uuid.to_string(),
            kernel: PathBuf::new(),
            initrd: None,
            cmdline: String::new(),
            memory_mb: 0,
            vcpus: 0,
            nics: Vec::new(),
            run_dir: self.run_dir(uuid),
        };
        if let Err(e) = self.driver.stop(&spec, pid, ORPHAN_GRACE).await {
            tracing::error!(uuid, pid, error = %e, "stopping an orphan guest");
        }
    }

    /// Brings the host's pool, routes, `guests` elements and relays in line with the store.
    pub(crate) async fn reconcile_host(&self) -> Result<(), Error> {
        let pool = self.config.pool_net();
        let host = |e: weft_hostnet::HostNetError| Error::step("reconciling the host", e);
        if !self.hostnet.pool_intact(&pool).await.map_err(host)? {
            self.hostnet.setup_pool(&pool).await.map_err(host)?;
        }
        for tap in self.hostnet.stray_pool_taps(&pool).await.map_err(host)? {
            if self.store.interface_on_tap(&tap).await?.is_none() {
                tracing::warn!(tap, "removing a TAP device outside the pool");
                if let Err(e) = self.hostnet.remove_device(&tap).await {
                    tracing::error!(tap, error = %e, "removing a stray TAP device");
                }
            }
        }

        // What no instance owns goes. Under the claim lock: no lease changes hands meanwhile,
        // and whatever a create or delete has on the host is in the store too.
        {
            let _reserve = self.reserve.lock().await;
            let expected = self.expected().await?;
            for relayed in self.hostnet.relayed().await.map_err(host)? {
                if !expected.relays.contains(&relayed) {
                    tracing::warn!(client = %relayed.client.tap, relay = %relayed.relay.tap,
                        "removing a relay that no instance owns");
                    if let Err(e) = self.hostnet.detach_relayed(&relayed).await {
                        tracing::error!(error = %e, "removing an orphan relay");
                    }
                }
            }
            let mut orphans: Vec<(String, Ipv4Addr)> = Vec::new();
            for pair in self.hostnet.guest_routes(&pool).await.map_err(host)? {
                if !expected.routes.contains(&pair) {
                    orphans.push(pair);
                }
            }
            for pair in self.hostnet.guest_elements().await.map_err(host)? {
                if !expected.elements.contains(&pair) && !orphans.contains(&pair) {
                    orphans.push(pair);
                }
            }
            if !orphans.is_empty() {
                tracing::warn!(?orphans, "removing routes and rules that no instance owns");
                if let Err(e) = self.hostnet.detach_pool_interfaces(&orphans).await {
                    tracing::error!(error = %e, "removing orphan routes and rules");
                }
            }
        }

        // What an instance owns but is missing is attached again, under its own lock.
        let routes: HashSet<_> = self
            .hostnet
            .guest_routes(&pool)
            .await
            .map_err(host)?
            .into_iter()
            .collect();
        let elements: HashSet<_> = self
            .hostnet
            .guest_elements()
            .await
            .map_err(host)?
            .into_iter()
            .collect();
        let relays: HashSet<Relayed> = self
            .hostnet
            .relayed()
            .await
            .map_err(host)?
            .into_iter()
            .collect();
        for (instance, interfaces) in self.store.list_instances(None).await? {
            let record = Record {
                instance,
                interfaces,
            };
            let owned = self.owned(&record).await;
            let whole = owned.routes.iter().all(|p| routes.contains(p))
                && owned.elements.iter().all(|p| elements.contains(p))
                && owned.relays.iter().all(|r| relays.contains(r));
            if whole {
                continue;
            }
            let uuid = record.instance.uuid.clone();
            let lock = self.op_lock(&uuid);
            let _op = lock.lock().await;
            let Ok(record) = self.find_by_uuid(&uuid).await else {
                drop(_op);
                self.forget_op_lock(&uuid);
                continue;
            };
            tracing::warn!(uuid, instance = %record.instance.name,
                "the host lacks some of the instance's network: attaching it again");
            if let Err(e) = self.attach_host(&record).await {
                tracing::error!(uuid, error = %e, "attaching an instance's network again");
            }
        }
        Ok(())
    }

    /// What every instance of the store owns on the host.
    async fn expected(&self) -> Result<Owned, Error> {
        let mut all = Owned::default();
        for (instance, interfaces) in self.store.list_instances(None).await? {
            let owned = self
                .owned(&Record {
                    instance,
                    interfaces,
                })
                .await;
            all.routes.extend(owned.routes);
            all.elements.extend(owned.elements);
            all.relays.extend(owned.relays);
        }
        Ok(all)
    }

    /// What one instance owns on the host once attached (see hostnet's README).
    async fn owned(&self, record: &Record) -> Owned {
        let mut owned = Owned::default();
        for iface in record.interfaces.iter() {
            let Some(addr) = iface.ip.map(|c| c.addr()) else {
                continue;
            };
            if iface.pool {
                owned.routes.insert((iface.tap_name.clone(), addr));
            }
            if iface.relay_name.is_none() {
                if iface.pool {
                    owned.elements.insert((iface.tap_name.clone(), addr));
                }
                continue;
            }
            let Ok(relayed) = self.relayed(record, iface).await else {
                continue;
            };
            if relayed.relay.pool {
                owned.elements.insert((relayed.relay.tap.clone(), addr));
            }
            if relayed.client.pool && relayed.dns_direct.is_some() {
                owned.elements.insert((iface.tap_name.clone(), addr));
            }
            owned.relays.insert(relayed);
        }
        owned
    }

    fn instances_dir(&self) -> PathBuf {
        self.config.state_dir.join("instances")
    }

    /// Settles a stop that a crash cut short: the guest is stopped and the instance recorded
    /// stopped.
    pub(crate) async fn finish_stop(&self, record: &Record, pid: u32) -> Result<(), Error> {
        if crate::lifecycle::guest_alive(pid, &record.instance.uuid) {
            self.stop_orphan(&record.instance.uuid, pid).await;
        }
        self.record_exit(&record.instance.uuid, pid, None).await?;
        if record.instance.state != State::Stopped {
            self.set_state(&record.instance.uuid, State::Stopped, None, None)
                .await?;
        }
        tracing::warn!(uuid = %record.instance.uuid, "a stop was cut short by a crash: finished");
        Ok(())
    }
}

#[derive(Default)]
struct Owned {
    routes: HashSet<(String, Ipv4Addr)>,
    elements: HashSet<(String, Ipv4Addr)>,
    relays: HashSet<Relayed>,
}

/// The leases of an instance's pool interfaces.
pub(crate) fn leases_of(record: &Record) -> Vec<Lease> {
    record
        .interfaces
        .iter()
        .filter(|i| i.pool)
        .filter_map(|i| {
            Some(Lease {
                addr: i.ip?.addr(),
                tap: i.tap_name.clone(),
            })
        })
        .collect()
}

/// The guest processes (weft-netns, QEMU) of the instances under `instances_dir`, as
/// (pid, uuid): a process whose command line names `weft-<uuid>` (`-name`/`--name`) and
/// refers to `<instances_dir>/<uuid>/`. Guests of other weftd (other state directories) are
/// never among them.
pub(crate) fn guest_processes(instances_dir: &Path) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let dir = instances_dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if let Some(uuid) = guest_of(&cmdline, &dir) {
            found.push((pid, uuid));
        }
    }
    found.sort();
    found
}

/// The instance uuid a guest's command line belongs to, if it is one of `instances_dir`'s.
fn guest_of(cmdline: &[u8], instances_dir: &str) -> Option<String> {
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let name = args
        .windows(2)
        .find(|p| p[0] == "-name" || p[0] == "--name")
        .map(|p| p[1].split(',').next().unwrap_or_default().to_string())?;
    let uuid = name.strip_prefix("weft-")?;
    if uuid.is_empty() {
        return None;
    }
    let run_dir = format!("{instances_dir}/{uuid}/");
    args.iter()
        .any(|a| a.contains(&run_dir))
        .then(|| uuid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_are_recognized_by_name_and_run_directory() {
        let netns =
            b"/usr/bin/weft-netns\0--name\0weft-abc\0--resolv-conf\0/s/instances/abc/resolv.conf\0";
        assert_eq!(guest_of(netns, "/s/instances").as_deref(), Some("abc"));
        assert_eq!(guest_of(netns, "/other/instances"), None);
        let qemu = b"qemu-system-x86_64\0-name\0weft-abc,debug-threads=on\0-pidfile\0/s/instances/abc/qemu.pid\0";
        assert_eq!(guest_of(qemu, "/s/instances").as_deref(), Some("abc"));
        let other = b"sleep\x00600\x00";
        assert_eq!(guest_of(other, "/s/instances"), None);
    }
}
