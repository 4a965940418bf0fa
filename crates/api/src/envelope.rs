//! The one envelope of every answer:
//! `{"status", "message"?, "data": {"<resource>": [items]}, "errors"?, "op_time_us"}`.

use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use weft_controller::Error;

/// The envelope of every answer. `data` holds the items of a success, named after their
/// resource; `message` and `errors` tell why a request failed as a whole.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<D> {
    pub status: Status,
    /// Why the request failed (failed requests only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub message: Option<String>,
    /// The items of a success, under the name of their resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub data: Option<D>,
    /// The HTTP code of the failure (failed requests only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub errors: Option<Vec<ErrorStatus>>,
    /// The time the server spent on the request, in microseconds.
    pub op_time_us: u64,
}

/// How a request fared: `partial_success` when some of its items failed, `error` when all
/// did or when the request failed as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Success,
    Error,
    PartialSuccess,
}

/// An entry of `errors`.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct ErrorStatus {
    /// The HTTP code of the answer.
    #[schema(example = 400)]
    pub status: u16,
}

/// The data of an answer that has none.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoData {}

/// The `data` of an answer: its items, named after their resource.
pub trait Data {
    /// How many of the items failed, and how many there are.
    fn failed(&self) -> (usize, usize);

    /// The HTTP code and message of each failed item, in order. The envelope of an answer
    /// whose items failed says why from these.
    fn failures(&self) -> Vec<(u16, String)> {
        Vec::new()
    }
}

/// How one item of an answer fared. Every item repeats its `status`; a failed one also says
/// why, so that a call on several objects can partly succeed.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Outcome {
    pub status: ItemStatus,
    /// Why the item failed (failed items only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub message: Option<String>,
    /// The HTTP code of the item's failure (failed items only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = 404)]
    pub error: Option<u16>,
}

/// How one item fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Success,
    Error,
}

impl Outcome {
    pub fn success() -> Outcome {
        Outcome {
            status: ItemStatus::Success,
            message: None,
            error: None,
        }
    }

    /// The HTTP code and message of a failed item.
    pub fn code_and_message(&self) -> (u16, String) {
        (
            self.error.unwrap_or(500),
            self.message.clone().unwrap_or_default(),
        )
    }

    pub fn failure(err: &Error) -> Outcome {
        Outcome {
            status: ItemStatus::Error,
            message: Some(err.message.clone()),
            error: Some(err.code.http_status()),
        }
    }
}

/// An API answer, rendered in the envelope when it is sent.
pub struct Reply<D> {
    http: StatusCode,
    envelope: Envelope<D>,
    started: Instant,
}

impl<D: Data> Reply<D> {
    /// An answer holding items, each with its own `status`. When some items failed and some
    /// did not, the status is `partial_success` and `message` says how many failed; when all
    /// failed, it is `error`, with `message` and the items' codes in `errors`. The HTTP code
    /// stays 200 either way: the request itself was carried out, item by item.
    pub fn data(data: D, started: Instant) -> Self {
        let (failed, all) = data.failed();
        let status = match (failed, all) {
            (0, _) => Status::Success,
            (failed, all) if failed == all => Status::Error,
            _ => Status::PartialSuccess,
        };
        let failures = data.failures();
        let mut reply = Reply::new(StatusCode::OK, status, Some(data), started);
        if status != Status::Success {
            reply.envelope.message = Some(failure_summary(failed, all, &failures));
        }
        if status == Status::Error {
            let mut codes: Vec<u16> = Vec::new();
            for (code, _) in &failures {
                if !codes.contains(code) {
                    codes.push(*code);
                }
            }
            reply.envelope.errors = Some(
                codes
                    .into_iter()
                    .map(|status| ErrorStatus { status })
                    .collect(),
            );
        }
        reply
    }
}

/// The `message` of an answer whose items failed: the one item's own message, or how many
/// failed and why the first did.
fn failure_summary(failed: usize, all: usize, failures: &[(u16, String)]) -> String {
    let first = failures.first().map(|(_, message)| message.as_str());
    match (all, first) {
        (1, Some(message)) => message.to_string(),
        (_, Some(message)) => format!("{failed} of {all} items failed; the first: {message}"),
        (_, None) => format!("{failed} of {all} items failed"),
    }
}

impl<D> Reply<D> {
    fn new(http: StatusCode, status: Status, data: Option<D>, started: Instant) -> Self {
        Reply {
            http,
            envelope: Envelope {
                status,
                message: None,
                data,
                errors: None,
                op_time_us: 0,
            },
            started,
        }
    }

    /// A success without data.
    pub fn plain_success(started: Instant) -> Self {
        Reply::new(StatusCode::OK, Status::Success, None, started)
    }

    pub fn error(err: &Error, started: Instant) -> Self {
        let code = err.code.http_status();
        let http = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut reply = Reply::new(http, Status::Error, None, started);
        reply.envelope.message = Some(err.message.clone());
        reply.envelope.errors = Some(vec![ErrorStatus { status: code }]);
        reply
    }
}

impl<D> Reply<D> {
    /// An error answered with an HTTP code of its own (413, 429), which `errors` repeats.
    pub fn error_with_status(err: &Error, http: StatusCode, started: Instant) -> Self {
        let mut reply = Reply::error(err, started);
        reply.http = http;
        reply.envelope.errors = Some(vec![ErrorStatus {
            status: http.as_u16(),
        }]);
        reply
    }
}

impl<D: Serialize> IntoResponse for Reply<D> {
    fn into_response(mut self) -> Response {
        self.envelope.op_time_us = self.started.elapsed().as_micros() as u64;
        (self.http, Json(self.envelope)).into_response()
    }
}

pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Reply<NoData> {
    let mut reply = Reply::error(
        &Error::new(
            weft_controller::Code::BadRequest,
            format!("Method {method} is not allowed on {}", uri.path()),
        ),
        Instant::now(),
    );
    reply.http = StatusCode::METHOD_NOT_ALLOWED;
    reply.envelope.errors = Some(vec![ErrorStatus { status: 405 }]);
    reply
}

/// Puts failures that the framework answers itself (a body over the limit, a path that is
/// not UTF-8, ...) into the envelope, keeping their status and headers and saying how long
/// the request took.
pub async fn wrap_plain_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("Request failed")
            .to_string()
    } else {
        text
    };
    let envelope = Envelope::<NoData> {
        status: Status::Error,
        message: Some(message),
        data: None,
        errors: Some(vec![ErrorStatus {
            status: status.as_u16(),
        }]),
        op_time_us: started.elapsed().as_micros() as u64,
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&envelope).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(body))
}

pub async fn not_found(uri: axum::http::Uri) -> Reply<NoData> {
    Reply::error(
        &Error::not_found(format!("No such endpoint: {}", uri.path())),
        Instant::now(),
    )
}
