//! What attaching a relay installs on the host, and that detaching and teardown take all of
//! it back, read from the kernel.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::relay::pool_end;
use super::*;
use crate::neigh::listing;
use crate::nft::relay::{client_in, client_out, relay_for, NETDEV_TABLE};
use crate::policy::{self, Rule, KEEP_PRIORITY, RELAY_PRIORITY};
use crate::{HostNetError, Relayed};

const A: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 2);
const R: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 3);
const B: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 4);
const R2: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 5);
const NS: Ipv4Addr = Ipv4Addr::new(10, 100, 255, 254);

/// Everything of weft's relay path that the kernel holds, with device names.
#[derive(Debug, PartialEq, Eq)]
struct Installed {
    relayed: Vec<Relayed>,
    chains: BTreeSet<String>,
    permanent: BTreeSet<(String, Ipv4Addr, [u8; 6])>,
    proxies: BTreeSet<(String, Ipv4Addr)>,
    rules: Vec<Rule>,
    table_routes: BTreeSet<(u32, Option<Ipv4Addr>, Option<String>)>,
    guests: Vec<(String, Ipv4Addr)>,
    relayed_set: BTreeSet<Ipv4Addr>,
    host_routes: BTreeSet<(String, Ipv4Addr)>,
    /// Devices that answer ARP for addresses routed elsewhere.
    proxy_arp: BTreeSet<String>,
}

fn netdev_chains() -> BTreeSet<String> {
    let out = std::process::Command::new(crate::nft::nft_program())
        .args(["-j", "list", "table", "netdev", NETDEV_TABLE])
        .output()
        .expect("run nft");
    if !out.status.success() {
        return BTreeSet::new();
    }
    let table: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    table["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["chain"]["name"].as_str())
        .map(str::to_string)
        .collect()
}

async fn installed(handle: &Handle, net: &HostNet) -> Installed {
    let names = link::link_names(handle, |_| true).await.unwrap();
    let name = |index: u32| names.get(&index).cloned().unwrap_or_default();
    let routes = link::main_routes(handle).await.unwrap();
    Installed {
        relayed: net.relayed().await.unwrap(),
        chains: netdev_chains(),
        permanent: listing::permanent(handle)
            .await
            .unwrap()
            .into_iter()
            .map(|n| (name(n.index), n.addr, n.mac.unwrap().octets()))
            .collect(),
        proxies: listing::proxies(handle)
            .await
            .unwrap()
            .into_iter()
            .map(|n| (name(n.index), n.addr))
            .collect(),
        rules: policy::rules(handle).await.unwrap(),
        table_routes: policy::relay_routes(handle)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.table, r.gateway, r.oif.map(name)))
            .collect(),
        guests: net.guest_elements().await.unwrap(),
        relayed_set: crate::nft::relayed_sources()
            .await
            .unwrap()
            .into_iter()
            .collect(),
        host_routes: routes
            .iter()
            .filter(|r| r.prefix == 32)
            .filter_map(|r| Some((name(r.oif?), r.dst)))
            .collect(),
        proxy_arp: names
            .values()
            .filter(|tap| {
                std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{tap}/proxy_arp"))
                    .is_ok_and(|v| v.trim() == "1")
            })
            .cloned()
            .collect(),
    }
}

fn relayed(
    client: &str,
    addr: Ipv4Addr,
    relay: (&str, Ipv4Addr),
    dns: Option<Ipv4Addr>,
) -> Relayed {
    Relayed {
        client: pool_end(client, addr),
        relay: pool_end(relay.0, relay.1),
        dns_direct: dns,
    }
}

fn keep(to: Ipv4Addr, from: Option<Ipv4Addr>, iif: Option<&str>, sport: Option<(u8, u16)>) -> Rule {
    Rule {
        priority: KEEP_PRIORITY,
        to,
        from,
        iif: iif.map(str::to_string),
        sport,
        table: 254,
    }
}

fn redirect(to: Ipv4Addr, table: u32) -> Rule {
    Rule {
        priority: RELAY_PRIORITY,
        to,
        from: None,
        iif: None,
        sport: None,
        table,
    }
}

fn strings<const N: usize>(items: [String; N]) -> BTreeSet<String> {
    items.into_iter().collect()
}

