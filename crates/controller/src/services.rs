//! Service groups: public ports of this host that the ingress proxy forwards
//! to the primary address of the group's running instances. Groups belong to an account; a
//! port belongs to one group on the host. An instance joins a group at its create, naming
//! an existing group or making a new one inline; an inline group goes with its instance.

pub mod request;
mod routes;

use std::time::Duration;

use serde_json::Value;
use weft_model::names::{check_name, random_suffix};
use weft_model::services::{handlers_text, Mode};
use weft_store::{GroupRef, Service, ServiceGroup};

use crate::error::Error;
use crate::{Account, Controller, Record};

pub use request::{ServiceGroupRequest, ServiceRequest};
pub use routes::Routes;

/// The most ports one group may publish.
pub const MAX_SERVICES: usize = 64;

/// What an instance's create asked for with `service_group`, once checked.
pub(crate) enum GroupPlan {
    None,
    Existing(GroupRef),
    New {
        name: Option<String>,
        services: Vec<Service>,
    },
}

impl Controller {
    /// Makes a service group.
    pub async fn create_service_group(
        &self,
        account: &Account,
        req: ServiceGroupRequest,
    ) -> Result<ServiceGroup, Error> {
        let services = plan_services(&req, "", self.has_certificates())?;
        if let Some(name) = &req.name {
            check_group_name(name, "name")?;
        }

        let _reserve = self.reserve.lock().await;
        self.check_ports(account, &services, "services").await?;
        let name = match req.name {
            Some(name) => {
                self.refuse_taken_group_name(account, &name).await?;
                name
            }
            None => self.free_group_name(&account.name, None).await?,
        };
        let group = new_group(&account.name, name, services, None);
        self.store.insert_group(&group, None).await?;
        self.notify();
        tracing::info!(group = %group.name, uuid = %group.uuid, ports = ?ports(&group), "service group created");
        Ok(group)
    }

    pub async fn list_service_groups(&self, account: &Account) -> Result<Vec<ServiceGroup>, Error> {
        Ok(self.store.list_groups(Some(&account.name)).await?)
    }

