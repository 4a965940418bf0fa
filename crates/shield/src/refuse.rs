//! Traffic to ports the shield does not serve. Such packets are local too (the any-address
//! route), but the kernel cannot answer a SYN from an address that is not its own, so a
//! client would wait for its connect to time out. The shield watches for them on raw
//! sockets: it logs and counts them and answers each TCP SYN with a reset, which the client
//! sees at once as "connection refused". Other UDP is logged and counted, then dropped.

use std::collections::HashMap;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::log::{Decision, Event, Proto};
use crate::shield::Shield;

/// A flow (client, destination, protocol) is logged at most once in this time; every packet
/// of it is still counted.
const RELOG_AFTER: Duration = Duration::from_secs(60);
const MAX_RECENT: usize = 4096;

// Classic BPF opcodes (linux/filter.h).
const LD_H_ABS: u16 = 0x28;
const LD_B_IND: u16 = 0x50;
const LD_H_IND: u16 = 0x48;
const LDX_B_MSH: u16 = 0xb1;
const AND_K: u16 = 0x54;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

/// Keeps TCP segments with SYN and without ACK to ports other than 53, 80 and 443. The
/// program sees the IP header first; X holds the header's length.
fn tcp_filter() -> Vec<SockFilter> {
    vec![
        SockFilter::new(LD_H_ABS, 0, 0, 6),    // 0: fragment field
        SockFilter::new(JSET_K, 8, 0, 0x1fff), // 1: a later fragment: drop
        SockFilter::new(LDX_B_MSH, 0, 0, 0),   // 2: X = IP header length
        SockFilter::new(LD_B_IND, 0, 0, 13),   // 3: TCP flags
        SockFilter::new(AND_K, 0, 0, 0x12),    // 4: SYN and ACK bits
        SockFilter::new(JEQ_K, 0, 4, 0x02),    // 5: not a bare SYN: drop
        SockFilter::new(LD_H_IND, 0, 0, 2),    // 6: destination port
        SockFilter::new(JEQ_K, 2, 0, 53),      // 7: served: drop
        SockFilter::new(JEQ_K, 1, 0, 80),      // 8
        SockFilter::new(JEQ_K, 0, 1, 443),     // 9: not served: keep
        SockFilter::new(RET_K, 0, 0, 0),       // 10: drop
        SockFilter::new(RET_K, 0, 0, 0xffff),  // 11: keep
    ]
}

/// Keeps UDP datagrams to ports other than 53.
fn udp_filter() -> Vec<SockFilter> {
    vec![
        SockFilter::new(LD_H_ABS, 0, 0, 6),    // 0: fragment field
        SockFilter::new(JSET_K, 3, 0, 0x1fff), // 1: a later fragment: drop
        SockFilter::new(LDX_B_MSH, 0, 0, 0),   // 2: X = IP header length
        SockFilter::new(LD_H_IND, 0, 0, 2),    // 3: destination port
        SockFilter::new(JEQ_K, 0, 1, 53),      // 4: DNS: drop
        SockFilter::new(RET_K, 0, 0, 0),       // 5: drop
        SockFilter::new(RET_K, 0, 0, 0xffff),  // 6: keep
    ]
}

fn watcher(
    nic: &str,
    protocol: Protocol,
    filter: &[SockFilter],
) -> std::io::Result<AsyncFd<Socket>> {
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(protocol))?;
    socket.attach_filter(filter)?;
    socket.bind_device(Some(nic.as_bytes()))?;
    socket.set_nonblocking(true)?;
    // SAFETY: the Socket owns its descriptor, which stays open and the same until the
    // AsyncFd (which owns the Socket) is dropped.
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// The raw sockets, made before the shield reports itself ready.
pub struct Refuser {
    tcp: AsyncFd<Socket>,
    udp: AsyncFd<Socket>,
    /// Sends resets with their full IP header (IPPROTO_RAW), from the client's destination.
    sender: Socket,
}

