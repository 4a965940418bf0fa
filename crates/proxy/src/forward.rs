//! Choosing the instance to forward to, and forwarding a byte stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use weft_model::services::{Backend, Route};

use crate::Counters;

/// How long an instance has to accept a connection before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why nothing could be forwarded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// The group has no running instance.
    NoInstance,
    /// No running instance accepted the connection.
    NoAnswer,
}

/// Connects to the destination port of the route's next instance in turn, trying the
/// others when it does not answer. Only the routes' addresses are ever dialled, and those
/// are the instances' primary addresses.
pub(crate) async fn connect<'r>(
    route: &'r Route,
    turn: &AtomicUsize,
) -> Result<(TcpStream, &'r Backend), Unavailable> {
    let count = route.backends.len();
    if count == 0 {
        return Err(Unavailable::NoInstance);
    }
    let first = turn.fetch_add(1, Ordering::Relaxed);
    for i in 0..count {
        let backend = &route.backends[(first + i) % count];
        let addr = (backend.primary, route.destination_port);
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, backend));
            }
            Ok(Err(e)) => {
                tracing::debug!(instance = %backend.instance, port = route.destination_port, error = %e, "instance refused")
            }
            Err(_) => {
                tracing::debug!(instance = %backend.instance, port = route.destination_port, "instance did not answer in time")
            }
        }
    }
    Err(Unavailable::NoAnswer)
}

/// Forwards a client's stream to an instance until either side is done. Without an
/// instance to take it, the client's connection is closed.
pub(crate) async fn stream<S>(mut client: S, route: &Route, turn: &AtomicUsize, counters: &Counters)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match connect(route, turn).await {
        Ok((mut upstream, _)) => {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        Err(Unavailable::NoInstance) => Counters::bump(&counters.no_instance),
        Err(Unavailable::NoAnswer) => Counters::bump(&counters.unreachable),
    }
}
