//! Instances and interfaces as the API shows them. Every item type here is
//! both what the server sends and what the OpenAPI document describes.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;
use weft_controller::{LogChunk, Record};
use weft_store::Interface;

use crate::envelope::{Data, Outcome};

/// Declares the `data` of answers about instances with items of one type: the items, under
/// `instances`, each done or failed. (Concrete types rather than one generic, so that the
/// document refers to the item schemas instead of repeating them.)
macro_rules! item_list {
    ($(#[$doc:meta])* $list:ident of $item:ident as $entry:ident) => {
        /// One item of the answer: done, or failed with the reason.
        #[derive(Clone, Debug, Serialize, ToSchema)]
        #[serde(untagged)]
        #[allow(clippy::large_enum_variant)] // Items are built once and sent.
        pub enum $entry {
            Done($item),
            Failed(FailedItem),
        }

        $(#[$doc])*
        #[derive(Clone, Debug, Serialize, ToSchema)]
        pub struct $list {
            pub instances: Vec<$entry>,
        }

        impl From<Vec<$item>> for $list {
            fn from(items: Vec<$item>) -> Self {
                $list { instances: items.into_iter().map($entry::Done).collect() }
            }
        }

        impl From<Vec<$entry>> for $list {
            fn from(instances: Vec<$entry>) -> Self {
                $list { instances }
            }
        }

        impl From<Result<$item, FailedItem>> for $entry {
            fn from(result: Result<$item, FailedItem>) -> Self {
                match result {
                    Ok(item) => $entry::Done(item),
                    Err(failed) => $entry::Failed(failed),
                }
            }
        }

        impl Data for $list {
            fn failed(&self) -> (usize, usize) {
                let failed = self.instances.iter();
                let failed = failed.filter(|i| matches!(i, $entry::Failed(_)));
                (failed.count(), self.instances.len())
            }

            fn failures(&self) -> Vec<(u16, String)> {
                self.instances
                    .iter()
                    .filter_map(|i| match i {
                        $entry::Failed(f) => Some(f.outcome.code_and_message()),
                        $entry::Done(_) => None,
                    })
                    .collect()
            }
        }
    };
}

/// An item of a call on several objects that failed: which object, and why.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FailedItem {
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub name: Option<String>,
}

impl FailedItem {
    /// The failure of the item that referred to an object by `id` (a uuid or a name).
    pub fn new(id: &str, err: &weft_controller::Error) -> FailedItem {
        let by_uuid = weft_model::names::looks_like_uuid(id);
        FailedItem {
            outcome: Outcome::failure(err),
            uuid: by_uuid.then(|| id.to_string()),
            name: (!by_uuid).then(|| id.to_string()),
        }
    }
}

/// An instance: a microVM and its network interfaces.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct InstanceItem {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub uuid: String,
    pub name: String,
    /// When the instance was created (RFC 3339).
    pub created_at: String,
    /// One of `stopped`, `starting`, `running`, `draining`, `stopping`, `standby`,
    /// `template`.
    #[schema(example = "running")]
    pub state: String,
    /// The image the instance boots.
    pub image: String,
    pub memory_mb: u32,
    pub vcpus: u32,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// The address of the primary interface.
    #[schema(example = "10.100.0.1")]
    pub private_ip: Option<String>,
    /// `<name>.internal`.
    pub private_fqdn: String,
    /// The gateway the guest is told: the create request's `gateway`, or the one derived
    /// from the first pool interface's network (else the primary's); null when there is none.
    pub gateway: Option<String>,
    /// The nameserver the guest is told, given or derived as `gateway`.
    pub nameserver: Option<String>,
    /// The interfaces, primary first.
    pub network_interfaces: Vec<InterfaceItem>,
    /// The ports the guest announced listening on, on the primary interface's address or on
    /// every address (R5), as `"<protocol>:<port>"`, sorted; empty while it does not run.
    #[schema(example = json!(["tcp:8080"]))]
    pub services: Vec<String>,
    /// The service group the instance is in.
    pub service_group: Option<crate::services::GroupRefItem>,
    /// The time the last boot took until the VMM ran the guest.
    pub boot_time_us: Option<u64>,
    /// The time from the start of the last boot until the guest first announced a port that
    /// counts (see `services`); null until then.
    pub net_time_us: Option<u64>,
    /// The exit code of the guest's app, once it stopped.
    pub exit_code: Option<i32>,
}

