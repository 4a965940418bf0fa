//! weft's HTTP API, compatible with Unikraft Cloud's instance API (SPEC section 2): one
//! envelope for every answer, bearer tokens, and strict request parsing.

mod envelope;
mod instances;
mod strict;
mod view;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, put};
use axum::Router;
use weft_controller::Controller;

pub use envelope::Reply;

/// Request bodies larger than this are refused before they are parsed.
pub const BODY_LIMIT: usize = 256 * 1024;

/// The API's router, ready to be served.
pub fn router(controller: Arc<Controller>) -> Router {
    Router::new()
        .route("/v1/healthz", get(healthz))
        .route(
            "/v1/instances",
            get(instances::list).post(instances::create),
        )
        .route(
            "/v1/instances/{id}",
            get(instances::get).delete(instances::delete),
        )
        .route("/v1/instances/{id}/start", put(instances::start))
        .route("/v1/instances/{id}/stop", put(instances::stop))
        .route("/v1/instances/{id}/log", get(instances::log))
        .fallback(envelope::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(controller)
}

async fn healthz() -> Reply {
    Reply::plain_success(std::time::Instant::now())
}
