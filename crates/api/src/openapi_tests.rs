//! The OpenAPI document cannot drift from the server: the committed copy must be what the code
//! generates, every documented path must be routed with exactly its documented methods, and
//! every routed path must be documented.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRef, Request};
use axum::http::{header, Method, StatusCode};
use tower::ServiceExt as _;
use weft_controller::Controller;

use crate::doc::pretty_json;
use crate::{documented_routes, finish};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

#[test]
fn committed_document_is_current() {
    let generated = pretty_json();
    if std::env::var_os("WEFT_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &generated).expect("writing docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is not the document the code generates; \
         run `WEFT_UPDATE_OPENAPI=1 cargo test -p weft-api` and commit the result"
    );
}

/// A router state with no controller behind it. The requests below are answered by the
/// router itself (405 or 404), so no handler ever asks for the controller.
#[derive(Clone)]
struct NoController;

impl FromRef<NoController> for Arc<Controller> {
    fn from_ref(_: &NoController) -> Self {
        unreachable!("a probe reached a handler")
    }
}

fn app() -> axum::Router {
    let (routes, _) = documented_routes::<NoController>().split_for_parts();
    finish(routes, NoController)
}

/// The documented operations: path template to methods.
fn documented() -> BTreeMap<String, BTreeSet<Method>> {
    let doc = crate::openapi();
    let mut ops = BTreeMap::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            (Method::GET, item.get.is_some()),
            (Method::HEAD, item.get.is_some() || item.head.is_some()),
            (Method::PUT, item.put.is_some()),
            (Method::POST, item.post.is_some()),
            (Method::DELETE, item.delete.is_some()),
            (Method::PATCH, item.patch.is_some()),
            (Method::OPTIONS, item.options.is_some()),
            (Method::TRACE, item.trace.is_some()),
        ];
        let methods = methods.into_iter().filter(|(_, on)| *on).map(|(m, _)| m);
        ops.insert(path.clone(), methods.collect());
    }
    ops
}

/// A concrete request path for a template: each `{param}` becomes a sample value.
fn sample(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "sample" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// The methods the router serves on a path, from the `Allow` header of its answer to a
/// method no route has (axum answers 405 and lists the methods it has).
async fn routed_methods(app: &axum::Router, path: &str) -> Result<BTreeSet<Method>, String> {
    let probe = Method::from_bytes(b"PROBE").unwrap();
    let req = Request::builder()
        .method(probe)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let answer = app.clone().oneshot(req).await.unwrap();
    if answer.status() != StatusCode::METHOD_NOT_ALLOWED {
        let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .unwrap();
        return Err(String::from_utf8_lossy(&body).into_owned());
    }
    let allow = answer.headers()[header::ALLOW].to_str().unwrap();
    Ok(allow
        .split(',')
        .map(|m| Method::from_bytes(m.trim().as_bytes()).unwrap())
        .collect())
}

#[tokio::test]
async fn every_documented_path_is_routed_with_its_methods() {
    let app = app();
    let documented = documented();
    assert!(!documented.is_empty());

    for (path, methods) in &documented {
        match routed_methods(&app, &sample(path)).await {
            Ok(routed) => assert_eq!(
                &routed, methods,
                "{path}: the methods routed and the methods documented differ"
            ),
            Err(answer) => panic!("{path} is documented but not routed: {answer}"),
        }
    }
}

/// The path templates the router has, read from its debug form, as axum offers no other
/// way to list them. A path routed outside `documented_routes` shows up here.
fn routed_paths(router: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    let start = debug
        .find("path_router")
        .expect("the router shows its routes");
    let end = debug
        .find("fallback_router")
        .expect("the router shows its fallback");
    let routes = &debug[start..end];
    let paths = &routes[routes
        .find("paths: {")
        .expect("the routes show their paths")..];
    paths
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn every_routed_path_is_documented() {
    let routed = routed_paths(&app());
    let documented: BTreeSet<String> = documented().into_keys().collect();
    assert_eq!(
        routed, documented,
        "the paths routed (left) and the paths documented (right) differ"
    );
}

#[tokio::test]
async fn unknown_paths_get_the_envelope() {
    let req = Request::builder()
        .uri("/v1/nothing")
        .body(Body::empty())
        .unwrap();
    let answer = app().oneshot(req).await.unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["message"], "No such endpoint: /v1/nothing");
    assert_eq!(body["errors"][0]["status"], 404);
}

#[tokio::test]
async fn the_served_document_is_the_generated_one() {
    let req = Request::builder()
        .uri("/openapi.json")
        .body(Body::empty())
        .unwrap();
    let answer = app().oneshot(req).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
    let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&body), pretty_json());
}

/// The strict parser's lists of members and the documented request schemas name the same
/// members.
#[test]
fn request_schemas_list_the_members_the_parser_knows() {
    use weft_controller::request::members;

    let doc = serde_json::to_value(crate::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    use weft_controller::services::request::members as group_members;

    let cases: [(&str, Vec<&str>); 6] = [
        (
            "CreateRequest",
            [members::CREATE, members::CREATE_NETWORK].concat(),
        ),
        ("InterfaceRequest", members::INTERFACE.to_vec()),
        ("RelayRequest", members::RELAY.to_vec()),
        ("ImageObject", members::IMAGE.to_vec()),
        ("ServiceGroupRequest", group_members::SERVICE_GROUP.to_vec()),
        ("ServiceRequest", group_members::SERVICE.to_vec()),
    ];
    for (schema, known) in cases {
        let properties = schemas[schema]["properties"].as_object().unwrap();
        let documented: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
        let known: BTreeSet<&str> = known.into_iter().collect();
        assert_eq!(documented, known, "{schema}");
    }
}
