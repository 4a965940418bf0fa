//! What the platform DNS resolver knows: which addresses are instances, and the primary
//! address of each instance name in an account.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::Controller;

/// The controller as the resolver's directory.
pub struct InstanceDirectory(pub Arc<Controller>);

#[async_trait::async_trait]
impl weft_dns::Directory for InstanceDirectory {
    async fn knows(&self, client: Ipv4Addr) -> bool {
        matches!(
            self.0.store.account_of_pool_address(client).await,
            Ok(Some(_))
        )
    }

    async fn lookup(&self, client: Ipv4Addr, name: &str) -> Option<Ipv4Addr> {
        let account = self.0.store.account_of_pool_address(client).await.ok()??;
        let (instance, interfaces) = self.0.store.find_instance(&account, name).await.ok()??;
        if instance.name != name {
            // Only names resolve, not uuids.
            return None;
        }
        interfaces.first()?.ip.map(|cidr| cidr.addr())
    }
}
