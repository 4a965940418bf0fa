//! The relay data path with pool interfaces and real frames: stand-in guests on the pool's
//! TAPs (a relay, two of its clients and an instance that has nothing to do with them), the
//! host namespace with the pool, and a far namespace behind the uplink.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use weft_model::MacAddr;

use super::guest::{TestGuest, ETHERTYPE_IPV6};
use super::*;
use crate::{RelayEnd, Relayed};

pub(super) const HOST_UPLINK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub(super) const FAR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub(super) const FAR_PORT: u16 = 9999;
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 2);
pub(super) const RELAY: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 3);
const CLIENT2: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 4);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 5);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 100, 255, 254);

pub(super) const ANSWER: Duration = Duration::from_secs(3);
pub(super) const SILENCE: Duration = Duration::from_millis(800);

pub(super) fn pool_end(tap: &str, addr: Ipv4Addr) -> RelayEnd {
    RelayEnd {
        tap: tap.into(),
        addr,
        mac: MacAddr::for_pool_address(addr),
        pool: true,
    }
}

/// The far namespace behind the uplink `up0` (host 192.0.2.1, far 192.0.2.2) with a UDP
/// socket listening there, and strict reverse-path filtering on the host, which the relay
/// path must pass.
pub(super) async fn uplink_and_far(handle: &Handle) -> (File, UdpSocket) {
    let far = new_netns();
    add_veth(handle, "up0").await;
    move_to(handle, "up0p", &far).await;
    within(&far, |far_handle| async move {
        set_up(&far_handle, "up0p").await;
        add_address(&far_handle, "up0p", FAR, 24).await;
    });
    add_address(handle, "up0", HOST_UPLINK, 24).await;
    crate::write_sysctl("net/ipv4/conf/all/rp_filter", "1").unwrap();
    let socket = udp_socket_in(&far, SocketAddrV4::new(FAR, FAR_PORT));
    (far, socket)
}

/// A stand-in guest for `end` that sends to the host side of its TAP.
pub(super) async fn guest(handle: &Handle, end: &RelayEnd) -> TestGuest {
    let host_mac = mac_of(handle, &end.tap).await;
    let guest = TestGuest::attach_as(&end.tap, end.mac.octets(), host_mac);
    wait_operational(handle, &end.tap).await;
    guest
}

/// Whether a datagram reaches `socket` within [`SILENCE`]; returns its source.
pub(super) fn datagram(socket: &UdpSocket) -> Option<SocketAddrV4> {
    let mut buf = [0u8; 2048];
    let deadline = std::time::Instant::now() + SILENCE;
    while std::time::Instant::now() < deadline {
        if let Ok((_, std::net::SocketAddr::V4(from))) = socket.recv_from(&mut buf) {
            return Some(from);
        }
    }
    None
}

/// Asserts that `relay` receives `sent` from the client, forwarded from the host side of the
/// relay's TAP to the relay's MAC.
pub(super) fn assert_at_relay(relay: &mut TestGuest, r: &Relayed, sent: &[u8], what: &str) {
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&sent[16..20]).unwrap());
    let got = relay
        .wait_for(ANSWER, |p| {
            p.src == r.client.addr && p.dst == dst && p.is_forwarded(sent)
        })
        .unwrap_or_else(|| panic!("{what}: not at the relay"));
    assert_eq!(got.dst_mac, r.relay.mac.octets(), "{what}: relay's MAC");
    assert_eq!(got.src_mac, relay.next_hop_mac, "{what}: host's MAC");
}

struct Pool {
    relay: TestGuest,
    client: TestGuest,
    client2: TestGuest,
    other: TestGuest,
    far: UdpSocket,
    _far_ns: File,
}

fn relayed(client: &str, addr: Ipv4Addr, dns_direct: Option<Ipv4Addr>) -> Relayed {
    Relayed {
        client: pool_end(client, addr),
        relay: pool_end("wtap1", RELAY),
        dns_direct,
    }
}

