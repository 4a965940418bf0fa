//! What a new instance can be made from besides an image: a template, a checkpoint, or
//! another instance (`branch_from`), and the relay an interface points at (R8, R10).

use std::collections::HashSet;

use serde_json::Value;
use weft_store::{Instance, State};

use crate::error::Error;
use crate::plan::PlannedInterface;
use crate::request::CreateRequest;
use crate::{Account, Controller};

/// License features of the clone sources.
pub const LICENSE_BRANCHING: &str = "branching";
pub const LICENSE_CHECKPOINTING: &str = "checkpointing";

impl Controller {
    /// The instance a create clones from, checked against R10.
    pub(crate) async fn clone_source(
        &self,
        account: &Account,
        req: &CreateRequest,
    ) -> Result<Option<Instance>, Error> {
        let given: Vec<(&str, &Value)> = [
            ("template", req.template.as_ref()),
            ("checkpoint", req.checkpoint.as_ref()),
            ("branch_from", req.branch_from.as_ref()),
        ]
        .into_iter()
        .filter_map(|(field, value)| value.filter(|v| !v.is_null()).map(|v| (field, v)))
        .collect();
        let (field, value) = match given.as_slice() {
            [] => return Ok(None),
            [one] => *one,
            _ => {
                return Err(Error::bad_request(
                    "Give at most one of 'template', 'checkpoint' and 'branch_from'",
                ))
            }
        };
        let id = object_ref(field, value)?;
        let found = self.store.find_instance(&account.name, &id).await?;
        let (source, interfaces) = found.ok_or_else(|| {
            Error::bad_request(format!(
                "Invalid {field} '{id}': no instance of that uuid or name"
            ))
        })?;

        match field {
            "branch_from" => {
                if !account.license.iter().any(|f| f == LICENSE_BRANCHING) {
                    return Err(Error::forbidden(license_text("branching")));
                }
                if interfaces.len() > 1 {
                    return Err(Error::bad_request(format!(
                        "Invalid branch_from '{id}': instance '{}' has {} network interfaces, and \
                         instances with more than one cannot be branched",
                        source.name,
                        interfaces.len()
                    )));
                }
                match source.state {
                    State::Stopped => {}
                    State::Template => {
                        return Err(Error::bad_request(format!(
                            "Invalid branch_from '{id}': it is a template; use 'template'"
                        )))
                    }
                    state => {
                        return Err(Error::conflict(format!(
                            "Invalid branch_from '{id}': instance '{}' is {}; branching a running \
                             instance needs memory snapshots, which this version of weft does not \
                             take. Stop it first",
                            source.name,
                            state.as_str()
                        )))
                    }
                }
            }
            _ => {
                if source.state != State::Template {
                    return Err(Error::bad_request(format!(
                        "Invalid {field} '{id}': instance '{}' is not a {field}",
                        source.name
                    )));
                }
                if field == "checkpoint"
                    && !account.license.iter().any(|f| f == LICENSE_CHECKPOINTING)
                {
                    return Err(Error::forbidden(license_text("checkpointing")));
                }
            }
        }
        Ok(Some(source))
    }

    /// Checks every relay of a new instance (R8): it names an interface of another instance
    /// of the same account, which does not itself use a relay, and no chain of relays loops.
    pub(crate) async fn check_relays(
        &self,
        account: &Account,
        names: &[String],
        planned: &[PlannedInterface],
    ) -> Result<(), Error> {
        for (i, plan) in planned.iter().enumerate() {
            let Some(relay) = &plan.relay else { continue };
            let field = format!("network_interfaces[{i}].relay.name");
            let bad = |why: String| {
                Error::bad_request(format!("Invalid {field} '{}': {why}", relay.name))
            };

            if names.contains(&relay.name) {
                return Err(bad(
                    "it is an interface of this instance; a relay must belong to \
                                another instance"
                        .into(),
                ));
            }
            let target = self
                .store
                .find_interface(&account.name, &relay.name)
                .await?
                .ok_or_else(|| bad("no interface of that name in this account".into()))?;
            if let Some(next) = &target.relay_name {
                return Err(bad(format!(
                    "it uses the relay '{next}' itself; a relay cannot be relayed"
                )));
            }

            // A relay of a relay is refused above, so a loop cannot form today; the walk keeps
            // that true should chains ever be allowed.
            let mut seen: HashSet<String> = names.iter().cloned().collect();
            let mut hop = Some(target);
            while let Some(iface) = hop {
                if !seen.insert(iface.name.clone()) {
                    return Err(bad("the relays would form a loop".into()));
                }
                hop = match &iface.relay_name {
                    Some(next) => self.store.find_interface(&account.name, next).await?,
                    None => None,
                };
            }
        }
        Ok(())
    }
}

/// Copies what the request leaves out from the instance it clones. The network
/// configuration is not copied: the clone gets the request's, or one pool interface (R10).
pub(crate) fn inherit(req: &mut CreateRequest, source: &Instance) {
    if req.image.is_none() {
        req.image = Some(crate::request::ImageRef::Name(source.image.clone()));
    }
    if req.args.is_none() {
        req.args = Some(source.args.clone());
    }
    if req.env.is_none() {
        req.env = Some(source.env.clone());
    }
    req.memory_mb = req.memory_mb.or(Some(source.memory_mb));
    req.vcpus = req.vcpus.or(Some(source.vcpus));
}

/// An object reference as Unikraft Cloud writes it: `"name-or-uuid"`, `{"uuid": ...}` or
/// `{"name": ...}`.
pub(crate) fn object_ref(field: &str, value: &Value) -> Result<String, Error> {
    let bad = || {
        Error::bad_request(format!(
            "Invalid {field}: expected a name, or an object with 'uuid' or 'name'"
        ))
    };
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Object(map) => {
            for key in map.keys() {
                if key != "uuid" && key != "name" {
                    return Err(Error::bad_request(crate::texts::unknown_member(key)));
                }
            }
            map.get("uuid")
                .or_else(|| map.get("name"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

pub(crate) fn license_text(feature: &str) -> String {
    format!("Insufficient license. Please make sure your license is valid and includes {feature}")
}