impl Refuser {
    pub fn new(nic: &str) -> std::io::Result<Refuser> {
        let sender = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )?;
        sender.set_nonblocking(true)?;
        Ok(Refuser {
            tcp: watcher(nic, Protocol::TCP, &tcp_filter())?,
            udp: watcher(nic, Protocol::UDP, &udp_filter())?,
            sender,
        })
    }

    pub async fn run(self, shield: Arc<Shield>) {
        let mut recent = Recent::default();
        let mut tcp_buf = vec![0u8; 2048];
        let mut udp_buf = vec![0u8; 2048];
        loop {
            let (packet, tcp) = tokio::select! {
                n = receive(&self.tcp, &mut tcp_buf) => (&tcp_buf[..n], true),
                n = receive(&self.udp, &mut udp_buf) => (&udp_buf[..n], false),
            };
            let Some(packet) = parse(packet, tcp) else {
                continue;
            };
            if !tcp && late_upstream_reply(&packet, shield.upstream_dns) {
                continue;
            }
            if tcp {
                let reset = reset_for(&packet);
                let to = SockAddr::from(SocketAddrV4::new(packet.src, 0));
                let _ = self.sender.send_to(&reset, &to);
            }
            let proto = if tcp { Proto::Tcp } else { Proto::Udp };
            let event = Event {
                decision: Decision::Deny,
                client: packet.src,
                proto,
                name: None,
                dst: SocketAddrV4::new(packet.dst, packet.dport),
                reason: "port-not-allowed",
            };
            if recent.first_in_a_while(packet.src, event.dst, tcp) {
                shield.log.record(&event);
            } else {
                shield.log.count_only(&event);
            }
        }
    }
}

/// A reply of the shield's own upstream resolver that came after the shield stopped waiting
/// for it: not a client's packet, so neither logged nor counted.
fn late_upstream_reply(packet: &Packet, upstream: SocketAddrV4) -> bool {
    packet.src == *upstream.ip() && packet.sport == upstream.port()
}

async fn receive(fd: &AsyncFd<Socket>, buf: &mut [u8]) -> usize {
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return 0;
        };
        match guard.try_io(|inner| inner.get_ref().read(buf)) {
            Ok(Ok(n)) => return n,
            Ok(Err(_)) => return 0,
            Err(_would_block) => continue,
        }
    }
}

/// What the shield needs of a packet to log and refuse it.
#[derive(Debug, PartialEq, Eq)]
struct Packet {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    /// Sequence space the segment takes: its data, plus one for SYN and for FIN.
    seg_len: u32,
}

fn parse(ip: &[u8], tcp: bool) -> Option<Packet> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let l4 = ip.get(ihl..total)?;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    if !tcp {
        let ports = l4.get(..4)?;
        return Some(Packet {
            src,
            dst,
            sport: u16::from_be_bytes([ports[0], ports[1]]),
            dport: u16::from_be_bytes([ports[2], ports[3]]),
            seq: 0,
            seg_len: 0,
        });
    }
    if l4.len() < 20 {
        return None;
    }
    let flags = l4[13];
    if flags & 0x12 != 0x02 {
        return None;
    }
    let data_offset = usize::from(l4[12] >> 4) * 4;
    let data = l4.len().saturating_sub(data_offset) as u32;
    Some(Packet {
        src,
        dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
        seg_len: data + 1 + u32::from(flags & 0x01),
    })
}

