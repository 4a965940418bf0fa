//! Creating an instance: check everything that can be checked without claiming anything,
//! claim names, devices and leases in one store transaction, then set up the host side and
//! boot the guest. A failure at any step undoes every earlier one (R11).

use std::sync::Arc;

use weft_hostnet::DeviceKind;
use weft_model::names::{fallback_interface_name, generated_interface_name};
use weft_model::MacAddr;
use weft_store::{Instance, Interface, State};

use crate::error::{texts, Error};
use crate::failpoints;
use crate::journal::Intent;
use crate::lifecycle::STOP_GRACE;
use crate::plan::{self, NetFacts, PlannedInterface, PoolRules, Source};
use crate::pools::Lease;
use crate::request::CreateRequest;
use crate::sources::inherit;
use crate::validate::{
    check_args_env, check_boot_args_fit, check_instance_name, check_memory, in_range,
    refuse_unsupported, VCPUS,
};
use crate::{images, Account, Controller, Record};

impl Controller {
    pub async fn create(
        self: &Arc<Self>,
        account: &Account,
        mut req: CreateRequest,
    ) -> Result<Record, Error> {
        if let Some(source) = self.clone_source(account, &req).await? {
            inherit(&mut req, &source);
        }
        let checked = self.check(account, &req).await?;
        let group = self
            .plan_service_group(account, req.service_group.as_ref())
            .await?;
        failpoints::hit("create.after_check")?;
        let (record, leases) = self.claim(account, req, checked).await?;

        let uuid = record.instance.uuid.clone();
        let lock = self.op_lock(&uuid);
        let _op = lock.lock().await;

        let result = self.set_up(&record, group).await;
        if let Err(e) = result {
            self.discard(&record, &leases).await;
            self.journal.end(&uuid, Intent::Create);
            return Err(e);
        }
        // The create is complete: a crash from here on keeps the instance.
        self.journal.end(&uuid, Intent::Create);
        self.find_by_uuid(&uuid).await
    }

    /// The steps of a create after its claim; the caller undoes them all on failure.
    async fn set_up(
        self: &Arc<Self>,
        record: &Record,
        group: crate::services::GroupPlan,
    ) -> Result<(), Error> {
        failpoints::hit("create.after_claim")?;
        self.join_service_group(record, group).await?;
        failpoints::hit("create.after_service_group")?;
        self.attach_host_steps(record).await?;
        failpoints::hit("create.after_host_attach")?;
        if record.instance.state == State::Starting {
            self.boot(record, "create").await?;
        }
        failpoints::hit("create.before_reply")
    }

    /// Everything that needs no claim: the request's shape, the rules, the image, and the
    /// user's own TAP devices on the host.
    async fn check(&self, account: &Account, req: &CreateRequest) -> Result<Checked, Error> {
        let network_fields = [
            ("network_interfaces", req.network_interfaces.is_some()),
            ("gateway", req.gateway.is_some()),
            ("nameserver", req.nameserver.is_some()),
        ];
        if let Some((field, _)) = network_fields.iter().find(|(_, used)| *used) {
            if !account.is_net_manager() {
                return Err(Error::bad_request(texts::unknown_member(field)));
            }
            if !account.licensed_for_custom_network() {
                return Err(Error::forbidden(texts::LICENSE));
            }
        }
        refuse_unsupported(req)?;

        let image_ref = req.image.as_ref().ok_or_else(|| {
            Error::bad_request("Missing image: give the image to boot, such as \"base\"")
        })?;
        let image = images::resolve(
            &self.config.images_dir,
            image_ref.as_str(),
            self.driver.boots_kernel(),
        )?;

        if let Some(name) = &req.name {
            check_instance_name("name", name)?;
        }
        let memory_mb = check_memory(
            req.memory_mb.unwrap_or(128),
            image_ref.as_str(),
            image.min_memory_mb,
        )?;
        let vcpus = in_range("vcpus", req.vcpus.unwrap_or(1), VCPUS)?;
        check_args_env(req)?;

        let rules = PoolRules {
            addresses: self.config.pool.addresses,
            tap_prefix: &self.config.pool.tap_prefix,
        };
        let planned = plan::plan_interfaces(req.network_interfaces.as_deref(), &rules)?;
        let gateway = plan::parse_override("gateway", req.gateway.as_deref())?;
        let nameserver = plan::parse_override("nameserver", req.nameserver.as_deref())?;

        check_boot_args_fit(req, &planned, &image.default_args)?;

        for (i, iface) in planned.iter().enumerate() {
            if let Source::Own { tap, .. } = &iface.source {
                self.check_own_tap(i, tap).await?;
            }
        }
        Ok(Checked {
            image: image_ref.as_str().to_string(),
            default_args: image.default_args,
            memory_mb,
            vcpus,
            planned,
            gateway,
            nameserver,
        })
    }

