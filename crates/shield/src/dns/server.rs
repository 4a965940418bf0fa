//! DNS over UDP and TCP on port 53 of every address. UDP answers leave from the address the
//! query was sent to (IP_PKTINFO), or the client's resolver would drop them.

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{
    recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::{respond, Request};
use crate::shield::Shield;

/// Queries being answered at once over UDP; more are dropped (the client retries).
const UDP_IN_FLIGHT: usize = 256;
/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Serves both transports until the process ends.
pub async fn serve(shield: Arc<Shield>, udp: UdpSocket, tcp: TcpListener) {
    let udp = Arc::new(udp);
    tokio::join!(serve_udp(shield.clone(), udp), serve_tcp(shield, tcp));
}

async fn serve_udp(shield: Arc<Shield>, socket: Arc<UdpSocket>) {
    let in_flight = Arc::new(Semaphore::new(UDP_IN_FLIGHT));
    let mut buf = vec![0u8; 65535];
    loop {
        let received = socket
            .async_io(Interest::READABLE, || receive(&socket, &mut buf))
            .await;
        let (n, client, local) = match received {
            Ok(Some(received)) => received,
            Ok(None) => continue,
            Err(err) => {
                crate::log::say(&format!("dns: receiving: {err}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            continue;
        };
        let query = buf[..n].to_vec();
        let shield = shield.clone();
        let socket = socket.clone();
        tokio::spawn(async move {
            let request = Request {
                bytes: &query,
                client,
                local,
            };
            if let Some(answer) = respond(&shield, request, true).await {
                let sent = socket
                    .async_io(Interest::WRITABLE, || send(&socket, &answer, client, local))
                    .await;
                if let Err(err) = sent {
                    crate::log::say(&format!("dns: answering {client}: {err}"));
                }
            }
            drop(permit);
        });
    }
}

/// One datagram: its length, sender and destination. None for one without IPv4 addresses.
fn receive(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<Option<(usize, SocketAddrV4, SocketAddrV4)>> {
    let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg[..]),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(std::io::Error::from)?;
    let Some(client) = msg.address else {
        return Ok(None);
    };
    let mut local = None;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
            local = Some(std::net::Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
        }
    }
    let Some(local) = local else { return Ok(None) };
    let client = SocketAddrV4::new(client.ip(), client.port());
    Ok(Some((msg.bytes, client, SocketAddrV4::new(local, 53))))
}

fn send(
    socket: &UdpSocket,
    answer: &[u8],
    client: SocketAddrV4,
    local: SocketAddrV4,
) -> std::io::Result<usize> {
    let info = libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(*local.ip()).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    let to = SockaddrIn::from(client);
    sendmsg(
        socket.as_raw_fd(),
        &[IoSlice::new(answer)],
        &[ControlMessage::Ipv4PacketInfo(&info)],
        MsgFlags::MSG_DONTWAIT,
        Some(&to),
    )
    .map_err(std::io::Error::from)
}

async fn serve_tcp(shield: Arc<Shield>, listener: TcpListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                crate::log::say(&format!("dns: accepting: {err}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = shield.connections.clone().try_acquire_owned() else {
            continue;
        };
        let shield = shield.clone();
        tokio::spawn(async move {
            let _ = tcp_client(&shield, stream).await;
            drop(permit);
        });
    }
}

/// Answers length-prefixed messages until the client goes quiet or away.
async fn tcp_client(shield: &Shield, mut stream: TcpStream) -> std::io::Result<()> {
    let (Ok(std::net::SocketAddr::V4(client)), Ok(std::net::SocketAddr::V4(local))) =
        (stream.peer_addr(), stream.local_addr())
    else {
        return Ok(());
    };
    let _active = shield.log.connection();
    loop {
        let Ok(len) = timeout(TCP_IDLE, stream.read_u16()).await else {
            return Ok(());
        };
        let mut query = vec![0u8; usize::from(len?)];
        timeout(TCP_IDLE, stream.read_exact(&mut query))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        let request = Request {
            bytes: &query,
            client,
            local,
        };
        let Some(answer) = respond(shield, request, false).await else {
            return Ok(());
        };
        let len = u16::try_from(answer.len()).map_err(std::io::Error::other)?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&answer);
        timeout(TCP_IDLE, stream.write_all(&framed))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
    }
}
