//! Thousands of generated create bodies against a real weftd (netns driver): mutations of
//! valid bodies (members dropped, added, retyped, set to odd values; text cut or bytes
//! flipped) and random bytes. None may get a 5xx or stop weftd, and none that is refused may
//! leave anything behind: the list, the store, the host's links, addresses, routes and
//! nftables stay exactly as they were. The generator is seeded (`WEFT_FUZZ_SEED`, printed),
//! so a failure can be replayed.

mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use common::{assert_envelope, World};

/// How many bodies one run sends (`WEFT_FUZZ_CASES` overrides).
const CASES: usize = 8000;
/// How often host and store are compared with the snapshot from before.
const SNAPSHOT_EVERY: usize = 300;

const EXTRA: &str = r#"
[limits]
creates_per_second = 0
"#;

/// Valid bodies to mutate: a pool interface, an own TAP device, defaults only, and more.
fn seeds() -> Vec<Value> {
    vec![
        json!({"name": "fz", "image": "base", "autostart": false}),
        json!({"image": "base", "autostart": false, "memory_mb": 64, "vcpus": 1,
               "args": ["/bin/busybox", "sleep", "600"], "env": {"A": "1"}}),
        json!({"name": "fz", "image": {"url": "base"}, "autostart": false,
               "network_interfaces": [{}, {"ip": "172.30.5.9/24", "tap_name": "custtap0",
                                           "autoconfig": false}],
               "gateway": "10.100.255.254", "nameserver": "10.100.255.254"}),
        json!({"name": "fz", "image": "base", "autostart": false,
               "network_interfaces": [{"name": "fz-a"}, {"name": "fz-b"}]}),
    ]
}

/// Values that break rules, types or parsers.
fn odd_value(rng: &mut StdRng) -> Value {
    let strings = [
        "",
        " ",
        "a;rm -rf /",
        "$(reboot)",
        "`id`",
        "../../etc/passwd",
        "/dev/null",
        "a\u{0}b",
        "web\u{202e}gnp",
        "wéb",
        "ＷＥＢ",
        "\u{1F600}",
        "\u{FEFF}web",
        "x\ny",
        "%s%n",
        "10.100.0.1/16",
        "172.30.5.2/33",
        "256.1.1.1/24",
        "0.0.0.0/0",
        "custtap0",
        "wt0",
        "lo",
        "eth0",
        "weft-tap0",
        "wait",
        "-web",
        "web-",
        "base",
        "a\"b",
        "\\",
    ];
    match rng.gen_range(0..14) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(u64::MAX),
        4 => json!(-1),
        5 => json!(1e308),
        6 => json!(0.5),
        7 => json!([]),
        8 => json!({}),
        9 => json!("x".repeat(rng.gen_range(60..5000))),
        10 => json!([odd_string(rng), 1, null]),
        11 => json!({"name": odd_string(rng), "url": 1}),
        12 => json!(odd_string(rng)),
        _ => json!(strings[rng.gen_range(0..strings.len())]),
    }
}

fn odd_string(rng: &mut StdRng) -> String {
    let len = rng.gen_range(0..20);
    (0..len)
        .map(|_| match rng.gen_range(0..4) {
            0 => rng.gen_range(b'a'..=b'z') as char,
            1 => char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('?'),
            2 => ['-', '.', '/', ';', '$', ' ', '\'', '*', '_', ':'][rng.gen_range(0..10)],
            _ => char::from_u32(rng.gen_range(0..0x20)).unwrap_or('?'),
        })
        .collect()
}

const KEYS: &[&str] = &[
    "name",
    "image",
    "args",
    "env",
    "memory_mb",
    "vcpus",
    "autostart",
    "network_interfaces",
    "gateway",
    "nameserver",
    "template",
    "branch_from",
    "checkpoint",
    "service_group",
    "features",
    "timeout_s",
    "ip",
    "tap_name",
    "relay",
    "autoconfig",
    "url",
    "colour",
];

/// Changes one place of `value`, somewhere in its tree.
fn mutate(value: &mut Value, rng: &mut StdRng) {
    match value {
        Value::Object(map) if !map.is_empty() && rng.gen_bool(0.7) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.gen_range(0..keys.len())];
            match rng.gen_range(0..4) {
                0 => {
                    map.remove(key);
                }
                1 => {
                    map.insert(key.clone(), odd_value(rng));
                }
                _ => mutate(map.get_mut(key).expect("key exists"), rng),
            }
        }
        Value::Object(map) => {
            let key = KEYS[rng.gen_range(0..KEYS.len())];
            map.insert(key.to_string(), odd_value(rng));
        }
        Value::Array(items) if !items.is_empty() && rng.gen_bool(0.7) => {
            let i = rng.gen_range(0..items.len());
            match rng.gen_range(0..4) {
                0 => {
                    items.remove(i);
                }
                1 => items.push(items[i].clone()),
                _ => mutate(&mut items[i], rng),
            }
        }
        Value::Array(items) => items.push(odd_value(rng)),
        other => *other = odd_value(rng),
    }
}

