//! The records the store keeps, and their mapping to SQLite rows.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use sqlx::{Sqlite, Transaction};
use weft_model::{Ipv4Cidr, MacAddr};

use crate::{GroupRef, StoreError};

/// The lifecycle states of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Stopped,
    Starting,
    Running,
    Draining,
    Stopping,
    Standby,
    Template,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Running => "running",
            State::Draining => "draining",
            State::Stopping => "stopping",
            State::Standby => "standby",
            State::Template => "template",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "stopped" => State::Stopped,
            "starting" => State::Starting,
            "running" => State::Running,
            "draining" => State::Draining,
            "stopping" => State::Stopping,
            "standby" => State::Standby,
            "template" => State::Template,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub uuid: String,
    pub account: String,
    pub name: String,
    pub state: State,
    pub image: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub memory_mb: u32,
    pub vcpus: u32,
    pub gateway: Option<Ipv4Addr>,
    pub nameserver: Option<Ipv4Addr>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub boot_time_us: Option<u64>,
    pub net_time_us: Option<u64>,
    /// What the guest announced listening on (R5), as `"tcp:8080"`, sorted; empty when the
    /// guest does not run or announced nothing. Written only by [`crate::Store::set_services`].
    pub services: Vec<String>,
    /// The service group the instance is in, if any.
    pub service_group: Option<GroupRef>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Interface {
    pub uuid: String,
    pub account: String,
    pub name: String,
    pub instance: String,
    /// Position in the instance's list; 0 is the primary interface.
    pub index: u32,
    pub ip: Option<Ipv4Cidr>,
    pub tap_name: String,
    pub mac: MacAddr,
    /// Whether the address and TAP device came from the host's pools.
    pub pool: bool,
    pub autoconfig: bool,
    pub relay_name: Option<String>,
    pub relay_dns: bool,
}

#[derive(sqlx::FromRow)]
pub(crate) struct InstanceRow {
    uuid: String,
    account: String,
    name: String,
    state: String,
    image: String,
    args: String,
    env: String,
    memory_mb: i64,
    vcpus: i64,
    gateway: Option<String>,
    nameserver: Option<String>,
    created_at: String,
    pid: Option<i64>,
    exit_code: Option<i64>,
    boot_time_us: Option<i64>,
    net_time_us: Option<i64>,
    announced_services: Option<String>,
    service_group: Option<String>,
    service_group_name: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct InterfaceRow {
    uuid: String,
    account: String,
    name: String,
    instance: String,
    idx: i64,
    ip: Option<String>,
    tap_name: String,
    mac: String,
    pool_addr: Option<String>,
    autoconfig: bool,
    relay_name: Option<String>,
    relay_dns: bool,
}

fn corrupt(column: &'static str, value: &str) -> StoreError {
    StoreError::Corrupt {
        column,
        value: value.to_string(),
    }
}

fn parse_addr(column: &'static str, v: Option<String>) -> Result<Option<Ipv4Addr>, StoreError> {
    v.map(|s| s.parse().map_err(|_| corrupt(column, &s)))
        .transpose()
}

impl InstanceRow {
    pub(crate) fn into_instance(self) -> Result<Instance, StoreError> {
        Ok(Instance {
            state: State::parse(&self.state).ok_or_else(|| corrupt("state", &self.state))?,
            args: serde_json::from_str(&self.args).map_err(|_| corrupt("args", &self.args))?,
            env: serde_json::from_str(&self.env).map_err(|_| corrupt("env", &self.env))?,
            services: match &self.announced_services {
                Some(s) => serde_json::from_str(s).map_err(|_| corrupt("announced_services", s))?,
                None => Vec::new(),
            },
            gateway: parse_addr("gateway", self.gateway)?,
            nameserver: parse_addr("nameserver", self.nameserver)?,
            uuid: self.uuid,
            account: self.account,
            name: self.name,
            image: self.image,
            memory_mb: self.memory_mb as u32,
            vcpus: self.vcpus as u32,
            created_at: self.created_at,
            pid: self.pid.map(|p| p as u32),
            exit_code: self.exit_code.map(|c| c as i32),
            boot_time_us: self.boot_time_us.map(|t| t as u64),
            net_time_us: self.net_time_us.map(|t| t as u64),
            service_group: match (self.service_group, self.service_group_name) {
                (Some(uuid), Some(name)) => Some(GroupRef { uuid, name }),
                _ => None,
            },
        })
    }
}

impl InterfaceRow {
    pub(crate) fn into_interface(self) -> Result<Interface, StoreError> {
        let ip = match self.ip {
            Some(s) => Some(s.parse().map_err(|_| corrupt("ip", &s))?),
            None => None,
        };
        Ok(Interface {
            mac: self.mac.parse().map_err(|_| corrupt("mac", &self.mac))?,
            pool: self.pool_addr.is_some(),
            ip,
            uuid: self.uuid,
            account: self.account,
            name: self.name,
            instance: self.instance,
            index: self.idx as u32,
            tap_name: self.tap_name,
            autoconfig: self.autoconfig,
            relay_name: self.relay_name,
            relay_dns: self.relay_dns,
        })
    }
}

pub(crate) async fn insert_instance(
    tx: &mut Transaction<'_, Sqlite>,
    i: &Instance,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO instances (uuid, account, name, state, image, args, env, memory_mb, vcpus, \
         gateway, nameserver, created_at, pid, exit_code, boot_time_us, net_time_us, \
         service_group, service_group_name) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&i.uuid)
    .bind(&i.account)
    .bind(&i.name)
    .bind(i.state.as_str())
    .bind(&i.image)
    .bind(serde_json::to_string(&i.args).expect("strings serialize"))
    .bind(serde_json::to_string(&i.env).expect("strings serialize"))
    .bind(i64::from(i.memory_mb))
    .bind(i64::from(i.vcpus))
    .bind(i.gateway.map(|a| a.to_string()))
    .bind(i.nameserver.map(|a| a.to_string()))
    .bind(&i.created_at)
    .bind(i.pid.map(i64::from))
    .bind(i.exit_code)
    .bind(i.boot_time_us.map(|t| t as i64))
    .bind(i.net_time_us.map(|t| t as i64))
    .bind(i.service_group.as_ref().map(|g| &g.uuid))
    .bind(i.service_group.as_ref().map(|g| &g.name))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) async fn insert_interface(
    tx: &mut Transaction<'_, Sqlite>,
    i: &Interface,
) -> Result<(), sqlx::Error> {
    let pool_addr = if i.pool {
        i.ip.map(|c| c.addr().to_string())
    } else {
        None
    };
    sqlx::query(
        "INSERT INTO interfaces (uuid, account, name, instance, idx, ip, tap_name, mac, \
         pool_addr, autoconfig, relay_name, relay_dns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&i.uuid)
    .bind(&i.account)
    .bind(&i.name)
    .bind(&i.instance)
    .bind(i64::from(i.index))
    .bind(i.ip.map(|c| c.to_string()))
    .bind(&i.tap_name)
    .bind(i.mac.to_string())
    .bind(pool_addr)
    .bind(i.autoconfig)
    .bind(&i.relay_name)
    .bind(i.relay_dns)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
