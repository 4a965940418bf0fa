//! A stand-in guest for data-path tests: it holds a TAP open the way a VMM does and writes and
//! reads raw Ethernet frames (behind the 10-byte virtio-net header that `IFF_VNET_HDR` adds).

use std::fs::File;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::tap;

const VNET_HDR_LEN: usize = 10;
const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
pub(crate) const BROADCAST: [u8; 6] = [0xff; 6];

pub(crate) const GUEST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];

pub(crate) struct TestGuest {
    file: File,
    /// The guest NIC's MAC, the source of every frame it sends.
    mac: [u8; 6],
    /// The destination of the IPv4 frames it sends.
    pub next_hop_mac: [u8; 6],
}

/// An Ethernet frame the guest received.
pub(crate) struct Frame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub ethertype: u16,
    pub payload: Vec<u8>,
}

/// An IPv4 packet the guest received.
pub(crate) struct Received {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub l4: Vec<u8>,
    /// The whole IP packet.
    pub ip: Vec<u8>,
}

/// An ARP reply the guest received: who has which address.
pub(crate) struct ArpReply {
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in chunks {
        for pair in chunk.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet around `l4`, with TTL 64.
fn ip_packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(l4);
    ip
}

fn with_l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &mut [u8], at: usize) {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    let sum = checksum(&[&pseudo, l4]);
    l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

impl TestGuest {
    /// A guest with [`GUEST_MAC`] that sends IPv4 to `next_hop_mac`.
    pub(crate) fn attach(tap_name: &str, next_hop_mac: [u8; 6]) -> TestGuest {
        TestGuest::attach_as(tap_name, GUEST_MAC, next_hop_mac)
    }

    pub(crate) fn attach_as(tap_name: &str, mac: [u8; 6], next_hop_mac: [u8; 6]) -> TestGuest {
        let file = tap::open(tap_name, tap::POOL_TAP_FLAGS).expect("attach to the TAP");
        TestGuest {
            file,
            mac,
            next_hop_mac,
        }
    }

    pub(crate) fn send_frame(&mut self, dst_mac: [u8; 6], ethertype: u16, payload: &[u8]) {
        self.send_frame_with([0u8; VNET_HDR_LEN], dst_mac, ethertype, payload);
    }

    fn send_frame_with(
        &mut self,
        vnet_hdr: [u8; VNET_HDR_LEN],
        dst_mac: [u8; 6],
        ethertype: u16,
        payload: &[u8],
    ) {
        let mut frame = vnet_hdr.to_vec();
        frame.extend_from_slice(&dst_mac);
        frame.extend_from_slice(&self.mac);
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(payload);
        self.file.write_all(&frame).expect("write frame");
    }

    /// Sends an IPv4 packet to the next hop and returns it.
    fn send_ip(&mut self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let ip = ip_packet(src, dst, proto, l4);
        self.send_frame(self.next_hop_mac, ETHERTYPE_IPV4, &ip);
        ip
    }

    pub(crate) fn send_ping(&mut self, src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> Vec<u8> {
        let mut icmp = vec![8, 0, 0, 0];
        icmp.extend_from_slice(&id.to_be_bytes());
        icmp.extend_from_slice(&[0, 1]);
        icmp.extend_from_slice(b"weftping");
        let sum = checksum(&[&icmp]);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        self.send_ip(src, dst, 1, &icmp)
    }

    pub(crate) fn send_syn(&mut self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) {
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&sport.to_be_bytes());
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        with_l4_checksum(src, dst, 6, &mut tcp, 16);
        self.send_ip(src, dst, 6, &tcp);
    }

    pub(crate) fn send_udp(
        &mut self,
        (src, sport): (Ipv4Addr, u16),
        (dst, dport): (Ipv4Addr, u16),
        data: &[u8],
    ) -> Vec<u8> {
        let mut udp = Vec::new();
        udp.extend_from_slice(&sport.to_be_bytes());
        udp.extend_from_slice(&dport.to_be_bytes());
        udp.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(data);
        with_l4_checksum(src, dst, 17, &mut udp, 6);
        self.send_ip(src, dst, 17, &udp)
    }

    /// Sends a UDP datagram whose checksum the "NIC" is to complete, as a guest with checksum
    /// offload does: the checksum field holds the pseudo-header sum and the virtio-net header
    /// says where the checksum starts and goes.
    pub(crate) fn send_udp_offloaded(
        &mut self,
        (src, sport): (Ipv4Addr, u16),
        (dst, dport): (Ipv4Addr, u16),
        data: &[u8],
    ) {
        let len = (8 + data.len()) as u16;
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&len.to_be_bytes());
        let partial = !checksum(&[&pseudo]);

        let mut udp = Vec::new();
        udp.extend_from_slice(&sport.to_be_bytes());
        udp.extend_from_slice(&dport.to_be_bytes());
        udp.extend_from_slice(&len.to_be_bytes());
        udp.extend_from_slice(&partial.to_be_bytes());
        udp.extend_from_slice(data);
        let ip = ip_packet(src, dst, 17, &udp);

        // flags NEEDS_CSUM, no GSO; csum_start and csum_offset in the guest's (x86: little)
        // byte order.
        let mut hdr = [0u8; VNET_HDR_LEN];
        hdr[0] = 1;
        hdr[6..8].copy_from_slice(&((ETH_LEN + 20) as u16).to_le_bytes());
        hdr[8..10].copy_from_slice(&6u16.to_le_bytes());
        self.send_frame_with(hdr, self.next_hop_mac, ETHERTYPE_IPV4, &ip);
    }

    /// Broadcasts "who has `target`? tell `sender`".
    pub(crate) fn send_arp_request(&mut self, sender: Ipv4Addr, target: Ipv4Addr) {
        let mut arp = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
        arp.extend_from_slice(&self.mac);
        arp.extend_from_slice(&sender.octets());
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&target.octets());
        self.send_frame(BROADCAST, ETHERTYPE_ARP, &arp);
    }

    /// The first frame within `timeout` that `wanted` accepts.
    pub(crate) fn wait_frame(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&Frame) -> bool,
    ) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let mut pfd = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is one valid pollfd for the duration of the call, matching nfds 1.
            let ready = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) };
            if ready <= 0 {
                continue;
            }
            let n = self.file.read(&mut buf).expect("read frame");
            if let Some(frame) = parse_frame(&buf[..n]) {
                if wanted(&frame) {
                    return Some(frame);
                }
            }
        }
    }

    /// The first IPv4 packet within `timeout` that `wanted` accepts.
    pub(crate) fn wait_for(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&Received) -> bool,
    ) -> Option<Received> {
        let frame = self.wait_frame(timeout, |f| parse_ip(f).is_some_and(|p| wanted(&p)))?;
        parse_ip(&frame)
    }

    /// The first ARP reply within `timeout` that `wanted` accepts.
    pub(crate) fn wait_arp_reply(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&ArpReply) -> bool,
    ) -> Option<ArpReply> {
        let frame = self.wait_frame(timeout, |f| parse_arp_reply(f).is_some_and(|a| wanted(&a)))?;
        parse_arp_reply(&frame)
    }
}

