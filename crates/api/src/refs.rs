//! The bodies of calls on several instances: a JSON array of items that name an instance by
//! `uuid` or `name` (a single such object is taken as a list of one), each with the members
//! the call allows besides.

use serde_json::{Map, Value};
use weft_controller::{texts, Error};

/// The most items one call may name.
pub const MAX_ITEMS: usize = 100;

/// One item: the instance it names, and its other members.
pub struct Item {
    pub id: String,
    pub rest: Map<String, Value>,
}

/// Reads the items of a batch body, refusing members outside `{uuid, name}` and `allowed`.
pub fn items(value: Value, allowed: &[&[&str]]) -> Result<Vec<Item>, Error> {
    let list = match value {
        Value::Array(list) => list,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(Error::bad_request(
                "The request body must be a JSON array of objects with 'uuid' or 'name'",
            ))
        }
    };
    if list.is_empty() || list.len() > MAX_ITEMS {
        return Err(Error::bad_request(format!(
            "The request body must name 1 to {MAX_ITEMS} instances, not {}",
            list.len()
        )));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, item)| one(i, item, allowed))
        .collect()
}

fn one(index: usize, item: Value, allowed: &[&[&str]]) -> Result<Item, Error> {
    let Value::Object(mut map) = item else {
        return Err(Error::bad_request(format!(
            "Item {index} must be a JSON object"
        )));
    };
    for key in map.keys() {
        let known =
            key == "uuid" || key == "name" || allowed.iter().any(|set| set.contains(&key.as_str()));
        if !known {
            return Err(Error::bad_request(texts::unknown_member(key)));
        }
    }
    let pick = |v: Option<Value>, field: &str| -> Result<Option<String>, Error> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(other) => Err(Error::bad_request(format!(
                "Invalid value for '[{index}].{field}': expected a non-empty string, not {other}"
            ))),
        }
    };
    let uuid = pick(map.remove("uuid"), "uuid")?;
    let name = pick(map.remove("name"), "name")?;
    let id = match (uuid, name) {
        (Some(uuid), _) => uuid,
        (None, Some(name)) => name,
        (None, None) => {
            return Err(Error::bad_request(format!(
                "Item {index} must have 'uuid' or 'name'"
            )))
        }
    };
    Ok(Item { id, rest: map })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_lists_and_single_objects() {
        let got = items(
            json!([{"uuid": "u1"}, {"name": "web", "state": "running"}]),
            &[&["state"]],
        )
        .unwrap();
        assert_eq!((got[0].id.as_str(), got[1].id.as_str()), ("u1", "web"));
        assert_eq!(got[1].rest["state"], "running");
        assert_eq!(items(json!({"name": "web"}), &[]).unwrap()[0].id, "web");
    }

    #[test]
    fn refuses_what_names_nothing() {
        let msg = |v: Value| items(v, &[]).err().unwrap().message;
        assert!(msg(json!([])).contains("1 to 100"));
        assert!(msg(json!("web")).contains("JSON array"));
        assert_eq!(
            msg(json!([{"name": "a", "colour": 1}])),
            "Unknown member 'colour'"
        );
        assert!(msg(json!([{}])).contains("Item 0 must have 'uuid' or 'name'"));
        assert!(msg(json!([{"name": 5}])).contains("'[0].name'"));
        assert!(msg(json!(vec![json!({"name": "a"}); 101])).contains("not 101"));
    }
}