/// Pool wtap0..wtap3: client on wtap0, relay on wtap1, second client on wtap2, an unrelated
/// instance on wtap3.
async fn pool_with_relay(handle: &Handle, dns_direct: Option<Ipv4Addr>) -> (HostNet, Pool) {
    let (far_ns, far) = uplink_and_far(handle).await;
    let net = hostnet().await;
    net.setup_pool(&pool("up0", 4)).await.unwrap();
    net.attach_pool_interface("wtap1", RELAY).await.unwrap();
    net.attach_pool_interface("wtap3", OTHER).await.unwrap();
    // The stand-in guest does not answer ARP; the relay gets its entry from weft.
    let other = index_of(handle, "wtap3").await;
    let other_mac = MacAddr::for_pool_address(OTHER);
    crate::neigh::replace_permanent(handle, other, OTHER, other_mac)
        .await
        .unwrap();
    net.attach_relayed(&relayed("wtap0", CLIENT, dns_direct))
        .await
        .unwrap();
    net.attach_relayed(&relayed("wtap2", CLIENT2, None))
        .await
        .unwrap();

    let world = Pool {
        relay: guest(handle, &pool_end("wtap1", RELAY)).await,
        client: guest(handle, &pool_end("wtap0", CLIENT)).await,
        client2: guest(handle, &pool_end("wtap2", CLIENT2)).await,
        other: guest(handle, &pool_end("wtap3", OTHER)).await,
        far,
        _far_ns: far_ns,
    };
    (net, world)
}

#[test]
fn everything_a_pool_client_sends_arrives_at_its_relay() {
    in_netns("relay_client_out", |handle| async move {
        let (_net, mut w) = pool_with_relay(&handle, None).await;
        let r = relayed("wtap0", CLIENT, None);

        // To the internet: at the relay, unchanged but for the hop, and not on the uplink.
        let sent = w
            .client
            .send_udp((CLIENT, 4000), (FAR, FAR_PORT), b"to the internet");
        assert_at_relay(&mut w.relay, &r, &sent, "UDP to the far side");
        assert!(datagram(&w.far).is_none(), "nothing on the uplink");

        // To the gateway: the host does not answer.
        let sent = w.client.send_ping(CLIENT, GATEWAY, 1);
        assert_at_relay(&mut w.relay, &r, &sent, "ping to the gateway");
        assert!(
            w.client
                .wait_for(SILENCE, |p| p.is_echo_reply(GATEWAY, CLIENT, 1))
                .is_none(),
            "the host does not answer"
        );

        // To other instances, including another client of the same relay.
        let sent = w.client.send_ping(CLIENT, OTHER, 2);
        assert_at_relay(&mut w.relay, &r, &sent, "ping to another instance");
        let sent = w.client.send_ping(CLIENT, CLIENT2, 3);
        assert_at_relay(&mut w.relay, &r, &sent, "ping to the other client");
        assert!(w.other.wait_for(SILENCE, |p| p.src == CLIENT).is_none());
        assert!(w.client2.wait_for(SILENCE, |p| p.src == CLIENT).is_none());

        // The client has the pool's network on-link: the host answers its ARP for the other
        // client and for the relay with the TAP's MAC, so that it sends to them at all.
        let host_mac = mac_of(&handle, "wtap0").await;
        for target in [CLIENT2, RELAY] {
            w.client.send_arp_request(CLIENT, target);
            let reply = w
                .client
                .wait_arp_reply(ANSWER, |a| a.sender_ip == target)
                .unwrap_or_else(|| panic!("no ARP answer for {target}"));
            assert_eq!(reply.sender_mac, host_mac, "{target}");
        }

        // A guest with checksum offload leaves the checksum to the NIC: the relay's NIC gets
        // it complete.
        w.client
            .send_udp_offloaded((CLIENT, 4002), (FAR, FAR_PORT), b"offloaded checksum");
        assert!(w
            .relay
            .wait_for(ANSWER, |p| p.is_udp(CLIENT, FAR, FAR_PORT)
                && p.l4.ends_with(b"offloaded checksum"))
            .expect("offloaded datagram at the relay")
            .has_valid_udp_checksum());

        // Whatever the destination MAC, and nothing but IPv4.
        w.client.next_hop_mac = [0x02, 0, 0, 0, 0, 0x77];
        let sent = w.client.send_ping(CLIENT, FAR, 4);
        assert_at_relay(&mut w.relay, &r, &sent, "ping to an unknown MAC");
        w.client
            .send_frame(w.relay.next_hop_mac, ETHERTYPE_IPV6, &[0x60; 40]);
        assert!(
            w.relay
                .wait_frame(SILENCE, |f| f.ethertype == ETHERTYPE_IPV6)
                .is_none(),
            "IPv6 is dropped"
        );

        // The unrelated instance still reaches the internet and the gateway.
        w.other.send_ping(OTHER, FAR, 5);
        assert!(w
            .other
            .wait_for(ANSWER, |p| p.is_echo_reply(FAR, OTHER, 5))
            .is_some());
        w.other.send_ping(OTHER, GATEWAY, 6);
        assert!(w
            .other
            .wait_for(ANSWER, |p| p.is_echo_reply(GATEWAY, OTHER, 6))
            .is_some());
        assert!(w.relay.wait_for(SILENCE, |p| p.src == OTHER).is_none());
    });
}

