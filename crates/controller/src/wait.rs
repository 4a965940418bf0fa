//! Waiting for an instance to reach a state, bounded in time.

use std::time::Duration;

use weft_store::State;

use crate::error::{Code, Error};
use crate::{Account, Controller, Record};

/// The longest a single wait lasts, whatever the caller asks.
pub const WAIT_MAX: Duration = Duration::from_secs(600);

impl Controller {
    /// Waits until the instance is in `state`, or `timeout` passes (an error with HTTP code
    /// 408 naming the state it is in).
    pub async fn wait(
        &self,
        account: &Account,
        id: &str,
        state: State,
        timeout: Duration,
    ) -> Result<Record, Error> {
        let deadline = tokio::time::Instant::now() + timeout.min(WAIT_MAX);
        let mut changes = self.changes.subscribe();
        loop {
            // Mark the current count seen before reading, so no change slips between.
            changes.borrow_and_update();
            let record = self.find(account, id).await?;
            if record.instance.state == state {
                return Ok(record);
            }
            let timed_out = tokio::select! {
                changed = changes.changed() => changed.is_err(),
                _ = tokio::time::sleep_until(deadline) => true,
            };
            if timed_out {
                return Err(Error::new(
                    Code::Timeout,
                    format!(
                        "Timed out after {} ms waiting for instance '{}' to be {}; it is {}",
                        timeout.min(WAIT_MAX).as_millis(),
                        record.instance.name,
                        state.as_str(),
                        record.instance.state.as_str()
                    ),
                ));
            }
        }
    }
}
