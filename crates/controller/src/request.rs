//! Typed requests, as the API hands them over after strict parsing. Their doc comments are
//! also the API's documentation of them (the OpenAPI document's schemas).

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// The body of `POST /v1/instances`. Members that are not listed here are refused with
/// `Unknown member '<key>'`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The instance's name, unique in the account (DNS-label characters, at most 63).
    /// Without one, a free name is made from the image's.
    pub name: Option<String>,
    /// The image to boot.
    pub image: Option<ImageRef>,
    /// The app's arguments; without them, the image's default ones.
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// The app's environment.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Memory in MiB.
    #[schema(default = 128)]
    pub memory_mb: Option<u32>,
    /// Virtual CPUs.
    #[schema(default = 1)]
    pub vcpus: Option<u32>,
    /// Whether to boot the instance once it is created.
    #[schema(default = true)]
    pub autostart: Option<bool>,
    /// Not available in this version: refused.
    pub timeout_s: Option<u64>,
    /// The service group the instance joins: an existing group of the account by name or
    /// uuid, or a new group made for the instance, which is deleted with it.
    #[schema(value_type = Option<crate::services::request::ServiceGroupChoice>)]
    pub service_group: Option<serde_json::Value>,
    /// Make the instance from a template. A template keeps no network configuration.
    #[schema(value_type = Option<InstanceRef>)]
    pub template: Option<serde_json::Value>,
    /// Make the instance a copy of another one (license feature `branching`); an instance
    /// with more than one network interface cannot be branched.
    #[schema(value_type = Option<InstanceRef>)]
    pub branch_from: Option<serde_json::Value>,
    /// Make the instance from a checkpoint (license feature `checkpointing`).
    #[schema(value_type = Option<InstanceRef>)]
    pub checkpoint: Option<serde_json::Value>,
    /// Not available in this version: a non-empty list is refused.
    pub features: Option<Vec<String>>,
    /// One to four interfaces, the primary first; omitted, one interface from the host's
    /// pools. Needs the `net_manager` permission (without it the member is unknown) and a
    /// license with custom network configuration.
    pub network_interfaces: Option<Vec<InterfaceRequest>>,
    /// The IPv4 address the guest is told as its gateway, instead of the one derived from its
    /// first pool interface. Needs `net_manager` and the license, as `network_interfaces`.
    #[schema(example = "10.0.0.1")]
    pub gateway: Option<String>,
    /// The IPv4 address the guest is told as its nameserver, instead of the derived one.
    /// Needs `net_manager` and the license, as `network_interfaces`.
    #[schema(example = "10.0.0.1")]
    pub nameserver: Option<String>,
}

/// An image by name, or (Unikraft Cloud's object form) by `url`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ImageRef {
    #[schema(example = "base")]
    Name(String),
    Object(ImageObject),
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageObject {
    /// The image's name.
    pub url: String,
}

impl ImageRef {
    pub fn as_str(&self) -> &str {
        match self {
            ImageRef::Name(name) => name,
            ImageRef::Object(obj) => &obj.url,
        }
    }
}

/// An entry of `network_interfaces`. With neither `ip` nor `tap_name`, address and TAP
/// device come from the host's pools; with both, the user brings the interface.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterfaceRequest {
    /// The interface's name, unique in the account; without one, `<instance>-eth<index>`.
    pub name: Option<String>,
    /// The interface's own IPv4 address in CIDR notation, outside the host's address pool.
    /// Given together with `tap_name`.
    #[schema(example = "172.30.5.2/24")]
    pub ip: Option<String>,
    /// An existing TAP device of the host, not one of its pool. Given together with `ip`.
    #[schema(example = "custtap0")]
    pub tap_name: Option<String>,
    /// Whether the guest is told the interface's address, gateway and nameserver and
    /// configures it itself.
    #[schema(default = true)]
    pub autoconfig: Option<bool>,
    /// Relay all of the interface's traffic through an interface of another instance.
    pub relay: Option<RelayRequest>,
}

/// The relay of an interface: all its traffic passes through the relay's instance.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayRequest {
    /// The name of an interface of another instance of the account.
    pub name: String,
    /// Whether the guest's DNS queries go through the relay too.
    #[schema(default = true)]
    pub relay_dns: Option<bool>,
}

/// An instance by uuid or name: a string, or an object with `uuid` or `name`. Only the API's
/// documentation uses this type; the controller reads these members as JSON values.
pub struct InstanceRef;

impl PartialSchema for InstanceRef {
    fn schema() -> RefOr<Schema> {
        let object = ObjectBuilder::new()
            .property("uuid", ObjectBuilder::new().schema_type(Type::String))
            .property("name", ObjectBuilder::new().schema_type(Type::String))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(object)
            .description(Some(
                "An instance by uuid or name: a string, or an object with `uuid` or `name`",
            ))
            .into()
    }
}

impl ToSchema for InstanceRef {}

/// The member names the API knows, per object, for the strict parser. The network fields
/// are known only to accounts with the `net_manager` permission (R9).
pub mod members {
    pub const CREATE: &[&str] = &[
        "name",
        "image",
        "args",
        "env",
        "memory_mb",
        "vcpus",
        "autostart",
        "timeout_s",
        "service_group",
        "template",
        "branch_from",
        "checkpoint",
        "features",
    ];
    pub const CREATE_NETWORK: &[&str] = &["network_interfaces", "gateway", "nameserver"];
    pub const INTERFACE: &[&str] = &["name", "ip", "tap_name", "autoconfig", "relay"];
    pub const RELAY: &[&str] = &["name", "relay_dns"];
    pub const IMAGE: &[&str] = &["url"];
}
