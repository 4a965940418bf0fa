//! The API and its custom network configuration rules, one by one, against a real weftd with the netns
//! driver. Refusals are table rows: each names its rule, sends one request, and checks the
//! HTTP code, the message (exact where the contract fixes it) and that host and store are
//! exactly as before. The other tests here check what the rules make: names, addresses,
//! what guests are told, relays, templates, checkpoints, and the API's batch forms.

#[path = "../common/mod.rs"]
mod common;

mod batch;
mod interfaces;
mod refusals;
mod relays;
mod set_once;

use serde_json::{json, Value};

use common::sleeper;

const LICENSE: &str = "Insufficient license. Please make sure your license is valid and \
                       includes custom network configurations";
const IP_AND_TAP: &str =
    "Network interface must specify an IP address when a TAP device is provided and vice versa";
const IP_FROM_POOL: &str =
    "Network interface IP address cannot be from the platform's address pool";
const TAP_FROM_POOL: &str =
    "Network interface TAP device cannot be from the platform's device pool";

const OTHER_TOKEN: &str = "other-token-0123456789abcdef";
const PLAIN_TOKEN: &str = "plain-token-0123456789abcdef";
const UNLICENSED_TOKEN: &str = "unlicensed-token-0123456789ab";

/// Besides the testkit's `acme`: another licensed net manager, an account without the
/// permission, and one with the permission but no license. A pool of 32 TAP devices.
const CONFIG: &str = r#"
[pool]
tap_count = 32

[[accounts]]
name = "other"
tokens = ["other-token-0123456789abcdef"]
permissions = ["net_manager"]
license = ["custom_network_configuration"]

[[accounts]]
name = "plain"
tokens = ["plain-token-0123456789abcdef"]
license = ["custom_network_configuration"]

[[accounts]]
name = "unlicensed"
tokens = ["unlicensed-token-0123456789ab"]
permissions = ["net_manager"]
"#;

/// A create request with the usual image and args.
/// A create request with the usual image and args.
fn body(extra: Value) -> Value {
    let mut full = json!({ "name": "newbie", "image": "base", "args": sleeper() });
    full.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    full
}

/// An interface the user brings.
fn own(ip: &str, tap: &str) -> Value {
    json!({ "ip": ip, "tap_name": tap })
}

/// The names of an instance's interfaces, in order.
fn names(item: &Value) -> Vec<String> {
    item["network_interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

/// How a relay that is not an interface of the account is refused.
fn unknown(relay: &str) -> String {
    format!(
        "Invalid network_interfaces[0].relay.name '{relay}': no interface of that name in this \
         account"
    )
}
