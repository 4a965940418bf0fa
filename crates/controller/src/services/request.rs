//! The request that makes a service group, read strictly from JSON: by `POST /v1/services`
//! and inline in an instance's create (`service_group`). Its types are also the API's
//! documentation of it.

use serde_json::{Map, Value};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};
use weft_model::services::Handler;

use crate::error::{texts, Error};

/// The body of `POST /v1/services`, and a new group given inline as an instance's
/// `service_group`. Members that are not listed here are refused with
/// `Unknown member '<key>'`.
#[derive(Clone, Debug, Default, PartialEq, ToSchema)]
pub struct ServiceGroupRequest {
    /// The group's name, unique in the account (DNS-label characters, at most 63). Without
    /// one, a free name is made.
    pub name: Option<String>,
    /// The ports to publish on this host.
    #[schema(required = false)]
    pub services: Vec<ServiceRequest>,
    /// Not available in this version: a non-empty list is refused.
    #[schema(value_type = Option<Vec<Object>>)]
    pub domains: Option<Vec<Value>>,
}

/// A port to publish, and where its connections go.
#[derive(Clone, Debug, PartialEq, ToSchema)]
pub struct ServiceRequest {
    /// The public port on this host (1 to 65535). A port belongs to one group.
    #[schema(example = 443, minimum = 1, maximum = 65535)]
    pub port: u16,
    /// The port on the instances (for a redirect: the HTTPS port clients are sent to).
    /// Default: `port`, or 443 for a redirect.
    #[schema(example = 8080, minimum = 1, maximum = 65535)]
    pub destination_port: Option<u16>,
    /// How connections are handled: `["http"]` or `["http", "redirect"]` on port 80,
    /// `["http", "tls"]` on port 443, `["tls"]` or `[]` (plain TCP) on other ports.
    /// Default: `["http"]` on 80, `["http", "tls"]` on 443, `["tls"]` elsewhere.
    #[schema(value_type = Option<Vec<HandlerName>>)]
    pub handlers: Option<Vec<Handler>>,
}

/// A connection handler.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum HandlerName {
    /// Terminate TLS with the host's certificate for the name the client asks for.
    Tls,
    /// Forward HTTP requests one by one, adding `X-Forwarded-For` and `X-Forwarded-Proto`.
    Http,
    /// Answer every request with a redirect to HTTPS.
    Redirect,
}

/// An instance's `service_group`: an existing group by name (a string, or `{"name"}`) or by
/// `{"uuid"}`, or a new group (`{"services": [...], "name"?}`). Only the API's documentation
/// uses this type; the controller reads the member as a JSON value.
pub struct ServiceGroupChoice;

impl PartialSchema for ServiceGroupChoice {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let by = |key: &str| {
            ObjectBuilder::new()
                .property(key, string())
                .required(key)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOfBuilder::new()
            .item(string())
            .item(by("name"))
            .item(by("uuid"))
            .item(Ref::from_schema_name("ServiceGroupRequest"))
            .description(Some(
                "An existing service group by name (a string or `{\"name\"}`) or `{\"uuid\"}`, \
                 or a new group with `services`",
            ))
            .into()
    }
}

impl ToSchema for ServiceGroupChoice {}

/// The member names of the objects above, for strictness and for the API's checks.
pub mod members {
    pub const SERVICE_GROUP: &[&str] = &["name", "services", "domains"];
    pub const SERVICE: &[&str] = &["port", "destination_port", "handlers"];
}

/// `path.key`, or `key` at the top.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The members of an object, refusing what is not an object and unknown members.
pub(crate) fn object<'a>(
    value: &'a Value,
    path: &str,
    known: &[&str],
) -> Result<&'a Map<String, Value>, Error> {
    let Value::Object(map) = value else {
        return Err(Error::bad_request(if path.is_empty() {
            "The request body must be a JSON object".to_string()
        } else {
            format!("'{path}' must be a JSON object")
        }));
    };
    if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Error::bad_request(texts::unknown_member(key)));
    }
    Ok(map)
}

/// A member that must be a string when present.
pub(crate) fn string(
    map: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<String>, Error> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::bad_request(format!(
            "Invalid value for '{}': expected a string, not {other}",
            join(path, key)
        ))),
    }
}

impl ServiceGroupRequest {
    /// Reads a group request from JSON; `path` is where it sits in the body ("" at the top).
    pub fn from_json(value: &Value, path: &str) -> Result<ServiceGroupRequest, Error> {
        let map = object(value, path, members::SERVICE_GROUP)?;
        let name = string(map, path, "name")?;

        let services_path = join(path, "services");
        let services = match map.get("services") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, item)| ServiceRequest::from_json(item, &format!("{services_path}[{i}]")))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "Invalid value for '{services_path}': expected an array, not {other}"
                )))
            }
        };

        let domains = match map.get("domains") {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "Invalid value for '{}': expected an array, not {other}",
                    join(path, "domains")
                )))
            }
        };
        Ok(ServiceGroupRequest {
            name,
            services,
            domains,
        })
    }
}

