//! Calls on several instances at once: delete, start, stop, wait, templates and checkpoints.
//! Each item succeeds or fails on its own; the answer is `partial_success` when some failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;
use weft_controller::{Controller, Error};
use weft_store::State as InstanceState;

use crate::envelope::{Envelope, NoData, Reply};
use crate::instances::{account, reply};
use crate::refs::{self, Item};
use crate::view::{
    self, DeleteEntry, DeleteList, FailedItem, InstanceEntry, InstanceList, LogEntry, LogList,
    StateEntry, StateList, TransitionEntry, TransitionList,
};
use crate::{strict, TAG_INSTANCES};

type Ctl = State<Arc<Controller>>;

/// How long a wait lasts when the request does not say.
const WAIT_DEFAULT_MS: u64 = 60_000;

fn batch(body: &Bytes, allowed: &[&[&str]]) -> Result<Vec<Item>, Error> {
    refs::items(strict::json(body)?, allowed)
}

/// Delete several instances
#[utoipa::path(
    delete,
    path = "/v1/instances",
    operation_id = "delete_instances",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    request_body(content = Vec<Object>, description = "Items `{\"uuid\"}` or `{\"name\"}`"),
    responses(
        (status = 200, description = "Each instance deleted, or why not", body = Envelope<DeleteList>),
        (status = 400, description = "Malformed body", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
    )
)]
pub async fn delete_many(State(ctl): Ctl, headers: HeaderMap, body: Bytes) -> Reply<DeleteList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let mut out: Vec<DeleteEntry> = Vec::new();
        for item in batch(&body, &[])? {
            let done = ctl.delete_instance(&account, &item.id).await;
            out.push(
                done.map(|r| view::deleted(&r))
                    .map_err(|e| FailedItem::new(&item.id, &e))
                    .into(),
            );
        }
        Ok(out.into())
    }
    .await;
    reply(started, result)
}

/// Start several instances
#[utoipa::path(
    put,
    path = "/v1/instances/start",
    operation_id = "start_instances",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    request_body(content = Vec<Object>, description = "Items `{\"uuid\"}` or `{\"name\"}`"),
    responses(
        (status = 200, description = "Each instance with its states, or why not", body = Envelope<TransitionList>),
        (status = 400, description = "Malformed body", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
    )
)]
pub async fn start_many(State(ctl): Ctl, headers: HeaderMap, body: Bytes) -> Reply<TransitionList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let mut out: Vec<TransitionEntry> = Vec::new();
        for item in batch(&body, &[])? {
            let done = ctl.start_instance(&account, &item.id).await;
            let done = done.map(|(previous, r)| view::transition(&r, previous.as_str()));
            out.push(done.map_err(|e| FailedItem::new(&item.id, &e)).into());
        }
        Ok(out.into())
    }
    .await;
    reply(started, result)
}

/// Stop several instances
#[utoipa::path(
    put,
    path = "/v1/instances/stop",
    operation_id = "stop_instances",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    request_body(content = Vec<Object>, description = "Items `{\"uuid\"}` or `{\"name\"}`"),
    responses(
        (status = 200, description = "Each instance with its states, or why not", body = Envelope<TransitionList>),
        (status = 400, description = "Malformed body", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
    )
)]
pub async fn stop_many(State(ctl): Ctl, headers: HeaderMap, body: Bytes) -> Reply<TransitionList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let mut out: Vec<TransitionEntry> = Vec::new();
        for item in batch(&body, &[])? {
            let done = ctl.stop_instance(&account, &item.id).await;
            let done = done.map(|(previous, r)| view::transition(&r, previous.as_str()));
            out.push(done.map_err(|e| FailedItem::new(&item.id, &e)).into());
        }
        Ok(out.into())
    }
    .await;
    reply(started, result)
}

/// What to wait for.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// The state to wait for.
    #[param(default = "running")]
    state: Option<String>,
    /// How long to wait at most, in milliseconds (-1: the server's longest, 10 minutes).
    #[param(default = 60000)]
    timeout_ms: Option<i64>,
}

