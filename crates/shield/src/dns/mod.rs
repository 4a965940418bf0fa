//! The clients' resolver: it answers queries for allowed names by asking the upstream
//! resolver, refuses every other name, and remembers the addresses it gave out so that TCP
//! connections can be checked against them.

mod server;
pub mod upstream;

use std::net::{Ipv4Addr, SocketAddrV4};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

use crate::log::{Decision, Event, Proto};
use crate::policy::normalize_name;
use crate::shield::Shield;

pub use server::serve;

/// The name clients resolve to reach the shield itself (its CA and metrics).
pub const SHIELD_NAME: &str = "weft-shield.internal";

/// A DNS message from a client and where it came from and went to.
pub struct Request<'a> {
    pub bytes: &'a [u8],
    pub client: SocketAddrV4,
    /// The address the client sent to: the answer comes from there.
    pub local: SocketAddrV4,
}

/// The response to a client's message, or None when it deserves none (not DNS at all).
/// Over UDP a response longer than the client takes is sent truncated.
pub async fn respond(shield: &Shield, request: Request<'_>, udp: bool) -> Option<Vec<u8>> {
    let message = Message::from_vec(request.bytes).ok()?;
    if message.message_type() != MessageType::Query {
        return None;
    }
    let (response, offered) = decide(shield, &request, &message).await;
    let bytes = response.to_vec().ok()?;
    if udp && bytes.len() > usize::from(offered) {
        // The client retries over TCP.
        let mut short = header_only(&message, response.response_code());
        short.set_truncated(true);
        return short.to_vec().ok();
    }
    Some(bytes)
}

/// A response with the client's id and question and nothing else.
fn header_only(request: &Message, code: ResponseCode) -> Message {
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(code)
        .add_queries(request.queries().iter().cloned());
    response
}

/// The response, and the UDP payload size the client offered (512 without EDNS).
async fn decide(shield: &Shield, request: &Request<'_>, message: &Message) -> (Message, u16) {
    let offered = message
        .extensions()
        .as_ref()
        .map(|edns| edns.max_payload().clamp(512, upstream::EDNS_PAYLOAD))
        .unwrap_or(512);
    let reply = |code, name: Option<&str>, decision, reason: &str| {
        shield.log.record(&Event {
            decision,
            client: *request.client.ip(),
            proto: Proto::Dns,
            name,
            dst: request.local,
            reason,
        });
        header_only(message, code)
    };

    if message.op_code() != OpCode::Query {
        return (
            reply(ResponseCode::NotImp, None, Decision::Deny, "not-a-query"),
            offered,
        );
    }
    let [query] = message.queries() else {
        return (
            reply(
                ResponseCode::FormErr,
                None,
                Decision::Deny,
                "not-one-question",
            ),
            offered,
        );
    };
    let Some(name) = normalize_name(&query.name().to_ascii()) else {
        return (
            reply(ResponseCode::Refused, None, Decision::Deny, "bad-name"),
            offered,
        );
    };
    if query.query_class() != DNSClass::IN {
        return (
            reply(
                ResponseCode::Refused,
                Some(&name),
                Decision::Deny,
                "not-class-in",
            ),
            offered,
        );
    }

    if name == SHIELD_NAME {
        let mut response = reply(
            ResponseCode::NoError,
            Some(&name),
            Decision::Allow,
            "shield-name",
        );
        if query.query_type() == RecordType::A {
            let a = RData::A(A(*request.local.ip()));
            response.add_answer(Record::from_rdata(query.name().clone(), 60, a));
        }
        return (response, offered);
    }
    if !shield.config.policy.name_allowed(&name) {
        return (
            reply(
                ResponseCode::Refused,
                Some(&name),
                Decision::Deny,
                "name-not-allowed",
            ),
            offered,
        );
    }

    let upstream = shield.upstream_dns;
    let answer = match upstream::resolve(upstream, query, message.checking_disabled()).await {
        Ok(answer) => answer,
        Err(err) => {
            crate::log::say(&format!("dns upstream: {err}"));
            return (
                reply(
                    ResponseCode::ServFail,
                    Some(&name),
                    Decision::Deny,
                    "upstream-failed",
                ),
                offered,
            );
        }
    };

    // Every A record of the answer, the ends of CNAME chains included, belongs to the name.
    let addresses: Vec<(Ipv4Addr, u32)> = answer
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(A(ip)) => Some((*ip, r.ttl())),
            _ => None,
        })
        .collect();
    shield.resolved.remember(&name, &addresses);

    let mut response = reply(
        answer.response_code(),
        Some(&name),
        Decision::Allow,
        "allowed-name",
    );
    response.add_answers(answer.answers().iter().cloned());
    response.add_name_servers(answer.name_servers().iter().cloned());
    if message.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(upstream::EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    (response, offered)
}
