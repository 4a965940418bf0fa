//! Port announcements. One watcher task per running guest connects to the
//! guest's agent channel (the driver's `agent_socket`: QEMU's virtio-serial chardev, or
//! weft-netns's relay), reads the lines weft-guest writes there (`weft_model::announce`), and
//! keeps the instance's `services` and `net_time_us` in the store.
//!
//! The guest writes what it likes into that channel, so everything here is bounded:
//!
//! - the task reads at most [`BYTES_PER_S`] bytes per second (after a burst of
//!   [`BYTE_BURST`]); past that it stops reading for a while, and the channel's own buffers
//!   fill and slow the guest's writes down, not weftd;
//! - it holds at most one line of [`MAX_LINE`](weft_model::announce::MAX_LINE) bytes; longer lines are dropped and counted
//!   as they go past, and reading resumes after their newline;
//! - it parses at most [`LINES_PER_S`] lines per second (after a burst of [`LINE_BURST`]);
//!   the others are dropped and counted unparsed;
//! - lines that are not strictly valid announcements are dropped and counted;
//! - the store is written only when the services change, so at most as often as lines are
//!   parsed.
//!
//! Nothing a guest sends is logged line by line; the counters are in `/metrics`.

mod limit;
mod lines;

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use weft_model::announce::Announcement;

use crate::Controller;
use limit::Bucket;
use lines::{Frame, LineSplitter};

/// Lines parsed per second, and how many may come at once. weft-guest sends one when its
/// listeners change (scanned five times a second) and one every 10 s.
pub const LINES_PER_S: f64 = 5.0;
pub const LINE_BURST: f64 = 20.0;
/// Bytes read per second, and how many may come at once.
pub const BYTES_PER_S: f64 = 64.0 * 1024.0;
pub const BYTE_BURST: f64 = 64.0 * 1024.0;
/// The size of one read.
const READ_CHUNK: usize = 8 * 1024;

/// Waits between connection attempts: from the first to the last, doubling. The channel
/// normally exists before the guest is reported started, so the first attempt succeeds.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);
/// How long one connection attempt may take.
const CONNECT_BOUND: Duration = Duration::from_secs(2);

/// What guests' agent channels made weftd do, for `/metrics`.
#[derive(Debug, Default)]
pub struct AgentCounters {
    /// Valid announcements taken.
    pub accepted: AtomicU64,
    /// Lines longer than [`MAX_LINE`](weft_model::announce::MAX_LINE).
    pub dropped_oversized: AtomicU64,
    /// Lines that are not valid announcements.
    pub dropped_malformed: AtomicU64,
    /// Lines past the rate limit, not parsed.
    pub dropped_rate: AtomicU64,
    /// Bytes read from the channels.
    pub bytes: AtomicU64,
}

