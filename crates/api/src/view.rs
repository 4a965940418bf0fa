//! Instances and interfaces as the API shows them (SPEC section 2).

use serde_json::{json, Value};
use weft_controller::Record;
use weft_store::Interface;

pub fn instance(record: &Record) -> Value {
    let i = &record.instance;
    let private_ip = record
        .primary()
        .and_then(|p| p.ip)
        .map(|c| c.addr().to_string());
    json!({
        "status": "success",
        "uuid": i.uuid,
        "name": i.name,
        "created_at": i.created_at,
        "state": i.state.as_str(),
        "image": i.image,
        "memory_mb": i.memory_mb,
        "vcpus": i.vcpus,
        "args": i.args,
        "env": i.env,
        "private_ip": private_ip,
        "private_fqdn": format!("{}.internal", i.name),
        "gateway": i.gateway.map(|a| a.to_string()),
        "nameserver": i.nameserver.map(|a| a.to_string()),
        "network_interfaces": record.interfaces.iter().map(interface).collect::<Vec<_>>(),
        "services": Vec::<String>::new(),
        "service_group": Value::Null,
        "boot_time_us": i.boot_time_us,
        "net_time_us": i.net_time_us,
        "exit_code": i.exit_code,
    })
}

pub fn interface(iface: &Interface) -> Value {
    let relay = iface
        .relay_name
        .as_ref()
        .map(|name| json!({ "name": name, "relay_dns": iface.relay_dns }));
    json!({
        "uuid": iface.uuid,
        "name": iface.name,
        "private_ip": iface.ip.map(|c| c.addr().to_string()),
        "ip": iface.ip.map(|c| c.to_string()),
        "mac": iface.mac.to_string(),
        "tap_name": iface.tap_name,
        "pool": iface.pool,
        "autoconfig": iface.autoconfig,
        "relay": relay,
    })
}

/// The short item of a lifecycle call: who, and in which state before and after.
pub fn transition(record: &Record, previous: &str) -> Value {
    json!({
        "status": "success",
        "uuid": record.instance.uuid,
        "name": record.instance.name,
        "state": record.instance.state.as_str(),
        "previous_state": previous,
    })
}
