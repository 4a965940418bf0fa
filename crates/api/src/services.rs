//! `/v1/services`: service groups, with Unikraft Cloud's shapes. Each handler carries its
//! documentation, and the router registers the two together.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;
use weft_controller::services::ServiceGroupRequest;
use weft_controller::{Controller, Error};
use weft_store::{GroupRef, ServiceGroup};

use crate::envelope::{Data, Envelope, NoData, Outcome, Reply};
use crate::instances::{account, reply};
use crate::view::FailedItem;
use crate::{refs, strict, TAG_SERVICES};

type Ctl = State<Arc<Controller>>;

/// A service group: public ports of this host, forwarded to the primary address of the
/// group's running instances.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ServiceGroupItem {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub uuid: String,
    pub name: String,
    /// When the group was created (RFC 3339).
    pub created_at: String,
    /// The published ports.
    pub services: Vec<ServiceItem>,
    /// The instances in the group.
    pub instances: Vec<GroupMemberItem>,
}

/// A published port.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ServiceItem {
    #[schema(example = 443)]
    pub port: u16,
    /// The port on the instances (for a redirect, the HTTPS port clients are sent to).
    #[schema(example = 8080)]
    pub destination_port: u16,
    #[schema(example = json!(["http", "tls"]))]
    pub handlers: Vec<String>,
}

/// An instance in a group.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct GroupMemberItem {
    pub uuid: String,
    pub name: String,
}

/// The service group of an instance.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct GroupRefItem {
    pub uuid: String,
    pub name: String,
}

/// One item of an answer about service groups: done, or failed with the reason.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ServiceGroupEntry {
    Done(ServiceGroupItem),
    Failed(FailedItem),
}

/// The `data` of an answer with service groups.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ServiceGroupList {
    pub service_groups: Vec<ServiceGroupEntry>,
}

impl Data for ServiceGroupList {
    fn failed(&self) -> (usize, usize) {
        let failed = self.service_groups.iter();
        let failed = failed.filter(|g| matches!(g, ServiceGroupEntry::Failed(_)));
        (failed.count(), self.service_groups.len())
    }
}

impl From<Vec<ServiceGroupEntry>> for ServiceGroupList {
    fn from(service_groups: Vec<ServiceGroupEntry>) -> Self {
        ServiceGroupList { service_groups }
    }
}

pub fn group(group: &ServiceGroup) -> ServiceGroupItem {
    ServiceGroupItem {
        outcome: Outcome::success(),
        uuid: group.uuid.clone(),
        name: group.name.clone(),
        created_at: group.created_at.clone(),
        services: group
            .services
            .iter()
            .map(|s| ServiceItem {
                port: s.port,
                destination_port: s.destination_port,
                handlers: s.handlers.iter().map(|h| h.as_str().to_string()).collect(),
            })
            .collect(),
        instances: group
            .instances
            .iter()
            .map(|m| GroupMemberItem {
                uuid: m.uuid.clone(),
                name: m.name.clone(),
            })
            .collect(),
    }
}

pub fn group_ref(group: &GroupRef) -> GroupRefItem {
    GroupRefItem {
        uuid: group.uuid.clone(),
        name: group.name.clone(),
    }
}

fn done(groups: &[ServiceGroup]) -> ServiceGroupList {
    groups
        .iter()
        .map(|g| ServiceGroupEntry::Done(group(g)))
        .collect::<Vec<_>>()
        .into()
}