fn parse_frame(frame: &[u8]) -> Option<Frame> {
    let eth = frame.get(VNET_HDR_LEN..)?;
    Some(Frame {
        dst_mac: eth.get(0..6)?.try_into().ok()?,
        src_mac: eth.get(6..12)?.try_into().ok()?,
        ethertype: u16::from_be_bytes(eth.get(12..14)?.try_into().ok()?),
        payload: eth.get(ETH_LEN..)?.to_vec(),
    })
}

fn parse_ip(frame: &Frame) -> Option<Received> {
    if frame.ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &frame.payload;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes(ip.get(2..4)?.try_into().ok()?));
    let octets = |at: usize| -> Option<Ipv4Addr> {
        let b: [u8; 4] = ip.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    };
    Some(Received {
        dst_mac: frame.dst_mac,
        src_mac: frame.src_mac,
        src: octets(12)?,
        dst: octets(16)?,
        proto: *ip.get(9)?,
        l4: ip.get(ihl..total)?.to_vec(),
        ip: ip.get(..total)?.to_vec(),
    })
}

fn parse_arp_reply(frame: &Frame) -> Option<ArpReply> {
    let arp = &frame.payload;
    if frame.ethertype != ETHERTYPE_ARP || arp.get(6..8)? != [0, 2] {
        return None;
    }
    let ip: [u8; 4] = arp.get(14..18)?.try_into().ok()?;
    Some(ArpReply {
        sender_mac: arp.get(8..14)?.try_into().ok()?,
        sender_ip: Ipv4Addr::from(ip),
    })
}

impl Received {
    pub(crate) fn is_echo_reply(&self, from: Ipv4Addr, to: Ipv4Addr, id: u16) -> bool {
        self.is_icmp(from, to, 0, id)
    }

    pub(crate) fn is_echo_request(&self, from: Ipv4Addr, to: Ipv4Addr, id: u16) -> bool {
        self.is_icmp(from, to, 8, id)
    }

    fn is_icmp(&self, from: Ipv4Addr, to: Ipv4Addr, kind: u8, id: u16) -> bool {
        self.proto == 1
            && self.src == from
            && self.dst == to
            && self.l4.first() == Some(&kind)
            && self.l4.get(4..6) == Some(&id.to_be_bytes()[..])
    }

    /// A UDP datagram from `from` to `to:port`.
    pub(crate) fn is_udp(&self, from: Ipv4Addr, to: Ipv4Addr, port: u16) -> bool {
        self.proto == 17
            && self.src == from
            && self.dst == to
            && self.l4.get(2..4) == Some(&port.to_be_bytes()[..])
    }

    /// A UDP datagram from `from:port` to `to`.
    pub(crate) fn is_udp_from(&self, from: Ipv4Addr, port: u16, to: Ipv4Addr) -> bool {
        self.proto == 17
            && self.src == from
            && self.dst == to
            && self.l4.get(0..2) == Some(&port.to_be_bytes()[..])
    }

    /// A TCP segment from `from:port` to `to` with RST or SYN+ACK: any answer to a SYN.
    pub(crate) fn is_tcp_answer(&self, from: Ipv4Addr, port: u16, to: Ipv4Addr) -> bool {
        self.proto == 6
            && self.src == from
            && self.dst == to
            && self.l4.get(0..2) == Some(&port.to_be_bytes()[..])
            && self
                .l4
                .get(13)
                .is_some_and(|flags| flags & 0x04 != 0 || flags & 0x12 == 0x12)
    }

    /// Whether this is a UDP datagram with a complete, valid checksum.
    pub(crate) fn has_valid_udp_checksum(&self) -> bool {
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&self.src.octets());
        pseudo.extend_from_slice(&self.dst.octets());
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(self.l4.len() as u16).to_be_bytes());
        self.proto == 17
            && self.l4.get(6..8) != Some(&[0, 0][..])
            && checksum(&[&pseudo, &self.l4]) == 0
    }

    /// Whether this is `sent` as a router passes it on: one hop less, checksum adjusted,
    /// everything else as it was.
    pub(crate) fn is_forwarded(&self, sent: &[u8]) -> bool {
        let mut expected = sent.to_vec();
        expected[8] -= 1;
        expected[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum(&[&expected[..20]]);
        expected[10..12].copy_from_slice(&sum.to_be_bytes());
        self.ip == expected
    }
}
