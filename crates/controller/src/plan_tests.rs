use super::*;

fn pool() -> PoolRules<'static> {
    PoolRules {
        addresses: "10.100.0.0/16".parse().unwrap(),
        tap_prefix: "weft-tap",
    }
}

fn iface(ip: Option<&str>, tap: Option<&str>) -> InterfaceRequest {
    InterfaceRequest {
        ip: ip.map(str::to_string),
        tap_name: tap.map(str::to_string),
        ..Default::default()
    }
}

fn refusal(reqs: &[InterfaceRequest]) -> String {
    plan_interfaces(Some(reqs), &pool()).unwrap_err().message
}

#[test]
fn omitted_list_is_one_pool_interface() {
    let omitted = plan_interfaces(None, &pool()).unwrap();
    let empty_entry = plan_interfaces(Some(&[InterfaceRequest::default()]), &pool()).unwrap();
    assert_eq!(omitted, empty_entry);
    assert_eq!(omitted[0].source, Source::Pool);
    assert!(omitted[0].autoconfig);
}

#[test]
fn counts_outside_one_to_four_are_refused() {
    assert!(refusal(&[]).contains("not 0"));
    assert!(refusal(&vec![InterfaceRequest::default(); 5]).contains("not 5"));
    assert!(plan_interfaces(Some(&vec![InterfaceRequest::default(); 4]), &pool()).is_ok());
}

#[test]
fn r3_exact_texts() {
    assert_eq!(
        refusal(&[iface(Some("172.30.5.2/24"), None)]),
        texts::IP_AND_TAP
    );
    assert_eq!(refusal(&[iface(None, Some("custtap0"))]), texts::IP_AND_TAP);
    assert_eq!(
        refusal(&[iface(Some("10.100.7.7/24"), Some("custtap0"))]),
        texts::IP_FROM_POOL
    );
    assert_eq!(
        refusal(&[iface(Some("10.0.0.1/8"), Some("custtap0"))]),
        texts::IP_FROM_POOL
    );
    assert_eq!(
        refusal(&[iface(Some("172.30.5.2/24"), Some("weft-tap3"))]),
        texts::TAP_FROM_POOL
    );
    assert_eq!(
        refusal(&[iface(Some("172.30.5.2/24"), Some("weft-tap999"))]),
        texts::TAP_FROM_POOL
    );
    // Weft's firewall matches pool devices by prefix, so the whole prefix is the pool's.
    assert_eq!(
        refusal(&[iface(Some("172.30.5.2/24"), Some("weft-tapx"))]),
        texts::TAP_FROM_POOL
    );
}

#[test]
fn bad_values_are_named() {
    let msg = refusal(&[
        iface(None, None),
        iface(Some("172.30.5.2"), Some("custtap0")),
    ]);
    assert!(
        msg.contains("network_interfaces[1].ip '172.30.5.2'"),
        "{msg}"
    );
    let msg = refusal(&[iface(Some("172.30.5.2/24"), Some("a/b"))]);
    assert!(
        msg.contains("network_interfaces[0].tap_name 'a/b'"),
        "{msg}"
    );
    let msg = refusal(&[iface(Some("172.30.5.2/24"), Some("sixteen-chars-xx"))]);
    assert!(msg.contains("longer than 15"), "{msg}");
    let named = InterfaceRequest {
        name: Some("bad name".into()),
        ..Default::default()
    };
    assert!(refusal(&[named]).contains("network_interfaces[0].name 'bad name'"));
    let twice = InterfaceRequest {
        name: Some("a".into()),
        ..Default::default()
    };
    assert!(refusal(&[twice.clone(), twice]).contains("more than one interface"));
    let tap = iface(Some("172.30.5.2/24"), Some("custtap0"));
    assert!(refusal(&[tap.clone(), tap]).contains("tap_name 'custtap0' is given to more"));
    assert_eq!(
        parse_override("gateway", Some("1.2.3"))
            .unwrap_err()
            .message,
        "Invalid gateway '1.2.3': expected an IPv4 address"
    );
}

#[test]
fn autoconfig_defaults_to_true_and_can_be_off() {
    let off = InterfaceRequest {
        autoconfig: Some(false),
        ..Default::default()
    };
    let plan = plan_interfaces(Some(&[InterfaceRequest::default(), off]), &pool()).unwrap();
    assert!(plan[0].autoconfig && !plan[1].autoconfig);
}

fn facts(pool: bool, cidr: &str, autoconfig: bool) -> NetFacts {
    NetFacts {
        pool,
        cidr: Some(cidr.parse().unwrap()),
        autoconfig,
    }
}

fn ip(s: &str) -> Option<Ipv4Addr> {
    Some(s.parse().unwrap())
}

