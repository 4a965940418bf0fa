//! A stand-in guest for data-path tests: it holds a pool TAP open the way a VMM does and
//! writes and reads raw Ethernet frames (behind the 10-byte virtio-net header that
//! `IFF_VNET_HDR` adds).

use std::fs::File;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::tap;

const VNET_HDR_LEN: usize = 10;
const ETH_LEN: usize = 14;

pub(crate) const GUEST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];

pub(crate) struct TestGuest {
    file: File,
    gateway_mac: [u8; 6],
}

/// An IPv4 packet the guest received.
pub(crate) struct Received {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub l4: Vec<u8>,
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

impl TestGuest {
    pub(crate) fn attach(tap_name: &str, gateway_mac: [u8; 6]) -> TestGuest {
        let file = tap::open(tap_name, tap::POOL_TAP_FLAGS).expect("attach to the TAP");
        TestGuest { file, gateway_mac }
    }

    fn send_ip(&mut self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) {
        let total = (20 + l4.len()) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        let sum = checksum(&[&ip]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());

        let mut frame = vec![0u8; VNET_HDR_LEN];
        frame.extend_from_slice(&self.gateway_mac);
        frame.extend_from_slice(&GUEST_MAC);
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(l4);
        self.file.write_all(&frame).expect("write frame");
    }

    pub(crate) fn send_ping(&mut self, src: Ipv4Addr, dst: Ipv4Addr, id: u16) {
        let mut icmp = vec![8, 0, 0, 0];
        icmp.extend_from_slice(&id.to_be_bytes());
        icmp.extend_from_slice(&[0, 1]);
        icmp.extend_from_slice(b"weftping");
        let sum = checksum(&[&icmp]);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        self.send_ip(src, dst, 1, &icmp);
    }

    pub(crate) fn send_syn(&mut self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) {
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&sport.to_be_bytes());
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        let sum = checksum(&[&pseudo, &tcp]);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        self.send_ip(src, dst, 6, &tcp);
    }

    /// The first IPv4 packet within `timeout` that `wanted` accepts.
    pub(crate) fn wait_for(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&Received) -> bool,
    ) -> Option<Received> {
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
            if let Some(packet) = parse(&buf[..n]) {
                if wanted(&packet) {
                    return Some(packet);
                }
            }
        }
    }
}

fn parse(frame: &[u8]) -> Option<Received> {
    let eth = frame.get(VNET_HDR_LEN..)?;
    if eth.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = eth.get(ETH_LEN..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let octets = |at: usize| -> Option<Ipv4Addr> {
        let b: [u8; 4] = ip.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    };
    Some(Received {
        src: octets(12)?,
        dst: octets(16)?,
        proto: *ip.get(9)?,
        l4: ip.get(ihl..)?.to_vec(),
    })
}

impl Received {
    pub(crate) fn is_echo_reply(&self, from: Ipv4Addr, to: Ipv4Addr, id: u16) -> bool {
        self.proto == 1
            && self.src == from
            && self.dst == to
            && self.l4.first() == Some(&0)
            && self.l4.get(4..6) == Some(&id.to_be_bytes()[..])
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
}