    pub async fn get_service_group(
        &self,
        account: &Account,
        id: &str,
    ) -> Result<ServiceGroup, Error> {
        self.store
            .find_group(&account.name, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("No service group with uuid or name '{id}'")))
    }

    /// Deletes a group that no instance is in. Returns it as it was.
    pub async fn delete_service_group(
        &self,
        account: &Account,
        id: &str,
    ) -> Result<ServiceGroup, Error> {
        let _reserve = self.reserve.lock().await;
        let group = self.get_service_group(account, id).await?;
        if !group.instances.is_empty() {
            let names: Vec<String> = group
                .instances
                .iter()
                .map(|m| format!("'{}'", m.name))
                .collect();
            return Err(Error::conflict(format!(
                "Service group '{}' cannot be deleted: instances {} are in it",
                group.name,
                names.join(", ")
            )));
        }
        self.store
            .delete_group(&group.uuid)
            .await
            .map_err(|e| match e {
                weft_store::StoreError::Conflict { .. } => Error::conflict(format!(
                    "Service group '{}' cannot be deleted: an instance joined it meanwhile",
                    group.name
                )),
                other => other.into(),
            })?;
        self.notify();
        tracing::info!(group = %group.name, uuid = %group.uuid, "service group deleted");
        Ok(group)
    }

    /// Checks an instance create's `service_group`: an existing group of the account by
    /// name or uuid (`"web"`, `{"name": "web"}`, `{"uuid": ...}`), or a new one
    /// (`{"services": [...], "name"?}`). Nothing is claimed yet.
    pub(crate) async fn plan_service_group(
        &self,
        account: &Account,
        value: Option<&Value>,
    ) -> Result<GroupPlan, Error> {
        const FIELD: &str = "service_group";
        let existing = |id: String| async move {
            let group = self.get_service_group(account, &id).await?;
            Ok(GroupPlan::Existing(GroupRef {
                uuid: group.uuid,
                name: group.name,
            }))
        };
        let map = match value {
            None | Some(Value::Null) => return Ok(GroupPlan::None),
            Some(Value::String(id)) => return existing(id.clone()).await,
            Some(value @ Value::Object(map)) if map.contains_key("services") => {
                let req = ServiceGroupRequest::from_json(value, FIELD)?;
                let services = plan_services(&req, FIELD, self.has_certificates())?;
                if let Some(name) = &req.name {
                    check_group_name(name, "service_group.name")?;
                    self.refuse_taken_group_name(account, name).await?;
                }
                self.check_ports(account, &services, "service_group.services")
                    .await?;
                return Ok(GroupPlan::New {
                    name: req.name,
                    services,
                });
            }
            Some(value) => request::object(value, FIELD, &["uuid", "name"])?,
        };
        let uuid = request::string(map, FIELD, "uuid")?;
        let name = request::string(map, FIELD, "name")?;
        match (uuid, name) {
            (Some(id), None) | (None, Some(id)) => existing(id).await,
            _ => Err(Error::bad_request(
                "Invalid service_group: give an existing group's 'uuid' or 'name', or \
                 'services' for a new group",
            )),
        }
    }

    /// Puts a just-claimed instance into the group its create asked for, making the group
    /// first when it is new. A failure leaves the instance to be discarded.
    pub(crate) async fn join_service_group(
        &self,
        record: &Record,
        plan: GroupPlan,
    ) -> Result<(), Error> {
        let instance = &record.instance;
        match plan {
            GroupPlan::None => return Ok(()),
            GroupPlan::Existing(group) => {
                if !self.store.join_group(&instance.uuid, &group.uuid).await? {
                    return Err(Error::not_found(format!(
                        "No service group with uuid or name '{}'",
                        group.name
                    )));
                }
            }
            GroupPlan::New { name, services } => {
                let account = &instance.account;
                let name = match name {
                    Some(name) => name,
                    None => self.free_group_name(account, Some(&instance.name)).await?,
                };
                let group = new_group(account, name, services, Some(instance.uuid.clone()));
                self.store
                    .insert_group(&group, Some(&instance.uuid))
                    .await
                    .map_err(|e| match e {
                        weft_store::StoreError::Conflict { what } => Error::conflict(format!(
                            "Invalid service_group: its {what} was taken meanwhile"
                        )),
                        other => other.into(),
                    })?;
            }
        }
        self.notify();
        Ok(())
    }

    fn has_certificates(&self) -> bool {
        !self.config.proxy.certificates.is_empty()
    }

    /// Refuses ports that a group already publishes, or that something else on this host
    /// listens on where the proxy would.
    async fn check_ports(
        &self,
        account: &Account,
        services: &[Service],
        path: &str,
    ) -> Result<(), Error> {
        for (i, service) in services.iter().enumerate() {
            let port = service.port;
            let field = format!("{path}[{i}].port");
            if let Some((_, name, owner)) = self.store.group_on_port(port).await? {
                // Another account's group is not named.
                let by = if owner == account.name {
                    format!("service group '{name}' already publishes it")
                } else {
                    "another account's service group already publishes it".to_string()
                };
                return Err(Error::conflict(format!("Invalid {field} {port}: {by}")));
            }
            if self.config.proxy.enabled && !self.port_free_on_host(port).await {
                return Err(Error::conflict(format!(
                    "Invalid {field} {port}: another program on this host listens on it"
                )));
            }
        }
        Ok(())
    }

    /// Whether the proxy could listen on `port`. A port the proxy itself just gave up may
    /// take a moment to be free, so a busy port is tried again for a short while.
    async fn port_free_on_host(&self, port: u16) -> bool {
        let addr = std::net::SocketAddr::new(self.config.proxy.listen, port);
        for _ in 0..10 {
            match std::net::TcpListener::bind(addr) {
                Ok(_) => return true,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                // Any other failure (an address the host does not have, say) is the proxy's
                // to report when it listens.
                Err(_) => return true,
            }
        }
        false
    }

    async fn refuse_taken_group_name(&self, account: &Account, name: &str) -> Result<(), Error> {
        if self.store.group_name_taken(&account.name, name).await? {
            return Err(Error::conflict(format!(
                "name '{name}' is already used by another service group"
            )));
        }
        Ok(())
    }

    /// A name free among the account's groups: `base` itself when it is free, else
    /// `<base or "group">-<random>`.
    async fn free_group_name(&self, account: &str, base: Option<&str>) -> Result<String, Error> {
        if let Some(base) = base {
            if check_name(base).is_ok() && !self.store.group_name_taken(account, base).await? {
                return Ok(base.to_string());
            }
        }
        let base: String = base.unwrap_or("group").chars().take(56).collect();
        let base = base.trim_end_matches('-');
        for _ in 0..16 {
            let name = format!("{base}-{}", random_suffix(6));
            if !self.store.group_name_taken(account, &name).await? {
                return Ok(name);
            }
        }
        Err(Error::conflict(
            "could not find a free service group name; give one with 'name'",
        ))
    }
}

