//! The API's OpenAPI document: what the routes do not say themselves (title, version, the
//! bearer scheme, the tags), and the route that serves it.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{documented_routes, TAG_INSTANCES, TAG_META, TAG_SERVICES};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "weft",
        description = "The HTTP API of weft, a control plane for microVM instances with custom \
                       network configuration. It is compatible with Unikraft Cloud's instance \
                       API: every answer comes in one envelope, objects are named by uuid or \
                       name, and requests carry a bearer token."
    ),
    modifiers(&BearerScheme),
    tags(
        (name = TAG_INSTANCES, description = "Instances: microVMs and their network interfaces"),
        (
            name = TAG_SERVICES,
            description = "Service groups: ports of the host that the ingress proxy forwards to \
                           instances"
        ),
        (name = TAG_META, description = "The API itself"),
    )
)]
struct Base;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document before the routes add their paths and schemas.
pub(crate) fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}

/// The API's OpenAPI document, as generated from its routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes::<std::sync::Arc<weft_controller::Controller>>().into_openapi()
}

/// The document as served and as kept in the repository.
pub(crate) fn pretty_json() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

/// The API's OpenAPI document
///
/// This document; needs no token.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = TAG_META,
    responses((
        status = 200,
        description = "The OpenAPI document",
        content_type = "application/json",
        body = Object
    ))
)]
pub(crate) async fn serve() -> impl IntoResponse {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(pretty_json).as_str();
    ([(header::CONTENT_TYPE, "application/json")], text)
}
