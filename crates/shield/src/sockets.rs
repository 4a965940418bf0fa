//! Listening sockets that accept traffic for any destination address. Packets from clients
//! are local through the any-address route (see netsetup); IP_TRANSPARENT lets the shield
//! answer from those addresses, which the kernel would otherwise refuse as not its own.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

fn any(port: u16) -> socket2::SockAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into()
}

pub fn tcp_listener(port: u16) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_ip_transparent_v4(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&any(port))?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A UDP socket that reports each datagram's destination (IP_PKTINFO).
pub fn udp_socket(port: u16) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_ip_transparent_v4(true)?;
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv4PacketInfo, &true)
        .map_err(io::Error::from)?;
    socket.set_nonblocking(true)?;
    socket.bind(&any(port))?;
    UdpSocket::from_std(socket.into())
}
