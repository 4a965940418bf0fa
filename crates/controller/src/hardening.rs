//! Settings that protect weftd and its host: the API's TLS, the rate limit of creates, and
//! what a SIGTERM does to guests; and stopping every guest when weftd is told to.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::{Account, Controller};

/// `[api]`: how the HTTP API is served.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the API over TLS (rustls) with this certificate and key instead of plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM: the certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the certificate's private key.
    pub key: PathBuf,
}

/// `[limits]`: how many creates an account may send.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Creates per second an account may make on average; 0 turns the limit off.
    pub creates_per_second: u32,
    /// How many creates an account may make at once before the rate applies.
    pub creates_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            creates_per_second: 20,
            creates_burst: 200,
        }
    }
}

/// `[shutdown]`: what SIGTERM or SIGINT does.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Stop every guest once the API has stopped; otherwise guests keep running and the
    /// next weftd finds them again.
    pub stop_guests: bool,
    /// How long requests in flight may take to finish before weftd exits anyway.
    pub grace_s: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            stop_guests: false,
            grace_s: 60,
        }
    }
}

impl Controller {
    /// Stops the guest of every instance of every account that has one; returns how many
    /// were stopped and the failures, each naming its instance.
    pub async fn stop_all_guests(self: &Arc<Self>) -> (usize, Vec<String>) {
        let all = match self.store().list_instances(None).await {
            Ok(all) => all,
            Err(e) => return (0, vec![format!("listing instances: {e}")]),
        };
        let mut tasks = tokio::task::JoinSet::new();
        for (instance, _) in all {
            if instance.pid.is_none() {
                continue;
            }
            let ctl = Arc::clone(self);
            tasks.spawn(async move {
                let account = Account {
                    name: instance.account.clone(),
                    permissions: Vec::new(),
                    license: Vec::new(),
                };
                ctl.stop_instance(&account, &instance.uuid)
                    .await
                    .map_err(|e| format!("{} ({}): {e}", instance.name, instance.uuid))
            });
        }
        let (mut stopped, mut failed) = (0, Vec::new());
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(_)) => stopped += 1,
                Ok(Err(e)) => failed.push(e),
                Err(e) => failed.push(e.to_string()),
            }
        }
        (stopped, failed)
    }
}
