use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::str::FromStr;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::Name;

use super::*;

/// Two accounts: 10.0.0.1 and 10.0.0.2 are acme's, 10.0.0.3 is other's.
struct Accounts;

#[async_trait::async_trait]
impl Directory for Accounts {
    async fn knows(&self, client: Ipv4Addr) -> bool {
        client.octets()[..3] == [10, 0, 0] && (1..=3).contains(&client.octets()[3])
    }

    async fn lookup(&self, client: Ipv4Addr, name: &str) -> Option<Ipv4Addr> {
        let acme = HashMap::from([("web", "10.0.0.1"), ("db", "10.0.0.2")]);
        let other = HashMap::from([("web", "10.0.0.3")]);
        let table = if client.octets()[3] == 3 { other } else { acme };
        table.get(name).map(|a| a.parse().unwrap())
    }
}

fn query(name: &str, kind: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(4242).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_str(name).unwrap(), kind));
    m.to_vec().unwrap()
}

async fn ask(bytes: &[u8], client: &str) -> Message {
    let counters = Counters::default();
    let reply = answer(
        bytes,
        client.parse().unwrap(),
        &Accounts,
        &[],
        Duration::from_millis(50),
        &counters,
    )
    .await
    .expect("an answer");
    let reply = Message::from_vec(&reply).unwrap();
    assert_eq!(reply.id(), u16::from_be_bytes([bytes[0], bytes[1]]));
    reply
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers().iter().map(|r| r.data().to_string()).collect()
}

#[tokio::test]
async fn internal_names_are_per_account() {
    let reply = ask(&query("db.internal.", RecordType::A), "10.0.0.1").await;
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert_eq!(addresses(&reply), ["10.0.0.2"]);

    let reply = ask(&query("WEB.Internal", RecordType::A), "10.0.0.3").await;
    assert_eq!(addresses(&reply), ["10.0.0.3"]);

    let reply = ask(&query("db.internal.", RecordType::A), "10.0.0.3").await;
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);

    let reply = ask(&query("web.internal.", RecordType::AAAA), "10.0.0.1").await;
    assert_eq!(
        (reply.response_code(), reply.answers().len()),
        (ResponseCode::NoError, 0)
    );

    for odd in ["internal.", "a.web.internal."] {
        let reply = ask(&query(odd, RecordType::A), "10.0.0.1").await;
        assert_eq!(reply.response_code(), ResponseCode::NXDomain, "{odd}");
    }
}

#[tokio::test]
async fn strangers_are_refused_and_garbage_is_counted() {
    let reply = ask(&query("web.internal.", RecordType::A), "192.0.2.7").await;
    assert_eq!(reply.response_code(), ResponseCode::Refused);
    let reply = ask(&query("example.com.", RecordType::A), "192.0.2.7").await;
    assert_eq!(reply.response_code(), ResponseCode::Refused);

    // No upstream answers here: a forwarded question fails cleanly.
    let reply = ask(&query("example.com.", RecordType::A), "10.0.0.1").await;
    assert_eq!(reply.response_code(), ResponseCode::ServFail);

    let counters = Counters::default();
    let client = "10.0.0.1".parse().unwrap();
    let garbage = [0x12, 0x34, 0xff, 0xff, 0, 9];
    let reply = answer(
        &garbage,
        client,
        &Accounts,
        &[],
        Duration::from_millis(10),
        &counters,
    )
    .await;
    let reply = Message::from_vec(&reply.unwrap()).unwrap();
    assert_eq!(
        (reply.id(), reply.response_code()),
        (0x1234, ResponseCode::FormErr)
    );
    assert_eq!(
        answer(
            &[1],
            client,
            &Accounts,
            &[],
            Duration::from_millis(10),
            &counters
        )
        .await,
        None
    );
    assert_eq!(
        counters
            .malformed
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[tokio::test]
async fn forwards_to_upstream_and_relays_its_answer() {
    // A stand-in upstream on loopback that answers every question with NXDOMAIN.
    let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        let (n, from) = upstream.recv_from(&mut buf).await.unwrap();
        let request = Message::from_vec(&buf[..n]).unwrap();
        let reply = Message::error_msg(request.id(), request.op_code(), ResponseCode::NXDomain);
        upstream
            .send_to(&reply.to_vec().unwrap(), from)
            .await
            .unwrap();
    });
    let counters = Counters::default();
    let bytes = query("nowhere.example.", RecordType::A);
    let reply = answer(
        &bytes,
        "10.0.0.2".parse().unwrap(),
        &Accounts,
        &[addr],
        Duration::from_secs(2),
        &counters,
    )
    .await
    .unwrap();
    let reply = Message::from_vec(&reply).unwrap();
    assert_eq!(
        (reply.id(), reply.response_code()),
        (4242, ResponseCode::NXDomain)
    );
    assert_eq!(
        counters
            .forwarded
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
