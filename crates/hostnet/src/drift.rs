//! What reconciliation asks of the host: whether weft's pool table is whole, and which
//! devices of the pool's naming are outside the pool.

use crate::{link, nft, DeviceKind, HostNet, HostNetError, PoolNet};

impl HostNet {
    /// Whether `ip weft` is installed with every chain, set and rule that [`Self::setup_pool`]
    /// puts there, and every pool TAP exists. Someone who flushed the ruleset, the table or a
    /// chain, or deleted a pool TAP, makes this false. Costs one listing of the table (with
    /// its elements) and one of the links.
    pub async fn pool_intact(&self, pool: &PoolNet) -> Result<bool, HostNetError> {
        match nft::table_shape().await? {
            Some(shape) if shape == nft::installed_shape(pool) => {}
            _ => return Ok(false),
        }
        let present = link::link_names(&self.handle, |name| {
            pool.tap_prefix_index(name)
                .is_some_and(|n| n < pool.tap_count)
        })
        .await?;
        Ok(present.len() == pool.tap_count as usize)
    }

    /// Whether the relays' table `netdev weft` is installed.
    pub async fn relay_table_installed(&self) -> Result<bool, HostNetError> {
        nft::netdev_table_exists().await
    }

    /// TAP devices named like the pool's (`<prefix><n>`) that are not in it (`n` at or past
    /// `tap_count`, as left by a larger pool before), and that no process holds.
    pub async fn stray_pool_taps(&self, pool: &PoolNet) -> Result<Vec<String>, HostNetError> {
        let names = link::link_names(&self.handle, |name| {
            pool.tap_prefix_index(name)
                .is_some_and(|n| n >= pool.tap_count)
        })
        .await?;
        let mut out = Vec::new();
        for name in names.into_values() {
            if self.device_kind(&name).await? == DeviceKind::Tap && !self.tap_in_use(&name).await? {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes a device; one that is not there is fine.
    pub async fn remove_device(&self, name: &str) -> Result<(), HostNetError> {
        link::delete_link(&self.handle, name).await
    }
}

impl PoolNet {
    /// `n` when `name` is `<tap_prefix><n>`.
    pub fn tap_prefix_index(&self, name: &str) -> Option<u32> {
        let digits = name.strip_prefix(&self.tap_prefix)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}
