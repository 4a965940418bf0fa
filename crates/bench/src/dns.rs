//! Just enough DNS for the shield benchmark: an A query, and the answer of a server that
//! knows one domain.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{bail, Context as _};

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

fn put_name(out: &mut Vec<u8>, name: &str) {
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// Reads an uncompressed name at `pos`; returns it (lower case) and the position after it.
fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = *msg.get(pos)? as usize;
        if len == 0 {
            return Some((labels.join("."), pos + 1));
        }
        if len & 0xc0 != 0 {
            return None;
        }
        let label = msg.get(pos + 1..pos + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += 1 + len;
    }
}

/// Skips a possibly compressed name.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)? as usize;
        if len == 0 {
            return Some(pos + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Some(pos + 2);
        }
        pos += 1 + len;
    }
}

fn u16_at(msg: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]))
}

/// The answer to `query` of a server for which every name under `domain` (and `domain`
/// itself) has the single address `addr`; other names do not exist. `None` for what is not
/// a query.
pub fn answer(query: &[u8], domain: &str, addr: Ipv4Addr) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16_at(query, 4)? != 1 {
        return None;
    }
    let (name, end) = read_name(query, 12)?;
    let qtype = u16_at(query, end)?;
    let question = &query[12..end + 4];
    let ours = name == domain || name.ends_with(&format!(".{domain}"));
    let with_record = ours && qtype == TYPE_A;

    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&query[0..2]);
    // QR, opcode 0, AA, RD as asked, RA; NXDOMAIN for names not ours.
    out.push(0x84 | (query[2] & 0x01));
    out.push(0x80 | if ours { 0 } else { 3 });
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::from(with_record).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    if with_record {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&300u32.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&addr.octets());
    }
    Some(out)
}

/// Asks `server` for the A record of `name` over UDP, with a few tries.
pub fn resolve(server: SocketAddr, name: &str) -> anyhow::Result<Ipv4Addr> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    let id: u16 = rand_id();
    let mut query = Vec::with_capacity(64);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    put_name(&mut query, name);
    query.extend_from_slice(&TYPE_A.to_be_bytes());
    query.extend_from_slice(&CLASS_IN.to_be_bytes());

    let mut buf = [0u8; 1500];
    for _ in 0..5 {
        socket.send_to(&query, server)?;
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let msg = &buf[..n];
        if u16_at(msg, 0) != Some(id) {
            continue;
        }
        return first_a(msg).with_context(|| format!("no A record for {name} from {server}"));
    }
    bail!("{server} did not answer for {name}")
}

fn first_a(msg: &[u8]) -> Option<Ipv4Addr> {
    let answers = u16_at(msg, 6)?;
    let mut pos = skip_name(msg, 12)? + 4;
    for _ in 0..answers {
        pos = skip_name(msg, pos)?;
        let rtype = u16_at(msg, pos)?;
        let len = u16_at(msg, pos + 8)? as usize;
        let data = msg.get(pos + 10..pos + 10 + len)?;
        if rtype == TYPE_A && len == 4 {
            return Some(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        pos += 10 + len;
    }
    None
}

fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ (nanos >> 16)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        put_name(&mut q, name);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    #[test]
    fn answers_names_of_the_domain_only() {
        let addr = Ipv4Addr::new(192, 0, 2, 1);
        let a = answer(&query("Plain.Bench.Test", TYPE_A), "bench.test", addr).unwrap();
        assert_eq!(&a[0..2], &[0x12, 0x34]);
        assert_eq!(first_a(&a), Some(addr));

        let other = answer(&query("example.com", TYPE_A), "bench.test", addr).unwrap();
        assert_eq!(other[3] & 0x0f, 3);
        assert_eq!(first_a(&other), None);

        let aaaa = answer(&query("x.bench.test", 28), "bench.test", addr).unwrap();
        assert_eq!(aaaa[3] & 0x0f, 0);
        assert_eq!(first_a(&aaaa), None);
    }
}