fn wait_args(
    state: Option<&str>,
    timeout_ms: Option<i64>,
) -> Result<(InstanceState, Duration), Error> {
    let state = state.unwrap_or("running");
    let state = InstanceState::parse(state).ok_or_else(|| {
        Error::bad_request(format!(
            "Invalid state '{state}': expected one of stopped, starting, running, draining, \
             stopping, standby, template"
        ))
    })?;
    let timeout = match timeout_ms {
        None => Duration::from_millis(WAIT_DEFAULT_MS),
        Some(ms) if ms < 0 => weft_controller::wait::WAIT_MAX,
        Some(ms) => Duration::from_millis(ms as u64),
    };
    Ok((state, timeout))
}

/// Wait for an instance to reach a state
///
/// Answers once the instance is in the state, or with an error item (code 408) when the
/// timeout passes first.
#[utoipa::path(
    get,
    path = "/v1/instances/{id}/wait",
    operation_id = "wait_instance",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The instance's uuid or name"), WaitQuery),
    responses(
        (status = 200, description = "The instance in the state, or a timeout item", body = Envelope<StateList>),
        (status = 400, description = "Invalid query", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
        (status = 404, description = "No instance of that uuid or name", body = Envelope<NoData>),
    )
)]
pub async fn wait_one(
    State(ctl): Ctl,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply<StateList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let Query(query) = query.map_err(|e| Error::bad_request(format!("Invalid query: {e}")))?;
        let (state, timeout) = wait_args(query.state.as_deref(), query.timeout_ms)?;
        // An unknown instance fails the request as a whole, as for get.
        ctl.get(&account, &id).await?;
        let done = ctl.wait(&account, &id, state, timeout).await;
        let entry: StateEntry = done
            .map(|r| view::state(&r))
            .map_err(|e| FailedItem::new(&id, &e))
            .into();
        Ok(vec![entry].into())
    }
    .await;
    reply(started, result)
}

/// Wait for several instances
///
/// Each item may say its own `state` (default `running`) and `timeout_ms`.
#[utoipa::path(
    get,
    path = "/v1/instances/wait",
    operation_id = "wait_instances",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    request_body(content = Vec<Object>, description = "Items `{\"uuid\"|\"name\", \"state\"?, \"timeout_ms\"?}`"),
    responses(
        (status = 200, description = "Each instance in its state, or why not", body = Envelope<StateList>),
        (status = 400, description = "Malformed body", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
    )
)]
pub async fn wait_many(State(ctl): Ctl, headers: HeaderMap, body: Bytes) -> Reply<StateList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let mut waits = Vec::new();
        for (i, item) in batch(&body, &[&["state", "timeout_ms"]])?
            .into_iter()
            .enumerate()
        {
            let state = match item.rest.get("state") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    return Err(Error::bad_request(format!(
                        "Invalid value for '[{i}].state': expected a string, not {other}"
                    )))
                }
            };
            let timeout_ms = match item.rest.get("timeout_ms") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().ok_or_else(|| {
                    Error::bad_request(format!(
                        "Invalid value for '[{i}].timeout_ms': expected an integer, not {v}"
                    ))
                })?),
            };
            let (state, timeout) = wait_args(state.as_deref(), timeout_ms)?;
            waits.push((item.id, state, timeout));
        }
        let done = futures::future::join_all(
            waits
                .iter()
                .map(|(id, state, timeout)| ctl.wait(&account, id, *state, *timeout)),
        )
        .await;
        let out: Vec<StateEntry> = done
            .into_iter()
            .zip(&waits)
            .map(|(r, (id, _, _))| {
                r.map(|r| view::state(&r))
                    .map_err(|e| FailedItem::new(id, &e))
                    .into()
            })
            .collect();
        Ok(out.into())
    }
    .await;
    reply(started, result)
}

/// An integer member of a batch item, if given.
fn int_member(item: &Item, index: usize, key: &str) -> Result<Option<i64>, Error> {
    match item.rest.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            Error::bad_request(format!(
                "Invalid value for '[{index}].{key}': expected an integer, not {v}"
            ))
        }),
    }
}