/// One generated body, as bytes.
fn body(rng: &mut StdRng, seeds: &[Value]) -> Vec<u8> {
    let mut value = seeds[rng.gen_range(0..seeds.len())].clone();
    match rng.gen_range(0..20) {
        // Random bytes.
        0 => (0..rng.gen_range(0..512)).map(|_| rng.gen()).collect(),
        // Deep nesting.
        1 => {
            let depth = rng.gen_range(100..3000);
            let mut text = "[".repeat(depth);
            text.push_str(&"]".repeat(depth));
            if let Value::Object(map) = &mut value {
                map.insert("args".into(), Value::Null);
            }
            let whole = value.to_string();
            whole.replacen("null", &text, 1).into_bytes()
        }
        // A member twice.
        2 => {
            let text = value.to_string();
            text.replacen('{', "{\"name\": \"a\", ", 1).into_bytes()
        }
        // Cut short, or bytes flipped.
        3 | 4 => {
            let mut bytes = value.to_string().into_bytes();
            if rng.gen_bool(0.5) {
                let at = rng.gen_range(0..bytes.len());
                bytes.truncate(at);
            } else {
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..bytes.len());
                    bytes[at] = rng.gen();
                }
            }
            bytes
        }
        _ => {
            for _ in 0..rng.gen_range(1..4) {
                mutate(&mut value, rng);
            }
            if let Value::Object(map) = &mut value {
                // Names stay unique, so that accepted creates do not collide.
                if map.get("name").is_some_and(|n| n == "fz") {
                    map.insert("name".into(), json!(format!("fz{}", rng.gen::<u32>())));
                }
                strip_names(map, rng);
            }
            value.to_string().into_bytes()
        }
    }
}

/// Gives interface names a random suffix, so that one accepted create does not make the
/// next one's names taken.
fn strip_names(map: &mut Map<String, Value>, rng: &mut StdRng) {
    if let Some(Value::Array(ifaces)) = map.get_mut("network_interfaces") {
        for iface in ifaces {
            if let Some(Value::String(name)) = iface.get_mut("name") {
                if name.starts_with("fz-") {
                    *name = format!("{name}{}", rng.gen::<u16>());
                }
            }
        }
    }
}

#[test]
fn generated_create_bodies_never_fail_the_server_or_leave_anything() {
    let Some(world) = World::netns(
        "generated_create_bodies_never_fail_the_server_or_leave_anything",
        "wfz",
        EXTRA,
    ) else {
        return;
    };
    world.topo.add_tap("custtap0", Some("custbr0"));
    world.run(|w| {
        let api = w.api();
        let seed: u64 = std::env::var("WEFT_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random);
        let cases: usize = std::env::var("WEFT_FUZZ_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(CASES);
        eprintln!("fuzzing create with WEFT_FUZZ_SEED={seed} WEFT_FUZZ_CASES={cases}");
        let mut rng = StdRng::seed_from_u64(seed);
        let seeds = seeds();
        let before = w.snapshot();
        let started = std::time::Instant::now();
        let (mut accepted, mut refused) = (0, 0);
        for case in 0..cases {
            let bytes = body(&mut rng, &seeds);
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let (code, answer) = api.raw_bytes("POST", "/v1/instances", Some(&bytes));
            let shown = || text.chars().take(300).collect::<String>();
            assert_ne!(
                code,
                0,
                "case {case}: weftd did not answer {}: {answer}",
                shown()
            );
            assert!(
                code < 500,
                "case {case} (seed {seed}): {code} for {}: {answer}",
                shown()
            );
            assert_envelope(&format!("case {case}"), code, &answer);
            if code == 200 {
                accepted += 1;
                let uuid = answer["data"]["instances"][0]["uuid"].as_str().unwrap();
                let (code, gone) = api.delete(&format!("/v1/instances/{uuid}"));
                assert_eq!(code, 200, "case {case}: delete of {}: {gone}", shown());
            } else {
                refused += 1;
            }
            if (case + 1) % SNAPSHOT_EVERY == 0 || case + 1 == cases {
                assert_eq!(
                    w.snapshot(),
                    before,
                    "after case {case} (seed {seed}) host or store changed"
                );
            }
        }
        assert_eq!(api.get("/v1/healthz").0, 200, "weftd is not alive");
        assert!(!w.weftd.log().contains("panicked"), "weftd panicked");
        eprintln!(
            "{cases} bodies in {:?}: {accepted} accepted (and deleted), {refused} refused",
            started.elapsed()
        );
        assert!(refused > cases / 2, "the generator made too few bad bodies");
    });
}
