//! Test hosts for weft's end-to-end tests. Everything happens in network namespaces the
//! tests create: a host namespace where weftd runs, an "internet" namespace behind its
//! uplink (192.0.2.0/24) with test servers, and a namespace that plays the user's own
//! network. The host's own namespace is never configured.

pub mod api;
pub mod dns;
pub mod internet;
pub mod netns;
pub mod topology;
pub mod weftd;

pub use api::Api;
pub use netns::Netns;
pub use topology::Topology;
pub use weftd::Weftd;

/// Whether privileged tests can run here (root, TAP devices, namespaces). When they cannot,
/// a test under `CI=true` fails; elsewhere it is skipped with the reason printed.
pub fn privileged_or_skip(test: &str) -> bool {
    let reason = if unsafe_geteuid() != 0 {
        Some("not running as root")
    } else if !std::path::Path::new("/dev/net/tun").exists() {
        Some("/dev/net/tun is missing")
    } else if std::process::Command::new("ip").arg("-V").output().is_err() {
        Some("the ip command (iproute2) is missing")
    } else {
        None
    };
    match reason {
        None => true,
        Some(reason) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test} cannot run under CI: {reason}")
        }
        Some(reason) => {
            eprintln!("skipping {test}: {reason}");
            false
        }
    }
}

/// Standard base64, as instance env values carry PEM texts.
pub fn base64(bytes: impl AsRef<[u8]>) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unsafe_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Polls `check` every `every` until it gives a value or `limit` passes.
pub fn wait_for<T>(
    limit: std::time::Duration,
    every: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}
