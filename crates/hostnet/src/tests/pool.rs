use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::*;
use crate::{tap, DeviceKind, HostNetError};

const A: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 3);

fn chains_of(table: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    table["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("chain"))
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("type"), s("hook"))
        })
        .collect()
}

/// Checks the state that `setup_pool` promises for each TAP.
async fn assert_pool_ready(handle: &Handle, net: &HostNet, pool: &PoolNet) {
    let mut tap_indexes = Vec::new();
    for n in 0..pool.tap_count {
        let name = pool.tap_name(n);
        assert_eq!(
            net.device_kind(&name).await.unwrap(),
            DeviceKind::Tap,
            "{name}"
        );
        assert!(is_up(handle, &name).await, "{name} is up");
        assert!(
            !net.tap_in_use(&name).await.unwrap(),
            "{name} is not in use"
        );

        let index = index_of(handle, &name).await;
        let addrs = link::addresses(handle, index).await.unwrap();
        assert_eq!(
            addrs,
            vec![(pool.gateway, 32, true)],
            "{name} has only the gateway /32"
        );
        tap_indexes.push(index);
    }

    let routes = link::main_routes(handle).await.unwrap();
    assert!(
        routes
            .iter()
            .all(|r| !r.oif.is_some_and(|i| tap_indexes.contains(&i))),
        "no route through a pool TAP: {routes:?}"
    );

    let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(forwarding.trim(), "1");

    let table = list_table().expect("table ip weft exists");
    let chains = chains_of(&table);
    let expected: BTreeSet<_> = [
        ("forward", "filter", "forward"),
        ("input", "filter", "input"),
        ("postrouting", "nat", "postrouting"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(chains, expected);

    let set = table["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.get("set"))
        .expect("set guests");
    assert_eq!(set["name"], "guests");
    assert_eq!(set["type"], serde_json::json!(["ifname", "ipv4_addr"]));
}

#[test]
fn setup_pool_creates_taps_with_the_gateway_and_is_idempotent() {
    in_netns("setup_pool", |handle| async move {
        add_veth(&handle, "up0").await;
        let net = hostnet().await;
        let pool = pool("up0", 3);

        net.setup_pool(&pool).await.expect("first setup");
        assert_pool_ready(&handle, &net, &pool).await;
        let links = link_count(&handle).await;

        net.setup_pool(&pool).await.expect("second setup");
        assert_pool_ready(&handle, &net, &pool).await;
        assert_eq!(
            link_count(&handle).await,
            links,
            "no new links on the second run"
        );

        // The rules name this pool's devices and uplink.
        let table = serde_json::to_string(&list_table().unwrap()).unwrap();
        assert!(table.contains("\"wtap*\""), "{table}");
        assert!(table.contains("\"up0\""), "{table}");
        assert!(table.contains("masquerade"), "{table}");
    });
}

#[test]
fn setup_pool_keeps_attached_interfaces() {
    in_netns("setup_keeps", |_handle| async move {
        let net = hostnet().await;
        let pool = pool("lo", 2);
        net.setup_pool(&pool).await.unwrap();
        net.attach_pool_interface("wtap1", A).await.unwrap();

        net.setup_pool(&pool).await.unwrap();

        let expected = vec![("wtap1".to_string(), A)];
        assert_eq!(net.guest_elements().await.unwrap(), expected);
        assert_eq!(net.guest_routes(&pool).await.unwrap(), expected);
    });
}

#[test]
fn setup_pool_refuses_a_pool_name_taken_by_another_device() {
    in_netns("setup_refuses", |handle| async move {
        add_veth(&handle, "wtap1").await;
        let net = hostnet().await;

        let err = net.setup_pool(&pool("lo", 2)).await.unwrap_err();
        assert!(
            matches!(&err, HostNetError::NotTap { name, kind }
                if name == "wtap1" && *kind == DeviceKind::Other("veth".into())),
            "{err}"
        );
    });
}

#[test]
fn setup_pool_refuses_bad_settings() {
    in_netns("setup_bad", |_handle| async move {
        let net = hostnet().await;
        for bad in [
            PoolNet {
                tap_prefix: String::new(),
                ..pool("lo", 1)
            },
            PoolNet {
                tap_prefix: "t*".into(),
                ..pool("lo", 1)
            },
            PoolNet {
                tap_prefix: "averylongprefix".into(),
                ..pool("lo", 10)
            },
            PoolNet {
                gateway: Ipv4Addr::new(192, 0, 2, 1),
                ..pool("lo", 1)
            },
            PoolNet {
                uplink: String::new(),
                ..pool("lo", 1)
            },
        ] {
            let err = net.setup_pool(&bad).await.unwrap_err();
            assert!(
                matches!(err, HostNetError::InvalidPool(_)),
                "{bad:?}: {err}"
            );
        }
        assert!(list_table().is_none(), "nothing installed");
        assert_eq!(net.device_kind("t0").await.unwrap(), DeviceKind::Missing);
    });
}

#[test]
fn attach_and_detach_are_idempotent() {
    in_netns("attach_detach", |handle| async move {
        let net = hostnet().await;
        let pool = pool("lo", 2);
        net.setup_pool(&pool).await.unwrap();

        net.attach_pool_interface("wtap0", A).await.unwrap();
        net.attach_pool_interface("wtap0", A).await.unwrap();
        net.attach_pool_interface("wtap1", B).await.unwrap();
        let both = vec![("wtap0".to_string(), A), ("wtap1".to_string(), B)];
        assert_eq!(net.guest_routes(&pool).await.unwrap(), both);
        assert_eq!(net.guest_elements().await.unwrap(), both);

        let tap0 = index_of(&handle, "wtap0").await;
        let routes = link::main_routes(&handle).await.unwrap();
        let route = routes.iter().find(|r| r.dst == A).unwrap();
        assert_eq!((route.prefix, route.oif), (32, Some(tap0)));
        assert_eq!(
            route.scope,
            rtnetlink::packet_route::route::RouteScope::Link
        );

        net.detach_pool_interface("wtap0", A).await.unwrap();
        let rest = vec![("wtap1".to_string(), B)];
        assert_eq!(net.guest_routes(&pool).await.unwrap(), rest);
        assert_eq!(net.guest_elements().await.unwrap(), rest);

        net.detach_pool_interface("wtap0", A)
            .await
            .expect("second detach");
        net.detach_pool_interface("wtap9", A)
            .await
            .expect("detach from a missing TAP");
        assert_eq!(net.guest_elements().await.unwrap(), rest);

        let err = net.attach_pool_interface("wtap9", A).await.unwrap_err();
        assert!(
            matches!(&err, HostNetError::NoDevice(n) if n == "wtap9"),
            "{err}"
        );
    });
}

#[test]
fn attach_moves_an_address_between_taps() {
    in_netns("attach_moves", |_handle| async move {
        let net = hostnet().await;
        let pool = pool("lo", 2);
        net.setup_pool(&pool).await.unwrap();

        net.attach_pool_interface("wtap0", A).await.unwrap();
        net.attach_pool_interface("wtap1", A).await.unwrap();

        assert_eq!(
            net.guest_routes(&pool).await.unwrap(),
            vec![("wtap1".to_string(), A)]
        );
    });
}

#[test]
fn device_kind_tells_taps_from_other_links() {
    in_netns("device_kind", |handle| async move {
        let net = hostnet().await;
        net.setup_pool(&pool("lo", 1)).await.unwrap();
        tap::create_persistent("tun7", libc::IFF_TUN | libc::IFF_NO_PI).unwrap();
        tap::create_persistent("tap7", libc::IFF_TAP | libc::IFF_NO_PI).unwrap();
        add_veth(&handle, "veth7").await;

        assert_eq!(net.device_kind("wtap0").await.unwrap(), DeviceKind::Tap);
        assert_eq!(net.device_kind("tap7").await.unwrap(), DeviceKind::Tap);
        assert_eq!(net.device_kind("tun7").await.unwrap(), DeviceKind::Tun);
        assert_eq!(
            net.device_kind("veth7").await.unwrap(),
            DeviceKind::Other("veth".into())
        );
        assert_eq!(
            net.device_kind("lo").await.unwrap(),
            DeviceKind::Other(String::new())
        );
        assert_eq!(
            net.device_kind("nothere").await.unwrap(),
            DeviceKind::Missing
        );
        assert_eq!(net.device_kind("").await.unwrap(), DeviceKind::Missing);
        assert_eq!(
            net.device_kind("muchtoolongname0").await.unwrap(),
            DeviceKind::Missing
        );

        // Asking does not open the device, so it does not take carrier.
        assert!(!net.tap_in_use("tap7").await.unwrap());
    });
}

#[test]
fn tap_in_use_follows_an_open_file() {
    in_netns("tap_in_use", |_handle| async move {
        let net = hostnet().await;
        net.setup_pool(&pool("lo", 1)).await.unwrap();
        tap::create_persistent("down7", tap::POOL_TAP_FLAGS).unwrap();
        assert!(!net.tap_in_use("wtap0").await.unwrap());

        let file = tap::open("wtap0", tap::POOL_TAP_FLAGS).expect("attach like a VMM");
        assert!(net.tap_in_use("wtap0").await.unwrap());
        drop(file);
        assert!(!net.tap_in_use("wtap0").await.unwrap());

        // The signal does not depend on the device being up.
        let file = tap::open("down7", tap::POOL_TAP_FLAGS).unwrap();
        assert!(net.tap_in_use("down7").await.unwrap());
        drop(file);
        assert!(!net.tap_in_use("down7").await.unwrap());

        assert!(!net.tap_in_use("nothere").await.unwrap());
        assert!(matches!(
            net.tap_in_use("lo").await,
            Err(HostNetError::NotTap { .. })
        ));
    });
}

#[test]
fn teardown_removes_everything_and_is_idempotent() {
    in_netns("teardown", |handle| async move {
        let net = hostnet().await;
        let pool = pool("lo", 3);
        let before = link_count(&handle).await;
        net.setup_pool(&pool).await.unwrap();
        net.attach_pool_interface("wtap2", A).await.unwrap();

        net.teardown_pool(&pool).await.expect("teardown");
        for n in 0..pool.tap_count {
            assert_eq!(
                net.device_kind(&pool.tap_name(n)).await.unwrap(),
                DeviceKind::Missing
            );
        }
        assert!(list_table().is_none(), "table removed");
        assert_eq!(link_count(&handle).await, before);
        assert!(net.guest_elements().await.unwrap().is_empty());
        assert!(net.guest_routes(&pool).await.unwrap().is_empty());

        net.teardown_pool(&pool).await.expect("second teardown");
        net.detach_pool_interface("wtap2", A)
            .await
            .expect("detach after teardown");
    });
}
