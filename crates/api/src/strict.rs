//! Strict parsing of request bodies: a member the schema does not know is refused with
//! `Unknown member '<key>'`, a value of the wrong type with a message naming its path. For
//! accounts without `net_manager` the network members are not part of the schema (R9).

use serde::de::DeserializeOwned;
use serde_json::Value;
use weft_controller::request::members;
use weft_controller::{texts, Account, Error};

/// Parses a body as JSON, refusing malformed text with the parser's own words, and a member
/// given twice in one object (which parsers would settle differently).
pub fn json(body: &[u8]) -> Result<Value, Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde::de::DeserializeSeed::deserialize(Unique, &mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            let text = e.to_string();
            match text.strip_prefix(DUPLICATE) {
                Some(rest) => Error::bad_request(format!(
                    "Duplicate member '{}'",
                    rest.split('\'').next().unwrap_or_default()
                )),
                None => Error::bad_request(format!("Malformed JSON body: {text}")),
            }
        })?;
    Ok(value)
}

const DUPLICATE: &str = "duplicate member '";

/// Deserializes any JSON value, refusing duplicate members.
struct Unique;

impl<'de> serde::de::DeserializeSeed<'de> for Unique {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Unique {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Unique)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("{DUPLICATE}{key}'")));
            }
            let value = map.next_value_seed(Unique)?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

pub fn check_object(value: &Value, path: &str, known: &[&[&str]]) -> Result<(), Error> {
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

    check_image(value)?;
    if let Some(Value::Array(ifaces)) = value.get("network_interfaces") {
        for (i, iface) in ifaces.iter().enumerate() {
            check_object(
                iface,
                &format!("network_interfaces[{i}]"),
                &[members::INTERFACE],
            )?;
            match iface.get("relay") {
                None | Some(Value::Null) => {}
                Some(relay @ Value::Object(_)) => check_object(
                    relay,
                    &format!("network_interfaces[{i}].relay"),
                    &[members::RELAY],
                )?,
                // Typed parsing would take a list for the object's members in order.
                Some(other) => {
                    return Err(Error::bad_request(format!(
                        "Invalid value for 'network_interfaces[{i}].relay': expected an object \
                         with 'name', not {other}"
                    )))
                }
            }
        }
    }
    Ok(())
}

const IMAGE_SHAPE: &str = "Invalid image: expected a string or an object with 'url'";

/// Checks the `image` member of a create or patch body: a name, or an object with `url`.
/// (Typed parsing alone would also take `["base"]`, a list of the object's members.)
pub fn check_image(body: &Value) -> Result<(), Error> {
    match body.get("image") {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(image @ Value::Object(_)) => check_object(image, "image", &[members::IMAGE]),
        Some(_) => Err(Error::bad_request(IMAGE_SHAPE)),
    }
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
            Error::bad_request(IMAGE_SHAPE)
        } else if path == "." {
            Error::bad_request(format!("Invalid request: {inner}"))
        } else {
            Error::bad_request(format!("Invalid value for '{path}': {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_not_taken_from_lists() {
        let account = Account {
            name: "acme".into(),
            permissions: vec!["net_manager".into()],
            license: vec![],
        };
        let msg = |v: Value| check_create(&v, &account).unwrap_err().message;
        assert_eq!(msg(serde_json::json!({"image": ["base"]})), IMAGE_SHAPE);
        assert_eq!(msg(serde_json::json!({"image": 5})), IMAGE_SHAPE);
        assert_eq!(
            msg(serde_json::json!({"network_interfaces": [{"relay": ["gw-eth0"]}]})),
            "Invalid value for 'network_interfaces[0].relay': expected an object with 'name', \
             not [\"gw-eth0\"]"
        );
        assert!(check_create(&serde_json::json!({"image": {"url": "base"}}), &account).is_ok());
        assert!(check_create(&serde_json::json!({"image": "base"}), &account).is_ok());
    }

    #[test]
    fn duplicate_members_are_refused_at_any_depth() {
        let msg = |body: &str| json(body.as_bytes()).unwrap_err().message;
        assert_eq!(msg(r#"{"name":"a","name":"b"}"#), "Duplicate member 'name'");
        assert_eq!(
            msg(r#"{"network_interfaces":[{"ip":"1.2.3.4/24","ip":"5.6.7.8/24"}]}"#),
            "Duplicate member 'ip'"
        );
        assert!(msg(r#"{"a":1"#).starts_with("Malformed JSON body: "));
        assert!(msg(r#"{"a":1} x"#).starts_with("Malformed JSON body: "));
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(msg(&deep).starts_with("Malformed JSON body: recursion limit"));
        let ok = json(br#"{"a":[1,{"b":null,"c":"x"}],"d":{"a":1}}"#).unwrap();
        assert_eq!(ok["a"][1]["c"], "x");
    }
}
