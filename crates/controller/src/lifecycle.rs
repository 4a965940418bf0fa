//! Booting, stopping and deleting instances, watching their guests, and bringing the host
//! in line with the store after a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_model::BootArgs;
use weft_store::State;
use weft_vmm::{GuestSpec, NicSpec};

use crate::console::{self, LogChunk};
use crate::create::net_facts;
use crate::error::Error;
use crate::failpoints;
use crate::journal::Intent;
use crate::plan::netdev_configs;
use crate::{images, Account, Controller, Record};

/// How long a guest gets to stop on its own before it is killed.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

impl Controller {
    pub(crate) async fn find_by_uuid(&self, uuid: &str) -> Result<Record, Error> {
        let account = self.store.find_instance_any(uuid).await?;
        match account {
            Some((instance, interfaces)) => Ok(Record {
                instance,
                interfaces,
            }),
            None => Err(Error::not_found(format!("No instance with uuid '{uuid}'"))),
        }
    }

    /// What the driver needs to find, stop or read a guest that runs: no image, which may
    /// have gone since the guest booted.
    pub(crate) fn running_spec(&self, record: &Record) -> GuestSpec {
        let instance = &record.instance;
        GuestSpec {
            id: instance.uuid.clone(),
            kernel: Default::default(),
            initrd: None,
            cmdline: String::new(),
            memory_mb: instance.memory_mb,
            vcpus: instance.vcpus,
            nics: record
                .interfaces
                .iter()
                .map(|i| NicSpec {
                    tap: i.tap_name.clone(),
                    mac: i.mac,
                })
                .collect(),
            run_dir: self.run_dir(&instance.uuid),
        }
    }

    fn guest_spec(&self, record: &Record) -> Result<GuestSpec, Error> {
        let instance = &record.instance;
        let image = images::resolve(
            &self.config.images_dir,
            &instance.image,
            self.driver.boots_kernel(),
        )?;
        let facts: Vec<_> = record.interfaces.iter().map(net_facts).collect();
        let args = BootArgs {
            netdevs: netdev_configs(&facts, instance.gateway, instance.nameserver),
            macs: record.interfaces.iter().map(|i| i.mac).collect(),
            env: instance
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            app_args: instance.args.clone(),
        };
        let cmdline = args
            .render()
            .map_err(|e| Error::bad_request(e.to_string()))?;
        Ok(GuestSpec {
            id: instance.uuid.clone(),
            kernel: image.kernel,
            initrd: image.initrd,
            cmdline,
            memory_mb: instance.memory_mb,
            vcpus: instance.vcpus,
            nics: record
                .interfaces
                .iter()
                .map(|i| NicSpec {
                    tap: i.tap_name.clone(),
                    mac: i.mac,
                })
                .collect(),
            run_dir: self.run_dir(&instance.uuid),
        })
    }