#[test]
fn everything_for_a_pool_client_comes_from_its_relay() {
    in_netns("relay_client_in", |handle| async move {
        let (_net, mut w) = pool_with_relay(&handle, None).await;
        let client_mac = MacAddr::for_pool_address(CLIENT).octets();
        let host_mac = mac_of(&handle, "wtap1").await;

        // The relay delivers to the client's address, whatever it thinks the next hop is.
        w.relay.send_ping(FAR, CLIENT, 1);
        let got = w
            .client
            .wait_for(ANSWER, |p| p.is_echo_request(FAR, CLIENT, 1))
            .expect("relay reaches the client");
        assert_eq!(got.dst_mac, client_mac);
        assert!(w.client2.wait_for(SILENCE, |p| p.src == FAR).is_none());
        w.relay
            .send_udp_offloaded((FAR, FAR_PORT), (CLIENT, 4000), b"offloaded");
        assert!(w
            .client
            .wait_for(ANSWER, |p| p.is_udp(FAR, CLIENT, 4000))
            .expect("offloaded datagram at the client")
            .has_valid_udp_checksum());

        // The relay has the client on-link: the host answers its ARP with the TAP's MAC.
        w.relay.send_arp_request(RELAY, CLIENT);
        let reply = w
            .relay
            .wait_arp_reply(ANSWER, |a| a.sender_ip == CLIENT)
            .expect("proxy ARP");
        assert_eq!(reply.sender_mac, host_mac);

        // The relay forwards the client's traffic: masqueraded on the uplink, and the answer
        // comes back to the relay, not to the client.
        w.relay
            .send_udp((CLIENT, 4001), (FAR, FAR_PORT), b"forwarded");
        let from = datagram(&w.far).expect("at the far side");
        assert_eq!(*from.ip(), HOST_UPLINK, "masqueraded");
        w.far.send_to(b"answer", from).unwrap();
        assert!(w
            .relay
            .wait_for(ANSWER, |p| p.is_udp_from(FAR, FAR_PORT, CLIENT))
            .is_some_and(|p| p.dst_mac == MacAddr::for_pool_address(RELAY).octets()));
        assert!(w.client.wait_for(SILENCE, |p| p.src == FAR).is_none());

        w.relay.send_ping(CLIENT, FAR, 2);
        assert!(w
            .relay
            .wait_for(ANSWER, |p| p.is_echo_reply(FAR, CLIENT, 2))
            .is_some());
        assert!(w.client.wait_for(SILENCE, |p| p.src == FAR).is_none());

        // The host's own packets for the client go to the relay too.
        let local = UdpSocket::bind("0.0.0.0:0").unwrap();
        local.send_to(b"from the host", (CLIENT, 7777)).unwrap();
        assert!(w
            .relay
            .wait_for(ANSWER, |p| p.is_udp(GATEWAY, CLIENT, 7777))
            .is_some());
        assert!(w.client.wait_for(SILENCE, |p| p.proto == 17).is_none());

        // The unrelated instance cannot reach the client or the relay.
        w.other.send_ping(OTHER, CLIENT, 3);
        w.other.send_ping(OTHER, RELAY, 4);
        assert!(w.relay.wait_for(SILENCE, |p| p.src == OTHER).is_none());
        assert!(w.client.wait_for(SILENCE, |p| p.src == OTHER).is_none());
    });
}

#[test]
fn clients_of_a_relay_that_is_not_running_have_no_network() {
    in_netns("relay_down", |handle| async move {
        let (net, mut w) = pool_with_relay(&handle, None).await;
        let r = relayed("wtap0", CLIENT, None);

        drop(w.relay);
        assert!(!net.tap_in_use("wtap1").await.unwrap());
        w.client
            .send_udp((CLIENT, 4000), (FAR, FAR_PORT), b"nowhere");
        w.client.send_ping(CLIENT, GATEWAY, 1);
        assert!(datagram(&w.far).is_none(), "nothing on the uplink");
        assert!(w.client.wait_for(SILENCE, |_| true).is_none(), "no answer");
        assert!(w.other.wait_for(SILENCE, |p| p.src == CLIENT).is_none());

        // Once the relay is back, so is the client's traffic, both ways, and proxy ARP.
        let mut relay = guest(&handle, &pool_end("wtap1", RELAY)).await;
        let sent = w.client.send_ping(CLIENT, GATEWAY, 2);
        assert_at_relay(&mut relay, &r, &sent, "after the relay's restart");
        relay.send_ping(FAR, CLIENT, 3);
        assert!(w
            .client
            .wait_for(ANSWER, |p| p.is_echo_request(FAR, CLIENT, 3))
            .is_some());
        relay.send_arp_request(RELAY, CLIENT);
        assert!(relay
            .wait_arp_reply(ANSWER, |a| a.sender_ip == CLIENT)
            .is_some());
    });
}

