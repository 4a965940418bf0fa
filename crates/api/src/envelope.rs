//! The one envelope of every answer:
//! `{"status", "message"?, "data": {"<resource>": [items]}, "errors"?, "op_time_us"}`.

use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use weft_controller::Error;

/// An API answer, rendered in the envelope when it is sent.
pub struct Reply {
    http: StatusCode,
    body: Map<String, Value>,
    started: Instant,
}

impl Reply {
    /// A success holding `items` of `resource` (each item carries its own `status`); when
    /// some items failed and some did not, the status is `partial_success`.
    pub fn items(resource: &str, items: Vec<Value>, started: Instant) -> Reply {
        let failed = items.iter().filter(|i| i["status"] == "error").count();
        let status = match failed {
            0 => "success",
            n if n == items.len() => "error",
            _ => "partial_success",
        };
        let mut body = Map::new();
        body.insert("status".into(), status.into());
        body.insert("data".into(), json!({ resource: items }));
        Reply {
            http: StatusCode::OK,
            body,
            started,
        }
    }

    pub fn plain_success(started: Instant) -> Reply {
        let mut body = Map::new();
        body.insert("status".into(), "success".into());
        Reply {
            http: StatusCode::OK,
            body,
            started,
        }
    }

    pub fn error(err: &Error, started: Instant) -> Reply {
        let code = err.code.http_status();
        let mut body = Map::new();
        body.insert("status".into(), "error".into());
        body.insert("message".into(), err.message.clone().into());
        body.insert("errors".into(), json!([{ "status": code }]));
        Reply {
            http: StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
            started,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(mut self) -> Response {
        let op_time_us = self.started.elapsed().as_micros() as u64;
        self.body.insert("op_time_us".into(), op_time_us.into());
        (self.http, Json(Value::Object(self.body))).into_response()
    }
}

pub async fn not_found(uri: axum::http::Uri) -> Reply {
    Reply::error(
        &Error::not_found(format!("No such endpoint: {}", uri.path())),
        Instant::now(),
    )
}
