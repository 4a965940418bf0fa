//! The relay data path for a client on the user's own TAP device: the TAP sits in the user's
//! bridge, which a veth connects to a "user" namespace (the user's network, 192.168.77.0/24);
//! the relay is a pool interface.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use rtnetlink::LinkBridge;
use weft_model::MacAddr;

use super::guest::TestGuest;
use super::relay::{
    assert_at_relay, datagram, guest, pool_end, uplink_and_far, ANSWER, FAR, FAR_PORT, HOST_UPLINK,
    RELAY, SILENCE,
};
use super::*;
use crate::{RelayEnd, Relayed};

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const USER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const USER_PORT: u16 = 9999;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 100, 255, 254);
const CLIENT_MAC: MacAddr = MacAddr([0x12, 0xb1, 1, 2, 3, 4]);

fn relayed(dns_direct: Option<Ipv4Addr>) -> Relayed {
    Relayed {
        client: RelayEnd {
            tap: "utap0".into(),
            addr: CLIENT,
            mac: CLIENT_MAC,
            pool: false,
        },
        relay: pool_end("wtap1", RELAY),
        dns_direct,
    }
}

struct Own {
    net: HostNet,
    relay: TestGuest,
    client: TestGuest,
    /// The user's side: listening on USER_PORT and on 53.
    user: UdpSocket,
    user_dns: UdpSocket,
    user_mac: [u8; 6],
    far: UdpSocket,
    _namespaces: [File; 2],
}

async fn set_controller(handle: &Handle, name: &str, bridge: &str) {
    let index = index_of(handle, name).await;
    let bridge = index_of(handle, bridge).await;
    handle
        .link()
        .set(
            rtnetlink::LinkUnspec::new_with_index(index)
                .controller(bridge)
                .build(),
        )
        .execute()
        .await
        .expect("into the bridge");
}

/// The user's bridge `ubr0` with their TAPs and the veth `uv0` to the user namespace, which
/// answers ARP and knows the client's MAC. Returns the namespace and the MAC of its side.
async fn user_bridge(handle: &Handle, taps: &[&str]) -> (File, [u8; 6]) {
    handle
        .link()
        .add(LinkBridge::new("ubr0").build())
        .execute()
        .await
        .expect("add bridge");
    set_up(handle, "ubr0").await;
    for tap in taps {
        crate::tap::create_persistent(tap, crate::tap::POOL_TAP_FLAGS).unwrap();
        set_controller(handle, tap, "ubr0").await;
        set_up(handle, tap).await;
    }
    add_veth(handle, "uv0").await;
    set_controller(handle, "uv0", "ubr0").await;

    let user_ns = new_netns();
    let user_mac = mac_of(handle, "uv0p").await;
    move_to(handle, "uv0p", &user_ns).await;
    within(&user_ns, |user| async move {
        set_up(&user, "uv0p").await;
        add_address(&user, "uv0p", USER, 24).await;
        let index = index_of(&user, "uv0p").await;
        crate::neigh::replace_permanent(&user, index, CLIENT, CLIENT_MAC)
            .await
            .unwrap();
    });
    (user_ns, user_mac)
}

/// A client on the user's TAP `utap0`, relayed through the pool interface on `wtap1`.
async fn own_tap_with_relay(handle: &Handle, dns_direct: Option<Ipv4Addr>) -> Own {
    let (far_ns, far) = uplink_and_far(handle).await;
    let net = hostnet().await;
    net.setup_pool(&pool("up0", 2)).await.unwrap();
    net.attach_pool_interface("wtap1", RELAY).await.unwrap();
    let (user_ns, user_mac) = user_bridge(handle, &["utap0"]).await;
    let user = udp_socket_in(&user_ns, SocketAddrV4::new(USER, USER_PORT));
    let user_dns = udp_socket_in(&user_ns, SocketAddrV4::new(USER, 53));

    net.attach_relayed(&relayed(dns_direct)).await.unwrap();
    let relay = guest(handle, &pool_end("wtap1", RELAY)).await;
    let client = TestGuest::attach_as("utap0", CLIENT_MAC.octets(), user_mac);
    wait_operational(handle, "utap0").await;

    Own {
        net,
        relay,
        client,
        user,
        user_dns,
        user_mac,
        far,
        _namespaces: [far_ns, user_ns],
    }
}