#[test]
fn attach_installs_the_whole_path_once_and_detach_takes_it_back() {
    in_netns("relay_state", |handle| async move {
        let net = hostnet().await;
        let pool = pool("lo", 4);
        net.setup_pool(&pool).await.unwrap();
        net.attach_pool_interface("wtap1", R).await.unwrap();
        let before = installed(&handle, &net).await;

        let a = relayed("wtap0", A, ("wtap1", R), Some(NS));
        let b = relayed("wtap2", B, ("wtap1", R), None);
        net.attach_relayed(&a).await.unwrap();
        net.attach_relayed(&b).await.unwrap();
        let table = policy::relay_table(index_of(&handle, "wtap1").await);
        let mac = |addr| weft_model::MacAddr::for_pool_address(addr).octets();

        let both = installed(&handle, &net).await;
        assert_eq!(both.relayed, vec![a.clone(), b.clone()]);
        assert_eq!(
            both.chains,
            strings([
                client_in("wtap0"),
                client_out("wtap0"),
                relay_for("wtap0"),
                client_in("wtap2"),
                client_out("wtap2"),
                relay_for("wtap2"),
            ])
        );
        let permanent: BTreeSet<_> = [("wtap1", R), ("wtap0", A), ("wtap2", B)]
            .into_iter()
            .map(|(tap, addr)| (tap.to_string(), addr, mac(addr)))
            .collect();
        assert_eq!(both.permanent, permanent);
        let proxies: BTreeSet<_> = [A, B].map(|a| ("wtap1".to_string(), a)).into();
        assert_eq!(both.proxies, proxies);
        let mut rules = vec![
            keep(A, None, Some("wtap1"), None),
            keep(A, Some(NS), None, Some((17, 53))),
            keep(A, Some(NS), None, Some((6, 53))),
            redirect(A, table),
            keep(B, None, Some("wtap1"), None),
            redirect(B, table),
        ];
        rules.sort();
        assert_eq!(both.rules, rules);
        let route = (table, Some(R), Some("wtap1".to_string()));
        assert_eq!(both.table_routes, [route.clone()].into());
        let guests: Vec<_> = [("wtap0", A), ("wtap1", A), ("wtap1", R), ("wtap1", B)]
            .map(|(t, a)| (t.to_string(), a))
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(both.guests, guests);
        assert_eq!(both.relayed_set, [A, B].into());
        let host_routes: BTreeSet<_> = [("wtap0", A), ("wtap1", R), ("wtap2", B)]
            .map(|(t, a)| (t.to_string(), a))
            .into();
        assert_eq!(both.host_routes, host_routes);
        assert_eq!(
            both.proxy_arp,
            strings(["wtap0".to_string(), "wtap2".to_string()])
        );

        // Attaching again changes nothing; weftd's restart keeps it all.
        net.attach_relayed(&a).await.unwrap();
        net.attach_relayed(&b).await.unwrap();
        assert_eq!(installed(&handle, &net).await, both);
        net.setup_pool(&pool).await.unwrap();
        assert_eq!(installed(&handle, &net).await, both);

        // One client goes: the relay's table stays for the other.
        net.detach_relayed(&b).await.unwrap();
        let one = installed(&handle, &net).await;
        assert_eq!(one.relayed, vec![a.clone()]);
        assert_eq!(one.table_routes, [route].into());
        assert!(one.proxies.iter().all(|(_, addr)| *addr == A));
        assert!(one.rules.iter().all(|r| r.to == A));
        assert!(!one.relayed_set.contains(&B));
        assert!(!one.host_routes.contains(&("wtap2".to_string(), B)));
        assert_eq!(one.proxy_arp, strings(["wtap0".to_string()]));

        // The last one goes: nothing is left but the relay's own pool interface.
        net.detach_relayed(&a).await.unwrap();
        assert_eq!(installed(&handle, &net).await, before);
        net.detach_relayed(&a).await.expect("second detach");
        assert_eq!(installed(&handle, &net).await, before);
    });
}

