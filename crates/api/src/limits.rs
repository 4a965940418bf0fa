//! Limits that protect weftd from its clients: bodies over the size limit are refused from
//! their `Content-Length` before they are read, and each account's creates are rate limited
//! (`[limits]` of the configuration; a GCRA token bucket from `governor`).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use weft_controller::hardening::LimitsConfig;
use weft_controller::{Code, Error};

use crate::envelope::{NoData, Reply};
use crate::BODY_LIMIT;

/// The rate limit of creates, one bucket per account.
pub struct CreateLimiter {
    limiter: Option<RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>>,
    config: LimitsConfig,
}

impl CreateLimiter {
    pub fn new(config: &LimitsConfig) -> Arc<CreateLimiter> {
        let limiter = NonZeroU32::new(config.creates_per_second).map(|rate| {
            let burst = NonZeroU32::new(config.creates_burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::hashmap(Quota::per_second(rate).allow_burst(burst))
        });
        Arc::new(CreateLimiter {
            limiter,
            config: config.clone(),
        })
    }

    /// Takes one create from the account's bucket, or says when the next one will be allowed.
    pub fn check(&self, account: &str) -> Result<(), Error> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&account.to_string())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Error::new(
                    Code::BadRequest,
                    format!(
                        "Too many creates: account '{account}' may create {} instances per second \
                     (up to {} at once); try again in {} ms",
                        self.config.creates_per_second,
                        self.config.creates_burst,
                        wait.as_millis().max(1)
                    ),
                )
            })
    }
}

/// The answer to a refused create: 429 in the envelope, with `Retry-After`.
pub fn too_many(err: &Error, started: Instant) -> Response {
    let mut response =
        Reply::<NoData>::error_with_status(err, StatusCode::TOO_MANY_REQUESTS, started)
            .into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    response
}

/// Refuses a request whose `Content-Length` is over the body limit before reading any of
/// it. Bodies without a length are cut off at the limit as they are read (413 as well).
pub async fn refuse_large_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let length = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(length) if length > BODY_LIMIT as u64 => {
            let err = Error::bad_request(format!(
                "The request body of {length} bytes is larger than the limit of {BODY_LIMIT} bytes"
            ));
            let mut response = Reply::<NoData>::error_with_status(
                &err,
                StatusCode::PAYLOAD_TOO_LARGE,
                Instant::now(),
            )
            .into_response();
            // The unread body is not wanted: the client should not send it on this connection.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_account_has_its_own_bucket() {
        let limiter = CreateLimiter::new(&LimitsConfig {
            creates_per_second: 1,
            creates_burst: 3,
        });
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let err = limiter.check("a").unwrap_err();
        assert!(
            err.message.starts_with("Too many creates: account 'a'"),
            "{err}"
        );
        assert!(limiter.check("b").is_ok());

        let off = CreateLimiter::new(&LimitsConfig {
            creates_per_second: 0,
            creates_burst: 0,
        });
        for _ in 0..1000 {
            assert!(off.check("a").is_ok());
        }
    }
}