/// Get several instances' console output
///
/// Each item may say its own `offset` (negative: from the end) and `limit`, as the query of
/// the single form does.
#[utoipa::path(
    get,
    path = "/v1/instances/log",
    operation_id = "get_instances_log",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    request_body(content = Vec<Object>, description = "Items `{\"uuid\"|\"name\", \"offset\"?, \"limit\"?}`"),
    responses(
        (status = 200, description = "A window of each instance's console output, or why not", body = Envelope<LogList>),
        (status = 400, description = "Malformed body", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
    )
)]
pub async fn log_many(State(ctl): Ctl, headers: HeaderMap, body: Bytes) -> Reply<LogList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let mut windows = Vec::new();
        for (i, item) in batch(&body, &[&["offset", "limit"]])?
            .into_iter()
            .enumerate()
        {
            let offset = int_member(&item, i, "offset")?.unwrap_or(0);
            let limit = match int_member(&item, i, "limit")? {
                None => crate::instances::LOG_LIMIT_DEFAULT,
                Some(n) if n >= 0 => n as u64,
                Some(n) => {
                    return Err(Error::bad_request(format!(
                        "Invalid value for '[{i}].limit': expected a count of bytes, not {n}"
                    )))
                }
            };
            windows.push((item.id, offset, limit));
        }
        let mut out: Vec<LogEntry> = Vec::new();
        for (id, offset, limit) in &windows {
            let done = async {
                let record = ctl.get(&account, id).await?;
                let chunk = ctl.log(&account, id, *offset, *limit).await?;
                Ok::<_, Error>(view::log(&record, &chunk))
            }
            .await;
            out.push(done.map_err(|e| FailedItem::new(id, &e)).into());
        }
        Ok(out.into())
    }
    .await;
    reply(started, result)
}

/// Make templates of instances
///
/// Turns stopped instances into templates. A template keeps image, args, env and sizes, and
/// no network configuration: instances created from it get one pool interface unless their
/// request says otherwise.
#[utoipa::path(
    post,
    path = "/v1/instances/templates",
    operation_id = "make_templates",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    request_body(content = Vec<Object>, description = "Items `{\"uuid\"}` or `{\"name\"}`"),
    responses(
        (status = 200, description = "Each template, or why not", body = Envelope<InstanceList>),
        (status = 400, description = "Malformed body", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
    )
)]
pub async fn templates(State(ctl): Ctl, headers: HeaderMap, body: Bytes) -> Reply<InstanceList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let mut out: Vec<InstanceEntry> = Vec::new();
        for item in batch(&body, &[])? {
            let done = ctl.make_template(&account, &item.id).await;
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

/// Checkpoint instances
///
/// Stores a checkpoint of each stopped instance (`checkpoint_name` names it), to create
/// instances from with `checkpoint`. Instances with more than one network interface cannot
/// be checkpointed.
#[utoipa::path(
    post,
    path = "/v1/instances/checkpoints",
    operation_id = "checkpoint_instances",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    request_body(content = Vec<Object>, description = "Items `{\"uuid\"|\"name\", \"checkpoint_name\"?}`"),
    responses(
        (status = 200, description = "Each checkpoint, or why not", body = Envelope<InstanceList>),
        (status = 400, description = "Malformed body", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
    )
)]
pub async fn checkpoints(State(ctl): Ctl, headers: HeaderMap, body: Bytes) -> Reply<InstanceList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let mut out: Vec<InstanceEntry> = Vec::new();
        for (i, item) in batch(&body, &[&["checkpoint_name"]])?
            .into_iter()
            .enumerate()
        {
            let name = match item.rest.get("checkpoint_name") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    return Err(Error::bad_request(format!(
                        "Invalid value for '[{i}].checkpoint_name': expected a string, not {other}"
                    )))
                }
            };
            let done = ctl.checkpoint(&account, &item.id, name.as_deref()).await;
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
