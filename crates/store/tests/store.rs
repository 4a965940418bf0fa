use std::collections::BTreeMap;

use weft_model::MacAddr;
use weft_store::{Instance, Interface, State, Store, StoreError};

fn instance(uuid: &str, name: &str) -> Instance {
    Instance {
        uuid: uuid.into(),
        account: "acme".into(),
        name: name.into(),
        state: State::Starting,
        image: "base".into(),
        args: vec!["/bin/busybox".into(), "httpd".into()],
        env: BTreeMap::from([("A".into(), "1".into())]),
        memory_mb: 128,
        vcpus: 1,
        gateway: Some("10.100.255.254".parse().unwrap()),
        nameserver: None,
        created_at: "2026-01-01T00:00:00Z".into(),
        pid: None,
        exit_code: None,
        boot_time_us: None,
        net_time_us: None,
        services: Vec::new(),
        service_group: None,
    }
}

fn pool_iface(uuid: &str, instance: &str, name: &str, addr: [u8; 4], tap: &str) -> Interface {
    let ip = format!("{}.{}.{}.{}/16", addr[0], addr[1], addr[2], addr[3]);
    let cidr: weft_model::Ipv4Cidr = ip.parse().unwrap();
    Interface {
        uuid: uuid.into(),
        account: "acme".into(),
        name: name.into(),
        instance: instance.into(),
        index: 0,
        mac: MacAddr::for_pool_address(cidr.addr()),
        ip: Some(cidr),
        tap_name: tap.into(),
        pool: true,
        autoconfig: true,
        relay_name: None,
        relay_dns: true,
    }
}

fn own_iface_with_mac_of(addr: [u8; 4]) -> Interface {
    let mut iface = pool_iface("i2", "u2", "api-eth0", [172, 30, 5, 2], "custtap0");
    iface.pool = false;
    iface.mac = MacAddr::for_pool_address(addr.into());
    iface
}

#[tokio::test]
async fn round_trips_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.db");
    let store = Store::open(&path).await.unwrap();

    let inst = instance("u1", "web");
    let iface = pool_iface("i1", "u1", "web-eth0", [10, 100, 0, 1], "weft-tap0");
    store
        .insert_instance(&inst, std::slice::from_ref(&iface))
        .await
        .unwrap();
    drop(store);

    let store = Store::open(&path).await.unwrap();
    let (got, ifaces) = store.find_instance("acme", "web").await.unwrap().unwrap();
    assert_eq!(got, inst);
    assert_eq!(ifaces, vec![iface.clone()]);
    assert!(store.find_instance("other", "web").await.unwrap().is_none());
    assert_eq!(
        store.interface_on_tap("weft-tap0").await.unwrap(),
        Some(iface)
    );

    store
        .set_state("u1", State::Running, Some(42), None)
        .await
        .unwrap();
    let (got, _) = store.find_instance("acme", "u1").await.unwrap().unwrap();
    assert_eq!((got.state, got.pid), (State::Running, Some(42)));

    store.delete_instance("u1").await.unwrap();
    assert_eq!(store.rows_of("u1").await.unwrap(), 0);
    assert!(store.all_interfaces().await.unwrap().is_empty());
}

#[tokio::test]
async fn uniqueness_is_enforced_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("weft.db")).await.unwrap();
    let first = pool_iface("i1", "u1", "web-eth0", [10, 100, 0, 1], "weft-tap0");
    store
        .insert_instance(&instance("u1", "web"), &[first])
        .await
        .unwrap();

    let cases = [
        (
            "web",
            pool_iface("i2", "u2", "x-eth0", [10, 100, 0, 2], "weft-tap1"),
            "instance name",
        ),
        (
            "api",
            pool_iface("i2", "u2", "web-eth0", [10, 100, 0, 2], "weft-tap1"),
            "interface name",
        ),
        (
            "api",
            pool_iface("i2", "u2", "api-eth0", [10, 100, 0, 2], "weft-tap0"),
            "TAP device",
        ),
        (
            "api",
            pool_iface("i2", "u2", "api-eth0", [10, 100, 0, 1], "weft-tap1"),
            "pool address",
        ),
        ("api", own_iface_with_mac_of([10, 100, 0, 1]), "MAC address"),
    ];
    for (name, iface, what) in cases {
        let err = store
            .insert_instance(&instance("u2", name), &[iface])
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { what: w } if w == what),
            "{what}: {err}"
        );
        // The failed transaction left nothing behind.
        assert_eq!(store.rows_of("u2").await.unwrap(), 0);
    }
}
