use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn parse(e: &[(&str, &str)], a: &[&str]) -> Result<Config, String> {
    Config::from_sources(env(e), args(a))
}

#[test]
fn reads_environment_and_flags() {
    let config = parse(
        &[
            ("SHIELD_ALLOW", "example.com, *.example.org"),
            ("SHIELD_ALLOW_CIDRS", "198.51.100.0/24"),
            (
                "SHIELD_SECRET_GH",
                "WEFT_SECRET_GH|tok|en|example.com,*.example.org",
            ),
            ("SHIELD_UPSTREAM_DNS", "203.0.113.53"),
            ("SHIELD_NIC", "relay0"),
            ("PATH", "/bin"),
        ],
        &[
            "--allow",
            "other.test",
            "--idle-timeout=30",
            "--nic",
            "eth1",
            "--stats-interval",
            "0",
            "--intercept",
            "all",
        ],
    )
    .unwrap();

    let names: Vec<_> = config.policy.names.iter().map(|p| p.to_string()).collect();
    assert_eq!(names, ["example.com", "*.example.org", "other.test"]);
    assert_eq!(config.policy.cidrs[0].to_string(), "198.51.100.0/24");
    let secret = &config.policy.secrets[0];
    assert_eq!(secret.name, "GH");
    assert_eq!(secret.placeholder, "WEFT_SECRET_GH");
    assert_eq!(secret.value, "tok|en");
    assert_eq!(secret.hosts.len(), 2);
    assert_eq!(
        config.upstream_dns,
        Some("203.0.113.53:53".parse().unwrap())
    );
    assert_eq!(config.nic, "eth1", "a flag overrides the environment");
    assert_eq!(config.idle_timeout, Duration::from_secs(30));
    assert_eq!(config.stats_interval, None);
    assert_eq!(config.intercept, Intercept::All);
    assert_eq!(config.route_table, 100);
}

#[test]
fn secret_flags_and_base64_values() {
    let config = parse(
        &[("SHIELD_ALLOW", "*.test")],
        &[
            "--secret",
            "KEY_1=PLACEHOLDER_1|base64:dmFsdWUgd2l0aCBzcGFjZXM=|a.test",
        ],
    )
    .unwrap();
    assert_eq!(config.policy.secrets[0].value, "value with spaces");
}

#[test]
fn refuses_bad_policy_with_clear_messages() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (
            &[("SHIELD_ALOW", "x.com")],
            &[],
            "unknown setting SHIELD_ALOW",
        ),
        (&[], &["--alow", "x.com"], "unknown flag --alow"),
        (&[], &["x.com"], "unexpected argument 'x.com'"),
        (&[], &["--allow"], "--allow needs a value"),
        (&[("SHIELD_ALLOW", "exa mple.com")], &[], "SHIELD_ALLOW"),
        (&[("SHIELD_ALLOW", "10.0.0.1")], &[], "SHIELD_ALLOW_CIDRS"),
        (&[("SHIELD_ALLOW_CIDRS", "10.0.0.1/8")], &[], "host bits"),
        (
            &[
                ("SHIELD_ALLOW", "a.test"),
                ("SHIELD_SECRET_X", "SHORT|v|a.test"),
            ],
            &[],
            "placeholder must be",
        ),
        (
            &[
                ("SHIELD_ALLOW", "a.test"),
                ("SHIELD_SECRET_x", "PLACEHOLDER|v|a.test"),
            ],
            &[],
            "secret name 'x'",
        ),
        (
            &[
                ("SHIELD_ALLOW", "a.test"),
                ("SHIELD_SECRET_X", "PLACEHOLDER|v"),
            ],
            &[],
            "expected <placeholder>|<value>|<hosts>",
        ),
        (
            &[
                ("SHIELD_ALLOW", "a.test"),
                ("SHIELD_SECRET_X", "PLACEHOLDER|v|b.test"),
            ],
            &[],
            "which SHIELD_ALLOW does not allow",
        ),
        (
            &[
                ("SHIELD_ALLOW", "a.test"),
                ("SHIELD_SECRET_X", "PLACEHOLDER|v\tx|a.test"),
            ],
            &[],
            "control characters",
        ),
        (
            &[
                ("SHIELD_ALLOW", "a.test"),
                ("SHIELD_SECRET_X", "PLACEHOLDER|base64:***|a.test"),
            ],
            &[],
            "not base64",
        ),
        (
            &[
                ("SHIELD_ALLOW", "a.test"),
                ("SHIELD_SECRET_X", "PLACEHOLDER|v|"),
            ],
            &[],
            "no hosts",
        ),
        (
            &[("SHIELD_UPSTREAM_DNS", "dns.google")],
            &[],
            "IPv4 address",
        ),
        (&[("SHIELD_ROUTE_TABLE", "254")], &[], "reserved"),
        (
            &[("SHIELD_MAX_CONNECTIONS", "0")],
            &[],
            "between 1 and 65536",
        ),
        (&[("SHIELD_INTERCEPT", "some")], &[], "neither"),
        (&[("SHIELD_CA_CERT", "not-base64!")], &[], "SHIELD_CA_CERT"),
        (&[("SHIELD_CA_CERT", "aGVsbG8=")], &[], "not PEM"),
    ];
    for (e, a, expected) in cases {
        let err = parse(e, a).expect_err(expected);
        assert!(
            err.contains(expected),
            "{err:?} should mention {expected:?}"
        );
    }

    let err = parse(
        &[
            ("SHIELD_ALLOW", "a.test"),
            ("SHIELD_SECRET_X", "PLACEHOLDER|v|a.test"),
        ],
        &["--secret", "X=OTHERPLACE|w|a.test"],
    )
    .unwrap_err();
    assert!(err.contains("given twice"), "{err}");
}

#[test]
fn ca_halves_come_together() {
    let pem = base64::engine::general_purpose::STANDARD.encode("-----BEGIN CERTIFICATE-----\n");
    let config = parse(&[("SHIELD_CA_CERT", &pem)], &[]).unwrap();
    assert!(config.check_complete().is_err());
    let config = parse(&[("SHIELD_CA_CERT", &pem), ("SHIELD_CA_KEY", &pem)], &[]).unwrap();
    config.check_complete().unwrap();
    assert!(parse(&[], &[]).unwrap().check_complete().is_ok());
}

#[test]
fn finds_the_first_ipv4_nameserver() {
    let text =
        "# generated\nsearch x\nnameserver ::1\nnameserver 10.0.255.254\nnameserver 1.1.1.1\n";
    assert_eq!(first_nameserver(text), Some(Ipv4Addr::new(10, 0, 255, 254)));
    assert_eq!(first_nameserver("options ndots:1\n"), None);
}
