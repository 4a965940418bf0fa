//! `weft instance rm|start|stop` on one or several instances.
//!
//! Several instances go in one call to the batch form (`DELETE /v1/instances`,
//! `PUT /v1/instances/start|stop` with `[{"name"}|{"uuid"}, ...]`). A weftd without the batch
//! form answers 404 or 405 to it; then each instance gets a call of its own.

use serde_json::{json, Value};

use super::{wait, Ctx};
use crate::cli::StartArgs;
use crate::client::{items, partition, path_segment, reference};
use crate::error::{Failure, Result};
use crate::output::{self, cell, Format, Table};

pub fn remove(ctx: &Ctx, ids: &[String]) -> Result<()> {
    let items = apply(
        ctx,
        "DELETE",
        "/v1/instances",
        |id| format!("/v1/instances/{}", path_segment(id)),
        ids,
    )?;
    report(ctx, items, &["NAME", "UUID", "PREVIOUS STATE"], |i| {
        vec![
            cell(&i["name"]),
            cell(&i["uuid"]),
            cell(&i["previous_state"]),
        ]
    })
}

pub fn start(ctx: &Ctx, args: StartArgs) -> Result<()> {
    let ids = &args.which.instances;
    let mut items = apply(
        ctx,
        "PUT",
        "/v1/instances/start",
        |id| format!("/v1/instances/{}/start", path_segment(id)),
        ids,
    )?;
    if args.wait {
        for item in items.iter_mut().filter(|i| i["status"] != "error") {
            let id = item["uuid"].as_str().unwrap_or_default().to_string();
            let now = wait::until(ctx, &id, "running", args.timeout)?;
            item["state"] = now["state"].clone();
        }
    }
    report(ctx, items, &["NAME", "STATE", "PREVIOUS STATE"], transition)
}

pub fn stop(ctx: &Ctx, ids: &[String]) -> Result<()> {
    let items = apply(
        ctx,
        "PUT",
        "/v1/instances/stop",
        |id| format!("/v1/instances/{}/stop", path_segment(id)),
        ids,
    )?;
    report(ctx, items, &["NAME", "STATE", "PREVIOUS STATE"], transition)
}

fn transition(i: &Value) -> Vec<String> {
    vec![
        cell(&i["name"]),
        cell(&i["state"]),
        cell(&i["previous_state"]),
    ]
}

/// The items of the call on every instance, failed ones included. One instance's refusal is
/// the command's error; an unreachable weftd always is.
fn apply(
    ctx: &Ctx,
    method: &str,
    batch_path: &str,
    one_path: impl Fn(&str) -> String,
    ids: &[String],
) -> Result<Vec<Value>> {
    if let [id] = ids {
        return Ok(items(&ctx.client.call(method, &one_path(id), None)?));
    }

    let batch = Value::Array(ids.iter().map(|id| reference(id)).collect());
    let answer = ctx
        .client
        .send(method, batch_path, Some(&batch.to_string()), None)?;
    if !answer.is_missing_endpoint() {
        if (200..300).contains(&answer.http) {
            return Ok(items(&answer.body));
        }
        return Err(answer.refusal());
    }

    let mut all = Vec::new();
    for id in ids {
        let answer = ctx.client.send(method, &one_path(id), None, None)?;
        if answer.is_success() {
            all.extend(items(&answer.body));
        } else {
            let Failure::Refused { http, message } = answer.refusal() else {
                unreachable!("a refusal is Refused");
            };
            all.push(json!({"status": "error", "name": id, "message": message, "error": http}));
        }
    }
    Ok(all)
}

/// Prints what succeeded; what failed goes to stderr, and makes the command fail.
fn report(
    ctx: &Ctx,
    items: Vec<Value>,
    headers: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> Result<()> {
    let (ok, failed) = partition(items.clone());
    match ctx.format {
        Format::Table => {
            if !ok.is_empty() {
                let mut table = Table::new(headers);
                ok.iter().for_each(|i| table.row(row(i)));
                output::print(&table.render());
            }
        }
        format => output::print_data(format, &Value::Array(items))?,
    }
    match failed.len() {
        0 => Ok(()),
        _ => {
            for line in &failed[..failed.len() - 1] {
                eprintln!("error: {line}");
            }
            Err(Failure::Refused {
                http: 0,
                message: failed.last().expect("not empty").clone(),
            })
        }
    }
}
