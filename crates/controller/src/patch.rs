//! PATCH: the mutable properties of an instance. They apply at its next start. The network
//! configuration is set once at create and cannot be patched (R10).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::Error;
use crate::request::ImageRef;
use crate::{images, Account, Controller, Record};

/// `PATCH /v1/instances/{id}`: the properties to change; they apply at the next start. The
/// network configuration cannot be changed (R10): `network_interfaces`, `gateway` and
/// `nameserver` are refused with a message saying so.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    pub image: Option<ImageRef>,
    pub args: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub memory_mb: Option<u32>,
    pub vcpus: Option<u32>,
    /// Refused, whatever its value (even null): set once at create.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<Object>)]
    pub network_interfaces: Option<serde_json::Value>,
    /// Refused, whatever its value (even null): set once at create.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<String>)]
    pub gateway: Option<serde_json::Value>,
    /// Refused, whatever its value (even null): set once at create.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<String>)]
    pub nameserver: Option<serde_json::Value>,
}

/// A member that is present, null included: a patch that names a network field asks to
/// change it, and is refused rather than silently ignored.
fn given<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

pub mod members {
    pub const PATCH: &[&str] = &["image", "args", "env", "memory_mb", "vcpus"];
    pub const PATCH_NETWORK: &[&str] = &["network_interfaces", "gateway", "nameserver"];
}

impl Controller {
    pub async fn patch(
        &self,
        account: &Account,
        id: &str,
        req: PatchRequest,
    ) -> Result<Record, Error> {
        let network = [
            ("network_interfaces", req.network_interfaces.is_some()),
            ("gateway", req.gateway.is_some()),
            ("nameserver", req.nameserver.is_some()),
        ];
        if let Some((field, _)) = network.iter().find(|(_, given)| *given) {
            // As at create (R9): unknown without the permission, refused without the license.
            if !account.is_net_manager() {
                return Err(Error::bad_request(crate::texts::unknown_member(field)));
            }
            if !account.licensed_for_custom_network() {
                return Err(Error::forbidden(crate::texts::LICENSE));
            }
            return Err(Error::bad_request(format!(
                "'{field}' cannot be changed: the network configuration is set once when the \
                 instance is created"
            )));
        }

        let record = self.find(account, id).await?;
        let lock = self.op_lock(&record.instance.uuid);
        let _op = lock.lock().await;
        let mut instance = self.find_by_uuid(&record.instance.uuid).await?.instance;

        if let Some(image) = &req.image {
            images::resolve(
                &self.config.images_dir,
                image.as_str(),
                self.driver.boots_kernel(),
            )?;
            instance.image = image.as_str().to_string();
        }
        let probe = crate::request::CreateRequest {
            args: req.args.clone(),
            env: req.env.clone(),
            ..Default::default()
        };
        crate::validate::check_args_env(&probe)?;
        let image = images::resolve(
            &self.config.images_dir,
            &instance.image,
            self.driver.boots_kernel(),
        )?;
        match req.args {
            // As at create: no args are the image's own.
            Some(args) if args.is_empty() => instance.args = image.default_args.clone(),
            Some(args) => instance.args = args,
            None => {}
        }
        if let Some(env) = req.env {
            instance.env = env;
        }
        // What create refuses because it would not reach the guest, a patch cannot bring.
        crate::validate::boot_args_fit(&instance.args, &instance.env, record.interfaces.len())?;
        // A new image may need more memory than the instance has.
        if req.memory_mb.is_some() || req.image.is_some() {
            let memory_mb = req.memory_mb.unwrap_or(instance.memory_mb);
            instance.memory_mb =
                crate::validate::check_memory(memory_mb, &instance.image, image.min_memory_mb)?;
        }
        if let Some(vcpus) = req.vcpus {
            instance.vcpus = crate::validate::in_range("vcpus", vcpus, crate::validate::VCPUS)?;
        }

        self.store.update_config(&instance).await?;
        self.notify();
        self.find_by_uuid(&instance.uuid).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_member_is_given_even_when_null() {
        let req: PatchRequest =
            serde_json::from_value(serde_json::json!({"gateway": null, "memory_mb": 256})).unwrap();
        assert_eq!(req.gateway, Some(serde_json::Value::Null));
        assert_eq!(req.nameserver, None);
        let req: PatchRequest = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(req.network_interfaces.is_none() && req.gateway.is_none());
    }
}
