//! weft's controller: it holds the rules of custom network configuration, the pools, and
//! the lifecycle of instances, and drives the store, the host network and the VMM driver.

pub mod accounts;
mod agent;
pub mod config;
pub mod console;
mod create;
pub mod directory;
mod error;
pub mod failpoints;
pub mod hardening;
mod hostside;
pub mod images;
mod journal;
mod lifecycle;
pub mod patch;
pub mod plan;
pub mod pools;
mod reconcile;
pub mod request;
pub mod services;
mod sources;
mod templates;
mod validate;
pub mod wait;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use weft_hostnet::HostNet;
use weft_store::{Instance, Interface, Store};
use weft_vmm::Driver;

pub use accounts::{Account, Accounts};
pub use agent::AgentCounters;
pub use config::Config;
pub use console::LogChunk;
pub use error::{texts, Code, Error};

/// An instance with its interfaces, primary first.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub instance: Instance,
    pub interfaces: Vec<Interface>,
}

impl Record {
    pub fn primary(&self) -> Option<&Interface> {
        self.interfaces.first()
    }
}

pub struct Controller {
    config: Config,
    accounts: Accounts,
    store: Store,
    hostnet: HostNet,
    driver: Arc<dyn Driver>,
    pools: Mutex<pools::Pools>,
    /// Creates and deletes in progress, for the next start after a crash.
    journal: journal::Journal,
    /// Serializes the checks of names and devices with the writes that claim them.
    reserve: tokio::sync::Mutex<()>,
    /// One lock per instance, so that start, stop and delete of it do not interleave.
    ops: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Counts state changes; waiters watch it instead of polling the store.
    changes: tokio::sync::watch::Sender<u64>,
    pub metrics: Metrics,
}

/// Counters of what guests make weftd do; guests can trigger these, so they are counted
/// rather than logged one by one.
#[derive(Debug, Default)]
pub struct Metrics {
    pub console_rotations: std::sync::atomic::AtomicU64,
    /// What guests' port announcements came to: lines accepted and dropped.
    pub agent: AgentCounters,
    /// The platform resolver's counters, once it serves.
    pub dns: std::sync::OnceLock<Arc<weft_dns::Counters>>,
    /// The ingress proxy's counters, once it serves.
    pub proxy: std::sync::OnceLock<Arc<weft_proxy::Counters>>,
}

impl Controller {
    /// Builds the controller, readies the host's pools, and reconciles host and store (see
    /// `reconcile.rs`): creates and deletes that a crash cut short are settled, surviving
    /// guests adopted, orphans removed and missing pieces restored. Reconciliation goes on
    /// in the background while weftd runs.
    pub async fn start(
        config: Config,
        store: Store,
        hostnet: HostNet,
        driver: Arc<dyn Driver>,
    ) -> Result<Arc<Controller>, Error> {
        let accounts = Accounts::load(&config.accounts).map_err(|e| Error::step("accounts", e))?;
        let pool = &config.pool;
        let pools = pools::Pools::new(pool.addresses, &pool.tap_prefix, pool.tap_count);

        std::fs::create_dir_all(config.state_dir.join("instances"))
            .map_err(|e| Error::step("state directory", e))?;
        let journal =
            journal::Journal::open(&config.state_dir).map_err(|e| Error::step("journal", e))?;
        failpoints::init();
        hostnet
            .setup_pool(&config.pool_net())
            .await
            .map_err(|e| Error::step("pool setup", e))?;

        let controller = Arc::new(Controller {
            config,
            accounts,
            store,
            hostnet,
            driver,
            pools: Mutex::new(pools),
            journal,
            reserve: tokio::sync::Mutex::new(()),
            ops: Mutex::new(HashMap::new()),
            changes: tokio::sync::watch::Sender::new(0),
            metrics: Metrics::default(),
        });
        controller.reconcile_at_start().await?;
        tokio::spawn(Arc::clone(&controller).keep_consoles());
        tokio::spawn(Arc::clone(&controller).keep_reconciled());
        Ok(controller)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn authenticate(&self, token: &str) -> Option<&Account> {
        self.accounts.authenticate(token)
    }

    pub async fn get(&self, account: &Account, id: &str) -> Result<Record, Error> {
        self.find(account, id).await
    }

    /// How many instances of all accounts are in each state.
    pub async fn count_by_state(&self) -> Result<Vec<(&'static str, u64)>, Error> {
        let all = self.store.list_instances(None).await?;
        let mut counts: std::collections::BTreeMap<&'static str, u64> = Default::default();
        for (instance, _) in all {
            *counts.entry(instance.state.as_str()).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }

    pub async fn list(&self, account: &Account) -> Result<Vec<Record>, Error> {
        let rows = self.store.list_instances(Some(&account.name)).await?;
        Ok(rows
            .into_iter()
            .map(|(instance, interfaces)| Record {
                instance,
                interfaces,
            })
            .collect())
    }

    async fn find(&self, account: &Account, id: &str) -> Result<Record, Error> {
        match self.store.find_instance(&account.name, id).await? {
            Some((instance, interfaces)) => Ok(Record {
                instance,
                interfaces,
            }),
            None => Err(Error::not_found(format!(
                "No instance with uuid or name '{id}'"
            ))),
        }
    }

    fn run_dir(&self, uuid: &str) -> PathBuf {
        self.config.state_dir.join("instances").join(uuid)
    }

    fn op_lock(&self, uuid: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut ops = self.ops.lock().expect("ops lock");
        ops.entry(uuid.to_string()).or_default().clone()
    }

    /// Tells waiters that some instance changed.
    pub(crate) fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) async fn set_state(
        &self,
        uuid: &str,
        state: weft_store::State,
        pid: Option<u32>,
        exit_code: Option<i32>,
    ) -> Result<(), weft_store::StoreError> {
        self.store.set_state(uuid, state, pid, exit_code).await?;
        self.notify();
        Ok(())
    }

    pub(crate) async fn record_exit(
        &self,
        uuid: &str,
        pid: u32,
        exit_code: Option<i32>,
    ) -> Result<bool, weft_store::StoreError> {
        let applied = self.store.record_exit(uuid, pid, exit_code).await?;
        self.notify();
        Ok(applied)
    }

    fn forget_op_lock(&self, uuid: &str) {
        self.ops.lock().expect("ops lock").remove(uuid);
    }
}
