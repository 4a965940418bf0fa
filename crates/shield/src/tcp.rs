//! TCP from clients on ports 80 and 443 of any address. The accepted socket's local address
//! is where the client wanted to go; the shield decides, then connects there itself.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;

use crate::dns::SHIELD_NAME;
use crate::http::{response, RequestHead};
use crate::log::{Decision, Event, Proto};
use crate::shield::Shield;
use crate::stream::{
    copy_responses, forward_requests, Activity, Ending, Incoming, StreamError, Verdict,
};

/// How long a client has to send its request head or TLS ClientHello.
pub const FIRST_BYTES: Duration = Duration::from_secs(15);
const CONNECT: Duration = Duration::from_secs(10);

/// One client connection: who, to where, and the shield that decides.
pub struct Conn {
    pub shield: Arc<Shield>,
    pub client: SocketAddrV4,
    pub dst: SocketAddrV4,
}

impl Conn {
    pub fn log(&self, decision: Decision, proto: Proto, name: Option<&str>, reason: &str) {
        self.shield.log.record(&Event {
            decision,
            client: *self.client.ip(),
            proto,
            name,
            dst: self.dst,
            reason,
        });
    }

    pub async fn connect(&self) -> std::io::Result<TcpStream> {
        let stream = timeout(CONNECT, TcpStream::connect(self.dst))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Accepts on one port until the process ends.
pub async fn serve(shield: Arc<Shield>, listener: TcpListener, port: u16) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                crate::log::say(&format!("tcp {port}: accepting: {err}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (SocketAddr::V4(client), Ok(SocketAddr::V4(dst))) = (peer, stream.local_addr()) else {
            continue;
        };
        let conn = Conn {
            shield: shield.clone(),
            client,
            dst,
        };
        let proto = if port == 443 { Proto::Tls } else { Proto::Http };
        // The shield reaching one of its own addresses would accept its own connection.
        if client.ip() == dst.ip() {
            conn.log(Decision::Deny, proto, None, "loop");
            continue;
        }
        let Ok(permit) = shield.connections.clone().try_acquire_owned() else {
            conn.log(Decision::Deny, proto, None, "too-many-connections");
            continue;
        };
        tokio::spawn(async move {
            let shield = conn.shield.clone();
            let _active = shield.log.connection();
            if port == 443 {
                crate::tls::handle(conn, stream).await;
            } else {
                handle_http(conn, stream).await;
            }
            drop(permit);
        });
    }
}

/// Reads the first request head; on a bad one the client gets 400 and the log a line.
pub async fn first_head<R, W>(
    conn: &Conn,
    (proto, name): (Proto, Option<&str>),
    incoming: &mut Incoming<R>,
    client_w: &mut W,
) -> Option<RequestHead>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match timeout(FIRST_BYTES, incoming.read_head()).await {
        Ok(Ok(Some(head))) => Some(head),
        Ok(Ok(None)) | Ok(Err(StreamError::Io(_))) => None,
        Ok(Err(StreamError::Head(err))) => {
            conn.log(Decision::Deny, proto, name, err.reason());
            let body = format!("weft-shield: {err}\n");
            let _ = client_w
                .write_all(&response(400, "Bad Request", "text/plain", body.as_bytes()))
                .await;
            let _ = client_w.shutdown().await;
            None
        }
        Err(_) => {
            conn.log(Decision::Deny, proto, name, "request-timeout");
            None
        }
    }
}

/// Tells the client why, in an HTTP response, and closes.
pub async fn refuse<W: AsyncWrite + Unpin>(client_w: &mut W, status: u16, reason: &str) {
    let text = match status {
        403 => "Forbidden",
        421 => "Misdirected Request",
        _ => "Bad Gateway",
    };
    let body = format!("weft-shield: {reason}\n");
    let _ = client_w
        .write_all(&response(status, text, "text/plain", body.as_bytes()))
        .await;
    let _ = client_w.shutdown().await;
}

async fn handle_http(conn: Conn, stream: TcpStream) {
    let activity = Activity::new();
    let (client_r, mut client_w) = stream.into_split();
    let mut incoming = Incoming::new(client_r, activity.clone());
    let Some(first) = first_head(&conn, (Proto::Http, None), &mut incoming, &mut client_w).await
    else {
        return;
    };
    if first.name() == Some(SHIELD_NAME) {
        crate::local::serve(&conn, &first, &mut client_w).await;
        return;
    }

    let name = first.name().map(str::to_string);
    match conn.shield.check(name.as_deref(), *conn.dst.ip()) {
        Ok(reason) => conn.log(Decision::Allow, Proto::Http, name.as_deref(), reason),
        Err(reason) => {
            conn.log(Decision::Deny, Proto::Http, name.as_deref(), reason);
            refuse(&mut client_w, 403, reason).await;
            return;
        }
    }
    let upstream = match conn.connect().await {
        Ok(upstream) => upstream,
        Err(_) => {
            conn.log(
                Decision::Deny,
                Proto::Http,
                name.as_deref(),
                "upstream-unreachable",
            );
            refuse(&mut client_w, 502, "upstream-unreachable").await;
            return;
        }
    };

    // Plain HTTP never carries secrets (nothing proves who reads it), but every request
    // must stay with the host that was checked.
    let host = first.host.clone();
    let mut judge = move |head: &RequestHead| {
        if head.host == host {
            Verdict::Forward
        } else {
            Verdict::Refuse("host-mismatch")
        }
    };
    let (upstream_r, upstream_w) = upstream.into_split();
    let first_out = first.raw.clone();
    let ending = relay(
        &conn,
        (incoming, client_w),
        (upstream_r, upstream_w),
        (&first, &first_out),
        &mut judge,
        activity,
    )
    .await;
    if let Ending::Refused(reason) = ending {
        conn.log(Decision::Deny, Proto::Http, name.as_deref(), reason);
    }
}

/// Runs both directions of an HTTP connection until both end or it goes idle.
pub async fn relay<CR, CW, UR, UW>(
    conn: &Conn,
    client: (Incoming<CR>, CW),
    upstream: (UR, UW),
    first: (&RequestHead, &[u8]),
    judge: &mut (dyn FnMut(&RequestHead) -> Verdict + Send),
    activity: Arc<Activity>,
) -> Ending
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let (mut incoming, mut client_w) = client;
    let (mut upstream_r, mut upstream_w) = upstream;
    let (sender, receiver) = match first.0.upgrade {
        true => {
            let (sender, receiver) = oneshot::channel();
            (Some(sender), Some(receiver))
        }
        false => (None, None),
    };
    let requests = async {
        let ending = forward_requests(&mut incoming, &mut upstream_w, first, receiver, judge).await;
        // No more requests: the server may finish its responses and close.
        let _ = upstream_w.shutdown().await;
        ending.unwrap_or(Ending::Closed)
    };
    let responses = copy_responses(&mut upstream_r, &mut client_w, &activity, sender);
    tokio::select! {
        (ending, _) = async { tokio::join!(requests, responses) } => ending,
        _ = activity.idle(conn.shield.config.idle_timeout) => Ending::Closed,
    }
}
