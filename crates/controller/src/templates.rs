//! Templates and checkpoints (R10): reusable starting points that keep an instance's image,
//! args, env and sizes, and never its network configuration.

use weft_store::{Instance, State};

use crate::error::Error;
use crate::pools::Lease;
use crate::sources::{license_text, LICENSE_CHECKPOINTING};
use crate::{Account, Controller, Record};

impl Controller {
    /// Turns a stopped instance into a template. Its interfaces are released: a template
    /// bound to a TAP device or an address would defeat cloning many instances from it.
    pub async fn make_template(&self, account: &Account, id: &str) -> Result<Record, Error> {
        let record = self.find(account, id).await?;
        let uuid = record.instance.uuid.clone();
        let lock = self.op_lock(&uuid);
        let _op = lock.lock().await;
        let _reserve = self.reserve.lock().await;

        let record = self.find_by_uuid(&uuid).await?;
        match record.instance.state {
            State::Stopped => {}
            State::Template => return Ok(record),
            state => {
                return Err(Error::conflict(format!(
                    "Instance '{}' is {}; stop it before making a template of it",
                    record.instance.name,
                    state.as_str()
                )))
            }
        }
        self.refuse_relay_in_use(&record, "made a template").await?;
        self.detach_host(&record)
            .await
            .map_err(|e| Error::step("host network teardown", e))?;
        self.store.make_template(&uuid).await?;
        let leases: Vec<Lease> = record
            .interfaces
            .iter()
            .filter(|i| i.pool)
            .map(|i| Lease {
                addr: i.ip.expect("pool address").addr(),
                tap: i.tap_name.clone(),
            })
            .collect();
        self.release(&leases);
        self.notify();
        tracing::info!(instance = %record.instance.name, uuid = %uuid, "instance made a template");
        self.find_by_uuid(&uuid).await
    }

    /// Stores a checkpoint of an instance: a template-like copy to create instances from.
    /// Instances with more than one interface cannot be checkpointed (R10); a running one
    /// would need a memory snapshot, which weft does not take yet.
    pub async fn checkpoint(
        &self,
        account: &Account,
        id: &str,
        name: Option<&str>,
    ) -> Result<Record, Error> {
        if !account.license.iter().any(|f| f == LICENSE_CHECKPOINTING) {
            return Err(Error::forbidden(license_text("checkpointing")));
        }
        let source = self.find(account, id).await?;
        let src = &source.instance;
        if source.interfaces.len() > 1 {
            return Err(Error::bad_request(format!(
                "Instance '{}' has {} network interfaces; instances with more than one cannot \
                 be checkpointed",
                src.name,
                source.interfaces.len()
            )));
        }
        match src.state {
            State::Stopped => {}
            State::Template => {
                return Err(Error::bad_request(format!(
                    "Instance '{}' is a template; create an instance from it first",
                    src.name
                )))
            }
            state => {
                return Err(Error::conflict(format!(
                    "Instance '{}' is {}; checkpointing a running instance needs memory \
                     snapshots, which this version of weft does not take. Stop it first",
                    src.name,
                    state.as_str()
                )))
            }
        }

        let _reserve = self.reserve.lock().await;
        let name = match name {
            Some(name) => {
                crate::validate::check_instance_name("checkpoint_name", name)?;
                if self.store.instance_name_taken(&account.name, name).await? {
                    return Err(Error::conflict(format!(
                        "name '{name}' is already used by another instance"
                    )));
                }
                name.to_string()
            }
            None => {
                let base: String = src.name.chars().take(40).collect();
                format!("{base}-checkpoint-{}", weft_model::names::random_suffix(5))
            }
        };
        let copy = Instance {
            uuid: uuid::Uuid::new_v4().to_string(),
            name,
            state: State::Template,
            gateway: None,
            nameserver: None,
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            pid: None,
            exit_code: None,
            boot_time_us: None,
            net_time_us: None,
            services: Vec::new(),
            service_group: None,
            ..src.clone()
        };
        self.store.insert_instance(&copy, &[]).await?;
        self.notify();
        tracing::info!(instance = %src.name, checkpoint = %copy.name, "checkpoint stored");
        Ok(Record {
            instance: copy,
            interfaces: vec![],
        })
    }
}