/// A network interface of an instance.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct InterfaceItem {
    pub uuid: String,
    /// Unique in the account, not only in the instance.
    pub name: String,
    /// The interface's address, without prefix length.
    #[schema(example = "10.100.0.1")]
    pub private_ip: Option<String>,
    /// The interface's address in CIDR notation.
    #[schema(example = "10.100.0.1/16")]
    pub ip: Option<String>,
    #[schema(example = "12:b0:0a:64:00:01")]
    pub mac: String,
    /// The host's TAP device of the interface.
    pub tap_name: String,
    /// Whether address and TAP device were taken from the host's pools (rather than brought by
    /// the user).
    pub pool: bool,
    /// Whether the guest configures the interface itself.
    pub autoconfig: bool,
    /// The relay this interface's traffic passes through, if any.
    pub relay: Option<RelayItem>,
}

/// The relay of an interface.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RelayItem {
    /// The name of the relay interface (an interface of another instance of the account).
    pub name: String,
    /// Whether the guest's DNS queries go through the relay too.
    pub relay_dns: bool,
}

/// The short item of a lifecycle call: which instance, and its state before and after.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TransitionItem {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub uuid: String,
    pub name: String,
    pub state: String,
    pub previous_state: String,
}

/// A deleted instance, and the state it was in.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DeleteItem {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub uuid: String,
    pub name: String,
    pub previous_state: String,
}

/// A window of an instance's console output.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LogItem {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub uuid: String,
    pub name: String,
    /// The console output in the window, base64-encoded.
    #[schema(content_encoding = "base64")]
    pub output: String,
    /// The offsets of `output` in the whole console output since the guest booted.
    pub range: LogRange,
    /// The offsets of the output still kept: older output is dropped to bound the log.
    pub available: LogRange,
}

/// An instance and the state it is in (the answer to wait).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StateItem {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub uuid: String,
    pub name: String,
    pub state: String,
}

/// Byte offsets: `start` included, `end` excluded.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct LogRange {
    pub start: u64,
    pub end: u64,
}

item_list! {
    /// The `data` of an answer with instances.
    InstanceList of InstanceItem as InstanceEntry
}

item_list! {
    /// The `data` of an answer to start or stop.
    TransitionList of TransitionItem as TransitionEntry
}

item_list! {
    /// The `data` of an answer to delete.
    DeleteList of DeleteItem as DeleteEntry
}

item_list! {
    /// The `data` of an answer to wait.
    StateList of StateItem as StateEntry
}

item_list! {
    /// The `data` of an answer with console output.
    LogList of LogItem as LogEntry
}

pub fn instance(record: &Record) -> InstanceItem {
    let i = &record.instance;
    InstanceItem {
        outcome: Outcome::success(),
        uuid: i.uuid.clone(),
        name: i.name.clone(),
        created_at: i.created_at.clone(),
        state: i.state.as_str().to_string(),
        image: i.image.clone(),
        memory_mb: i.memory_mb,
        vcpus: i.vcpus,
        args: i.args.clone(),
        env: i.env.clone(),
        private_ip: record
            .primary()
            .and_then(|p| p.ip)
            .map(|c| c.addr().to_string()),
        private_fqdn: format!("{}.internal", i.name),
        gateway: i.gateway.map(|a| a.to_string()),
        nameserver: i.nameserver.map(|a| a.to_string()),
        network_interfaces: record.interfaces.iter().map(interface).collect(),
        services: i.services.clone(),
        service_group: i.service_group.as_ref().map(crate::services::group_ref),
        boot_time_us: i.boot_time_us,
        net_time_us: i.net_time_us,
        exit_code: i.exit_code,
    }
}