    pub(crate) async fn check_own_tap(&self, index: usize, tap: &str) -> Result<(), Error> {
        let field = format!("network_interfaces[{index}].tap_name");
        let kind = self
            .hostnet
            .device_kind(tap)
            .await
            .map_err(|e| Error::step("device lookup", e))?;
        match kind {
            DeviceKind::Tap => {
                let busy = self
                    .hostnet
                    .tap_in_use(tap)
                    .await
                    .map_err(|e| Error::step("device lookup", e))?;
                if busy {
                    return Err(Error::conflict(format!(
                        "Invalid {field} '{tap}': the device is in use by another process"
                    )));
                }
                Ok(())
            }
            DeviceKind::Missing => Err(Error::bad_request(format!(
                "Invalid {field} '{tap}': no such device on the host"
            ))),
            DeviceKind::Tun => Err(Error::bad_request(format!(
                "Invalid {field} '{tap}': it is a TUN device, not a TAP device"
            ))),
            DeviceKind::Other(kind) => {
                let kind = if kind.is_empty() {
                    "network".to_string()
                } else {
                    kind
                };
                Err(Error::bad_request(format!(
                    "Invalid {field} '{tap}': it is a {kind} device, not a TAP device"
                )))
            }
        }
    }

    /// Claims the instance name, interface names, own TAP devices and pool leases, and writes
    /// the instance in one transaction.
    async fn claim(
        &self,
        account: &Account,
        req: CreateRequest,
        checked: Checked,
    ) -> Result<(Record, Vec<Lease>), Error> {
        let _reserve = self.reserve.lock().await;

        let name = match &req.name {
            Some(name) => {
                if self.store.instance_name_taken(&account.name, name).await? {
                    return Err(Error::conflict(format!(
                        "name '{name}' is already used by another instance"
                    )));
                }
                name.clone()
            }
            None => self.free_instance_name(account, &checked.image).await?,
        };

        let iface_names = self
            .interface_names(account, &name, &checked.planned)
            .await?;
        self.check_relays(account, &iface_names, &checked.planned)
            .await?;
        for (i, iface) in checked.planned.iter().enumerate() {
            if let Source::Own { tap, .. } = &iface.source {
                if self.store.interface_on_tap(tap).await?.is_some() {
                    return Err(Error::conflict(format!(
                        "network_interfaces[{i}].tap_name '{tap}' is already used by another interface"
                    )));
                }
            }
        }

        let leases = self.lease(&checked.planned)?;
        let uuid = uuid::Uuid::new_v4().to_string();
        let mut lease_iter = leases.iter();
        let interfaces: Vec<Interface> = checked
            .planned
            .iter()
            .zip(iface_names)
            .enumerate()
            .map(|(index, (plan, iface_name))| {
                let (ip, tap_name, mac) = match &plan.source {
                    Source::Pool => {
                        let lease = lease_iter.next().expect("one lease per pool interface");
                        let cidr = self.pools.lock().expect("pools").cidr_of(lease.addr);
                        (
                            cidr,
                            lease.tap.clone(),
                            MacAddr::for_pool_address(lease.addr),
                        )
                    }
                    Source::Own { cidr, tap } => (*cidr, tap.clone(), MacAddr::random_own()),
                };
                Interface {
                    uuid: uuid::Uuid::new_v4().to_string(),
                    account: account.name.clone(),
                    name: iface_name,
                    instance: uuid.clone(),
                    index: index as u32,
                    ip: Some(ip),
                    tap_name,
                    mac,
                    pool: plan.source == Source::Pool,
                    autoconfig: plan.autoconfig,
                    relay_name: plan.relay.as_ref().map(|r| r.name.clone()),
                    relay_dns: plan
                        .relay
                        .as_ref()
                        .and_then(|r| r.relay_dns)
                        .unwrap_or(true),
                }
            })
            .collect();

        let facts: Vec<NetFacts> = interfaces.iter().map(net_facts).collect();
        let instance = Instance {
            uuid: uuid.clone(),
            account: account.name.clone(),
            name,
            state: if req.autostart.unwrap_or(true) {
                State::Starting
            } else {
                State::Stopped
            },
            image: checked.image,
            args: match req.args {
                Some(args) if !args.is_empty() => args,
                _ => checked.default_args,
            },
            env: req.env.unwrap_or_default(),
            memory_mb: checked.memory_mb,
            vcpus: checked.vcpus,
            gateway: plan::resolve_gateway(checked.gateway, &facts),
            nameserver: plan::resolve_gateway(checked.nameserver, &facts),
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            pid: None,
            exit_code: None,
            boot_time_us: None,
            net_time_us: None,
            services: Vec::new(),
            service_group: None,
        };

        let written = async {
            self.journal
                .begin(&uuid, Intent::Create)
                .map_err(|e| Error::step("journal", e))?;
            failpoints::hit("create.before_store_write")?;
            self.store.insert_instance(&instance, &interfaces).await?;
            Ok::<_, Error>(())
        };
        if let Err(e) = written.await {
            self.journal.end(&uuid, Intent::Create);
            self.release(&leases);
            return Err(e);
        }
        self.notify();
        tracing::info!(instance = %instance.name, uuid = %uuid, interfaces = interfaces.len(), "instance created");
        Ok((
            Record {
                instance,
                interfaces,
            },
            leases,
        ))
    }

