//! Strict parsing of request bodies: a member the schema does not know is refused with
//! `Unknown member '<key>'`, a value of the wrong type with a message naming its path. For
//! accounts without `net_manager` the network members are not part of the schema (R9).

use serde::de::DeserializeOwned;
use serde_json::Value;
use weft_controller::request::members;
use weft_controller::{texts, Account, Error};

/// Parses a body as JSON, refusing malformed text with the parser's own words.
pub fn json(body: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::bad_request(format!("Malformed JSON body: {e}")))
}

fn check_object(value: &Value, path: &str, known: &[&[&str]]) -> Result<(), Error> {
    let Value::Object(map) = value else {
        let what = if path.is_empty() {
            "The request body".to_string()
        } else {
            format!("'{path}'")
        };
        return Err(Error::bad_request(format!("{what} must be a JSON object")));
    };
    for key in map.keys() {
        if !known.iter().any(|set| set.contains(&key.as_str())) {
            return Err(Error::bad_request(texts::unknown_member(key)));
        }
    }
    Ok(())
}

/// Checks the members of a create request, at every level.
pub fn check_create(value: &Value, account: &Account) -> Result<(), Error> {
    if account.is_net_manager() {
        check_object(value, "", &[members::CREATE, members::CREATE_NETWORK])?;
    } else {
        check_object(value, "", &[members::CREATE])?;
    }

    if let Some(image @ Value::Object(_)) = value.get("image") {
        check_object(image, "image", &[members::IMAGE])?;
    }
    if let Some(Value::Array(ifaces)) = value.get("network_interfaces") {
        for (i, iface) in ifaces.iter().enumerate() {
            check_object(
                iface,
                &format!("network_interfaces[{i}]"),
                &[members::INTERFACE],
            )?;
            if let Some(relay @ Value::Object(_)) = iface.get("relay") {
                check_object(
                    relay,
                    &format!("network_interfaces[{i}].relay"),
                    &[members::RELAY],
                )?;
            }
        }
    }
    Ok(())
}

/// Deserializes a checked value, naming the path of a value of the wrong type.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let inner = inner
            .split(" at line ")
            .next()
            .unwrap_or(&inner)
            .to_string();
        if path == "image" || path.starts_with("image.") {
            Error::bad_request("Invalid image: expected a string or an object with 'url'")
        } else if path == "." {
            Error::bad_request(format!("Invalid request: {inner}"))
        } else {
            Error::bad_request(format!("Invalid value for '{path}': {inner}"))
        }
    })
}
