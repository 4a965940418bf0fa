//! The invariants that hold between weftd's store and the host whenever weftd is at rest:
//! what the crash and fault injection tests check after every failure.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::Value;
use weft_testkit::{wait_for, Netns, Weftd};

/// Guest processes (weft-netns) of this weftd's state directory, as (pid, uuid).
pub fn guest_processes(weftd: &Weftd) -> Vec<(u32, String)> {
    let dir = format!("{}/instances/", weftd.state_dir().display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let Some(uuid) = args
            .windows(2)
            .find(|p| p[0] == "--name")
            .and_then(|p| p[1].strip_prefix("weft-").map(str::to_string))
        else {
            continue;
        };
        if args.iter().any(|a| a.contains(&dir)) {
            found.push((pid, uuid));
        }
    }
    found.sort();
    found
}

/// The guest pid of instance `uuid` (its one weft-netns), if it has one.
pub fn guest_pid(weftd: &Weftd, uuid: &str) -> Option<u32> {
    let pids: Vec<u32> = guest_processes(weftd)
        .into_iter()
        .filter(|(_, u)| u == uuid)
        .map(|(p, _)| p)
        .collect();
    match pids.as_slice() {
        [pid] => Some(*pid),
        _ => None,
    }
}

fn json_of(out: std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The `guests` elements of weft's table as (tap, addr).
pub fn guest_elements(host: &Netns) -> BTreeSet<(String, String)> {
    let list = json_of(host.exec(&["nft", "-j", "list", "set", "ip", "weft", "guests"]));
    let mut out = BTreeSet::new();
    for item in list["nftables"].as_array().into_iter().flatten() {
        for elem in item["set"]["elem"].as_array().into_iter().flatten() {
            let value = elem.get("elem").map(|e| &e["val"]).unwrap_or(elem);
            if let [tap, addr] = value["concat"]
                .as_array()
                .map(|v| v.as_slice())
                .unwrap_or(&[])
            {
                out.insert((
                    tap.as_str().unwrap_or_default().to_string(),
                    addr.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

/// The /32 routes of the main table through pool TAPs (`wt*`), as (tap, addr).
pub fn guest_routes(host: &Netns) -> BTreeSet<(String, String)> {
    let list = json_of(host.exec(&["ip", "-j", "route", "show", "table", "main"]));
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["dev"].as_str().is_some_and(|d| d.starts_with("wt")))
        .filter_map(|r| {
            let dst = r["dst"].as_str()?;
            let dev = r["dev"].as_str()?;
            (!dst.contains('/')).then(|| (dev.to_string(), dst.to_string()))
        })
        .collect()
}

/// Pool TAPs that a process holds (carrier up).
pub fn busy_taps(host: &Netns) -> BTreeSet<String> {
    let list = json_of(host.exec(&["ip", "-j", "link", "show"]));
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|l| {
            l["ifname"].as_str().is_some_and(|n| n.starts_with("wt"))
                && l["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "LOWER_UP"))
        })
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// Checks that store and host agree; panics with `context` and what is wrong. Returns the
/// instances as the API lists them.
pub fn assert_consistent(host: &Netns, weftd: &Weftd, context: &str) -> Vec<Value> {
    let (code, list) = weftd.api.get("/v1/instances");
    assert_eq!(code, 200, "{context}: list: {list}");
    let instances = super::items(&list);

    let mut names = BTreeSet::new();
    let mut addrs = BTreeSet::new();
    let mut taps = BTreeSet::new();
    let mut running = BTreeSet::new();
    let mut required_elements = BTreeSet::new();
    let mut allowed_elements = BTreeSet::new();
    let mut required_routes = BTreeSet::new();
    let mut running_taps = BTreeSet::new();
    let by_name: HashMap<String, (String, String)> = instances
        .iter()
        .flat_map(|i| {
            i["network_interfaces"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|f| {
            let name = f["name"].as_str().unwrap_or_default().to_string();
            let tap = f["tap_name"].as_str().unwrap_or_default().to_string();
            let ip = f["private_ip"].as_str().unwrap_or_default().to_string();
            (name, (tap, ip))
        })
        .collect();
    for inst in &instances {
        let name = inst["name"].as_str().unwrap().to_string();
        let uuid = inst["uuid"].as_str().unwrap().to_string();
        let state = inst["state"].as_str().unwrap_or_default();
        assert!(
            state == "running" || state == "stopped",
            "{context}: instance {name} left {state}: {inst}"
        );
        assert!(names.insert(name.clone()), "{context}: name {name} twice");
        if state == "running" {
            running.insert(uuid.clone());
        }
        for iface in inst["network_interfaces"].as_array().unwrap() {
            let tap = iface["tap_name"].as_str().unwrap().to_string();
            let ip = iface["private_ip"].as_str().unwrap().to_string();
            assert!(addrs.insert(ip.clone()), "{context}: address {ip} twice");
            assert!(taps.insert(tap.clone()), "{context}: TAP {tap} twice");
            if state == "running" {
                running_taps.insert(tap.clone());
            }
            if !iface["pool"].as_bool().unwrap_or(false) {
                continue;
            }
            required_routes.insert((tap.clone(), ip.clone()));
            match iface["relay"]["name"].as_str() {
                None => {
                    required_elements.insert((tap.clone(), ip.clone()));
                    allowed_elements.insert((tap, ip));
                }
                Some(relay) => {
                    let (relay_tap, _) = by_name
                        .get(relay)
                        .unwrap_or_else(|| panic!("{context}: relay {relay} is gone"));
                    allowed_elements.insert((relay_tap.clone(), ip.clone()));
                    allowed_elements.insert((tap, ip));
                }
            }
        }
    }

    // Every guest process belongs to a running instance, and each running one has one.
    let guests = guest_processes(weftd);
    for (pid, uuid) in &guests {
        assert!(
            running.contains(uuid),
            "{context}: guest process {pid} of {uuid} has no running instance"
        );
    }
    let with_guest: BTreeSet<_> = guests.iter().map(|(_, u)| u.clone()).collect();
    assert_eq!(
        with_guest, running,
        "{context}: running instances and guests"
    );

    let elements = guest_elements(host);
    assert!(
        required_elements.is_subset(&elements),
        "{context}: missing nft elements: {:?}",
        required_elements.difference(&elements).collect::<Vec<_>>()
    );
    assert!(
        elements.is_subset(&allowed_elements),
        "{context}: nft elements without an owner: {:?}",
        elements.difference(&allowed_elements).collect::<Vec<_>>()
    );
    assert_eq!(guest_routes(host), required_routes, "{context}: routes");

    // A guest that was just stopped lets go of its TAPs within moments.
    let settled = wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        (busy_taps(host) == running_taps).then_some(())
    });
    assert!(
        settled.is_some(),
        "{context}: TAPs in use {:?}, TAPs of running instances {running_taps:?}",
        busy_taps(host)
    );
    instances
}