/// The services of a request, each with its handlers and destination resolved, refusing
/// combinations the proxy does not serve. `path` is where the request sits.
fn plan_services(
    req: &ServiceGroupRequest,
    path: &str,
    certificates: bool,
) -> Result<Vec<Service>, Error> {
    let at = |rest: &str| request::join(path, rest);
    if req.domains.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(Error::bad_request(format!(
            "'{}' is not available in this version of weft",
            at("domains")
        )));
    }
    if req.services.len() > MAX_SERVICES {
        return Err(Error::bad_request(format!(
            "Invalid {}: a group publishes at most {MAX_SERVICES} ports, not {}",
            at("services"),
            req.services.len()
        )));
    }
    let mut out: Vec<Service> = Vec::with_capacity(req.services.len());
    for (i, service) in req.services.iter().enumerate() {
        let field = at(&format!("services[{i}]"));
        let port = service.port;
        if let Some(j) = out.iter().position(|s| s.port == port) {
            return Err(Error::bad_request(format!(
                "Invalid {field}.port {port}: {} already publishes it",
                at(&format!("services[{j}]"))
            )));
        }
        let handlers = service
            .handlers
            .clone()
            .unwrap_or_else(|| Mode::default_handlers(port));
        let Some(mode) = Mode::of(port, &handlers) else {
            return Err(Error::bad_request(format!(
                "Invalid {field}: handlers {} are not allowed on port {port} (allowed \
                 there: {})",
                handlers_text(&handlers),
                Mode::allowed_on(port)
            )));
        };
        if mode.terminates_tls() && !certificates {
            return Err(Error::bad_request(format!(
                "Invalid {field}: handlers {} on port {port} terminate TLS, and this host \
                 has no certificate configured ([[proxy.certificates]])",
                handlers_text(&handlers)
            )));
        }
        out.push(Service {
            port,
            destination_port: service
                .destination_port
                .unwrap_or_else(|| mode.default_destination(port)),
            handlers,
        });
    }
    Ok(out)
}

fn check_group_name(name: &str, field: &str) -> Result<(), Error> {
    check_name(name).map_err(|e| Error::bad_request(format!("Invalid {field} '{name}': it {e}")))
}

fn new_group(
    account: &str,
    name: String,
    services: Vec<Service>,
    created_for: Option<String>,
) -> ServiceGroup {
    ServiceGroup {
        uuid: uuid::Uuid::new_v4().to_string(),
        account: account.to_string(),
        name,
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        created_for,
        services,
        instances: Vec::new(),
    }
}

fn ports(group: &ServiceGroup) -> Vec<u16> {
    group.services.iter().map(|s| s.port).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weft_model::services::Handler;

    use super::*;

    fn plan(body: Value, certificates: bool) -> Result<Vec<Service>, String> {
        let req = ServiceGroupRequest::from_json(&body, "service_group").unwrap();
        plan_services(&req, "service_group", certificates).map_err(|e| e.message)
    }

    #[test]
    fn handlers_and_destinations_default_by_port() {
        let got = plan(
            json!({"services": [{"port": 443, "destination_port": 8080}, {"port": 5432}]}),
            true,
        )
        .unwrap();
        assert_eq!(got[0].handlers, [Handler::Http, Handler::Tls]);
        assert_eq!(got[0].destination_port, 8080);
        assert_eq!((got[1].port, got[1].destination_port), (5432, 5432));
        assert_eq!(got[1].handlers, [Handler::Tls]);

        let got = plan(json!({"services": [{"port": 80}]}), false).unwrap();
        assert_eq!(
            (got[0].handlers.clone(), got[0].destination_port),
            (vec![Handler::Http], 80)
        );
        let got = plan(
            json!({"services": [{"port": 80, "handlers": ["redirect"]}]}),
            false,
        );
        assert_eq!(got.unwrap()[0].destination_port, 443);
        let got = plan(json!({"services": [{"port": 22, "handlers": []}]}), false);
        assert_eq!(got.unwrap()[0].handlers, []);
    }

    #[test]
    fn refusals_name_the_service_its_port_and_handlers() {
        let refused = |body: Value, certificates: bool| plan(body, certificates).unwrap_err();
        assert_eq!(
            refused(
                json!({"services": [{"port": 80}, {"port": 8080, "handlers": ["http"]}]}),
                true
            ),
            "Invalid service_group.services[1]: handlers [\"http\"] are not allowed on port 8080 \
             (allowed there: [\"tls\"] or [] (plain TCP))"
        );
        assert_eq!(
            refused(
                json!({"services": [{"port": 80, "handlers": ["tls", "http"]}]}),
                true
            ),
            "Invalid service_group.services[0]: handlers [\"tls\", \"http\"] are not allowed on \
             port 80 (allowed there: [\"http\"], [\"http\", \"redirect\"] or [\"redirect\"])"
        );
        assert_eq!(
            refused(json!({"services": [{"port": 80}, {"port": 80}]}), true),
            "Invalid service_group.services[1].port 80: service_group.services[0] already \
             publishes it"
        );
        assert_eq!(
            refused(json!({"services": [{"port": 443}]}), false),
            "Invalid service_group.services[0]: handlers [\"http\", \"tls\"] on port 443 \
             terminate TLS, and this host has no certificate configured ([[proxy.certificates]])"
        );
        assert_eq!(
            refused(json!({"domains": [{"name": "a.example"}]}), true),
            "'service_group.domains' is not available in this version of weft"
        );
        let many: Vec<Value> = (1..=65)
            .map(|p| json!({"port": 1000 + p, "handlers": []}))
            .collect();
        assert!(refused(json!({"services": many}), true).contains("at most 64 ports, not 65"));
    }
}