#[test]
fn everything_an_own_tap_client_sends_arrives_at_its_relay() {
    in_netns("own_client_out", |handle| async move {
        let mut w = own_tap_with_relay(&handle, None).await;
        let r = relayed(None);

        // To its own network, the internet and the pool's gateway: at the relay only.
        let sent = w.client.send_udp((CLIENT, 4000), (USER, USER_PORT), b"x");
        assert_at_relay(&mut w.relay, &r, &sent, "to the user's network");
        assert!(datagram(&w.user).is_none(), "nothing in the user's bridge");
        let sent = w.client.send_udp((CLIENT, 4000), (FAR, FAR_PORT), b"x");
        assert_at_relay(&mut w.relay, &r, &sent, "to the internet");
        assert!(datagram(&w.far).is_none(), "nothing on the uplink");
        let sent = w.client.send_ping(CLIENT, GATEWAY, 1);
        assert_at_relay(&mut w.relay, &r, &sent, "to the pool's gateway");
        assert!(w.client.wait_for(SILENCE, |_| true).is_none(), "no answer");

        // ARP goes on into the user's bridge, with the client's own address only.
        w.client.send_arp_request(CLIENT, USER);
        let reply = w
            .client
            .wait_arp_reply(ANSWER, |a| a.sender_ip == USER)
            .expect("the user's network answers ARP");
        assert_eq!(reply.sender_mac, w.user_mac);
        w.client
            .send_arp_request(Ipv4Addr::new(192, 168, 77, 50), USER);
        assert!(w.client.wait_arp_reply(SILENCE, |_| true).is_none());
    });
}

#[test]
fn everything_for_an_own_tap_client_comes_from_its_relay() {
    in_netns("own_client_in", |handle| async move {
        let mut w = own_tap_with_relay(&handle, None).await;

        w.relay.send_ping(FAR, CLIENT, 1);
        let got = w
            .client
            .wait_for(ANSWER, |p| p.is_echo_request(FAR, CLIENT, 1))
            .expect("relay reaches the client");
        assert_eq!(got.dst_mac, CLIENT_MAC.octets());

        // The relay forwards the client's traffic to the internet: masqueraded, though the
        // address is not the pool's, and answered back to the relay.
        w.relay
            .send_udp((CLIENT, 4001), (FAR, FAR_PORT), b"forwarded");
        let from = datagram(&w.far).expect("at the far side");
        assert_eq!(*from.ip(), HOST_UPLINK, "masqueraded");
        w.far.send_to(b"answer", from).unwrap();
        assert!(w
            .relay
            .wait_for(ANSWER, |p| p.is_udp_from(FAR, FAR_PORT, CLIENT))
            .is_some());

        // The host's own packets go to the relay.
        let local = UdpSocket::bind("0.0.0.0:0").unwrap();
        local.send_to(b"from the host", (CLIENT, 7777)).unwrap();
        assert!(w
            .relay
            .wait_for(ANSWER, |p| p.dst == CLIENT && p.proto == 17)
            .is_some());

        // The user's network reaches the client at layer 2 only, where the relay cannot be
        // put in between: such frames are dropped.
        w.user.send_to(b"around the relay", (CLIENT, 7777)).unwrap();
        assert!(w.client.wait_for(SILENCE, |p| p.proto == 17).is_none());
    });
}

#[test]
fn direct_dns_of_an_own_tap_client_goes_to_its_nameserver() {
    in_netns("own_dns", |handle| async move {
        let mut w = own_tap_with_relay(&handle, Some(USER)).await;
        let r = relayed(Some(USER));

        w.client.send_udp((CLIENT, 5353), (USER, 53), b"query");
        let from = datagram(&w.user_dns).expect("the user's nameserver gets the query");
        assert_eq!(*from.ip(), CLIENT);
        w.user_dns.send_to(b"answer", from).unwrap();
        assert!(w
            .client
            .wait_for(ANSWER, |p| p.is_udp_from(USER, 53, CLIENT))
            .is_some());
        assert!(w.relay.wait_for(SILENCE, |p| p.src == CLIENT).is_none());

        // Anything else from the nameserver's side does not reach the client directly.
        w.user.send_to(b"not DNS", (CLIENT, 5353)).unwrap();
        assert!(w
            .client
            .wait_for(SILENCE, |p| p.is_udp_from(USER, USER_PORT, CLIENT))
            .is_none());
        let sent = w.client.send_udp((CLIENT, 5353), (USER, USER_PORT), b"x");
        assert_at_relay(&mut w.relay, &r, &sent, "to the nameserver, not DNS");
    });
}

