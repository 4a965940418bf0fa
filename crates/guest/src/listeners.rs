//! The guest's listening TCP sockets, asked of the kernel through sock_diag netlink, or read
//! from `/proc/net/tcp` and `/proc/net/tcp6` where the kernel has no sock_diag for TCP.
//!
//! Both show the sockets of the reader's network namespace, so in netns mode too they are the
//! guest's own. sock_diag is asked for listening sockets only, and the kernel then never walks
//! its table of connections. Reading `/proc/net/tcp` does walk it, all of it: that table is
//! shared by every namespace of the host and sized by the host's memory, so on a host with many
//! netns guests each scan would cost milliseconds of kernel time however few sockets the guest
//! has. A VM's kernel has a table of its own, sized by its own small memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr};

use weft_model::announce::Listener;

const TCP: &str = "/proc/net/tcp";
const TCP6: &str = "/proc/net/tcp6";

/// The `st` column of a listening socket (`TCP_LISTEN`).
const LISTEN: u8 = 0x0a;

/// The most listeners taken from one family per scan.
const MAX_ROWS: usize = 1024;
/// The most bytes read from one file per scan (rows are 150 bytes long).
const MAX_BYTES: u64 = 256 * 1024;
/// The most netlink reads of one dump (each holds many sockets).
const MAX_READS: usize = 256;

/// Set once sock_diag has failed for IPv4: the kernel has none for TCP, and `/proc` is read
/// from then on.
static NO_DIAG: AtomicBool = AtomicBool::new(false);

/// The listeners worth announcing: every IPv4 listener except on loopback addresses, and
/// IPv6 listeners on `::` or on an IPv4-mapped address (shown as that IPv4 address). Other
/// IPv6 addresses are not weft's concern (it configures IPv4 only). A family the kernel does
/// not have (no IPv6) adds nothing.
pub fn scan() -> Vec<Listener> {
    if !NO_DIAG.load(Ordering::Relaxed) {
        match diag_socket().and_then(|socket| Ok((dump(&socket, AF_INET)?, socket))) {
            Ok((mut found, socket)) => {
                found.extend(dump(&socket, AF_INET6).unwrap_or_default());
                return found;
            }
            Err(_) => NO_DIAG.store(true, Ordering::Relaxed),
        }
    }
    let mut found = read(Path::new(TCP)).unwrap_or_default();
    found.extend(read(Path::new(TCP6)).unwrap_or_default());
    found
}

/// A sock_diag socket, connected to the kernel.
fn diag_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// The listening TCP sockets of `family`, by a sock_diag dump on `socket`.
fn dump(socket: &Socket, family: u8) -> io::Result<Vec<Listener>> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    let request = SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::LISTEN,
        socket_id,
    });
    let mut packet = NetlinkMessage::new(header, request.into());
    packet.finalize();
    let mut out = vec![0; packet.buffer_len()];
    packet.serialize(&mut out);
    socket.send(&out, 0)?;

    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    let mut found = Vec::new();
    // recv appends to the vector's spare capacity.
    let mut buf: Vec<u8> = Vec::with_capacity(32 * 1024);
    for _ in 0..MAX_READS {
        buf.clear();
        let size = socket.recv(&mut buf, 0)?;
        let mut offset = 0;
        while offset < size {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[offset..size])
                .map_err(|e| invalid(e.to_string()))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    let id = &response.header.socket_id;
                    if found.len() < MAX_ROWS {
                        if let Some(addr) = announced(id.source_address) {
                            found.push(Listener::tcp(addr, id.source_port));
                        }
                    }
                }
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
    Err(invalid("the sock_diag dump did not end".into()))
}

fn read(path: &Path) -> io::Result<Vec<Listener>> {
    let file = File::open(path)?;
    Ok(parse(BufReader::new(file.take(MAX_BYTES))))
}

/// The listeners of one file's text, up to the first row that is not a listener.
fn parse(text: impl BufRead) -> Vec<Listener> {
    let mut found = Vec::new();
    // The first line is the header.
    for line in text.lines().skip(1).take(MAX_ROWS) {
        let Ok(line) = line else { break };
        let Some((addr, port, state)) = parse_row(&line) else {
            continue;
        };
        if state != LISTEN {
            break;
        }
        if let Some(addr) = announced(addr) {
            found.push(Listener::tcp(addr, port));
        }
    }
    found
}

/// `sl local_address rem_address st ...`: the local address, port and state of one row.
fn parse_row(line: &str) -> Option<(IpAddr, u16, u8)> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = fields.next()?;
    let _remote = fields.next()?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let (addr, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some((parse_addr(addr)?, port, state))
}

