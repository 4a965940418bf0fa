//! How instances and their interfaces look in tables.

use serde_json::Value;

use crate::output::{cell, details, Table};

/// One line per instance.
pub fn instances_table(instances: &[Value]) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "STATE",
        "IMAGE",
        "PRIVATE IP",
        "IFACES",
        "MEMORY",
        "VCPUS",
        "CREATED",
    ]);
    for i in instances {
        table.row(vec![
            cell(&i["name"]),
            cell(&i["state"]),
            cell(&i["image"]),
            cell(&i["private_ip"]),
            i["network_interfaces"]
                .as_array()
                .map_or(String::new(), |a| a.len().to_string()),
            mib(&i["memory_mb"]),
            cell(&i["vcpus"]),
            cell(&i["created_at"]),
        ]);
    }
    table
}

/// Everything about one instance, then its interfaces.
pub fn instance_details(i: &Value) -> String {
    let list = |v: &Value| {
        v.as_array()
            .map(|a| a.iter().map(cell).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let env = i["env"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", cell(v)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let overridden = |v: &Value| {
        if v.is_null() {
            "derived".to_string()
        } else {
            cell(v)
        }
    };
    let mut text = details(&[
        ("Name", cell(&i["name"])),
        ("UUID", cell(&i["uuid"])),
        ("State", cell(&i["state"])),
        ("Image", cell(&i["image"])),
        ("Created", cell(&i["created_at"])),
        ("Memory", mib(&i["memory_mb"])),
        ("vCPUs", cell(&i["vcpus"])),
        ("Args", list(&i["args"])),
        ("Env", env),
        ("Private IP", cell(&i["private_ip"])),
        ("Private FQDN", cell(&i["private_fqdn"])),
        ("Gateway", overridden(&i["gateway"])),
        ("Nameserver", overridden(&i["nameserver"])),
        ("Services", list(&i["services"])),
        ("Boot time", micros(&i["boot_time_us"])),
        ("Net time", micros(&i["net_time_us"])),
        ("Exit code", cell(&i["exit_code"])),
    ]);
    let ifaces = i["network_interfaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    text.push_str("\nNetwork interfaces:\n");
    text.push_str(&interfaces_table(&ifaces).render());
    text
}

/// The interfaces of one instance, primary first.
pub fn interfaces_table(ifaces: &[Value]) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "PRIMARY",
        "ADDRESS",
        "MAC",
        "TAP",
        "SOURCE",
        "AUTOCONFIG",
        "RELAY",
    ]);
    for (index, iface) in ifaces.iter().enumerate() {
        table.row(vec![
            cell(&iface["name"]),
            yes_no(index == 0),
            address(iface),
            cell(&iface["mac"]),
            cell(&iface["tap_name"]),
            source(iface),
            cell(&iface["autoconfig"]),
            relay(iface),
        ]);
    }
    table
}

/// The interface's CIDR, or its bare address when the server gives no CIDR.
pub fn address(iface: &Value) -> String {
    match iface["ip"].as_str() {
        Some(cidr) => cidr.to_string(),
        None => cell(&iface["private_ip"]),
    }
}

pub fn source(iface: &Value) -> String {
    match iface["pool"].as_bool() {
        Some(true) => "pool".into(),
        Some(false) => "own".into(),
        None => String::new(),
    }
}

/// `shield-eth0` with `(dns)` when DNS goes through the relay too, `(no dns)` when not.
pub fn relay(iface: &Value) -> String {
    let relay = &iface["relay"];
    match relay["name"].as_str() {
        None => String::new(),
        Some(name) => match relay["relay_dns"].as_bool() {
            Some(false) => format!("{name} (no dns)"),
            _ => format!("{name} (dns)"),
        },
    }
}

pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn mib(v: &Value) -> String {
    v.as_u64().map_or(String::new(), |n| format!("{n} MiB"))
}

fn micros(v: &Value) -> String {
    v.as_u64().map_or(String::new(), |us| {
        if us >= 1_000_000 {
            format!("{:.2} s", us as f64 / 1e6)
        } else {
            format!("{:.1} ms", us as f64 / 1e3)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn demo() -> Value {
        json!({
            "status": "success", "uuid": "u1", "name": "demo", "state": "running",
            "created_at": "2026-01-02T03:04:05Z", "image": "base", "memory_mb": 128, "vcpus": 1,
            "args": ["/bin/busybox", "httpd"], "env": {"ROLE": "web"},
            "private_ip": "10.100.0.1", "private_fqdn": "demo.internal",
            "gateway": null, "nameserver": "1.1.1.1", "services": [],
            "boot_time_us": 212345, "net_time_us": null, "exit_code": null,
            "network_interfaces": [
                {"uuid": "n1", "name": "demo-eth0", "private_ip": "10.100.0.1", "ip": "10.100.0.1/16",
                 "mac": "12:b0:0a:64:00:01", "tap_name": "weft-tap0", "pool": true, "autoconfig": true, "relay": null},
                {"uuid": "n2", "name": "db0", "private_ip": "172.30.5.2", "ip": "172.30.5.2/24",
                 "mac": "12:b1:74:ee:94:7b", "tap_name": "custtap0", "pool": false, "autoconfig": false,
                 "relay": {"name": "shield-eth0", "relay_dns": false}}
            ]
        })
    }

    #[test]
    fn instance_table() {
        assert_eq!(
            instances_table(&[demo()]).render(),
            "NAME  STATE    IMAGE  PRIVATE IP  IFACES  MEMORY   VCPUS  CREATED\n\
             demo  running  base   10.100.0.1  2       128 MiB  1      2026-01-02T03:04:05Z\n"
        );
    }

    #[test]
    fn instance_page() {
        let text = instance_details(&demo());
        assert!(
            text.starts_with("Name:          demo\nUUID:          u1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nGateway:       derived\nNameserver:    1.1.1.1\n"),
            "{text}"
        );
        assert!(text.contains("\nBoot time:     212.3 ms\n"), "{text}");
        assert!(text.contains("\nEnv:           ROLE=web\n"), "{text}");
        assert!(text.ends_with(
            "Network interfaces:\n\
             NAME       PRIMARY  ADDRESS        MAC                TAP        SOURCE  AUTOCONFIG  RELAY\n\
             demo-eth0  yes      10.100.0.1/16  12:b0:0a:64:00:01  weft-tap0  pool    yes         -\n\
             db0        no       172.30.5.2/24  12:b1:74:ee:94:7b  custtap0   own     no          shield-eth0 (no dns)\n"
        ), "{text}");
    }
}