pub fn interface(iface: &Interface) -> InterfaceItem {
    InterfaceItem {
        uuid: iface.uuid.clone(),
        name: iface.name.clone(),
        private_ip: iface.ip.map(|c| c.addr().to_string()),
        ip: iface.ip.map(|c| c.to_string()),
        mac: iface.mac.to_string(),
        tap_name: iface.tap_name.clone(),
        pool: iface.pool,
        autoconfig: iface.autoconfig,
        relay: iface.relay_name.as_ref().map(|name| RelayItem {
            name: name.clone(),
            relay_dns: iface.relay_dns,
        }),
    }
}

pub fn transition(record: &Record, previous: &str) -> TransitionItem {
    TransitionItem {
        outcome: Outcome::success(),
        uuid: record.instance.uuid.clone(),
        name: record.instance.name.clone(),
        state: record.instance.state.as_str().to_string(),
        previous_state: previous.to_string(),
    }
}

pub fn state(record: &Record) -> StateItem {
    StateItem {
        outcome: Outcome::success(),
        uuid: record.instance.uuid.clone(),
        name: record.instance.name.clone(),
        state: record.instance.state.as_str().to_string(),
    }
}

pub fn deleted(record: &Record) -> DeleteItem {
    DeleteItem {
        outcome: Outcome::success(),
        uuid: record.instance.uuid.clone(),
        name: record.instance.name.clone(),
        previous_state: record.instance.state.as_str().to_string(),
    }
}

