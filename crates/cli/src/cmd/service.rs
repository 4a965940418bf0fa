//! `weft service create|ls|get|rm`: service groups, in the shapes of Unikraft Cloud's
//! `/v1/services` (`{"name", "services": [{"port", "destination_port", "handlers"}]}`).

use serde::Serialize;
use serde_json::{json, Value};

use super::Ctx;
use crate::cli::ServiceCreateArgs;
use crate::client::{partition, path_segment};
use crate::error::{Failure, Result};
use crate::output::{self, cell, details, Format, Table};

const HANDLERS: [&str; 3] = ["tls", "http", "redirect"];

/// One published port of a service group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    pub port: u16,
    pub destination_port: u16,
    pub handlers: Vec<String>,
}

/// Parses `PUBLIC[:DESTINATION][/HANDLER[+HANDLER...]]`.
pub fn parse_port(spec: &str) -> std::result::Result<PortSpec, String> {
    let (ports, handlers) = match spec.split_once('/') {
        Some((ports, handlers)) => (ports, Some(handlers)),
        None => (spec, None),
    };
    let number = |text: &str| {
        text.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            format!("Invalid --port '{spec}': '{text}' is not a port between 1 and 65535")
        })
    };
    let (port, destination_port) = match ports.split_once(':') {
        Some((public, dest)) => (number(public)?, number(dest)?),
        None => (number(ports)?, number(ports)?),
    };
    let mut list: Vec<String> = Vec::new();
    for handler in handlers.into_iter().flat_map(|h| h.split('+')) {
        if !HANDLERS.contains(&handler) {
            return Err(format!(
                "Invalid --port '{spec}': unknown handler '{handler}' (known: tls, http, redirect)"
            ));
        }
        if list.iter().any(|h| h == handler) {
            return Err(format!(
                "Invalid --port '{spec}': handler '{handler}' is given twice"
            ));
        }
        list.push(handler.to_string());
    }
    Ok(PortSpec {
        port,
        destination_port,
        handlers: list,
    })
}

pub fn create_body(args: &ServiceCreateArgs) -> Result<Value> {
    let services = args
        .ports
        .iter()
        .map(|p| parse_port(p))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Failure::Usage)?;
    Ok(json!({ "name": args.name, "services": services }))
}

pub fn create(ctx: &Ctx, args: ServiceCreateArgs) -> Result<()> {
    let body = create_body(&args)?;
    let group = ctx.client.item("POST", "/v1/services", Some(&body))?;
    print_one(ctx, &group)
}

pub fn list(ctx: &Ctx) -> Result<()> {
    let groups = ctx.client.items("GET", "/v1/services", None)?;
    match ctx.format {
        Format::Table => {
            output::print(&table(&groups).render());
            Ok(())
        }
        format => output::print_data(format, &Value::Array(groups)),
    }
}

pub fn get(ctx: &Ctx, id: &str) -> Result<()> {
    let group = ctx
        .client
        .item("GET", &format!("/v1/services/{}", path_segment(id)), None)?;
    print_one(ctx, &group)
}

/// Deletes each group with a call of its own.
pub fn remove(ctx: &Ctx, ids: &[String]) -> Result<()> {
    let mut items = Vec::new();
    for id in ids {
        let answer = ctx.client.send(
            "DELETE",
            &format!("/v1/services/{}", path_segment(id)),
            None,
            None,
        )?;
        if answer.is_success() {
            items.extend(crate::client::items(&answer.body));
        } else if ids.len() == 1 {
            return Err(answer.refusal());
        } else {
            let message = answer.refusal().to_string();
            items.push(json!({"status": "error", "name": id, "message": message}));
        }
    }
    let (ok, failed) = partition(items.clone());
    match ctx.format {
        Format::Table => {
            let mut table = Table::new(&["NAME", "UUID"]);
            ok.iter()
                .for_each(|g| table.row(vec![cell(&g["name"]), cell(&g["uuid"])]));
            output::print(&table.render());
        }
        format => output::print_data(format, &Value::Array(items))?,
    }
    match failed.split_last() {
        None => Ok(()),
        Some((last, others)) => {
            others.iter().for_each(|f| eprintln!("error: {f}"));
            Err(Failure::Refused {
                http: 0,
                message: last.clone(),
            })
        }
    }
}

/// `443:8080/tls+http`, the form `--port` takes.
fn ports(group: &Value) -> String {
    group["services"]
        .as_array()
        .map(|services| {
            services
                .iter()
                .map(|s| {
                    let handlers = s["handlers"]
                        .as_array()
                        .map(|h| h.iter().map(cell).collect::<Vec<_>>().join("+"))
                        .unwrap_or_default();
                    let mut text = format!("{}:{}", cell(&s["port"]), cell(&s["destination_port"]));
                    if !handlers.is_empty() {
                        text = format!("{text}/{handlers}");
                    }
                    text
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn names(list: &Value, key: &str) -> String {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|i| cell(&i[key]))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

pub fn table(groups: &[Value]) -> Table {
    let mut table = Table::new(&["NAME", "PORTS", "INSTANCES", "DOMAINS"]);
    for g in groups {
        table.row(vec![
            cell(&g["name"]),
            ports(g),
            names(&g["instances"], "name"),
            names(&g["domains"], "fqdn"),
        ]);
    }
    table
}

fn print_one(ctx: &Ctx, group: &Value) -> Result<()> {
    match ctx.format {
        Format::Table => {
            output::print(&details(&[
                ("Name", cell(&group["name"])),
                ("UUID", cell(&group["uuid"])),
                ("Created", cell(&group["created_at"])),
                ("Ports", ports(group)),
                ("Instances", names(&group["instances"], "name")),
                ("Domains", names(&group["domains"], "fqdn")),
            ]));
            Ok(())
        }
        format => output::print_data(format, group),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!(
            parse_port("443:8080/tls+http").unwrap(),
            PortSpec {
                port: 443,
                destination_port: 8080,
                handlers: vec!["tls".into(), "http".into()]
            }
        );
        assert_eq!(
            parse_port("8080").unwrap(),
            PortSpec {
                port: 8080,
                destination_port: 8080,
                handlers: vec![]
            }
        );
        let bad = [
            ("0:80", "Invalid --port '0:80': '0' is not a port between 1 and 65535"),
            ("80:x", "Invalid --port '80:x': 'x' is not a port between 1 and 65535"),
            (
                "443/tls+quic",
                "Invalid --port '443/tls+quic': unknown handler 'quic' (known: tls, http, redirect)",
            ),
            ("443/tls+tls", "Invalid --port '443/tls+tls': handler 'tls' is given twice"),
        ];
        for (spec, message) in bad {
            assert_eq!(parse_port(spec).unwrap_err(), message);
        }
    }

    #[test]
    fn body_and_table() {
        let args = ServiceCreateArgs {
            name: "web".into(),
            ports: vec!["443:8080/tls+http".into(), "80:8080/http+redirect".into()],
        };
        let body = create_body(&args).unwrap();
        assert_eq!(
            body,
            json!({"name": "web", "services": [
                {"port": 443, "destination_port": 8080, "handlers": ["tls", "http"]},
                {"port": 80, "destination_port": 8080, "handlers": ["http", "redirect"]}
            ]})
        );
        let mut group = body;
        group["instances"] = json!([{"name": "a"}, {"name": "b"}]);
        group["domains"] = json!([{"fqdn": "web.example.com"}]);
        assert_eq!(
            table(&[group]).render(),
            "NAME  PORTS                                     INSTANCES  DOMAINS\n\
             web   443:8080/tls+http, 80:8080/http+redirect  a, b       web.example.com\n"
        );
    }
}
