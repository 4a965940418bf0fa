//! weft's store: instances and their network interfaces in SQLite. The store is the
//! truth; host state is derived from it.

mod groups;
mod rows;

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use groups::{GroupRef, Member, Service, ServiceGroup};
pub use rows::{Instance, Interface, State};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write; `what` names the column that clashed.
    #[error("{what} is already in use")]
    Conflict { what: &'static str },
    #[error("store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store holds a bad value in {column}: {value}")]
    Corrupt { column: &'static str, value: String },
}

pub struct Store {
    pool: SqlitePool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens (creating if needed) the SQLite file at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        Self::connect(options).await
    }

    /// Opens a store from a URL such as `sqlite:///var/lib/weft/weft.db`.
    pub async fn open_url(url: &str) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true);
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<Store, StoreError> {
        // One connection: SQLite lets one writer in at a time, and a writer that finds
        // another one in sleeps in steps of milliseconds (its busy handler) before it tries
        // again. Several clients creating at once then spend most of their time asleep;
        // waiting in the pool's queue instead costs only the statements ahead, each well
        // under a millisecond.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool })
    }

    /// Writes a new instance with its interfaces in one transaction.
    pub async fn insert_instance(
        &self,
        instance: &Instance,
        interfaces: &[Interface],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        rows::insert_instance(&mut tx, instance)
            .await
            .map_err(conflict)?;
        for iface in interfaces {
            rows::insert_interface(&mut tx, iface)
                .await
                .map_err(conflict)?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes an instance and its interfaces. Deleting a missing instance is not an error.
    pub async fn delete_instance(&self, uuid: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM instances WHERE uuid = ?")
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The account's instance with this uuid or name.
    pub async fn find_instance(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<(Instance, Vec<Interface>)>, StoreError> {
        let row = sqlx::query_as::<_, rows::InstanceRow>(
            "SELECT * FROM instances WHERE account = ? AND (uuid = ? OR name = ?) \
             ORDER BY uuid = ? DESC LIMIT 1",
        )
        .bind(account)
        .bind(id)
        .bind(id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(row) => {
                let instance = row.into_instance()?;
                let ifaces = self.interfaces_of(&instance.uuid).await?;
                Ok(Some((instance, ifaces)))
            }
        }
    }

    /// The instance with this uuid, whatever its account.
    pub async fn find_instance_any(
        &self,
        uuid: &str,
    ) -> Result<Option<(Instance, Vec<Interface>)>, StoreError> {
        let row = sqlx::query_as::<_, rows::InstanceRow>("SELECT * FROM instances WHERE uuid = ?")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(row) => {
                let instance = row.into_instance()?;
                let ifaces = self.interfaces_of(&instance.uuid).await?;
                Ok(Some((instance, ifaces)))
            }
        }
    }

    /// All instances of an account (or of all accounts with `None`), oldest first.
    pub async fn list_instances(
        &self,
        account: Option<&str>,
    ) -> Result<Vec<(Instance, Vec<Interface>)>, StoreError> {
        let rows = sqlx::query_as::<_, rows::InstanceRow>(
            "SELECT * FROM instances WHERE ?1 IS NULL OR account = ?1 ORDER BY created_at, uuid",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        // Grouped by instance in one pass: the interfaces come ordered by instance and index.
        let mut by_instance: std::collections::HashMap<String, Vec<Interface>> =
            std::collections::HashMap::with_capacity(rows.len());
        for iface in self.all_interfaces().await? {
            by_instance
                .entry(iface.instance.clone())
                .or_default()
                .push(iface);
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let instance = row.into_instance()?;
            let mine = by_instance.remove(&instance.uuid).unwrap_or_default();
            out.push((instance, mine));
        }
        Ok(out)
    }

    pub async fn interfaces_of(&self, instance: &str) -> Result<Vec<Interface>, StoreError> {
        let rows = sqlx::query_as::<_, rows::InterfaceRow>(
            "SELECT * FROM interfaces WHERE instance = ? ORDER BY idx",
        )
        .bind(instance)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(rows::InterfaceRow::into_interface)
            .collect()
    }

    /// Every interface of every account, for pool bookkeeping and reconciliation.
    pub async fn all_interfaces(&self) -> Result<Vec<Interface>, StoreError> {
        let rows = sqlx::query_as::<_, rows::InterfaceRow>(
            "SELECT * FROM interfaces ORDER BY instance, idx",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(rows::InterfaceRow::into_interface)
            .collect()
    }

    /// The account's interface with this name.
    pub async fn find_interface(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<Interface>, StoreError> {
        let row = sqlx::query_as::<_, rows::InterfaceRow>(
            "SELECT * FROM interfaces WHERE account = ? AND name = ?",
        )
        .bind(account)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(rows::InterfaceRow::into_interface).transpose()
    }

    /// The account whose pool interface has this address.
    pub async fn account_of_pool_address(
        &self,
        addr: std::net::Ipv4Addr,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT account FROM interfaces WHERE pool_addr = ?")
                .bind(addr.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(account,)| account))
    }

    /// The interface (of any account) attached to this TAP device.
    pub async fn interface_on_tap(&self, tap: &str) -> Result<Option<Interface>, StoreError> {
        let row =
            sqlx::query_as::<_, rows::InterfaceRow>("SELECT * FROM interfaces WHERE tap_name = ?")
                .bind(tap)
                .fetch_optional(&self.pool)
                .await?;
        row.map(rows::InterfaceRow::into_interface).transpose()
    }

    pub async fn instance_name_taken(&self, account: &str, name: &str) -> Result<bool, StoreError> {
        let found: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM instances WHERE account = ? AND name = ?")
                .bind(account)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// Records a state change and the facts that come with it.
    pub async fn set_state(
        &self,
        uuid: &str,
        state: State,
        pid: Option<u32>,
        exit_code: Option<i32>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE instances SET state = ?, pid = ?, exit_code = ? WHERE uuid = ?")
            .bind(state.as_str())
            .bind(pid.map(i64::from))
            .bind(exit_code)
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records that the guest with process `pid` is gone, and forgets its services. Only the
    /// run that `pid` names is touched: a later start of the same instance is left alone.
    /// Returns whether it applied.
    pub async fn record_exit(
        &self,
        uuid: &str,
        pid: u32,
        exit_code: Option<i32>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE instances SET state = 'stopped', pid = NULL, exit_code = ?, \
             announced_services = NULL WHERE uuid = ? AND pid = ?",
        )
        .bind(exit_code)
        .bind(uuid)
        .bind(i64::from(pid))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The interfaces of the account that use the interface `relay` as their relay, with the
    /// names of their instances.
    pub async fn relay_clients(
        &self,
        account: &str,
        relay: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT i.name, inst.name FROM interfaces i JOIN instances inst ON i.instance = inst.uuid \
             WHERE i.account = ? AND i.relay_name = ? ORDER BY inst.name, i.idx",
        )
        .bind(account)
        .bind(relay)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Turns a stopped instance into a template: it keeps image, args, env and sizes, and no
    /// network configuration (R10).
    pub async fn make_template(&self, uuid: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM interfaces WHERE instance = ?")
            .bind(uuid)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE instances SET state = 'template', gateway = NULL, nameserver = NULL, \
             pid = NULL, exit_code = NULL WHERE uuid = ?",
        )
        .bind(uuid)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes the mutable properties of an instance; they apply at its next start.
    pub async fn update_config(&self, instance: &Instance) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE instances SET image = ?, args = ?, env = ?, memory_mb = ?, vcpus = ? \
             WHERE uuid = ?",
        )
        .bind(&instance.image)
        .bind(serde_json::to_string(&instance.args).expect("strings serialize"))
        .bind(serde_json::to_string(&instance.env).expect("strings serialize"))
        .bind(i64::from(instance.memory_mb))
        .bind(i64::from(instance.vcpus))
        .bind(&instance.uuid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_boot_time(&self, uuid: &str, boot_time_us: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE instances SET boot_time_us = ? WHERE uuid = ?")
            .bind(boot_time_us as i64)
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the services of an announcement by the guest of process `pid`, and `net_time_us` unless an earlier announcement set it. Only that run is touched:
    /// once the guest exited (or another run started), nothing changes. Returns whether it
    /// applied.
    pub async fn set_services(
        &self,
        uuid: &str,
        pid: u32,
        services: &[String],
        net_time_us: Option<u64>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE instances SET announced_services = ?, \
             net_time_us = COALESCE(net_time_us, ?) WHERE uuid = ? AND pid = ?",
        )
        .bind(serde_json::to_string(services).expect("strings serialize"))
        .bind(net_time_us.map(|t| t as i64))
        .bind(uuid)
        .bind(i64::from(pid))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Forgets what an earlier run announced (services, `net_time_us`), for a new boot.
    pub async fn reset_announcements(&self, uuid: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE instances SET announced_services = NULL, net_time_us = NULL WHERE uuid = ?",
        )
        .bind(uuid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts rows that mention an instance, for tests that check nothing is left behind.
    pub async fn rows_of(&self, uuid: &str) -> Result<u64, StoreError> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM instances WHERE uuid = ?1) \
                  + (SELECT COUNT(*) FROM interfaces WHERE instance = ?1)",
        )
        .bind(uuid)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }
}

/// Turns a uniqueness violation into a conflict naming the clashing column.
fn conflict(err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            let msg = db.message();
            let what = if msg.contains("instances.account, instances.name") {
                "instance name"
            } else if msg.contains("interfaces.account, interfaces.name") {
                "interface name"
            } else if msg.contains("interfaces.tap_name") {
                "TAP device"
            } else if msg.contains("interfaces.mac") {
                "MAC address"
            } else if msg.contains("interfaces.pool_addr") {
                "pool address"
            } else {
                "a unique value"
            };
            return StoreError::Conflict { what };
        }
    }
    StoreError::Db(err)
}