#[test]
fn direct_dns_reaches_the_nameserver_and_nothing_else_does() {
    in_netns("relay_dns", |handle| async move {
        let (_net, mut w) = pool_with_relay(&handle, Some(GATEWAY)).await;
        let r = relayed("wtap0", CLIENT, Some(GATEWAY));
        // A resolver on the gateway address, as weftd's.
        let resolver = UdpSocket::bind((GATEWAY, 53)).unwrap();
        resolver
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();

        w.client.send_udp((CLIENT, 5353), (GATEWAY, 53), b"query");
        let from = datagram(&resolver).expect("the host's resolver gets the query");
        assert_eq!(*from.ip(), CLIENT);
        resolver.send_to(b"answer", from).unwrap();
        assert!(
            w.client
                .wait_for(ANSWER, |p| p.is_udp_from(GATEWAY, 53, CLIENT))
                .is_some(),
            "the answer comes straight back"
        );
        assert!(w.relay.wait_for(SILENCE, |p| p.src == CLIENT).is_none());

        // TCP to the nameserver: the host answers (nothing listens, so with a reset).
        w.client.send_syn(CLIENT, GATEWAY, 40000, 53);
        assert!(w
            .client
            .wait_for(ANSWER, |p| p.is_tcp_answer(GATEWAY, 53, CLIENT))
            .is_some());

        // Other ports of the nameserver and DNS elsewhere go through the relay.
        let sent = w.client.send_udp((CLIENT, 5353), (GATEWAY, 54), b"x");
        assert_at_relay(&mut w.relay, &r, &sent, "another port");
        let sent = w.client.send_udp((CLIENT, 5353), (FAR, 53), b"x");
        assert_at_relay(&mut w.relay, &r, &sent, "another nameserver");

        // The second client relays its DNS: the resolver never hears from it.
        let r2 = relayed("wtap2", CLIENT2, None);
        let sent = w.client2.send_udp((CLIENT2, 5353), (GATEWAY, 53), b"query");
        assert_at_relay(&mut w.relay, &r2, &sent, "relayed DNS");
        assert!(datagram(&resolver).is_none());
    });
}

#[test]
fn a_detached_pool_client_is_cut_off() {
    in_netns("relay_detached", |handle| async move {
        let (net, mut w) = pool_with_relay(&handle, Some(GATEWAY)).await;
        net.detach_relayed(&relayed("wtap0", CLIENT, Some(GATEWAY)))
            .await
            .unwrap();

        w.client
            .send_udp((CLIENT, 4000), (FAR, FAR_PORT), b"nowhere");
        w.client.send_ping(CLIENT, GATEWAY, 1);
        w.client.send_syn(CLIENT, GATEWAY, 40000, 53);
        w.client.send_ping(CLIENT, CLIENT2, 2);
        assert!(datagram(&w.far).is_none(), "nothing on the uplink");
        assert!(w.client.wait_for(SILENCE, |_| true).is_none(), "no answer");
        assert!(w.relay.wait_for(SILENCE, |p| p.src == CLIENT).is_none());
        assert!(w.client2.wait_for(SILENCE, |p| p.src == CLIENT).is_none());
        w.client.send_arp_request(CLIENT, CLIENT2);
        assert!(
            w.client.wait_arp_reply(SILENCE, |_| true).is_none(),
            "no proxy ARP for a detached client"
        );

        w.relay.send_ping(FAR, CLIENT, 3);
        assert!(w.client.wait_for(SILENCE, |_| true).is_none());

        // The other client keeps its relay.
        let sent = w.client2.send_ping(CLIENT2, FAR, 4);
        assert_at_relay(
            &mut w.relay,
            &relayed("wtap2", CLIENT2, None),
            &sent,
            "the other client",
        );
    });
}