/// An RST+ACK from the SYN's destination back to its source, IP header included.
fn reset_for(syn: &Packet) -> Vec<u8> {
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&syn.dport.to_be_bytes());
    tcp[2..4].copy_from_slice(&syn.sport.to_be_bytes());
    tcp[8..12].copy_from_slice(&syn.seq.wrapping_add(syn.seg_len).to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x14; // RST, ACK
    let mut pseudo = Vec::with_capacity(32);
    pseudo.extend_from_slice(&syn.dst.octets());
    pseudo.extend_from_slice(&syn.src.octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(&tcp);
    tcp[16..18].copy_from_slice(&checksum(&pseudo).to_be_bytes());

    let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&syn.dst.octets());
    ip.extend_from_slice(&syn.src.octets());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Flows logged lately, so that a client retrying or streaming does not flood the console.
#[derive(Default)]
struct Recent {
    seen: HashMap<(Ipv4Addr, SocketAddrV4, bool), Instant>,
}

impl Recent {
    fn first_in_a_while(&mut self, client: Ipv4Addr, dst: SocketAddrV4, tcp: bool) -> bool {
        let now = Instant::now();
        if self.seen.len() >= MAX_RECENT {
            self.seen
                .retain(|_, at| now.duration_since(*at) < RELOG_AFTER);
            if self.seen.len() >= MAX_RECENT {
                self.seen.clear();
            }
        }
        match self.seen.get(&(client, dst, tcp)) {
            Some(at) if now.duration_since(*at) < RELOG_AFTER => false,
            _ => {
                self.seen.insert((client, dst, tcp), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn() -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 44, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 2, 203, 0, 113, 9,
        ];
        let mut tcp = vec![
            0xc3,
            0x50,
            0,
            22,
            0,
            0,
            0x10,
            0,
            0,
            0,
            0,
            0,
            6 << 4,
            0x02,
            0xff,
            0xff,
        ];
        tcp.extend_from_slice(&[0, 0, 0, 0, 2, 4, 5, 0xb4]);
        p.extend_from_slice(&tcp);
        p
    }

    #[test]
    fn late_replies_of_the_upstream_are_not_clients() {
        let reply = Packet {
            src: Ipv4Addr::new(10, 100, 255, 254),
            dst: Ipv4Addr::new(10, 100, 0, 2),
            sport: 53,
            dport: 55212,
            seq: 0,
            seg_len: 0,
        };
        let upstream = SocketAddrV4::new(Ipv4Addr::new(10, 100, 255, 254), 53);
        assert!(late_upstream_reply(&reply, upstream));
        let client = Packet {
            src: Ipv4Addr::new(10, 100, 0, 3),
            ..reply
        };
        assert!(!late_upstream_reply(&client, upstream));
        let other_port = Packet {
            sport: 5353,
            ..reply
        };
        assert!(!late_upstream_reply(&other_port, upstream));
    }

    #[test]
    fn answers_a_syn_with_a_valid_reset() {
        let packet = parse(&syn(), true).unwrap();
        assert_eq!(packet.src, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(packet.dst, Ipv4Addr::new(203, 0, 113, 9));
        assert_eq!((packet.sport, packet.dport), (50000, 22));
        assert_eq!((packet.seq, packet.seg_len), (0x1000, 1));

        let reset = reset_for(&packet);
        assert_eq!(reset.len(), 40);
        assert_eq!(checksum(&reset[..20]), 0, "IP header checksum");
        assert_eq!(
            &reset[12..16],
            &[203, 0, 113, 9],
            "from the original destination"
        );
        let tcp = &reset[20..];
        assert_eq!(&tcp[0..4], &[0, 22, 0xc3, 0x50]);
        assert_eq!(&tcp[8..12], &0x1001u32.to_be_bytes());
        assert_eq!(tcp[13], 0x14);
        let mut pseudo = reset[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        pseudo.extend_from_slice(tcp);
        assert_eq!(checksum(&pseudo), 0, "TCP checksum");
    }

    #[test]
    fn ignores_what_is_not_a_bare_syn() {
        let mut ack = syn();
        ack[20 + 13] = 0x12;
        assert_eq!(parse(&ack, true), None);
        assert_eq!(parse(&syn()[..30], true), None);
        assert_eq!(parse(b"short", true), None);
    }

    #[test]
    fn logs_a_flow_once_in_a_while() {
        let mut recent = Recent::default();
        let dst: SocketAddrV4 = "203.0.113.9:22".parse().unwrap();
        let client = Ipv4Addr::new(10, 0, 0, 2);
        assert!(recent.first_in_a_while(client, dst, true));
        assert!(!recent.first_in_a_while(client, dst, true));
        assert!(recent.first_in_a_while(client, dst, false));
    }
}