impl AgentCounters {
    /// The line counters by outcome, as `/metrics` labels them.
    pub fn lines(&self) -> [(&'static str, u64); 4] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("accepted", get(&self.accepted)),
            ("dropped_oversized", get(&self.dropped_oversized)),
            ("dropped_malformed", get(&self.dropped_malformed)),
            ("dropped_rate", get(&self.dropped_rate)),
        ]
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A running watcher; dropping it stops the watcher.
pub(crate) struct AgentWatch(tokio::task::AbortHandle);

impl Drop for AgentWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One guest's channel as read so far, across reconnects: a guest cannot reset its limits by
/// making weftd reconnect.
struct Session {
    splitter: LineSplitter,
    lines: Bucket,
    bytes: Bucket,
    primary: Option<Ipv4Addr>,
}

impl Session {
    fn new(primary: Option<Ipv4Addr>, now: Instant) -> Session {
        Session {
            splitter: LineSplitter::default(),
            lines: Bucket::new(LINES_PER_S, LINE_BURST, now),
            bytes: Bucket::new(BYTES_PER_S, BYTE_BURST, now),
            primary,
        }
    }

    /// Takes bytes read from the channel; returns the services of the last announcement
    /// accepted among them, if any was.
    fn take(
        &mut self,
        chunk: &[u8],
        now: Instant,
        counters: &AgentCounters,
    ) -> Option<Vec<String>> {
        AgentCounters::add(&counters.bytes, chunk.len() as u64);
        let (lines, primary) = (&mut self.lines, self.primary);
        let mut latest = None;
        self.splitter.push(chunk, |frame| match frame {
            Frame::Oversized => AgentCounters::add(&counters.dropped_oversized, 1),
            Frame::Line(_) if !lines.take(now) => AgentCounters::add(&counters.dropped_rate, 1),
            Frame::Line(line) => match Announcement::parse(line) {
                Ok(announcement) => {
                    AgentCounters::add(&counters.accepted, 1);
                    latest = Some(announcement.services(primary));
                }
                Err(_) => AgentCounters::add(&counters.dropped_malformed, 1),
            },
        });
        latest
    }

    /// How long to stop reading after `n` bytes.
    fn pause(&mut self, n: usize, now: Instant) -> Duration {
        self.bytes.charge(n, now)
    }
}

/// Where the services of accepted announcements go.
trait ServicesSink {
    fn record(&mut self, services: Vec<String>) -> impl Future<Output = ()> + Send;
}

/// Reads one connection to its end (the VMM went, or closed its end).
async fn read_connection(
    stream: &mut (impl AsyncRead + Unpin),
    buffer: &mut [u8],
    session: &mut Session,
    counters: &AgentCounters,
    sink: &mut impl ServicesSink,
) {
    loop {
        let n = match stream.read(buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = Instant::now();
        if let Some(services) = session.take(&buffer[..n], now, counters) {
            sink.record(services).await;
        }
        let pause = session.pause(n, now);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// One watched guest: the run of process `pid` of instance `uuid`.
struct Watched<'a> {
    controller: &'a Controller,
    uuid: String,
    pid: u32,
    socket: PathBuf,
    /// When its boot started, for `net_time_us`; unknown for a guest adopted after a
    /// restart of weftd.
    booted: Option<Instant>,
    /// The services last written to the store.
    written: Option<Vec<String>>,
}

impl Controller {
    /// Starts watching the agent channel of the guest of process `pid`, listening at
    /// `socket`. With `booted` (the start of a new boot), what an earlier run announced is
    /// forgotten first. The watcher runs until the returned handle is dropped.
    pub(crate) async fn watch_agent(
        self: &Arc<Self>,
        uuid: &str,
        pid: u32,
        socket: PathBuf,
        primary: Option<Ipv4Addr>,
        booted: Option<Instant>,
    ) -> AgentWatch {
        if booted.is_some() {
            if let Err(e) = self.store.reset_announcements(uuid).await {
                tracing::warn!(uuid, error = %e, "forgetting an earlier run's services");
            }
        }
        let this = Arc::clone(self);
        let uuid = uuid.to_string();
        let task = tokio::spawn(async move {
            let watched = Watched {
                controller: &this,
                uuid,
                pid,
                socket,
                booted,
                written: None,
            };
            watched.run(primary).await
        });
        AgentWatch(task.abort_handle())
    }
}

impl Watched<'_> {
    async fn run(mut self, primary: Option<Ipv4Addr>) {
        let controller = self.controller;
        let counters = &controller.metrics.agent;
        let mut session = Session::new(primary, Instant::now());
        let mut buffer = vec![0u8; READ_CHUNK];
        let mut retry = FIRST_RETRY;
        loop {
            let connect = tokio::net::UnixStream::connect(&self.socket);
            match tokio::time::timeout(CONNECT_BOUND, connect).await {
                Ok(Ok(mut stream)) => {
                    tracing::debug!(uuid = %self.uuid, "agent channel connected");
                    retry = FIRST_RETRY;
                    read_connection(&mut stream, &mut buffer, &mut session, counters, &mut self)
                        .await;
                    tracing::debug!(uuid = %self.uuid, "agent channel closed");
                }
                Ok(Err(e)) => {
                    tracing::trace!(uuid = %self.uuid, error = %e, "agent channel not there");
                }
                Err(_) => tracing::debug!(uuid = %self.uuid, "agent channel did not answer"),
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(LAST_RETRY);
        }
    }
}

impl ServicesSink for Watched<'_> {
    /// Writes changed services to the store; the first services at all after a boot also
    /// set `net_time_us`.
    async fn record(&mut self, services: Vec<String>) {
        if self.written.as_ref() == Some(&services) {
            return;
        }
        let net_time_us = match self.booted {
            Some(booted) if !services.is_empty() => Some(booted.elapsed().as_micros() as u64),
            _ => None,
        };
        let store = &self.controller.store;
        match store
            .set_services(&self.uuid, self.pid, &services, net_time_us)
            .await
        {
            Ok(_) => {
                tracing::debug!(uuid = %self.uuid, ?services, "services announced");
                self.written = Some(services);
            }
            Err(e) => tracing::warn!(uuid = %self.uuid, error = %e, "recording services"),
        }
    }
}

#[cfg(test)]
mod tests;
