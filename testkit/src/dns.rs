//! A DNS client for tests: one A question over UDP or TCP to a given resolver, with short
//! timeouts, run on whatever thread (and so network namespace) calls it.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

pub use hickory_proto::op::ResponseCode;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

#[derive(Debug)]
pub struct Answer {
    /// None when nothing answered.
    pub code: Option<ResponseCode>,
    pub addrs: Vec<Ipv4Addr>,
    pub truncated: bool,
}

impl From<Message> for Answer {
    fn from(message: Message) -> Answer {
        let addrs = message
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        Answer {
            code: Some(message.response_code()),
            addrs,
            truncated: message.truncated(),
        }
    }
}

/// Asks `resolver` for the A records of `name`, over TCP or UDP.
pub fn query(resolver: Ipv4Addr, name: &str, tcp: bool) -> Answer {
    let question = query_bytes(name, RecordType::A);
    let reply = if tcp {
        ask_tcp(resolver, &question)
    } else {
        ask_udp(resolver, &question)
    };
    reply
        .and_then(|bytes| Message::from_vec(&bytes).ok())
        .map(Answer::from)
        .unwrap_or(Answer {
            code: None,
            addrs: vec![],
            truncated: false,
        })
}

fn query_bytes(name: &str, kind: RecordType) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
    message.to_vec().unwrap()
}

/// A connected socket takes answers only from the address it sent to: an answer from any
/// other source would not count.
fn ask_udp(resolver: Ipv4Addr, query: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect((resolver, 53)).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    socket.send(query).ok()?;
    let mut buf = vec![0u8; 65535];
    let n = socket.recv(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

fn ask_tcp(resolver: Ipv4Addr, query: &[u8]) -> Option<Vec<u8>> {
    let addr = SocketAddr::from((resolver, 53));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).ok()?;
    Some(buf)
}
