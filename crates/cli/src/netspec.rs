//! The `--net` grammar: one network interface per `--net`, as comma-separated `key=value`
//! pairs. An empty spec is a pool interface.
//!
//! ```text
//! --net ''                                                   pool interface
//! --net name=db0                                             pool interface named db0
//! --net tap=custtap0,ip=172.30.5.2/24,autoconfig=false       own TAP device and address
//! --net relay=shield-eth0,relay-dns=false                    pool interface behind a relay
//! ```
//!
//! The checks that need nothing but the request are made here with the API's own messages
//! (R1-R4 of the contract); what needs the host (a TAP device that does not exist, an address
//! in the pool, a relay that is not there) is left to weftd, whose message is shown as it is.

use std::net::Ipv4Addr;

use serde::Serialize;
use weft_model::cidr::Ipv4Cidr;
use weft_model::names::{check_name, check_tap_name};

/// The most interfaces an instance has (R1).
pub const MAX_INTERFACES: usize = 4;

const KEYS: &str = "name, ip, tap, autoconfig, relay, relay-dns";

/// The exact text of the API for R3.
pub const IP_AND_TAP: &str = "Network interface must specify an IP address when a TAP device \
                              is provided and vice versa";

/// One entry of `network_interfaces`, as the API takes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InterfaceSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tap_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoconfig: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelaySpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RelaySpec {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_dns: Option<bool>,
}

/// Parses one `--net` value. Only the grammar is checked here; `check` applies the rules.
pub fn parse(spec: &str) -> Result<InterfaceSpec, String> {
    let mut iface = InterfaceSpec::default();
    let mut relay_dns = None;
    let mut seen: Vec<&str> = Vec::new();

    for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("Invalid --net item '{item}': expected key=value"))?;
        let key = key.trim();
        let value = value.trim().to_string();
        if seen.contains(&key) {
            return Err(format!(
                "--net key '{key}' is given more than once in '{spec}'"
            ));
        }
        seen.push(key);
        match key {
            "name" => iface.name = Some(value),
            "ip" => iface.ip = Some(value),
            "tap" => iface.tap_name = Some(value),
            "autoconfig" => iface.autoconfig = Some(boolean(key, &value)?),
            "relay" => {
                iface.relay = Some(RelaySpec {
                    name: value,
                    relay_dns: None,
                })
            }
            "relay-dns" => relay_dns = Some(boolean(key, &value)?),
            _ => return Err(format!("Unknown --net key '{key}' (known: {KEYS})")),
        }
    }

    if let Some(dns) = relay_dns {
        let relay = iface.relay.as_mut().ok_or_else(|| {
            "--net key 'relay-dns' needs 'relay=<interface name>' in the same --net".to_string()
        })?;
        relay.relay_dns = Some(dns);
    }
    Ok(iface)
}

fn boolean(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!(
            "Invalid --net {key} '{value}': expected true or false"
        )),
    }
}

/// Applies the rules that need nothing but the request, in the order weftd applies them and
/// with its messages.
pub fn check(interfaces: &[InterfaceSpec]) -> Result<(), String> {
    if interfaces.len() > MAX_INTERFACES {
        return Err(format!(
            "network_interfaces must hold 1 to {MAX_INTERFACES} interfaces, not {}",
            interfaces.len()
        ));
    }

    for (i, iface) in interfaces.iter().enumerate() {
        let field = |f: &str| format!("network_interfaces[{i}].{f}");
        let earlier = &interfaces[..i];

        if let Some(name) = &iface.name {
            check_name(name).map_err(|e| format!("Invalid {} '{name}': it {e}", field("name")))?;
            if earlier.iter().any(|p| p.name.as_ref() == Some(name)) {
                return Err(format!(
                    "{} '{name}' is given to more than one interface",
                    field("name")
                ));
            }
        }

        match (&iface.ip, &iface.tap_name) {
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => return Err(IP_AND_TAP.to_string()),
            (Some(ip), Some(tap)) => {
                ip.parse::<Ipv4Cidr>()
                    .map_err(|e| format!("Invalid {} '{ip}': {e}", field("ip")))?;
                check_tap_name(tap)
                    .map_err(|e| format!("Invalid {} '{tap}': it {e}", field("tap_name")))?;
                if earlier.iter().any(|p| p.tap_name.as_ref() == Some(tap)) {
                    return Err(format!(
                        "{} '{tap}' is given to more than one interface",
                        field("tap_name")
                    ));
                }
            }
        }

        if let Some(relay) = &iface.relay {
            check_name(&relay.name)
                .map_err(|e| format!("Invalid {} '{}': it {e}", field("relay.name"), relay.name))?;
        }
    }
    Ok(())
}

