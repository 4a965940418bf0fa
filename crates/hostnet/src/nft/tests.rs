use super::command::parse_guest;
use super::*;
use serde_json::{json, Value};
use weft_model::Ipv4Cidr;

fn pool() -> PoolNet {
    PoolNet {
        cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 100, 0, 0), 16).unwrap(),
        gateway: Ipv4Addr::new(10, 100, 255, 254),
        tap_prefix: "wtap".into(),
        tap_count: 4,
        uplink: "eth0".into(),
    }
}

fn rules_of(batch: &Value, chain: &str) -> Vec<Value> {
    batch["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["add"]["rule"]["chain"] == chain)
        .map(|o| o["add"]["rule"]["expr"].clone())
        .collect()
}

#[test]
fn install_replaces_the_table_in_one_batch() {
    let batch = serde_json::to_value(install(&pool(), &[], &[])).unwrap();
    let objects = batch["nftables"].as_array().unwrap();
    let t = json!({"family": "ip", "name": "weft"});
    assert_eq!(objects[0], json!({"add": {"table": t}}));
    assert_eq!(objects[1], json!({"delete": {"table": t}}));
    assert_eq!(objects[2], json!({"add": {"table": t}}));
    assert_eq!(
        objects[3]["add"]["set"]["type"],
        json!(["ifname", "ipv4_addr"])
    );
    assert!(objects[3]["add"]["set"].get("elem").is_none());
    assert_eq!(objects[4]["add"]["set"]["name"], json!("relayed"));
    assert_eq!(objects[4]["add"]["set"]["type"], json!("ipv4_addr"));
}

#[test]
fn chains_hook_where_they_should() {
    let batch = serde_json::to_value(install(&pool(), &[], &[])).unwrap();
    let chains: Vec<_> = batch["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["add"].get("chain"))
        .map(|c| {
            (
                c["name"].clone(),
                c["type"].clone(),
                c["hook"].clone(),
                c["prio"].clone(),
            )
        })
        .collect();
    assert_eq!(
        chains,
        vec![
            (
                json!("forward"),
                json!("filter"),
                json!("forward"),
                json!(0)
            ),
            (json!("input"), json!("filter"), json!("input"), json!(0)),
            (
                json!("postrouting"),
                json!("nat"),
                json!("postrouting"),
                json!(100)
            ),
        ]
    );
}

#[test]
fn forward_lets_guests_out_to_the_uplink_only() {
    let batch = serde_json::to_value(install(&pool(), &[], &[])).unwrap();
    let forward = rules_of(&batch, "forward");
    assert_eq!(forward.len(), 4);
    assert_eq!(
        forward[0][0]["match"]["right"],
        json!(["established", "related"])
    );
    assert_eq!(forward[1][0]["match"]["right"], json!("@guests"));
    assert_eq!(forward[1][1]["match"]["right"], json!("eth0"));
    assert!(forward[1][2].get("accept").is_some());
    assert_eq!(
        forward[2][0]["match"]["left"],
        json!({"meta": {"key": "iifname"}})
    );
    assert_eq!(forward[2][0]["match"]["right"], json!("wtap*"));
    assert_eq!(
        forward[3][0]["match"]["left"],
        json!({"meta": {"key": "oifname"}})
    );
    assert!(forward[3][1].get("drop").is_some());
}

#[test]
fn input_allows_dns_on_the_gateway_and_drops_the_rest() {
    let batch = serde_json::to_value(install(&pool(), &[], &[])).unwrap();
    let input = rules_of(&batch, "input");
    assert!(input
        .iter()
        .all(|r| r[0]["match"]["right"] == json!("wtap*")));
    let dns: Vec<_> = input
        .iter()
        .filter(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .any(|s| s["match"]["right"] == json!(53))
        })
        .collect();
    assert_eq!(dns.len(), 2);
    assert!(dns
        .iter()
        .all(|r| r[1]["match"]["right"] == json!("10.100.255.254")));
    let last = input.last().unwrap().as_array().unwrap();
    assert_eq!(last.len(), 2);
    assert!(last[1].get("drop").is_some());
}

#[test]
fn masquerade_covers_the_pool_on_the_uplink() {
    let batch = serde_json::to_value(install(&pool(), &[], &[])).unwrap();
    let post = rules_of(&batch, "postrouting");
    assert_eq!(post.len(), 2);
    assert_eq!(
        post[0][0]["match"]["right"],
        json!({"prefix": {"addr": "10.100.0.0", "len": 16}})
    );
    assert_eq!(post[1][0]["match"]["right"], json!("@relayed"));
    for rule in &post {
        assert_eq!(rule[1]["match"]["right"], json!("eth0"));
        assert!(rule[2].get("masquerade").is_some());
    }
}

#[test]
fn install_keeps_relayed_addresses() {
    let keep = [Ipv4Addr::new(192, 168, 7, 2)];
    let batch = serde_json::to_value(install(&pool(), &[], &keep)).unwrap();
    assert_eq!(
        batch["nftables"][4]["add"]["set"]["elem"],
        json!(["192.168.7.2"])
    );
}

#[test]
fn install_keeps_given_elements() {
    let keep = vec![("wtap1".to_string(), Ipv4Addr::new(10, 100, 0, 7))];
    let batch = serde_json::to_value(install(&pool(), &keep, &[])).unwrap();
    assert_eq!(
        batch["nftables"][3]["add"]["set"]["elem"],
        json!([{"concat": ["wtap1", "10.100.0.7"]}])
    );
}

#[test]
fn removing_guests_adds_them_first_in_one_transaction() {
    let guests = [
        ("wtap0".to_string(), Ipv4Addr::new(10, 100, 0, 2)),
        ("wtap1".to_string(), Ipv4Addr::new(10, 100, 0, 3)),
    ];
    let batch = serde_json::to_value(remove_guests(&guests)).unwrap();
    let elem = json!({"family": "ip", "table": "weft", "name": "guests",
        "elem": [{"concat": ["wtap0", "10.100.0.2"]}, {"concat": ["wtap1", "10.100.0.3"]}]});
    assert_eq!(
        batch["nftables"],
        json!([{"add": {"element": elem}}, {"delete": {"element": elem}}])
    );
}

#[test]
fn parses_listed_elements() {
    assert_eq!(
        parse_guest(&json!({"concat": ["wtap0", "10.100.0.2"]})).unwrap(),
        ("wtap0".to_string(), Ipv4Addr::new(10, 100, 0, 2))
    );
    assert_eq!(
        parse_guest(&json!({"elem": {"val": {"concat": ["wtap3", "10.100.0.9"]}, "comment": "x"}}))
            .unwrap(),
        ("wtap3".to_string(), Ipv4Addr::new(10, 100, 0, 9))
    );
    assert!(parse_guest(&json!("wtap0")).is_err());
}
