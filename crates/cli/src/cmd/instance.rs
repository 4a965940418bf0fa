//! `weft instance create|ls|get`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{show, wait, Ctx};
use crate::cli::CreateArgs;
use crate::client::path_segment;
use crate::error::{Failure, Result};
use crate::netspec;
use crate::output::{self, Format};

/// The create request of a command line, checked as far as it can be without weftd.
pub fn create_body(args: &CreateArgs) -> Result<Value> {
    let mut env = BTreeMap::new();
    for pair in &args.env {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| Failure::usage(format!("Invalid --env '{pair}': expected KEY=VALUE")))?;
        env.insert(key.to_string(), value.to_string());
    }
    let interfaces = netspec::parse_all(&args.net).map_err(Failure::Usage)?;
    for (field, value) in [("gateway", &args.gateway), ("nameserver", &args.nameserver)] {
        if let Some(value) = value {
            netspec::check_address(field, value).map_err(Failure::Usage)?;
        }
    }

    let mut body = json!({ "image": args.image });
    let obj = body.as_object_mut().expect("an object");
    if let Some(name) = &args.name {
        obj.insert("name".into(), json!(name));
    }
    if !args.args.is_empty() {
        obj.insert("args".into(), json!(args.args));
    }
    if !env.is_empty() {
        obj.insert("env".into(), json!(env));
    }
    if let Some(memory) = args.memory {
        obj.insert("memory_mb".into(), json!(memory));
    }
    if let Some(vcpus) = args.vcpus {
        obj.insert("vcpus".into(), json!(vcpus));
    }
    if args.no_start {
        obj.insert("autostart".into(), json!(false));
    }
    // The network fields are sent only when used: accounts without the net_manager
    // permission do not know them (R9).
    if !interfaces.is_empty() {
        obj.insert("network_interfaces".into(), json!(interfaces));
    }
    if let Some(gateway) = &args.gateway {
        obj.insert("gateway".into(), json!(gateway));
    }
    if let Some(nameserver) = &args.nameserver {
        obj.insert("nameserver".into(), json!(nameserver));
    }
    Ok(body)
}

pub fn create(ctx: &Ctx, args: CreateArgs) -> Result<()> {
    let body = create_body(&args)?;
    let mut instance = ctx.client.item("POST", "/v1/instances", Some(&body))?;
    if args.wait && instance["state"] != "running" {
        let id = instance["uuid"].as_str().unwrap_or_default().to_string();
        instance = wait::until(ctx, &id, "running", args.timeout)?;
    }
    print_one(ctx, &instance)
}

pub fn list(ctx: &Ctx) -> Result<()> {
    let instances = ctx.client.items("GET", "/v1/instances", None)?;
    match ctx.format {
        Format::Table => {
            output::print(&show::instances_table(&instances).render());
            Ok(())
        }
        format => output::print_data(format, &Value::Array(instances)),
    }
}

pub fn get(ctx: &Ctx, id: &str) -> Result<()> {
    let instance = fetch(ctx, id)?;
    print_one(ctx, &instance)
}

/// The instance item of `GET /v1/instances/{id}`.
pub fn fetch(ctx: &Ctx, id: &str) -> Result<Value> {
    ctx.client
        .item("GET", &format!("/v1/instances/{}", path_segment(id)), None)
}

fn print_one(ctx: &Ctx, instance: &Value) -> Result<()> {
    match ctx.format {
        Format::Table => {
            output::print(&show::instance_details(instance));
            Ok(())
        }
        format => output::print_data(format, instance),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, InstanceCommand};
    use clap::Parser as _;

    fn body(line: &[&str]) -> Result<Value> {
        let mut full = vec!["weft", "instance", "create"];
        full.extend_from_slice(line);
        let Command::Instance(InstanceCommand::Create(args)) =
            Cli::try_parse_from(full).unwrap().command
        else {
            panic!("not a create");
        };
        create_body(&args)
    }

    #[test]
    fn minimal_create_sends_no_network_fields() {
        assert_eq!(body(&["base"]).unwrap(), json!({"image": "base"}));
    }

    #[test]
    fn full_create() {
        let got = body(&[
            "base",
            "--name",
            "db",
            "--env",
            "A=1",
            "-e",
            "B=x=y",
            "--memory",
            "256",
            "--vcpus",
            "2",
            "--no-start",
            "--net",
            "",
            "--net",
            "tap=custtap0,ip=172.30.5.2/24,name=db0,autoconfig=false",
            "--gateway",
            "172.30.5.1",
            "--nameserver",
            "172.30.5.1",
            "--",
            "/bin/sh",
            "-c",
            "sleep 1",
        ])
        .unwrap();
        assert_eq!(
            got,
            json!({
                "image": "base", "name": "db", "args": ["/bin/sh", "-c", "sleep 1"],
                "env": {"A": "1", "B": "x=y"}, "memory_mb": 256, "vcpus": 2, "autostart": false,
                "network_interfaces": [
                    {},
                    {"name": "db0", "ip": "172.30.5.2/24", "tap_name": "custtap0", "autoconfig": false}
                ],
                "gateway": "172.30.5.1", "nameserver": "172.30.5.1"
            })
        );
    }

    #[test]
    fn local_refusals_are_usage_errors() {
        let cases: [(&[&str], &str); 3] = [
            (
                &["base", "--env", "NOVALUE"],
                "Invalid --env 'NOVALUE': expected KEY=VALUE",
            ),
            (&["base", "--net", "ip=172.30.5.2/24"], netspec::IP_AND_TAP),
            (
                &["base", "--gateway", "gw"],
                "Invalid gateway 'gw': expected an IPv4 address",
            ),
        ];
        for (line, message) in cases {
            assert_eq!(
                body(line).unwrap_err(),
                Failure::Usage(message.into()),
                "{line:?}"
            );
        }
    }
}
