//! Answering one DNS message: internal names from the directory, the rest upstream.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

use crate::{Counters, Directory, ZONE};

/// How long answers about instances may be cached: instances come and go.
const INTERNAL_TTL: u32 = 5;

/// The answer to `query` from `client`, or `None` when nothing should be sent back (a
/// message that is not a query).
pub async fn answer(
    query: &[u8],
    client: Ipv4Addr,
    directory: &dyn Directory,
    upstream: &[SocketAddr],
    timeout: Duration,
    counters: &Counters,
) -> Option<Vec<u8>> {
    let request = match Message::from_vec(query) {
        Ok(m) if m.message_type() == MessageType::Query => m,
        Ok(_) => return None,
        Err(_) => {
            Counters::bump(&counters.malformed);
            // Answer FORMERR when at least the id can be read, as resolvers do.
            if query.len() < 2 {
                return None;
            }
            let id = u16::from_be_bytes([query[0], query[1]]);
            return error(id, OpCode::Query, ResponseCode::FormErr);
        }
    };
    let refuse = |code| error(request.id(), request.op_code(), code);

    let [question] = request.queries() else {
        Counters::bump(&counters.malformed);
        return refuse(ResponseCode::FormErr);
    };
    if request.op_code() != OpCode::Query {
        Counters::bump(&counters.refused);
        return refuse(ResponseCode::NotImp);
    }

    // Only instances may use the resolver; anyone else would make it an open resolver.
    if !directory.knows(client).await {
        Counters::bump(&counters.refused);
        return refuse(ResponseCode::Refused);
    }

    let name = question.name().to_lowercase().to_ascii();
    let name = if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    };
    if name == ZONE || name.ends_with(&format!(".{ZONE}")) {
        let instance = name
            .strip_suffix(ZONE)
            .unwrap_or_default()
            .trim_end_matches('.');
        return internal(&request, instance, client, directory, counters).await;
    }

    match forward(query, request.id(), upstream, timeout).await {
        Some(reply) => {
            Counters::bump(&counters.forwarded);
            Some(reply)
        }
        None => {
            Counters::bump(&counters.failed);
            refuse(ResponseCode::ServFail)
        }
    }
}

async fn internal(
    request: &Message,
    instance: &str,
    client: Ipv4Addr,
    directory: &dyn Directory,
    counters: &Counters,
) -> Option<Vec<u8>> {
    let question = &request.queries()[0];
    let mut reply = response(request);
    reply.set_authoritative(true);

    // Only `<instance>.internal` names exist; deeper names and the zone itself do not.
    let found = if instance.is_empty() || instance.contains('.') {
        None
    } else {
        directory.lookup(client, instance).await
    };
    Counters::bump(&counters.internal);
    match found {
        None => {
            reply.set_response_code(ResponseCode::NXDomain);
        }
        Some(addr) => {
            // Other record types of an existing name get an empty answer (NODATA).
            if question.query_type() == RecordType::A {
                let rdata = RData::A(A(addr));
                reply.add_answer(Record::from_rdata(
                    question.name().clone(),
                    INTERNAL_TTL,
                    rdata,
                ));
            }
        }
    }
    reply.to_vec().ok()
}

/// Sends the question to each upstream resolver in turn until one answers with the same id.
async fn forward(
    query: &[u8],
    id: u16,
    upstream: &[SocketAddr],
    timeout: Duration,
) -> Option<Vec<u8>> {
    for server in upstream {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let Ok(socket) = tokio::net::UdpSocket::bind(bind).await else {
            continue;
        };
        if socket.connect(server).await.is_err() || socket.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        let deadline = tokio::time::Instant::now() + timeout;
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

fn response(request: &Message) -> Message {
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true);
    for q in request.queries() {
        reply.add_query(q.clone());
    }
    reply
}

fn error(id: u16, op_code: OpCode, code: ResponseCode) -> Option<Vec<u8>> {
    Message::error_msg(id, op_code, code).to_vec().ok()
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