#[test]
fn attach_replaces_another_relay_of_the_same_client() {
    in_netns("relay_moves", |handle| async move {
        let net = hostnet().await;
        net.setup_pool(&pool("lo", 4)).await.unwrap();
        let before = installed(&handle, &net).await;

        let old = relayed("wtap0", A, ("wtap1", R), Some(NS));
        let new = relayed("wtap0", A, ("wtap3", R2), None);
        net.attach_relayed(&old).await.unwrap();
        net.attach_relayed(&new).await.unwrap();

        let now = installed(&handle, &net).await;
        assert_eq!(now.relayed, vec![new.clone()]);
        assert_eq!(now.proxies, [("wtap3".to_string(), A)].into());
        assert!(now.permanent.iter().all(|(tap, _, _)| tap != "wtap1"));
        let table = policy::relay_table(index_of(&handle, "wtap3").await);
        assert_eq!(
            now.rules,
            vec![keep(A, None, Some("wtap3"), None), redirect(A, table)]
        );
        assert_eq!(now.table_routes.len(), 1);
        assert_eq!(now.guests, vec![("wtap3".to_string(), A)]);

        net.detach_relayed(&new).await.unwrap();
        assert_eq!(installed(&handle, &net).await, before);
    });
}

#[test]
fn attach_refuses_missing_devices_and_leaves_nothing() {
    in_netns("relay_refused", |handle| async move {
        let net = hostnet().await;
        net.setup_pool(&pool("lo", 2)).await.unwrap();
        add_veth(&handle, "veth5").await;
        let before = installed(&handle, &net).await;

        let err = net
            .attach_relayed(&relayed("wtap0", A, ("wtap7", R), None))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HostNetError::NoDevice(n) if n == "wtap7"),
            "{err}"
        );
        let err = net
            .attach_relayed(&relayed("veth5", A, ("wtap1", R), None))
            .await
            .unwrap_err();
        assert!(matches!(&err, HostNetError::NotTap { .. }), "{err}");
        let err = net
            .attach_relayed(&relayed("wtap0", A, ("wtap0", R), None))
            .await
            .unwrap_err();
        assert!(matches!(&err, HostNetError::InvalidRelay(_)), "{err}");

        assert_eq!(installed(&handle, &net).await, before);
    });
}

#[test]
fn a_failed_attach_takes_back_what_it_installed() {
    in_netns("relay_rollback", |handle| async move {
        // TAPs but no pool table: the last step, nftables, fails.
        let net = hostnet().await;
        for tap in ["wtap0", "wtap1"] {
            crate::tap::create_persistent(tap, crate::tap::POOL_TAP_FLAGS).unwrap();
            set_up(&handle, tap).await;
        }
        let before = installed(&handle, &net).await;

        let err = net
            .attach_relayed(&relayed("wtap0", A, ("wtap1", R), Some(NS)))
            .await
            .unwrap_err();
        assert!(matches!(&err, HostNetError::Nftables(_)), "{err}");
        assert_eq!(installed(&handle, &net).await, before);
    });
}

#[test]
fn a_failed_attach_again_keeps_the_installed_relay() {
    in_netns("relay_kept", |_handle| async move {
        let net = hostnet().await;
        net.setup_pool(&pool("lo", 2)).await.unwrap();
        let r = relayed("wtap0", A, ("wtap1", R), None);
        net.attach_relayed(&r).await.unwrap();
        let chains = netdev_chains();

        // Without the pool's table the last step fails again.
        crate::nft::apply(&crate::nft::remove()).await.unwrap();
        assert!(net.attach_relayed(&r).await.is_err());
        assert_eq!(net.relayed().await.unwrap(), vec![r]);
        assert_eq!(netdev_chains(), chains);
    });
}

#[test]
fn teardown_removes_every_relay() {
    in_netns("relay_teardown", |handle| async move {
        let net = hostnet().await;
        let pool = pool("lo", 4);
        net.setup_pool(&pool).await.unwrap();
        let empty = installed(&handle, &net).await;
        net.attach_relayed(&relayed("wtap0", A, ("wtap1", R), Some(NS)))
            .await
            .unwrap();
        net.attach_relayed(&relayed("wtap2", B, ("wtap3", R2), None))
            .await
            .unwrap();

        net.teardown_pool(&pool).await.unwrap();
        let after = installed(&handle, &net).await;
        assert_eq!(after, empty);
        assert!(netdev_chains().is_empty());
        let out = std::process::Command::new(crate::nft::nft_program())
            .args(["list", "tables"])
            .output()
            .unwrap();
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    });
}
