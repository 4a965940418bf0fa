//! `/v1/instances`: create, list, get, delete, start, stop, log. Each handler carries its
//! documentation, and the router registers the two together.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse as _, Response};
use axum::Extension;
use serde::Deserialize;
use utoipa::IntoParams;
use weft_controller::request::CreateRequest;
use weft_controller::{Account, Code, Controller, Error};

use crate::envelope::{Data, Envelope, NoData, Reply};
use crate::limits::{self, CreateLimiter};
use crate::view::{self, DeleteList, InstanceList, LogList, TransitionList};
use crate::{strict, TAG_INSTANCES};

type Ctl = State<Arc<Controller>>;

/// The account of the request's bearer token.
pub(crate) fn account(ctl: &Controller, headers: &HeaderMap) -> Result<Account, Error> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Error::new(
                Code::Unauthorized,
                "Missing token: send 'Authorization: Bearer <token>'",
            )
        })?;
    // The scheme is case-insensitive (RFC 9110).
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
        .ok_or_else(|| Error::new(Code::Unauthorized, "Authorization must be 'Bearer <token>'"))?;
    ctl.authenticate(token.trim())
        .cloned()
        .ok_or_else(|| Error::new(Code::Unauthorized, "Invalid token"))
}

pub(crate) fn reply<D: Data>(started: Instant, result: Result<D, Error>) -> Reply<D> {
    match result {
        Ok(data) => Reply::data(data, started),
        Err(e) => Reply::error(&e, started),
    }
}

/// Create an instance
///
/// Creates an instance and, unless `autostart` is false, boots it. The network fields
/// (`network_interfaces`, `gateway`, `nameserver`) exist only for accounts with the
/// `net_manager` permission and need a license with custom network configuration. A create
/// that fails is undone entirely.
#[utoipa::path(
    post,
    path = "/v1/instances",
    operation_id = "create_instance",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    request_body(content = CreateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The created instance", body = Envelope<InstanceList>),
        (
            status = 400,
            description = "Malformed body, unknown member, or a value the rules refuse",
            body = Envelope<NoData>
        ),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
        (
            status = 403,
            description = "The license does not include a feature the request uses",
            body = Envelope<NoData>
        ),
        (status = 404, description = "Unknown image", body = Envelope<NoData>),
        (
            status = 409,
            description = "Name, address or TAP device in use, or a pool exhausted",
            body = Envelope<NoData>
        ),
        (status = 413, description = "The body is over the size limit", body = Envelope<NoData>),
        (
            status = 429,
            description = "The account sent more creates than `[limits]` allows",
            body = Envelope<NoData>
        ),
        (
            status = 500,
            description = "The host network or the guest could not be set up",
            body = Envelope<NoData>
        ),
    )
)]
pub async fn create(
    State(ctl): Ctl,
    creates: Option<Extension<Arc<CreateLimiter>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    if let (Some(Extension(limiter)), Ok(account)) = (&creates, account(&ctl, &headers)) {
        if let Err(e) = limiter.check(&account.name) {
            return limits::too_many(&e, started);
        }
    }
    let result: Result<_, Error> = async {
        let account = account(&ctl, &headers)?;
        let value = strict::json(&body)?;
        strict::check_create(&value, &account)?;
        let req: CreateRequest = strict::typed(value)?;
        // On a task of its own, so that a client that goes away mid-create cannot cut it
        // off half done: it finishes or is undone as a whole.
        let ctl = Arc::clone(&ctl);
        let record = tokio::spawn(async move { ctl.create(&account, req).await })
            .await
            .map_err(|e| Error::step("create", e))??;
        Ok(vec![view::instance(&record)].into())
    }
    .await;
    if let Err(e) = &result {
        if e.code == Code::Internal {
            tracing::error!(error = %e, "create failed");
        }
    }
    reply::<InstanceList>(started, result).into_response()
}

/// List instances
///
/// Lists the instances of the token's account.
#[utoipa::path(
    get,
    path = "/v1/instances",
    operation_id = "list_instances",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The account's instances", body = Envelope<InstanceList>),
        (status = 400, description = "Invalid query", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
        (status = 500, description = "The store failed", body = Envelope<NoData>),
    )
)]
pub async fn list(
    State(ctl): Ctl,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply<InstanceList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let Query(query) = query.map_err(|e| Error::bad_request(format!("Invalid query: {e}")))?;
        let split = |list: &Option<String>| -> Option<Vec<String>> {
            list.as_ref()
                .map(|l| l.split(',').map(|s| s.trim().to_string()).collect())
        };
        let (names, uuids) = (split(&query.name), split(&query.uuid));
        let records = ctl.list(&account).await?;
        Ok(records
            .iter()
            .filter(|r| names.as_ref().is_none_or(|n| n.contains(&r.instance.name)))
            .filter(|r| uuids.as_ref().is_none_or(|u| u.contains(&r.instance.uuid)))
            .map(view::instance)
            .collect::<Vec<_>>()
            .into())
    }
    .await;
    reply(started, result)
}

