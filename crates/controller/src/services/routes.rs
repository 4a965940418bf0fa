//! The routes the ingress proxy serves, derived from the store: every published port with
//! the primary addresses of its group's running instances (R5). They are recomputed at each
//! change of an instance or a group, and handed over through a watch channel.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::watch;
use weft_model::services::{Backend, Mode, Route};
use weft_store::{ServiceGroup, State};

use crate::error::Error;
use crate::Controller;

/// Up to this many group members are looked up one by one rather than by listing every
/// instance.
const FEW_MEMBERS: usize = 64;

/// The routes as the proxy receives them.
pub type Routes = Arc<Vec<Route>>;

impl Controller {
    /// The proxy's routes, kept current. The receiver sees a new value only when the routes
    /// differ from the last ones.
    pub fn routes(self: &Arc<Self>) -> watch::Receiver<Routes> {
        let (tx, rx) = watch::channel(Routes::default());
        let mut changes = self.changes.subscribe();
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match this.compute_routes().await {
                    Ok(routes) => {
                        tx.send_if_modified(|current| {
                            let differ = **current != routes;
                            if differ {
                                *current = Arc::new(routes);
                            }
                            differ
                        });
                    }
                    Err(e) => tracing::error!(error = %e, "computing the proxy's routes"),
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { break },
                    _ = tx.closed() => break,
                }
            }
        });
        rx
    }

    async fn compute_routes(&self) -> Result<Vec<Route>, Error> {
        let groups = self.store.list_groups(None).await?;
        // Only the groups' members matter: a few are looked up one by one, many listed at
        // once. Without members (the common case of a host without services) the store is
        // not asked at all, however many instances it holds: this runs at every change.
        let members: HashSet<&str> = groups
            .iter()
            .flat_map(|g| g.instances.iter().map(|m| m.uuid.as_str()))
            .collect();
        let instances = if members.len() <= FEW_MEMBERS {
            let mut found = Vec::with_capacity(members.len());
            for uuid in &members {
                found.extend(self.store.find_instance_any(uuid).await?);
            }
            found
        } else {
            self.store.list_instances(None).await?
        };
        let primaries: HashMap<&str, Backend> = instances
            .iter()
            .filter(|(instance, _)| instance.state == State::Running)
            .filter_map(|(instance, interfaces)| {
                // Only the primary interface is ever forwarded to (R5).
                let primary = interfaces.iter().find(|i| i.index == 0)?;
                Some((
                    instance.uuid.as_str(),
                    Backend {
                        instance: instance.name.clone(),
                        primary: primary.ip?.addr(),
                    },
                ))
            })
            .collect();
        Ok(routes_of(&groups, &primaries))
    }
}

/// The routes of `groups`, given the running instances' primary addresses by uuid.
fn routes_of(groups: &[ServiceGroup], primaries: &HashMap<&str, Backend>) -> Vec<Route> {
    let mut routes = Vec::new();
    for group in groups {
        let backends: Vec<Backend> = group
            .instances
            .iter()
            .filter_map(|member| primaries.get(member.uuid.as_str()).cloned())
            .collect();
        for service in &group.services {
            // The combination was checked when the group was made.
            let Some(mode) = Mode::of(service.port, &service.handlers) else {
                tracing::warn!(group = %group.name, port = service.port, "stored handlers are not a known combination");
                continue;
            };
            routes.push(Route {
                port: service.port,
                mode,
                destination_port: service.destination_port,
                group: group.name.clone(),
                backends: backends.clone(),
            });
        }
    }
    routes.sort_by_key(|r| r.port);
    routes
}

#[cfg(test)]
mod tests {
    use weft_model::services::Handler;
    use weft_store::{Member, Service};

    use super::*;

    #[test]
    fn routes_name_only_running_members_by_primary_address() {
        let member = |uuid: &str| Member {
            uuid: uuid.into(),
            name: format!("i-{uuid}"),
        };
        let group = ServiceGroup {
            uuid: "g".into(),
            account: "acme".into(),
            name: "web".into(),
            created_at: String::new(),
            created_for: None,
            services: vec![
                Service {
                    port: 443,
                    destination_port: 8080,
                    handlers: vec![Handler::Http, Handler::Tls],
                },
                Service {
                    port: 80,
                    destination_port: 443,
                    handlers: vec![Handler::Http, Handler::Redirect],
                },
            ],
            instances: vec![member("a"), member("b")],
        };
        let running = HashMap::from([(
            "a",
            Backend {
                instance: "i-a".into(),
                primary: "10.100.0.1".parse().unwrap(),
            },
        )]);
        let routes = routes_of(&[group], &running);
        assert_eq!(routes.len(), 2);
        assert_eq!((routes[0].port, routes[0].mode), (80, Mode::Redirect));
        assert_eq!((routes[1].port, routes[1].mode), (443, Mode::Https));
        assert_eq!(routes[1].destination_port, 8080);
        assert_eq!(routes[1].backends, vec![running["a"].clone()]);
    }
}
