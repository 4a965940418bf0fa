//! `weft net ls|get`: the account's network interfaces, gathered from its instances.

use serde_json::{json, Value};

use super::{show, Ctx};
use crate::error::{Failure, Result};
use crate::output::{self, cell, details, Format, Table};

/// Every interface of every instance, each with what the instance list tells about it:
/// `instance`, `instance_uuid`, `primary`, and `relay_for` (the interfaces that use it as
/// their relay).
pub fn interfaces(instances: &[Value]) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    for instance in instances {
        let ifaces = instance["network_interfaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (index, iface) in ifaces.into_iter().enumerate() {
            let mut iface = iface;
            if let Some(obj) = iface.as_object_mut() {
                obj.insert("instance".into(), instance["name"].clone());
                obj.insert("instance_uuid".into(), instance["uuid"].clone());
                obj.insert("primary".into(), json!(index == 0));
            }
            all.push(iface);
        }
    }

    let relays: Vec<(String, String)> = all
        .iter()
        .filter_map(|i| {
            let relay = i["relay"]["name"].as_str()?;
            Some((relay.to_string(), cell(&i["name"])))
        })
        .collect();
    for iface in &mut all {
        let name = cell(&iface["name"]);
        let users: Vec<Value> = relays
            .iter()
            .filter(|(relay, _)| *relay == name)
            .map(|(_, user)| json!(user))
            .collect();
        iface["relay_for"] = Value::Array(users);
    }
    all
}

pub fn table(ifaces: &[Value]) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "INSTANCE",
        "PRIMARY",
        "ADDRESS",
        "MAC",
        "TAP",
        "SOURCE",
        "AUTOCONFIG",
        "RELAY",
        "RELAY FOR",
    ]);
    for i in ifaces {
        table.row(vec![
            cell(&i["name"]),
            cell(&i["instance"]),
            cell(&i["primary"]),
            show::address(i),
            cell(&i["mac"]),
            cell(&i["tap_name"]),
            show::source(i),
            cell(&i["autoconfig"]),
            show::relay(i),
            relay_for(i),
        ]);
    }
    table
}

fn relay_for(iface: &Value) -> String {
    iface["relay_for"]
        .as_array()
        .map(|a| a.iter().map(cell).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn account_interfaces(ctx: &Ctx) -> Result<Vec<Value>> {
    Ok(interfaces(&ctx.client.items(
        "GET",
        "/v1/instances",
        None,
    )?))
}

pub fn list(ctx: &Ctx) -> Result<()> {
    let ifaces = account_interfaces(ctx)?;
    match ctx.format {
        Format::Table => {
            output::print(&table(&ifaces).render());
            Ok(())
        }
        format => output::print_data(format, &Value::Array(ifaces)),
    }
}

pub fn get(ctx: &Ctx, id: &str) -> Result<()> {
    let iface = account_interfaces(ctx)?
        .into_iter()
        .find(|i| i["name"] == id || i["uuid"] == id)
        .ok_or_else(|| Failure::Refused {
            http: 404,
            message: format!("No network interface '{id}' in this account"),
        })?;
    match ctx.format {
        Format::Table => {
            output::print(&details(&[
                ("Name", cell(&iface["name"])),
                ("UUID", cell(&iface["uuid"])),
                ("Instance", cell(&iface["instance"])),
                ("Primary", cell(&iface["primary"])),
                ("Address", show::address(&iface)),
                ("MAC", cell(&iface["mac"])),
                ("TAP", cell(&iface["tap_name"])),
                ("Source", show::source(&iface)),
                ("Autoconfig", cell(&iface["autoconfig"])),
                ("Relay", show::relay(&iface)),
                ("Relay for", relay_for(&iface)),
            ]));
            Ok(())
        }
        format => output::print_data(format, &iface),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str, ifaces: Value) -> Value {
        json!({"name": name, "uuid": format!("{name}-uuid"), "network_interfaces": ifaces})
    }

    fn iface(name: &str, ip: &str, tap: &str, pool: bool, relay: Value) -> Value {
        json!({"name": name, "uuid": format!("{name}-u"), "ip": ip, "mac": "12:b0:0a:64:00:01",
               "tap_name": tap, "pool": pool, "autoconfig": true, "relay": relay})
    }

    #[test]
    fn interfaces_know_their_relay_users() {
        let instances = vec![
            instance(
                "shield",
                json!([iface(
                    "shield-eth0",
                    "10.100.0.1/16",
                    "wt0",
                    true,
                    Value::Null
                )]),
            ),
            instance(
                "app",
                json!([
                    iface(
                        "app-eth0",
                        "10.100.0.2/16",
                        "wt1",
                        true,
                        json!({"name": "shield-eth0", "relay_dns": false})
                    ),
                    iface("db0", "172.30.5.2/24", "custtap0", false, Value::Null)
                ]),
            ),
        ];
        let all = interfaces(&instances);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0]["relay_for"], json!(["app-eth0"]));
        assert_eq!(all[1]["primary"], json!(true));
        assert_eq!(all[2]["primary"], json!(false));
        assert_eq!(all[2]["instance"], json!("app"));

        assert_eq!(
            table(&all).render(),
            "NAME         INSTANCE  PRIMARY  ADDRESS        MAC                TAP       SOURCE  AUTOCONFIG  RELAY                 RELAY FOR\n\
             shield-eth0  shield    yes      10.100.0.1/16  12:b0:0a:64:00:01  wt0       pool    yes         -                     app-eth0\n\
             app-eth0     app       yes      10.100.0.2/16  12:b0:0a:64:00:01  wt1       pool    yes         shield-eth0 (no dns)  -\n\
             db0          app       no       172.30.5.2/24  12:b0:0a:64:00:01  custtap0  own     yes         -                     -\n"
        );
    }
}
