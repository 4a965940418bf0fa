//! Typed requests, as the API hands them over after strict parsing.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `POST /v1/instances`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub name: Option<String>,
    pub image: Option<ImageRef>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    pub memory_mb: Option<u32>,
    pub vcpus: Option<u32>,
    pub autostart: Option<bool>,
    pub timeout_s: Option<u64>,
    pub service_group: Option<serde_json::Value>,
    pub template: Option<serde_json::Value>,
    pub branch_from: Option<serde_json::Value>,
    pub checkpoint: Option<serde_json::Value>,
    pub features: Option<Vec<String>>,
    pub network_interfaces: Option<Vec<InterfaceRequest>>,
    pub gateway: Option<String>,
    pub nameserver: Option<String>,
}

/// An image by name, or (Unikraft Cloud's object form) by `url`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ImageRef {
    Name(String),
    Object(ImageObject),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageObject {
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

/// One entry of `network_interfaces` (R2).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceRequest {
    pub name: Option<String>,
    pub ip: Option<String>,
    pub tap_name: Option<String>,
    pub autoconfig: Option<bool>,
    pub relay: Option<RelayRequest>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayRequest {
    pub name: String,
    pub relay_dns: Option<bool>,
}

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