pub fn log(record: &Record, chunk: &LogChunk) -> LogItem {
    use base64::Engine as _;

    LogItem {
        outcome: Outcome::success(),
        uuid: record.instance.uuid.clone(),
        name: record.instance.name.clone(),
        output: base64::engine::general_purpose::STANDARD.encode(&chunk.output),
        range: LogRange {
            start: chunk.start,
            end: chunk.end,
        },
        available: LogRange {
            start: chunk.available_start,
            end: chunk.available_end,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::{json, Value};
    use weft_model::{Ipv4Cidr, MacAddr};
    use weft_store::{Instance, State};

    use super::*;

    fn record() -> Record {
        let instance = Instance {
            uuid: "u-1".into(),
            account: "acme".into(),
            name: "demo".into(),
            state: State::Running,
            image: "base".into(),
            args: vec!["/bin/app".into()],
            env: BTreeMap::from([("K".into(), "V".into())]),
            memory_mb: 128,
            vcpus: 1,
            gateway: None,
            nameserver: Some(Ipv4Addr::new(10, 0, 0, 53)),
            created_at: "2025-01-01T00:00:00Z".into(),
            pid: Some(42),
            exit_code: None,
            boot_time_us: Some(900),
            net_time_us: None,
            services: vec![],
            service_group: None,
        };
        let iface = |index: u32, ip: Option<Ipv4Cidr>, relay: Option<&str>| Interface {
            uuid: format!("i-{index}"),
            account: "acme".into(),
            name: format!("demo-eth{index}"),
            instance: "u-1".into(),
            index,
            ip,
            tap_name: format!("tap{index}"),
            mac: MacAddr([0x12, 0xb0, 10, 100, 0, 1]),
            pool: index == 0,
            autoconfig: true,
            relay_name: relay.map(str::to_string),
            relay_dns: false,
        };
        let cidr = Ipv4Cidr::new(Ipv4Addr::new(10, 100, 0, 1), 16).unwrap();
        Record {
            instance,
            interfaces: vec![iface(0, Some(cidr), None), iface(1, None, Some("gw-eth0"))],
        }
    }

    #[test]
    fn an_instance_shows_the_members_of_the_spec() {
        let item = serde_json::to_value(instance(&record())).unwrap();
        assert_eq!(
            item,
            json!({
                "status": "success",
                "uuid": "u-1",
                "name": "demo",
                "created_at": "2025-01-01T00:00:00Z",
                "state": "running",
                "image": "base",
                "memory_mb": 128,
                "vcpus": 1,
                "args": ["/bin/app"],
                "env": {"K": "V"},
                "private_ip": "10.100.0.1",
                "private_fqdn": "demo.internal",
                "gateway": null,
                "nameserver": "10.0.0.53",
                "network_interfaces": [
                    {
                        "uuid": "i-0",
                        "name": "demo-eth0",
                        "private_ip": "10.100.0.1",
                        "ip": "10.100.0.1/16",
                        "mac": "12:b0:0a:64:00:01",
                        "tap_name": "tap0",
                        "pool": true,
                        "autoconfig": true,
                        "relay": null,
                    },
                    {
                        "uuid": "i-1",
                        "name": "demo-eth1",
                        "private_ip": null,
                        "ip": null,
                        "mac": "12:b0:0a:64:00:01",
                        "tap_name": "tap1",
                        "pool": false,
                        "autoconfig": true,
                        "relay": {"name": "gw-eth0", "relay_dns": false},
                    },
                ],
                "services": [],
                "service_group": null,
                "boot_time_us": 900,
                "net_time_us": null,
                "exit_code": null,
            })
        );
    }

    fn envelope_of(entries: Vec<TransitionEntry>) -> Value {
        use axum::response::IntoResponse as _;

        let reply =
            crate::envelope::Reply::data(TransitionList::from(entries), std::time::Instant::now());
        let response = reply.into_response();
        assert_eq!(response.status(), 200);
        let body = futures::executor::block_on(axum::body::to_bytes(response.into_body(), 1 << 20));
        let mut value: Value = serde_json::from_slice(&body.unwrap()).unwrap();
        value["op_time_us"] = json!(0);
        value
    }

    #[test]
    fn an_answer_whose_items_failed_says_why() {
        let done = || TransitionEntry::Done(transition(&record(), "stopped"));
        let failed = |id: &str, err: weft_controller::Error| {
            TransitionEntry::Failed(FailedItem::new(id, &err))
        };
        let missing = || weft_controller::Error::not_found("No instance 'a'");
        let busy = || weft_controller::Error::conflict("busy");

        let all_good = envelope_of(vec![done()]);
        assert_eq!(all_good["status"], "success");
        assert!(all_good.get("message").is_none() && all_good.get("errors").is_none());

        let one_bad = envelope_of(vec![failed("a", missing())]);
        assert_eq!(one_bad["status"], "error");
        assert_eq!(one_bad["message"], "No instance 'a'");
        assert_eq!(one_bad["errors"], json!([{"status": 404}]));
        assert_eq!(one_bad["data"]["instances"][0]["error"], 404);

        let some_bad = envelope_of(vec![done(), failed("a", missing())]);
        assert_eq!(some_bad["status"], "partial_success");
        assert_eq!(
            some_bad["message"],
            "1 of 2 items failed; the first: No instance 'a'"
        );
        assert!(some_bad.get("errors").is_none());

        let all_bad = envelope_of(vec![
            failed("a", missing()),
            failed("b", busy()),
            failed("c", missing()),
        ]);
        assert_eq!(all_bad["status"], "error");
        assert_eq!(
            all_bad["message"],
            "3 of 3 items failed; the first: No instance 'a'"
        );
        assert_eq!(all_bad["errors"], json!([{"status": 404}, {"status": 409}]));
    }

    #[test]
    fn short_items_show_their_members() {
        let record = record();
        let transition = serde_json::to_value(transition(&record, "stopped")).unwrap();
        assert_eq!(
            transition,
            json!({"status": "success", "uuid": "u-1", "name": "demo",
                   "state": "running", "previous_state": "stopped"})
        );
        let deleted = serde_json::to_value(deleted(&record)).unwrap();
        assert_eq!(
            deleted,
            json!({"status": "success", "uuid": "u-1", "name": "demo",
                   "previous_state": "running"})
        );
        let chunk = LogChunk {
            output: b"hi".to_vec(),
            start: 3,
            end: 5,
            available_start: 1,
            available_end: 9,
        };
        let log: Value = serde_json::to_value(log(&record, &chunk)).unwrap();
        assert_eq!(
            log,
            json!({"status": "success", "uuid": "u-1", "name": "demo", "output": "aGk=",
                   "range": {"start": 3, "end": 5}, "available": {"start": 1, "end": 9}})
        );
    }
}