/// Create a service group
///
/// Publishes ports on this host. The handlers of a port say how its connections are
/// handled: `["http"]` or `["http", "redirect"]` on port 80, `["http", "tls"]` on port
/// 443, `["tls"]` or `[]` (plain TCP) on other ports. A port belongs to one group.
#[utoipa::path(
    post,
    path = "/v1/services",
    operation_id = "create_service_group",
    tag = TAG_SERVICES,
    security(("bearer" = [])),
    request_body(content = ServiceGroupRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The created group", body = Envelope<ServiceGroupList>),
        (
            status = 400,
            description = "Malformed body, unknown member, or a port or handler combination the rules refuse",
            body = Envelope<NoData>
        ),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
        (
            status = 409,
            description = "Name in use, or a port published by another group or used by another program",
            body = Envelope<NoData>
        ),
    )
)]
pub async fn create(State(ctl): Ctl, headers: HeaderMap, body: Bytes) -> Reply<ServiceGroupList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let req = ServiceGroupRequest::from_json(&strict::json(&body)?, "")?;
        let created = ctl.create_service_group(&account, req).await?;
        Ok(done(&[created]))
    }
    .await;
    reply(started, result)
}

/// List service groups
///
/// Lists the service groups of the token's account.
#[utoipa::path(
    get,
    path = "/v1/services",
    operation_id = "list_service_groups",
    tag = TAG_SERVICES,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account's groups", body = Envelope<ServiceGroupList>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
    )
)]
pub async fn list(State(ctl): Ctl, headers: HeaderMap) -> Reply<ServiceGroupList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        Ok(done(&ctl.list_service_groups(&account).await?))
    }
    .await;
    reply(started, result)
}

/// Get a service group
#[utoipa::path(
    get,
    path = "/v1/services/{id}",
    operation_id = "get_service_group",
    tag = TAG_SERVICES,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The group's uuid or name")),
    responses(
        (status = 200, description = "The group", body = Envelope<ServiceGroupList>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
        (status = 404, description = "No group of that uuid or name", body = Envelope<NoData>),
    )
)]
pub async fn get(
    State(ctl): Ctl,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<ServiceGroupList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        Ok(done(&[ctl.get_service_group(&account, &id).await?]))
    }
    .await;
    reply(started, result)
}

/// Delete a service group
///
/// Closes the group's ports. A group that instances are in is refused, naming them.
#[utoipa::path(
    delete,
    path = "/v1/services/{id}",
    operation_id = "delete_service_group",
    tag = TAG_SERVICES,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The group's uuid or name")),
    responses(
        (status = 200, description = "The deleted group", body = Envelope<ServiceGroupList>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
        (status = 404, description = "No group of that uuid or name", body = Envelope<NoData>),
        (status = 409, description = "Instances are in the group", body = Envelope<NoData>),
    )
)]
pub async fn delete(
    State(ctl): Ctl,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply<ServiceGroupList> {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        Ok(done(&[ctl.delete_service_group(&account, &id).await?]))
    }
    .await;
    reply(started, result)
}

/// Delete several service groups
#[utoipa::path(
    delete,
    path = "/v1/services",
    operation_id = "delete_service_groups",
    tag = TAG_SERVICES,
    security(("bearer" = [])),
    request_body(content = Vec<Object>, description = "Items `{\"uuid\"}` or `{\"name\"}`"),
    responses(
        (status = 200, description = "Each group deleted, or why not", body = Envelope<ServiceGroupList>),
        (status = 400, description = "Malformed body", body = Envelope<NoData>),
        (status = 401, description = "Missing or bad token", body = Envelope<NoData>),
    )
)]
pub async fn delete_many(
    State(ctl): Ctl,
    headers: HeaderMap,
    body: Bytes,
) -> Reply<ServiceGroupList> {
    let started = Instant::now();
    let result: Result<ServiceGroupList, Error> = async {
        let account = account(&ctl, &headers)?;
        let mut out = Vec::new();
        for item in refs::items(strict::json(&body)?, &[])? {
            out.push(match ctl.delete_service_group(&account, &item.id).await {
                Ok(g) => ServiceGroupEntry::Done(group(&g)),
                Err(e) => ServiceGroupEntry::Failed(FailedItem::new(&item.id, &e)),
            });
        }
        Ok(out.into())
    }
    .await;
    reply(started, result)
}