/// The kernel prints an address as the 32-bit words of its network-order bytes, each in the
/// host's byte order: 8 hex digits for IPv4, 32 for IPv6.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let digits = hex.get(8 * i..8 * i + 8)?;
        Some(u32::from_str_radix(digits, 16).ok()?.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[4 * i..4 * i + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

fn announced(addr: IpAddr) -> Option<IpAddr> {
    match addr {
        IpAddr::V4(a) if a.is_loopback() => None,
        IpAddr::V4(a) => Some(IpAddr::V4(a)),
        IpAddr::V6(a) if a.is_unspecified() => Some(IpAddr::V6(a)),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) if !v4.is_loopback() => Some(IpAddr::V4(v4)),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when \
                          retrnsmt   uid  timeout inode";

    /// A row as the kernel prints it on a little-endian host.
    fn row(slot: u32, local: &str, remote: &str, state: &str) -> String {
        format!(
            "{slot:4}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000     0 \
             0 1147 1 00000000f569b52f 100 0 0 10 0"
        )
    }

    fn le_host() -> bool {
        cfg!(target_endian = "little")
    }

    #[test]
    fn reads_ipv4_listeners_and_stops_at_the_first_other_socket() {
        if !le_host() {
            return;
        }
        let text = [
            HEADER.to_string(),
            row(0, "00000000:0016", "00000000:0000", "0A"), // 0.0.0.0:22
            row(1, "0200640A:1F90", "00000000:0000", "0A"), // 10.100.0.2:8080
            row(2, "0100007F:1388", "00000000:0000", "0A"), // 127.0.0.1:5000, not announced
            row(3, "0200640A:1F90", "0100640A:C350", "01"), // an established connection
            row(4, "0200640A:2382", "00000000:0000", "0A"), // after it: not read
        ]
        .join("\n");
        assert_eq!(
            parse(text.as_bytes()),
            [
                Listener::tcp(Ipv4Addr::UNSPECIFIED, 22),
                Listener::tcp(Ipv4Addr::new(10, 100, 0, 2), 8080),
            ]
        );
    }

    #[test]
    fn reads_ipv6_wildcards_and_mapped_addresses() {
        if !le_host() {
            return;
        }
        let any = "00000000000000000000000000000000";
        let mapped = "0000000000000000FFFF00000200640A"; // ::ffff:10.100.0.2
        let mapped_lo = "0000000000000000FFFF00000100007F"; // ::ffff:127.0.0.1
        let global = "000080FD000000000000000002000000"; // fd80::2
        let loopback = "00000000000000000000000001000000"; // ::1
        let text = [
            HEADER.to_string(),
            row(0, &format!("{any}:1F90"), &format!("{any}:0000"), "0A"),
            row(1, &format!("{mapped}:0050"), &format!("{any}:0000"), "0A"),
            row(
                2,
                &format!("{mapped_lo}:0051"),
                &format!("{any}:0000"),
                "0A",
            ),
            row(3, &format!("{global}:0052"), &format!("{any}:0000"), "0A"),
            row(4, &format!("{loopback}:0053"), &format!("{any}:0000"), "0A"),
        ]
        .join("\n");
        assert_eq!(
            parse(text.as_bytes()),
            [
                Listener::tcp(Ipv6Addr::UNSPECIFIED, 8080),
                Listener::tcp(Ipv4Addr::new(10, 100, 0, 2), 80),
            ]
        );
        assert_eq!(
            parse_addr(global),
            Some(IpAddr::V6("fd80::2".parse().unwrap()))
        );
    }

    #[test]
    fn sock_diag_finds_this_process_listeners() {
        let any = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let lo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = diag_socket().unwrap();
        let found = dump(&socket, AF_INET).expect("the kernel answers sock_diag for TCP");
        let port = any.local_addr().unwrap().port();
        assert!(
            found.contains(&Listener::tcp(Ipv4Addr::UNSPECIFIED, port)),
            "{found:?}"
        );
        let lo_port = lo.local_addr().unwrap().port();
        assert!(!found.iter().any(|l| l.port == lo_port), "{found:?}");
        // What /proc shows agrees.
        let from_proc = read(Path::new(TCP)).unwrap();
        assert!(from_proc.contains(&Listener::tcp(Ipv4Addr::UNSPECIFIED, port)));
    }

    #[test]
    fn skips_rows_it_cannot_read() {
        let text = [
            HEADER,
            "garbage",
            "   0: 0000000:0016 00000000:0000 0A",
            "   1: 00000000:XYZ 00000000:0000 0A",
            "   2: 00000000:0017 00000000:0000 0A",
        ]
        .join("\n");
        assert_eq!(
            parse(text.as_bytes()),
            [Listener::tcp(Ipv4Addr::UNSPECIFIED, 23)]
        );
        assert!(parse("".as_bytes()).is_empty());
        assert!(parse(HEADER.as_bytes()).is_empty());
    }

    #[test]
    fn reads_at_most_a_bounded_number_of_rows() {
        let mut text = vec![HEADER.to_string()];
        text.extend((0..5000).map(|i| row(i, "00000000:0016", "00000000:0000", "0A")));
        assert_eq!(parse(text.join("\n").as_bytes()).len(), MAX_ROWS);
    }

    #[test]
    fn this_hosts_files_parse() {
        // Whatever listens here, scanning the real files must not fail or hang.
        let found = scan();
        assert!(found.iter().all(|l| l.port != 0));
    }
}
