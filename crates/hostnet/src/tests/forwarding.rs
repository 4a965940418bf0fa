//! The data path with real frames: a stand-in guest on a pool TAP, the host namespace with the
//! pool, and a far namespace behind the uplink (a veth pair) that answers pings.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::guest::{TestGuest, GUEST_MAC};
use super::*;

const HOST_UPLINK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const FAR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const A: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 3);
const SPOOFED: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 66);

const ANSWER: Duration = Duration::from_secs(3);
const SILENCE: Duration = Duration::from_millis(800);

/// Tells the host the guest's MAC for `addr` on `tap`, so answers are not held up by ARP.
async fn add_neighbour(handle: &Handle, tap: &str, addr: Ipv4Addr) {
    let index = index_of(handle, tap).await;
    handle
        .neighbours()
        .add(index, IpAddr::V4(addr))
        .link_layer_address(&GUEST_MAC)
        .execute()
        .await
        .expect("add neighbour");
}

#[test]
fn guests_reach_the_uplink_from_their_own_address_only() {
    in_netns("forwarding", |handle| async move {
        let far = new_netns();
        add_veth(&handle, "up0").await;
        let peer = index_of(&handle, "up0p").await;
        handle
            .link()
            .set(
                rtnetlink::LinkUnspec::new_with_index(peer)
                    .setns_by_fd(far.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .expect("move the peer");
        within(&far, |far_handle| async move {
            set_up(&far_handle, "up0p").await;
            add_address(&far_handle, "up0p", FAR, 24).await;
        });
        add_address(&handle, "up0", HOST_UPLINK, 24).await;

        let net = hostnet().await;
        let pool = pool("up0", 2);
        net.setup_pool(&pool).await.unwrap();
        net.attach_pool_interface("wtap0", A).await.unwrap();
        net.attach_pool_interface("wtap1", B).await.unwrap();
        add_neighbour(&handle, "wtap0", A).await;
        add_neighbour(&handle, "wtap0", SPOOFED).await;
        add_neighbour(&handle, "wtap1", B).await;

        let gateway_mac = mac_of(&handle, "wtap0").await;
        let mut guest = TestGuest::attach("wtap0", gateway_mac);
        let mut other = TestGuest::attach("wtap1", mac_of(&handle, "wtap1").await);
        wait_operational(&handle, "wtap0").await;
        wait_operational(&handle, "wtap1").await;

        // Out through the uplink, masqueraded: the far side has no route back to the pool.
        guest.send_ping(A, FAR, 1);
        assert!(
            guest
                .wait_for(ANSWER, |p| p.is_echo_reply(FAR, A, 1))
                .is_some(),
            "guest reaches the far side"
        );

        // A source address the TAP was not given goes nowhere, though the host would route
        // the answer back to this TAP.
        link::replace_host_route(&handle, index_of(&handle, "wtap0").await, "wtap0", SPOOFED)
            .await
            .unwrap();
        guest.send_ping(SPOOFED, FAR, 2);
        assert!(
            guest
                .wait_for(SILENCE, |p| p.is_echo_reply(FAR, SPOOFED, 2))
                .is_none(),
            "spoofed source is dropped"
        );

        // Nothing is forwarded to another instance.
        guest.send_ping(A, B, 3);
        assert!(
            other
                .wait_for(SILENCE, |p| p.proto == 1 && p.src == A)
                .is_none(),
            "instance-to-instance traffic is dropped"
        );

        // After detach the same guest is cut off.
        net.detach_pool_interface("wtap0", A).await.unwrap();
        link::replace_host_route(&handle, index_of(&handle, "wtap0").await, "wtap0", A)
            .await
            .unwrap();
        guest.send_ping(A, FAR, 4);
        assert!(
            guest
                .wait_for(SILENCE, |p| p.is_echo_reply(FAR, A, 4))
                .is_none(),
            "detached interface has no egress"
        );
    });
}

#[test]
fn guests_reach_only_ping_and_dns_on_the_host() {
    in_netns("host_input", |handle| async move {
        let net = hostnet().await;
        let pool = pool("lo", 1);
        net.setup_pool(&pool).await.unwrap();
        net.attach_pool_interface("wtap0", A).await.unwrap();
        add_neighbour(&handle, "wtap0", A).await;
        let gw = pool.gateway;
        let mut guest = TestGuest::attach("wtap0", mac_of(&handle, "wtap0").await);
        wait_operational(&handle, "wtap0").await;

        guest.send_ping(A, gw, 7);
        assert!(
            guest
                .wait_for(ANSWER, |p| p.is_echo_reply(gw, A, 7))
                .is_some(),
            "ping"
        );

        // Nothing listens on either port: the host answers a SYN with a reset when the input
        // chain lets it through, and stays silent when the chain drops it.
        guest.send_syn(A, gw, 40000, 53);
        assert!(
            guest
                .wait_for(ANSWER, |p| p.is_tcp_answer(gw, 53, A))
                .is_some(),
            "DNS port on the gateway is reachable"
        );
        for port in [22, 8080] {
            guest.send_syn(A, gw, 40001, port);
            assert!(
                guest
                    .wait_for(SILENCE, |p| p.is_tcp_answer(gw, port, A))
                    .is_none(),
                "port {port} on the gateway is not reachable"
            );
        }

        // Another address of the host is just as closed.
        add_address(&handle, "lo", Ipv4Addr::new(192, 0, 2, 9), 32).await;
        guest.send_syn(A, Ipv4Addr::new(192, 0, 2, 9), 40002, 53);
        assert!(
            guest
                .wait_for(SILENCE, |p| p.is_tcp_answer(
                    Ipv4Addr::new(192, 0, 2, 9),
                    53,
                    A
                ))
                .is_none(),
            "DNS on another host address is not reachable"
        );
    });
}
