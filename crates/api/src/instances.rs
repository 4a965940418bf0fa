//! `/v1/instances`: create, list, get, delete, start, stop, log.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use weft_controller::request::CreateRequest;
use weft_controller::{Account, Code, Controller, Error};

use crate::envelope::Reply;
use crate::{strict, view};

type Ctl = State<Arc<Controller>>;

/// The account of the request's bearer token.
fn account(ctl: &Controller, headers: &HeaderMap) -> Result<Account, Error> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Error::new(
                Code::Unauthorized,
                "Missing token: send 'Authorization: Bearer <token>'",
            )
        })?;
    let token = header
        .strip_prefix("Bearer ")
        .ok_or_else(|| Error::new(Code::Unauthorized, "Authorization must be 'Bearer <token>'"))?;
    ctl.authenticate(token.trim())
        .cloned()
        .ok_or_else(|| Error::new(Code::Unauthorized, "Invalid token"))
}

fn reply(started: Instant, result: Result<Vec<serde_json::Value>, Error>) -> Reply {
    match result {
        Ok(items) => Reply::items("instances", items, started),
        Err(e) => Reply::error(&e, started),
    }
}

pub async fn create(State(ctl): Ctl, headers: HeaderMap, body: Bytes) -> Reply {
    let started = Instant::now();
    let result: Result<Vec<serde_json::Value>, Error> = async {
        let account = account(&ctl, &headers)?;
        let value = strict::json(&body)?;
        strict::check_create(&value, &account)?;
        let req: CreateRequest = strict::typed(value)?;
        let record = ctl.create(&account, req).await?;
        Ok(vec![view::instance(&record)])
    }
    .await;
    if let Err(e) = &result {
        if e.code == Code::Internal {
            tracing::error!(error = %e, "create failed");
        }
    }
    reply(started, result)
}

pub async fn list(State(ctl): Ctl, headers: HeaderMap) -> Reply {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let records = ctl.list(&account).await?;
        Ok(records.iter().map(view::instance).collect())
    }
    .await;
    reply(started, result)
}

pub async fn get(State(ctl): Ctl, headers: HeaderMap, Path(id): Path<String>) -> Reply {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        Ok(vec![view::instance(&ctl.get(&account, &id).await?)])
    }
    .await;
    reply(started, result)
}

pub async fn delete(State(ctl): Ctl, headers: HeaderMap, Path(id): Path<String>) -> Reply {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let record = ctl.delete_instance(&account, &id).await?;
        Ok(vec![json!({
            "status": "success",
            "uuid": record.instance.uuid,
            "name": record.instance.name,
            "previous_state": record.instance.state.as_str(),
        })])
    }
    .await;
    reply(started, result)
}

pub async fn start(State(ctl): Ctl, headers: HeaderMap, Path(id): Path<String>) -> Reply {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let before = ctl.get(&account, &id).await?;
        let after = ctl.start_instance(&account, &id).await?;
        Ok(vec![view::transition(
            &after,
            before.instance.state.as_str(),
        )])
    }
    .await;
    reply(started, result)
}

pub async fn stop(State(ctl): Ctl, headers: HeaderMap, Path(id): Path<String>) -> Reply {
    let started = Instant::now();
    let result = async {
        let account = account(&ctl, &headers)?;
        let before = ctl.get(&account, &id).await?;
        let after = ctl.stop_instance(&account, &id).await?;
        Ok(vec![view::transition(
            &after,
            before.instance.state.as_str(),
        )])
    }
    .await;
    reply(started, result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    offset: Option<i64>,
    limit: Option<u64>,
}

pub async fn log(
    State(ctl): Ctl,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply {
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
                query.limit.unwrap_or(64 * 1024),
            )
            .await?;
        Ok(vec![json!({
            "status": "success",
            "uuid": record.instance.uuid,
            "name": record.instance.name,
            "output": base64::engine::general_purpose::STANDARD.encode(&chunk.output),
            "range": { "start": chunk.start, "end": chunk.end },
            "available": { "start": 0, "end": chunk.available },
        })])
    }
    .await;
    reply(started, result)
}