/// Which instances to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only instances with these names (comma-separated).
    name: Option<String>,
    /// Only instances with these uuids (comma-separated).
    uuid: Option<String>,
}

/// Get an instance
#[utoipa::path(
    get,
    path = "/v1/instances/{id}",
    operation_id = "get_instance",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The instance's uuid or name")),
    responses(
        (status = 200, description = "The instance", body = Envelope<InstanceList>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
        (status = 404, description = "No instance of that uuid or name", body = Envelope<NoData>),
        (status = 500, description = "The store failed", body = Envelope<NoData>),
    )
)]
pub async fn get(
    State(ctl): Ctl,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<InstanceList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        Ok(vec![view::instance(&ctl.get(&account, &id).await?)].into())
    }
    .await;
    reply(started, result)
}

/// Delete an instance
///
/// Stops the instance's guest and releases everything it held: addresses, TAP devices and
/// the host's rules for it.
#[utoipa::path(
    delete,
    path = "/v1/instances/{id}",
    operation_id = "delete_instance",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The instance's uuid or name")),
    responses(
        (status = 200, description = "The deleted instance", body = Envelope<DeleteList>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
        (status = 404, description = "No instance of that uuid or name", body = Envelope<NoData>),
        (
            status = 500,
            description = "The guest or the host network could not be torn down",
            body = Envelope<NoData>
        ),
    )
)]
pub async fn delete(
    State(ctl): Ctl,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<DeleteList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let record = ctl.delete_instance(&account, &id).await?;
        Ok(vec![view::deleted(&record)].into())
    }
    .await;
    reply(started, result)
}

/// Start an instance
///
/// Boots a stopped instance; an instance in any other state is left as it is, and a
/// template cannot be started.
#[utoipa::path(
    put,
    path = "/v1/instances/{id}/start",
    operation_id = "start_instance",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The instance's uuid or name")),
    responses(
        (
            status = 200,
            description = "The instance, with its state before and after",
            body = Envelope<TransitionList>
        ),
        (status = 400, description = "The instance is a template", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
        (status = 404, description = "No instance of that uuid or name", body = Envelope<NoData>),
        (
            status = 500,
            description = "The host network or the guest could not be set up",
            body = Envelope<NoData>
        ),
    )
)]
pub async fn start(
    State(ctl): Ctl,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<TransitionList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let (previous, after) = ctl.start_instance(&account, &id).await?;
        Ok(vec![view::transition(&after, previous.as_str())].into())
    }
    .await;
    reply(started, result)
}

/// Stop an instance
///
/// Stops the instance's guest, killing it if it does not stop on its own in time.
#[utoipa::path(
    put,
    path = "/v1/instances/{id}/stop",
    operation_id = "stop_instance",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The instance's uuid or name")),
    responses(
        (
            status = 200,
            description = "The instance, with its state before and after",
            body = Envelope<TransitionList>
        ),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
        (status = 404, description = "No instance of that uuid or name", body = Envelope<NoData>),
        (status = 500, description = "The guest could not be stopped", body = Envelope<NoData>),
    )
)]
pub async fn stop(
    State(ctl): Ctl,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<TransitionList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let (previous, after) = ctl.stop_instance(&account, &id).await?;
        Ok(vec![view::transition(&after, previous.as_str())].into())
    }
    .await;
    reply(started, result)
}

/// Which part of the console output to return.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// The byte offset to start at; a negative one counts from the end of the output.
    #[param(default = 0)]
    offset: Option<i64>,
    /// The most bytes to return (at most 1 MiB).
    #[param(default = json!(LOG_LIMIT_DEFAULT))]
    limit: Option<u64>,
}

/// Get an instance's console output
#[utoipa::path(
    get,
    path = "/v1/instances/{id}/log",
    operation_id = "get_instance_log",
    tag = TAG_INSTANCES,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The instance's uuid or name"), LogQuery),
    responses(
        (status = 200, description = "A window of the console output", body = Envelope<LogList>),
        (status = 400, description = "Invalid query", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
        (status = 404, description = "No instance of that uuid or name", body = Envelope<NoData>),
        (
            status = 500,
            description = "The console output could not be read",
            body = Envelope<NoData>
        ),
    )
)]
pub async fn log(
    State(ctl): Ctl,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply<LogList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let Query(query) = query.map_err(|e| Error::bad_request(format!("Invalid query: {e}")))?;
        let record = ctl.get(&account, &id).await?;
        let chunk = ctl
            .log(
                &account,
                &id,
                query.offset.unwrap_or(0),
                query.limit.unwrap_or(LOG_LIMIT_DEFAULT),
            )
            .await?;
        Ok(vec![view::log(&record, &chunk)].into())
    }
    .await;
    reply(started, result)
}

/// How much console output one log request returns unless it asks otherwise.
pub(crate) const LOG_LIMIT_DEFAULT: u64 = 64 * 1024;