    /// Boots the guest and records it running; a watcher records its exit. `op` names the
    /// operation (`create`, `start`) for its failpoints. On failure no guest is left running
    /// and the instance is stopped.
    pub(crate) async fn boot(self: &Arc<Self>, record: &Record, op: &str) -> Result<(), Error> {
        let uuid = record.instance.uuid.clone();
        let spec = self.guest_spec(record)?;
        console::reset(&self.driver.console_path(&spec));
        std::fs::create_dir_all(&spec.run_dir).map_err(|e| Error::step("run directory", e))?;

        let started = Instant::now();
        self.set_state(&uuid, State::Starting, None, None).await?;
        if op == "create" {
            if let Err(e) = failpoints::hit("create.before_spawn") {
                self.set_state(&uuid, State::Stopped, None, None).await?;
                return Err(e);
            }
        }
        let guest = match self.driver.start(&spec).await {
            Ok(guest) => guest,
            Err(e) => {
                self.set_state(&uuid, State::Stopped, None, None).await?;
                return Err(Error::step("guest start", e));
            }
        };
        let pid = guest.pid;
        let recorded = async {
            failpoints::hit(if op == "create" {
                "create.after_spawn"
            } else {
                "start.after_spawn"
            })?;
            self.set_state(&uuid, State::Running, Some(pid), None)
                .await?;
            if op == "create" {
                failpoints::hit("create.after_running_write")?;
            }
            self.store
                .set_boot_time(&uuid, started.elapsed().as_micros() as u64)
                .await?;
            Ok::<_, Error>(())
        };
        if let Err(e) = recorded.await {
            // The guest runs but is not (fully) recorded: it must not outlive the failure.
            if let Err(stop) = self.driver.stop(&spec, pid, STOP_GRACE).await {
                tracing::error!(uuid = %uuid, pid, error = %stop, "stopping a guest after a failed start");
            }
            let _ = guest.exited.await;
            self.set_state(&uuid, State::Stopped, None, None).await?;
            return Err(e);
        }
        tracing::info!(instance = %record.instance.name, uuid = %uuid, pid, driver = self.driver.name(), "guest started");

        let socket = self.driver.agent_socket(&spec);
        let agent = self
            .watch_agent(&uuid, pid, socket, primary_addr(record), Some(started))
            .await;
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let code = guest.exited.await.ok();
            drop(agent);
            this.guest_exited(&uuid, pid, code).await;
        });
        Ok(())
    }

    async fn guest_exited(&self, uuid: &str, pid: u32, code: Option<i32>) {
        match self.record_exit(uuid, pid, code).await {
            Ok(true) => tracing::info!(uuid = %uuid, pid, code, "guest exited"),
            Ok(false) => {}
            Err(e) => tracing::error!(uuid = %uuid, error = %e, "recording guest exit"),
        }
    }

    /// Boots a stopped instance. Returns the state it was in and the instance now.
    pub async fn start_instance(
        self: &Arc<Self>,
        account: &Account,
        id: &str,
    ) -> Result<(State, Record), Error> {
        let record = self.find(account, id).await?;
        let lock = self.op_lock(&record.instance.uuid);
        let _op = lock.lock().await;

        let record = self.find_by_uuid(&record.instance.uuid).await?;
        let previous = record.instance.state;
        if record.instance.state == State::Template {
            return Err(Error::bad_request(format!(
                "Instance '{}' is a template; create an instance from it with 'template'",
                record.instance.name
            )));
        }
        if record.instance.state != State::Stopped {
            return Ok((previous, record));
        }
        // The user's own devices may have changed since the instance was created.
        for iface in record.interfaces.iter().filter(|i| !i.pool) {
            self.check_own_tap(iface.index as usize, &iface.tap_name)
                .await?;
        }
        self.attach_host(&record)
            .await
            .map_err(|e| Error::step("host network setup", e))?;
        failpoints::hit("start.after_host_attach")?;
        self.boot(&record, "start").await?;
        Ok((previous, self.find_by_uuid(&record.instance.uuid).await?))
    }

    /// Stops an instance's guest. Returns the state it was in and the instance now.
    pub async fn stop_instance(
        &self,
        account: &Account,
        id: &str,
    ) -> Result<(State, Record), Error> {
        let record = self.find(account, id).await?;
        let lock = self.op_lock(&record.instance.uuid);
        let _op = lock.lock().await;

        let record = self.find_by_uuid(&record.instance.uuid).await?;
        let previous = record.instance.state;
        self.halt(&record, "stop").await?;
        Ok((previous, self.find_by_uuid(&record.instance.uuid).await?))
    }

    /// Stops the guest of an instance, if it has one. `op` (`stop`, `delete`) names the
    /// operation for its failpoints.
    async fn halt(&self, record: &Record, op: &str) -> Result<(), Error> {
        let point = |step: &str| match (op, step) {
            ("delete", "stopping") => "delete.after_stopping_write",
            ("delete", "guest") => "delete.after_guest_stop",
            ("delete", _) => "delete.after_exit_write",
            (_, "stopping") => "stop.after_stopping_write",
            (_, "guest") => "stop.after_guest_stop",
            _ => "stop.after_exit_write",
        };
        let instance = &record.instance;
        if instance.state == State::Template {
            return Ok(());
        }
        let Some(pid) = instance.pid else {
            if instance.state != State::Stopped {
                self.set_state(&instance.uuid, State::Stopped, None, None)
                    .await?;
            }
            return Ok(());
        };
        self.set_state(&instance.uuid, State::Stopping, Some(pid), None)
            .await?;
        failpoints::hit(point("stopping"))?;
        let spec = self.running_spec(record);
        self.driver
            .stop(&spec, pid, STOP_GRACE)
            .await
            .map_err(|e| Error::step("guest stop", e))?;
        failpoints::hit(point("guest"))?;
        self.record_exit(&instance.uuid, pid, None).await?;
        failpoints::hit(point("exit"))?;
        tracing::info!(instance = %instance.name, uuid = %instance.uuid, "guest stopped");
        Ok(())
    }

    /// Deletes an instance and releases everything it held. Returns it as it was.
    pub async fn delete_instance(&self, account: &Account, id: &str) -> Result<Record, Error> {
        let record = self.find(account, id).await?;
        let uuid = record.instance.uuid.clone();
        let lock = self.op_lock(&uuid);
        let _op = lock.lock().await;

        let record = self.find_by_uuid(&uuid).await?;
        // Held until the rows are gone, so that no create can pick this relay meanwhile.
        let _reserve = self.reserve.lock().await;
        self.refuse_relay_in_use(&record, "deleted").await?;
        failpoints::hit("delete.after_check")?;
        // From here on a crash does not undo the delete: the next start finishes it.
        self.journal
            .begin(&uuid, Intent::Delete)
            .map_err(|e| Error::step("journal", e))?;
        let removed = async {
            self.halt(&record, "delete").await?;
            self.detach_host(&record)
                .await
                .map_err(|e| Error::step("host network teardown", e))?;
            failpoints::hit("delete.after_host_detach")?;
            self.store.delete_instance(&uuid).await?;
            Ok::<_, Error>(())
        };
        if let Err(e) = removed.await {
            // The instance stays, stopped or not as halt left it, with its network attached.
            self.journal.end(&uuid, Intent::Delete);
            if let Ok(record) = self.find_by_uuid(&uuid).await {
                if let Err(e) = self.attach_host(&record).await {
                    tracing::error!(uuid = %uuid, error = %e, "re-attaching after a failed delete");
                }
            }
            return Err(e);
        }
        self.notify();
        let injected = failpoints::hit("delete.after_store_delete");

        self.release(&crate::reconcile::leases_of(&record));
        let _ = std::fs::remove_dir_all(self.run_dir(&uuid));
        self.journal.end(&uuid, Intent::Delete);
        self.forget_op_lock(&uuid);
        injected?;
        tracing::info!(instance = %record.instance.name, uuid = %uuid, "instance deleted");
        Ok(record)
    }

    /// Refuses to remove an instance whose interfaces relay live instances' traffic (R11),
    /// naming them.
    pub(crate) async fn refuse_relay_in_use(
        &self,
        record: &Record,
        what: &str,
    ) -> Result<(), Error> {
        let mut clients = Vec::new();
        for iface in &record.interfaces {
            for (client, instance) in self
                .store
                .relay_clients(&record.instance.account, &iface.name)
                .await?
            {
                clients.push(format!(
                    "'{client}' (instance '{instance}') through '{}'",
                    iface.name
                ));
            }
        }
        if clients.is_empty() {
            return Ok(());
        }
        Err(Error::conflict(format!(
            "Instance '{}' cannot be {what}: it is the relay of {}",
            record.instance.name,
            clients.join(", ")
        )))
    }

    pub async fn log(
        &self,
        account: &Account,
        id: &str,
        offset: i64,
        limit: u64,
    ) -> Result<LogChunk, Error> {
        let record = self.find(account, id).await?;
        let path = self.driver.console_path(&self.running_spec(&record));
        tokio::task::spawn_blocking(move || console::read(&path, offset, limit))
            .await
            .map_err(|e| Error::step("console log", e))?
            .map_err(|e| Error::step("console log", e))
    }

    /// Keeps every running guest's console log bounded, every few seconds.
    pub(crate) async fn keep_consoles(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let Ok(records) = self.store.list_instances(None).await else {
                continue;
            };
            let paths: Vec<_> = records
                .into_iter()
                .filter(|(instance, _)| instance.pid.is_some())
                .map(|(instance, interfaces)| {
                    let record = Record {
                        instance,
                        interfaces,
                    };
                    self.driver.console_path(&self.running_spec(&record))
                })
                .collect();
            // One blocking task for them all, not one each.
            let Ok(rotated) = tokio::task::spawn_blocking(move || {
                paths
                    .iter()
                    .filter(|path| console::keep(path).is_ok_and(|moved| moved > 0))
                    .count()
            })
            .await
            else {
                continue;
            };
            self.metrics
                .console_rotations
                .fetch_add(rotated as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// After a restart: every lease is re-marked, guests that survived are adopted, a stop
    /// that a crash cut short is finished, and guests that did not survive are recorded as
    /// stopped. The host side is [`Self::reconcile_host`]'s.
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<(), Error> {
        let records = self.store.list_instances(None).await?;
        {
            let mut pools = self.pools.lock().expect("pools");
            for (_, ifaces) in &records {
                for iface in ifaces.iter().filter(|i| i.pool) {
                    pools.mark_used(iface.ip.expect("pool address").addr(), &iface.tap_name);
                }
            }
        }

        for (instance, interfaces) in records {
            let record = Record {
                instance,
                interfaces,
            };
            let Some(pid) = record.instance.pid else {
                if record.instance.state != State::Stopped {
                    self.set_state(&record.instance.uuid, State::Stopped, None, None)
                        .await?;
                }
                continue;
            };
            if record.instance.state == State::Stopping {
                self.finish_stop(&record, pid).await?;
            } else if guest_alive(pid, &record.instance.uuid) {
                tracing::info!(uuid = %record.instance.uuid, pid, "guest survived a restart; watching it");
                let socket = self.driver.agent_socket(&self.running_spec(&record));
                let uuid = record.instance.uuid.clone();
                let agent = self
                    .watch_agent(&uuid, pid, socket, primary_addr(&record), None)
                    .await;
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    this.watch_adopted(uuid, pid).await;
                    drop(agent);
                });
            } else {
                self.record_exit(&record.instance.uuid, pid, None).await?;
            }
        }
        Ok(())
    }

    /// Watches a guest this process did not start, by polling its pid.
    async fn watch_adopted(&self, uuid: String, pid: u32) {
        while guest_alive(pid, &uuid) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.guest_exited(&uuid, pid, None).await;
    }
}

/// The primary interface's address: port announcements count only for it (R5).
fn primary_addr(record: &Record) -> Option<std::net::Ipv4Addr> {
    record.primary().and_then(|p| p.ip).map(|c| c.addr())
}

/// Whether `pid` is still the guest of instance `uuid` (its command line names the uuid, so
/// a reused pid is not mistaken for it).
pub(crate) fn guest_alive(pid: u32, uuid: &str) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => String::from_utf8_lossy(&cmdline).contains(uuid),
        Err(_) => false,
    }
}