#[test]
fn a_detached_own_tap_is_the_users_again() {
    in_netns("own_detach", |handle| async move {
        let mut w = own_tap_with_relay(&handle, Some(USER)).await;
        w.net.detach_relayed(&relayed(Some(USER))).await.unwrap();
        assert!(w.net.relayed().await.unwrap().is_empty());
        assert!(crate::nft::relayed_sources().await.unwrap().is_empty());

        w.client
            .send_udp((CLIENT, 4000), (USER, USER_PORT), b"direct");
        assert_eq!(datagram(&w.user).map(|a| *a.ip()), Some(CLIENT));
        assert!(w.relay.wait_for(SILENCE, |p| p.src == CLIENT).is_none());
    });
}

#[test]
fn a_relay_on_an_own_tap_serves_a_pool_client() {
    in_netns("own_relay", |handle| async move {
        const POOL_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 2);
        let (_far_ns, far) = uplink_and_far(&handle).await;
        let net = hostnet().await;
        net.setup_pool(&pool("up0", 1)).await.unwrap();
        let (user_ns, user_mac) = user_bridge(&handle, &["urel0"]).await;
        let user = udp_socket_in(&user_ns, SocketAddrV4::new(USER, USER_PORT));
        let r = Relayed {
            client: pool_end("wtap0", POOL_CLIENT),
            relay: RelayEnd {
                tap: "urel0".into(),
                addr: Ipv4Addr::new(192, 168, 77, 3),
                mac: MacAddr([0x12, 0xb1, 5, 6, 7, 8]),
                pool: false,
            },
            dns_direct: None,
        };
        net.attach_relayed(&r).await.unwrap();
        let mut client = guest(&handle, &r.client).await;
        let mut relay = TestGuest::attach_as("urel0", r.relay.mac.octets(), user_mac);
        wait_operational(&handle, "urel0").await;

        // The client's traffic goes to the relay through the user's bridge port, not
        // into the bridge or the uplink.
        let sent = client.send_udp((POOL_CLIENT, 4000), (FAR, FAR_PORT), b"x");
        let got = relay
            .wait_for(ANSWER, |p| p.src == POOL_CLIENT && p.is_forwarded(&sent))
            .expect("at the relay");
        assert_eq!(got.dst_mac, r.relay.mac.octets());
        assert!(datagram(&far).is_none());
        assert!(datagram(&user).is_none());

        // The relay reaches the client, and its own traffic still goes into the bridge.
        relay.send_ping(FAR, POOL_CLIENT, 1);
        assert!(client
            .wait_for(ANSWER, |p| p.is_echo_request(FAR, POOL_CLIENT, 1))
            .is_some());
        relay.send_udp((r.relay.addr, 4000), (USER, USER_PORT), b"own traffic");
        assert_eq!(datagram(&user).map(|a| *a.ip()), Some(r.relay.addr));

        // The host's packets for the client go out of the relay's port.
        let local = UdpSocket::bind("0.0.0.0:0").unwrap();
        local
            .send_to(b"from the host", (POOL_CLIENT, 7777))
            .unwrap();
        assert!(relay
            .wait_for(ANSWER, |p| p.dst == POOL_CLIENT && p.proto == 17)
            .is_some_and(|p| p.dst_mac == r.relay.mac.octets()));

        net.detach_relayed(&r).await.unwrap();
        assert!(net.relayed().await.unwrap().is_empty());
        assert!(crate::neigh::listing::permanent(&handle)
            .await
            .unwrap()
            .is_empty());
    });
}
