//! The host side of an instance's interfaces: routes and rules for pool interfaces, and the
//! relay path for relayed ones (R8). Own TAP devices are the user's and are left as they
//! are, except that a relayed one is wired to its relay.

use std::net::Ipv4Addr;

use weft_hostnet::{HostNetError, RelayEnd, Relayed};
use weft_store::Interface;

use crate::error::Error;
use crate::failpoints;
use crate::{Controller, Record};

impl Controller {
    /// Sets up the host side of every interface. A relayed interface gets no route and no
    /// rule of its own: everything it sends or receives passes its relay. The pool
    /// interfaces' rules go in one nftables transaction.
    pub(crate) async fn attach_host(&self, record: &Record) -> Result<(), HostNetError> {
        self.hostnet
            .attach_pool_interfaces(&pool_interfaces(record))
            .await?;
        for iface in &record.interfaces {
            if iface.relay_name.is_some() {
                let relayed = self.relayed(record, iface).await?;
                self.hostnet.attach_relayed(&relayed).await?;
            }
        }
        Ok(())
    }

    /// [`Self::attach_host`] for a create, with its failpoints between the steps; the error
    /// names the step.
    pub(crate) async fn attach_host_steps(&self, record: &Record) -> Result<(), Error> {
        let step = |e| Error::step("host network setup", e);
        self.hostnet
            .attach_pool_interfaces(&pool_interfaces(record))
            .await
            .map_err(step)?;
        failpoints::hit("create.after_pool_attach")?;
        for iface in &record.interfaces {
            if iface.relay_name.is_some() {
                let relayed = self.relayed(record, iface).await.map_err(step)?;
                self.hostnet.attach_relayed(&relayed).await.map_err(step)?;
                failpoints::hit("create.after_relay")?;
            }
        }
        Ok(())
    }

    /// Removes the host side of every interface, going on past failures.
    pub(crate) async fn detach_host(&self, record: &Record) -> Result<(), HostNetError> {
        let mut errors = Vec::new();
        for iface in &record.interfaces {
            if iface.relay_name.is_some() {
                let result = match self.relayed(record, iface).await {
                    Ok(relayed) => self.hostnet.detach_relayed(&relayed).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    errors.push(e);
                }
            }
        }
        if let Err(e) = self
            .hostnet
            .detach_pool_interfaces(&pool_interfaces(record))
            .await
        {
            errors.push(e);
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.pop().expect("one error")),
            _ => Err(HostNetError::Many(errors)),
        }
    }

    /// The relay path of a relayed interface: it and the relay interface it names.
    pub(crate) async fn relayed(
        &self,
        record: &Record,
        iface: &Interface,
    ) -> Result<Relayed, HostNetError> {
        let name = iface.relay_name.as_deref().expect("a relayed interface");
        let relay = self
            .store
            .find_interface(&iface.account, name)
            .await
            .map_err(|e| HostNetError::InvalidRelay(format!("looking up relay '{name}': {e}")))?
            .ok_or_else(|| HostNetError::InvalidRelay(format!("relay '{name}' is gone")))?;
        let dns_direct = if iface.relay_dns {
            None
        } else {
            record.instance.nameserver
        };
        Ok(Relayed {
            client: end(iface),
            relay: end(&relay),
            dns_direct,
        })
    }
}

/// The pool interfaces that are not relayed, as (TAP, address).
fn pool_interfaces(record: &Record) -> Vec<(String, Ipv4Addr)> {
    record
        .interfaces
        .iter()
        .filter(|i| i.pool && i.relay_name.is_none())
        .map(|i| (i.tap_name.clone(), address(i)))
        .collect()
}

fn address(iface: &Interface) -> Ipv4Addr {
    iface.ip.expect("weft's interfaces have an address").addr()
}

fn end(iface: &Interface) -> RelayEnd {
    RelayEnd {
        tap: iface.tap_name.clone(),
        addr: address(iface),
        mac: iface.mac,
        pool: iface.pool,
    }
}