    async fn free_instance_name(&self, account: &Account, image: &str) -> Result<String, Error> {
        let base: String = image
            .rsplit('/')
            .next()
            .unwrap_or("instance")
            .split([':', '@'])
            .next()
            .unwrap_or("instance")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let base = base.trim_matches('-');
        let base = if base.is_empty() { "instance" } else { base };
        for _ in 0..16 {
            let name = format!("{base}-{}", weft_model::names::random_suffix(5));
            if !self.store.instance_name_taken(&account.name, &name).await? {
                return Ok(name);
            }
        }
        Err(Error::conflict(
            "could not find a free instance name; give one with 'name'",
        ))
    }

    /// The interfaces' names (R4): given ones must be free in the account; the others are
    /// `<instance>-eth<i>`, or `eth-<suffix>` when that is too long or taken.
    async fn interface_names(
        &self,
        account: &Account,
        instance: &str,
        planned: &[PlannedInterface],
    ) -> Result<Vec<String>, Error> {
        let mut names: Vec<String> = Vec::with_capacity(planned.len());
        for (i, plan) in planned.iter().enumerate() {
            if let Some(name) = &plan.name {
                if self
                    .store
                    .find_interface(&account.name, name)
                    .await?
                    .is_some()
                {
                    return Err(Error::conflict(format!(
                        "network_interfaces[{i}].name '{name}' is already used by another interface"
                    )));
                }
                names.push(name.clone());
            }
        }

        let mut out = Vec::with_capacity(planned.len());
        for (i, plan) in planned.iter().enumerate() {
            if let Some(name) = &plan.name {
                out.push(name.clone());
                continue;
            }
            let mut candidate = generated_interface_name(instance, i);
            let mut tries = 0;
            loop {
                let name = candidate.take().unwrap_or_else(fallback_interface_name);
                let taken = names.contains(&name)
                    || self
                        .store
                        .find_interface(&account.name, &name)
                        .await?
                        .is_some();
                if !taken {
                    names.push(name.clone());
                    out.push(name);
                    break;
                }
                tries += 1;
                if tries > 16 {
                    return Err(Error::conflict(format!(
                        "could not find a free name for network_interfaces[{i}]; give one with 'name'"
                    )));
                }
            }
        }
        Ok(out)
    }

    fn lease(&self, planned: &[PlannedInterface]) -> Result<Vec<Lease>, Error> {
        let mut pools = self.pools.lock().expect("pools");
        let mut leases = Vec::new();
        for (i, _) in planned
            .iter()
            .enumerate()
            .filter(|(_, p)| p.source == Source::Pool)
        {
            match pools.lease() {
                Ok(lease) => leases.push(lease),
                Err(e) => {
                    leases.iter().for_each(|l| pools.release(l));
                    return Err(Error::new(
                        e.code,
                        format!("Cannot allocate network_interfaces[{i}]: {}", e.message),
                    ));
                }
            }
        }
        Ok(leases)
    }

    pub(crate) fn release(&self, leases: &[Lease]) {
        let mut pools = self.pools.lock().expect("pools");
        leases.iter().for_each(|l| pools.release(l));
    }

    /// Undoes a create that failed after its claim: host side, store rows, leases, files.
    pub(crate) async fn discard(&self, record: &Record, leases: &[Lease]) {
        let uuid = &record.instance.uuid;
        // A guest that booted before the failing step goes first.
        if let Ok(current) = self.find_by_uuid(uuid).await {
            if let Some(pid) = current.instance.pid {
                let spec = self.running_spec(&current);
                if let Err(e) = self.driver.stop(&spec, pid, STOP_GRACE).await {
                    tracing::error!(uuid = %uuid, pid, error = %e, "undoing the guest's boot");
                }
            }
        }
        if let Err(e) = self.detach_host(record).await {
            tracing::error!(uuid = %uuid, error = %e, "undoing host network setup");
        }
        if let Err(e) = self.store.delete_instance(uuid).await {
            tracing::error!(uuid = %uuid, error = %e, "undoing store write");
        }
        self.notify();
        self.release(leases);
        let _ = std::fs::remove_dir_all(self.run_dir(uuid));
        self.forget_op_lock(uuid);
    }
}

struct Checked {
    image: String,
    default_args: Vec<String>,
    memory_mb: u32,
    vcpus: u32,
    planned: Vec<PlannedInterface>,
    gateway: Option<std::net::Ipv4Addr>,
    nameserver: Option<std::net::Ipv4Addr>,
}

pub(crate) fn net_facts(iface: &Interface) -> NetFacts {
    NetFacts {
        pool: iface.pool,
        cidr: iface.ip,
        autoconfig: iface.autoconfig,
    }
}