impl ServiceRequest {
    fn from_json(value: &Value, path: &str) -> Result<ServiceRequest, Error> {
        let map = object(value, path, members::SERVICE)?;
        let port_of = |key: &str| -> Result<Option<u16>, Error> {
            let field = join(path, key);
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(p @ 1..=65535) => Ok(Some(p as u16)),
                    _ => Err(Error::bad_request(format!(
                        "Invalid {field} {v}: a port is an integer from 1 to 65535"
                    ))),
                },
            }
        };
        let port = port_of("port")?.ok_or_else(|| {
            Error::bad_request(format!(
                "Missing {}: give the public port to publish",
                join(path, "port")
            ))
        })?;
        let destination_port = port_of("destination_port")?;

        let field = join(path, "handlers");
        let handlers = match map.get("handlers") {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => {
                let mut handlers = Vec::with_capacity(list.len());
                for item in list {
                    let handler = item.as_str().and_then(Handler::parse).ok_or_else(|| {
                        Error::bad_request(format!(
                            "Invalid {field}: unknown handler {item} (known: \"tls\", \"http\", \
                             \"redirect\")"
                        ))
                    })?;
                    if handlers.contains(&handler) {
                        return Err(Error::bad_request(format!(
                            "Invalid {field}: \"{handler}\" is given twice"
                        )));
                    }
                    handlers.push(handler);
                }
                Some(handlers)
            }
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "Invalid value for '{field}': expected an array of handler names, not {other}"
                )))
            }
        };
        Ok(ServiceRequest {
            port,
            destination_port,
            handlers,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn msg(value: Value, path: &str) -> String {
        ServiceGroupRequest::from_json(&value, path)
            .unwrap_err()
            .message
    }

    #[test]
    fn reads_groups() {
        let req = ServiceGroupRequest::from_json(
            &json!({"name": "web", "services": [
                {"port": 443, "destination_port": 8080, "handlers": ["http", "tls"]},
                {"port": 22}
            ]}),
            "",
        )
        .unwrap();
        assert_eq!(req.name.as_deref(), Some("web"));
        assert_eq!(req.services[0].destination_port, Some(8080));
        assert_eq!(
            req.services[0].handlers,
            Some(vec![Handler::Http, Handler::Tls])
        );
        assert_eq!(req.services[1].handlers, None);
        assert_eq!(
            ServiceGroupRequest::from_json(&json!({}), "").unwrap(),
            ServiceGroupRequest::default()
        );
    }

    #[test]
    fn refuses_unknown_members_and_bad_values() {
        assert_eq!(msg(json!({"colour": 1}), ""), "Unknown member 'colour'");
        assert_eq!(
            msg(
                json!({"services": [{"port": 80, "mtu": 1}]}),
                "service_group"
            ),
            "Unknown member 'mtu'"
        );
        assert_eq!(
            msg(json!({"services": [{"port": 0}]}), ""),
            "Invalid services[0].port 0: a port is an integer from 1 to 65535"
        );
        assert_eq!(
            msg(
                json!({"services": [{"port": 80, "destination_port": 70000}]}),
                ""
            ),
            "Invalid services[0].destination_port 70000: a port is an integer from 1 to 65535"
        );
        assert_eq!(
            msg(json!({"services": [{}]}), "service_group"),
            "Missing service_group.services[0].port: give the public port to publish"
        );
        assert_eq!(
            msg(
                json!({"services": [{"port": 80, "handlers": ["http", "gzip"]}]}),
                ""
            ),
            "Invalid services[0].handlers: unknown handler \"gzip\" (known: \"tls\", \"http\", \
             \"redirect\")"
        );
        assert_eq!(
            msg(
                json!({"services": [{"port": 443, "handlers": ["tls", "tls"]}]}),
                ""
            ),
            "Invalid services[0].handlers: \"tls\" is given twice"
        );
        assert_eq!(
            msg(json!({"services": {"port": 80}}), ""),
            "Invalid value for 'services': expected an array, not {\"port\":80}"
        );
        assert_eq!(msg(json!([]), ""), "The request body must be a JSON object");
        assert_eq!(
            msg(json!({"name": 5}), "service_group"),
            "Invalid value for 'service_group.name': expected a string, not 5"
        );
    }
}
