//! PATCH: the mutable properties of instances; the network configuration is refused (R10).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::Value;
use weft_controller::patch::{members, PatchRequest};
use weft_controller::{Account, Controller, Error};

use crate::envelope::{Envelope, NoData, Reply};
use crate::instances::{account, reply};
use crate::view::{self, FailedItem, InstanceEntry, InstanceList};
use crate::{refs, strict, TAG_INSTANCES};

type Ctl = State<Arc<Controller>>;

/// The members a patch knows: the network ones only for accounts that may use them, so
/// that for others they are unknown, as at create (R9).
fn known(account: &Account) -> Vec<&'static [&'static str]> {
    let mut sets = vec![members::PATCH];
    if account.is_net_manager() {
        sets.push(members::PATCH_NETWORK);
    }
    sets
}

fn request(value: Value) -> Result<PatchRequest, Error> {
    strict::typed(value)
}

/// Change an instance
///
/// Changes image, args, env, memory or vCPUs; they apply at the next start. The network
/// configuration is set once at create and cannot be changed.
#[utoipa::path(
    patch,
    path = "/v1/instances/{id}",
    operation_id = "patch_instance",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The instance's uuid or name")),
    request_body(content = PatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed instance", body = Envelope<InstanceList>),
        (status = 400, description = "Malformed body, unknown member, a network field, or a value the rules refuse", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
        (status = 404, description = "No instance, or no image, of that name", body = Envelope<NoData>),
    )
)]
pub async fn patch_one(
    State(ctl): Ctl,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply<InstanceList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let value = strict::json(&body)?;
        strict::check_object(&value, "", &known(&account))?;
        strict::check_image(&value)?;
        let record = ctl.patch(&account, &id, request(value)?).await?;
        Ok(vec![view::instance(&record)].into())
    }
    .await;
    reply(started, result)
}

/// Change several instances
///
/// Each item names an instance by `uuid` or `name` and carries the members of a patch.
#[utoipa::path(
    patch,
    path = "/v1/instances",
    operation_id = "patch_instances",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    request_body(content = Vec<Object>, description = "Items `{\"uuid\"|\"name\", ...patch}`"),
    responses(
        (status = 200, description = "Each changed instance, or why not", body = Envelope<InstanceList>),
        (status = 400, description = "Malformed body or unknown member", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
    )
)]
pub async fn patch_many(State(ctl): Ctl, headers: HeaderMap, body: Bytes) -> Reply<InstanceList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let items = refs::items(strict::json(&body)?, &known(&account))?;
        let mut out: Vec<InstanceEntry> = Vec::new();
        for item in items {
            let rest = Value::Object(item.rest);
            let done = match strict::check_image(&rest).and_then(|()| request(rest)) {
                Ok(req) => ctl.patch(&account, &item.id, req).await,
                Err(e) => Err(e),
            };
            out.push(
                done.map(|r| view::instance(&r))
                    .map_err(|e| FailedItem::new(&item.id, &e))
                    .into(),
            );
        }
        Ok(out.into())
    }
    .await;
    reply(started, result)
}