#[test]
fn gateway_derivation_r6() {
    let pool_primary = [
        facts(true, "10.100.0.2/16", true),
        facts(false, "172.30.5.2/24", true),
    ];
    assert_eq!(resolve_gateway(None, &pool_primary), ip("10.100.255.254"));

    // An own primary: the first pool interface still decides.
    let own_primary = [
        facts(false, "172.30.5.2/24", true),
        facts(true, "10.100.0.2/16", true),
    ];
    assert_eq!(resolve_gateway(None, &own_primary), ip("10.100.255.254"));

    // No pool interface: the primary decides.
    let own_only = [
        facts(false, "172.30.5.2/24", true),
        facts(false, "192.0.2.9/31", true),
    ];
    assert_eq!(resolve_gateway(None, &own_only), ip("172.30.5.254"));
    assert_eq!(
        resolve_gateway(None, &[facts(false, "192.0.2.8/31", true)]),
        ip("192.0.2.9")
    );
    assert_eq!(
        resolve_gateway(None, &[facts(false, "192.0.2.9/32", true)]),
        None
    );

    // An override wins.
    assert_eq!(
        resolve_gateway(ip("172.30.5.1"), &pool_primary),
        ip("172.30.5.1")
    );
}

#[test]
fn guest_is_told_one_gateway_and_nothing_without_autoconfig() {
    let ifaces = [
        facts(false, "172.30.5.2/24", true),
        facts(true, "10.100.0.2/16", true),
        facts(true, "10.100.0.3/16", false),
    ];
    let cfgs = netdev_configs(&ifaces, ip("10.100.255.254"), ip("10.100.255.254"));
    let first = cfgs[0].as_ref().unwrap();
    assert_eq!(
        (first.gateway, first.nameserver),
        (None, ip("10.100.255.254"))
    );
    assert_eq!(cfgs[1].as_ref().unwrap().gateway, ip("10.100.255.254"));
    assert_eq!(cfgs[2], None);

    // A gateway in no interface's network goes to the first autoconfig interface.
    let cfgs = netdev_configs(&ifaces, ip("192.0.2.1"), None);
    assert_eq!(cfgs[0].as_ref().unwrap().gateway, ip("192.0.2.1"));
    assert_eq!(cfgs[1].as_ref().unwrap().gateway, None);
}

#[test]
fn relay_names_are_checked_and_default_to_relaying_dns() {
    let relayed = |name: &str| InterfaceRequest {
        relay: Some(RelayRequest {
            name: name.into(),
            relay_dns: None,
        }),
        ..Default::default()
    };
    let plan = plan_interfaces(Some(&[relayed("shield-eth0")]), &pool()).unwrap();
    assert_eq!(plan[0].relay.as_ref().unwrap().name, "shield-eth0");
    assert!(refusal(&[relayed("bad name")]).contains("network_interfaces[0].relay.name 'bad name'"));
    let own = InterfaceRequest {
        relay: relayed("shield-eth0").relay,
        ..iface(Some("172.30.5.2/24"), Some("custtap0"))
    };
    assert!(
        plan_interfaces(Some(&[own]), &pool()).is_ok(),
        "own TAP devices can be relayed"
    );
}

#[test]
fn own_addresses_must_be_host_addresses() {
    for bad in [
        "0.0.0.0/32",
        "255.255.255.255/32",
        "127.0.0.1/8",
        "224.0.0.1/24",
        "240.0.0.1/24",
        "172.30.5.0/24",
        "172.30.5.255/24",
    ] {
        let msg = refusal(&[iface(Some(bad), Some("custtap0"))]);
        assert!(
            msg.starts_with(&format!("Invalid network_interfaces[0].ip '{bad}': ")),
            "{msg}"
        );
    }
    for good in [
        "172.30.5.1/24",
        "192.0.2.0/31",
        "192.0.2.1/31",
        "192.0.2.7/32",
        "169.254.1.1/16",
    ] {
        assert!(
            plan_interfaces(Some(&[iface(Some(good), Some("custtap0"))]), &pool()).is_ok(),
            "{good}"
        );
    }
    let twice = [
        iface(Some("172.30.5.2/24"), Some("a")),
        iface(Some("172.30.5.2/16"), Some("b")),
    ];
    assert!(refusal(&twice).contains("also given to network_interfaces[0]"));
    for bad in ["0.0.0.0", "255.255.255.255", "127.0.0.1", "224.0.0.1"] {
        assert!(parse_override("nameserver", Some(bad)).is_err(), "{bad}");
    }
}

#[test]
fn gateway_is_never_the_instance_itself_nor_pushed_onto_the_wrong_interface() {
    assert_eq!(
        resolve_gateway(None, &[facts(false, "172.30.5.254/24", true)]),
        None
    );
    assert_eq!(
        resolve_gateway(None, &[facts(false, "192.0.2.9/31", true)]),
        None
    );

    // The pool primary holds the gateway but has no autoconfig: nobody is told about it.
    let ifaces = [
        facts(true, "10.100.0.2/16", false),
        facts(false, "172.31.7.2/24", true),
    ];
    let cfgs = netdev_configs(&ifaces, ip("10.100.255.254"), ip("10.100.255.254"));
    assert_eq!(cfgs[0], None);
    assert_eq!(cfgs[1].as_ref().unwrap().gateway, None);

    // An override outside every network goes to the primary only if it has autoconfig.
    let cfgs = netdev_configs(&ifaces, ip("192.0.2.1"), None);
    assert!(cfgs.iter().flatten().all(|c| c.gateway.is_none()));
}