/// Parses and checks every `--net` of a command line.
pub fn parse_all(specs: &[String]) -> Result<Vec<InterfaceSpec>, String> {
    let interfaces = specs
        .iter()
        .map(|s| parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    check(&interfaces)?;
    Ok(interfaces)
}

/// Checks a `--gateway` or `--nameserver` value as weftd does.
pub fn check_address(field: &str, value: &str) -> Result<(), String> {
    value
        .parse::<Ipv4Addr>()
        .map(|_| ())
        .map_err(|_| format!("Invalid {field} '{value}': expected an IPv4 address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(name: Option<&str>, ip: &str, tap: &str) -> InterfaceSpec {
        InterfaceSpec {
            name: name.map(String::from),
            ip: Some(ip.into()),
            tap_name: Some(tap.into()),
            ..InterfaceSpec::default()
        }
    }

    fn all(specs: &[&str]) -> Result<Vec<InterfaceSpec>, String> {
        parse_all(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn good_specs() {
        assert_eq!(parse("").unwrap(), InterfaceSpec::default());
        assert_eq!(parse(" , ").unwrap(), InterfaceSpec::default());
        assert_eq!(
            parse("tap=custtap0,ip=172.30.5.2/24,name=db0,autoconfig=false").unwrap(),
            InterfaceSpec {
                autoconfig: Some(false),
                ..own(Some("db0"), "172.30.5.2/24", "custtap0")
            }
        );
        assert_eq!(
            parse("relay=shield-eth0,relay-dns=false").unwrap(),
            InterfaceSpec {
                relay: Some(RelaySpec {
                    name: "shield-eth0".into(),
                    relay_dns: Some(false)
                }),
                ..InterfaceSpec::default()
            }
        );
        assert_eq!(
            parse("relay-dns=true, relay=shield-eth0").unwrap().relay,
            Some(RelaySpec {
                name: "shield-eth0".into(),
                relay_dns: Some(true)
            }),
            "order does not matter, spaces around items are dropped"
        );
        assert_eq!(
            all(&[
                "",
                "tap=custtap0,ip=172.30.5.2/24",
                "name=x,autoconfig=true",
                ""
            ])
            .unwrap()
            .len(),
            4
        );
    }

    #[test]
    fn serialized_as_the_api_takes_it() {
        let json = |s: &str| serde_json::to_string(&parse(s).unwrap()).unwrap();
        assert_eq!(json(""), "{}");
        assert_eq!(
            json("tap=t0,ip=172.30.5.2/24,autoconfig=false"),
            r#"{"ip":"172.30.5.2/24","tap_name":"t0","autoconfig":false}"#
        );
        assert_eq!(
            json("relay=s-eth0,relay-dns=false"),
            r#"{"relay":{"name":"s-eth0","relay_dns":false}}"#
        );
        assert_eq!(json("relay=s-eth0"), r#"{"relay":{"name":"s-eth0"}}"#);
    }

    #[test]
    fn grammar_errors() {
        let cases = [
            (
                "mtu=9000",
                "Unknown --net key 'mtu' (known: name, ip, tap, autoconfig, relay, relay-dns)",
            ),
            (
                "tap_name=t0",
                "Unknown --net key 'tap_name' (known: name, ip, tap, autoconfig, relay, relay-dns)",
            ),
            ("pool", "Invalid --net item 'pool': expected key=value"),
            (
                "ip=172.30.5.2/24,ip=172.30.5.3/24",
                "--net key 'ip' is given more than once in 'ip=172.30.5.2/24,ip=172.30.5.3/24'",
            ),
            (
                "autoconfig=yes",
                "Invalid --net autoconfig 'yes': expected true or false",
            ),
            (
                "relay=s-eth0,relay-dns=0",
                "Invalid --net relay-dns '0': expected true or false",
            ),
            (
                "relay-dns=false",
                "--net key 'relay-dns' needs 'relay=<interface name>' in the same --net",
            ),
        ];
        for (spec, message) in cases {
            assert_eq!(parse(spec).unwrap_err(), message, "{spec}");
        }
    }

    #[test]
    fn rule_errors_carry_the_api_messages() {
        let cases: [(&[&str], &str); 8] = [
            (&["ip=172.30.5.2/24"], IP_AND_TAP),
            (&["", "tap=custtap0"], IP_AND_TAP),
            (
                &["", "", "", "", ""],
                "network_interfaces must hold 1 to 4 interfaces, not 5",
            ),
            (
                &["", "ip=172.30.5.2/33,tap=custtap0"],
                "Invalid network_interfaces[1].ip '172.30.5.2/33': '33' is not a prefix length between 0 and 32",
            ),
            (
                &["ip=172.30.5.2,tap=custtap0"],
                "Invalid network_interfaces[0].ip '172.30.5.2': expected an IPv4 address with a prefix length, as in 10.0.0.2/24",
            ),
            (
                &["ip=172.30.5/24,tap=custtap0"],
                "Invalid network_interfaces[0].ip '172.30.5/24': '172.30.5' is not an IPv4 address",
            ),
            (
                &["ip=172.30.5.2/24,tap=t0", "ip=172.30.6.2/24,tap=t0"],
                "network_interfaces[1].tap_name 't0' is given to more than one interface",
            ),
            (
                &["name=db0", "name=db0"],
                "network_interfaces[1].name 'db0' is given to more than one interface",
            ),
        ];
        for (specs, message) in cases {
            assert_eq!(all(specs).unwrap_err(), message, "{specs:?}");
        }
        for tap in ["a-very-long-tap-name", "tap;rm"] {
            let why = check_tap_name(tap).unwrap_err();
            assert_eq!(
                all(&[&format!("ip=172.30.5.2/24,tap={tap}")]).unwrap_err(),
                format!("Invalid network_interfaces[0].tap_name '{tap}': it {why}")
            );
        }
        // Name rules are weftd's own (weft_model); the message wraps them as weftd does.
        let bad_name = check_name("Bad_Name").unwrap_err();
        assert_eq!(
            all(&["relay=Bad_Name"]).unwrap_err(),
            format!("Invalid network_interfaces[0].relay.name 'Bad_Name': it {bad_name}")
        );
        assert_eq!(
            all(&["name=Bad_Name"]).unwrap_err(),
            format!("Invalid network_interfaces[0].name 'Bad_Name': it {bad_name}")
        );
        assert_eq!(
            all(&["name="]).unwrap_err(),
            "Invalid network_interfaces[0].name '': it must not be empty"
        );
    }

    #[test]
    fn addresses() {
        assert!(check_address("gateway", "10.0.0.1").is_ok());
        assert_eq!(
            check_address("nameserver", "10.0.0.1/24").unwrap_err(),
            "Invalid nameserver '10.0.0.1/24': expected an IPv4 address"
        );
    }
}
