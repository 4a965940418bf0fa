//! weft's HTTP API, compatible with Unikraft Cloud's instance API: one
//! envelope for every answer, bearer tokens, and strict request parsing. Every route is
//! registered together with its OpenAPI documentation, so that the document served at
//! `/openapi.json` describes exactly the routes the server has.

mod batch;
mod doc;
mod envelope;
mod instances;
mod limits;
mod metrics;
mod patch;
mod refs;
mod services;
mod strict;
mod view;

#[cfg(test)]
mod openapi_tests;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_controller::Controller;

use envelope::{Envelope, NoData, Reply};

pub use doc::openapi;

/// Request bodies larger than this are refused before they are parsed.
pub const BODY_LIMIT: usize = 256 * 1024;

const TAG_INSTANCES: &str = "instances";
const TAG_META: &str = "meta";
const TAG_SERVICES: &str = "services";

/// The API's router, ready to be served.
pub fn router(controller: Arc<Controller>) -> Router {
    let (routes, _) = documented_routes().split_for_parts();
    let creates = limits::CreateLimiter::new(&controller.config().limits);
    finish(routes, controller).layer(axum::Extension(creates))
}

/// Every route of the API with its documentation. The state is generic only so that tests
/// can route requests without a controller; the server's state is the controller.
fn documented_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Controller>: FromRef<S>,
{
    OpenApiRouter::with_openapi(doc::base())
        .routes(routes!(healthz))
        .routes(routes!(doc::serve))
        .routes(routes!(metrics::serve))
        .routes(routes!(
            instances::list,
            instances::create,
            batch::delete_many,
            patch::patch_many
        ))
        .routes(routes!(instances::get, instances::delete, patch::patch_one))
        .routes(routes!(instances::start))
        .routes(routes!(instances::stop))
        .routes(routes!(instances::log))
        .routes(routes!(batch::start_many))
        .routes(routes!(batch::stop_many))
        .routes(routes!(batch::wait_many))
        .routes(routes!(batch::log_many))
        .routes(routes!(batch::wait_one))
        .routes(routes!(batch::templates))
        .routes(routes!(batch::checkpoints))
        .routes(routes!(
            services::list,
            services::create,
            services::delete_many
        ))
        .routes(routes!(services::get, services::delete))
}

/// What every answer goes through besides its route: the envelope for unknown paths and the
/// body limit.
fn finish<S>(routes: Router<S>, state: S) -> Router
where
    S: Clone + Send + Sync + 'static,
{
    routes
        .fallback(envelope::not_found)
        .method_not_allowed_fallback(envelope::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(envelope::wrap_plain_errors))
        .layer(axum::middleware::from_fn(limits::refuse_large_bodies))
        .with_state(state)
}

/// Health check
///
/// Answers as soon as the server runs; needs no token.
#[utoipa::path(
    get,
    path = "/v1/healthz",
    operation_id = "healthz",
    tag = TAG_META,
    responses((status = 200, description = "The server runs", body = Envelope<NoData>))
)]
async fn healthz() -> Reply<NoData> {
    Reply::plain_success(Instant::now())
}
