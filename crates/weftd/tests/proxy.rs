//! Service groups and the ingress proxy, end to end with the netns driver: a client in the
//! internet namespace (192.0.2.1) reaches instances through the proxy on the host's uplink
//! address (192.0.2.2). The proxy forwards to primary addresses only (R5), balances over
//! running instances, terminates TLS with a configured certificate, and opens and closes
//! ports as groups come and go.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use weft_testkit::{privileged_or_skip, wait_for, Netns, Topology, Weftd};

use common::{tag, weftd_binary};

const PROXY_ADDR: &str = "192.0.2.2";

fn text(out: std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The netns driver boots no kernel: an image is a directory.
fn netns_images(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(images.join("base")).unwrap();
    images
}

/// A directory whose index page is `page`, for an instance's web server.
fn site(dir: &Path, name: &str, page: &str) -> String {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), page).unwrap();
    root.display().to_string()
}

/// `curl` from the internet namespace; the body, or None when curl failed.
fn curl(inet: &Netns, args: &[&str]) -> Option<String> {
    let mut full = vec!["curl", "-s", "-f", "--max-time", "5"];
    full.extend_from_slice(args);
    let out = inet.exec(&full);
    out.status.success().then(|| text(out))
}

/// Whether a TCP connection to the proxy's `port` is accepted, from the internet.
fn listens(inet: &Netns, port: u16) -> bool {
    let probe = format!("exec 3<>/dev/tcp/{PROXY_ADDR}/{port}");
    inet.succeeds(&["timeout", "3", "bash", "-c", &probe])
}

fn start(test: &str, prefix: &str, extra: &str) -> Option<(Topology, Weftd, tempfile::TempDir)> {
    if !privileged_or_skip(test) {
        return None;
    }
    let scratch = tempfile::tempdir().unwrap();
    let topo = Topology::new(&tag(prefix));
    let images = netns_images(scratch.path());
    let extra = format!("[proxy]\nlisten = \"{PROXY_ADDR}\"\n{extra}");
    let weftd = Weftd::start_with("netns", &topo.host, &weftd_binary(), &images, &extra);
    Some((topo, weftd, scratch))
}

/// Runs `scenario`, printing weftd's log when it fails.
fn run(weftd: &Weftd, scenario: impl FnOnce()) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(scenario));
    if let Err(panic) = result {
        eprintln!("--- weftd log ---\n{}", weftd.log());
        std::panic::resume_unwind(panic);
    }
}

fn created(answer: (u16, Value)) -> Value {
    let (code, body) = answer;
    assert_eq!(code, 200, "{body}");
    body["data"]["instances"][0].clone()
}

#[test]
fn proxy_forwards_to_the_primary_address_only() {
    let test = "proxy_forwards_to_the_primary_address_only";
    let Some((topo, weftd, scratch)) = start(test, "wpr", "") else {
        return;
    };
    topo.add_tap("custtap0", Some("custbr0"));
    // The host can reach the second interface itself, so a proxy that forwarded there
    // would get an answer.
    topo.host
        .ip(&["addr", "add", "172.30.5.254/24", "dev", "custbr0"]);
    let primary = site(scratch.path(), "primary", "from the primary\n");
    let second = site(scratch.path(), "second", "from the second interface\n");
    let api = &weftd.api;

    run(&weftd, || {
        // 8080 on every address (so on the primary); 9090 on the second address only.
        let app = format!(
            "busybox httpd -f -p 8080 -h {primary} & \
             exec busybox httpd -f -p 172.30.5.2:9090 -h {second}"
        );
        let inst = created(api.post(
            "/v1/instances",
            &json!({
                "name": "multi",
                "image": "base",
                "args": ["/bin/busybox", "sh", "-c", app],
                "network_interfaces": [{}, {"ip": "172.30.5.2/24", "tap_name": "custtap0"}],
                "service_group": {"name": "web", "services": [
                    {"port": 80, "destination_port": 8080, "handlers": ["http"]},
                    {"port": 9000, "destination_port": 9090, "handlers": []}
                ]}
            }),
        ));
        assert_eq!(inst["private_ip"], "10.100.0.1");
        assert_eq!(inst["service_group"]["name"], "web", "{inst}");
        let (code, group) = api.get("/v1/services/web");
        assert_eq!(code, 200, "{group}");
        let group = &group["data"]["service_groups"][0];
        assert_eq!(group["uuid"], inst["service_group"]["uuid"]);
        assert_eq!(
            group["instances"],
            json!([{"uuid": inst["uuid"], "name": "multi"}])
        );
        assert_eq!(
            group["services"],
            json!([
                {"port": 80, "destination_port": 8080, "handlers": ["http"]},
                {"port": 9000, "destination_port": 9090, "handlers": []}
            ])
        );

        let page = wait_for(Duration::from_secs(30), Duration::from_millis(300), || {
            curl(&topo.inet, &[&format!("http://{PROXY_ADDR}/")])
        });
        assert_eq!(page.as_deref(), Some("from the primary\n"));

        // 9090 answers on the second address, and not on the primary.
        let direct = wait_for(Duration::from_secs(10), Duration::from_millis(300), || {
            let out =
                topo.host
                    .exec(&["curl", "-sf", "--max-time", "3", "http://172.30.5.2:9090/"]);
            out.status.success().then(|| text(out))
        });
        assert_eq!(direct.as_deref(), Some("from the second interface\n"));
        assert!(!topo.host.succeeds(&[
            "curl",
            "-sf",
            "--max-time",
            "3",
            "http://10.100.0.1:9090/"
        ]));

        // Through the proxy, port 9000 (destination 9090) gets nothing: the proxy never
        // dials the second address.
        for _ in 0..3 {
            let out = topo.inet.exec(&[
                "curl",
                "-s",
                "--max-time",
                "5",
                &format!("http://{PROXY_ADDR}:9000/"),
            ]);
            assert!(!out.status.success(), "port 9000 answered: {}", text(out));
            assert!(!text(out).contains("second"));
        }
    });
}

#[test]
fn proxy_balances_over_running_instances() {
    let test = "proxy_balances_over_running_instances";
    let Some((topo, weftd, scratch)) = start(test, "wlb", "") else {
        return;
    };
    let api = &weftd.api;
    run(&weftd, || {
        let (code, body) = api.post(
            "/v1/services",
            &json!({"name": "lb", "services": [
                {"port": 80, "destination_port": 8080, "handlers": ["http"]}
            ]}),
        );
        assert_eq!(code, 200, "{body}");
        let group = &body["data"]["service_groups"][0];
        assert_eq!(group["name"], "lb");
        assert_eq!(group["instances"], json!([]));

        // Two instances join it, by name and by uuid; each answers its own name.
        let by_uuid = json!({"uuid": group["uuid"]});
        for (name, group_ref) in [("one", json!("lb")), ("two", by_uuid)] {
            let root = site(scratch.path(), name, &format!("{name}\n"));
            let inst = created(api.post(
                "/v1/instances",
                &json!({
                    "name": name,
                    "image": "base",
                    "args": ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", root],
                    "service_group": group_ref
                }),
            ));
            assert_eq!(inst["service_group"]["name"], "lb", "{inst}");
        }
        let url = format!("http://{PROXY_ADDR}/");
        let both = wait_for(Duration::from_secs(30), Duration::from_millis(300), || {
            let seen: Vec<String> = (0..4).filter_map(|_| curl(&topo.inet, &[&url])).collect();
            (seen.contains(&"one\n".to_string()) && seen.contains(&"two\n".to_string()))
                .then_some(())
        });
        assert!(both.is_some(), "the proxy did not reach both instances");

        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..6 {
            let page = curl(&topo.inet, &[&url]).expect("the proxy answers");
            *counts.entry(page).or_default() += 1;
        }
        assert_eq!(
            counts,
            BTreeMap::from([("one\n".to_string(), 3), ("two\n".to_string(), 3)])
        );

        // A group with instances cannot be deleted; the refusal names them.
        let (code, body) = api.delete("/v1/services/lb");
        assert_eq!(code, 409, "{body}");
        assert_eq!(
            body["message"],
            "Service group 'lb' cannot be deleted: instances 'one', 'two' are in it"
        );

        // One stopped: everything goes to the other.
        assert_eq!(api.put("/v1/instances/one/stop").0, 200);
        for _ in 0..4 {
            assert_eq!(curl(&topo.inet, &[&url]).as_deref(), Some("two\n"));
        }

        // None running: a plain 503.
        assert_eq!(api.put("/v1/instances/two/stop").0, 200);
        let unavailable = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
            let out = topo.inet.exec(&[
                "curl",
                "-s",
                "--max-time",
                "5",
                "-w",
                "\n%{http_code}",
                &url,
            ]);
            let answer = text(out);
            answer.ends_with("503").then_some(answer)
        });
        assert_eq!(
            unavailable.as_deref(),
            Some("No instance of service group 'lb' is running\n\n503")
        );

        // Deleting an instance takes it out of its group; then the group can go.
        assert_eq!(api.delete("/v1/instances/one").0, 200);
        let (_, body) = api.get("/v1/services/lb");
        assert_eq!(
            body["data"]["service_groups"][0]["instances"][0]["name"],
            "two"
        );
        assert_eq!(api.delete("/v1/instances/two").0, 200);
        assert_eq!(api.delete("/v1/services/lb").0, 200);
        assert_eq!(api.get("/v1/services/lb").0, 404);
    });
}

/// A test CA and a certificate for `name` that it signed, written to `dir`: the CA's file,
/// the certificate's and its key's.
fn test_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "weft proxy test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn proxy_terminates_tls_with_configured_certificates() {
    let test = "proxy_terminates_tls_with_configured_certificates";
    let certs = tempfile::tempdir().unwrap();
    let (ca_path, cert_path, key_path) = test_certificate(certs.path(), "app.example");
    let extra = format!(
        "[[proxy.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert_path.display(),
        key_path.display()
    );
    let Some((topo, weftd, scratch)) = start(test, "wtl", &extra) else {
        return;
    };
    let api = &weftd.api;
    run(&weftd, || {
        // Refused combinations name the service, its port and its handlers.
        let (code, body) = api.post(
            "/v1/services",
            &json!({"services": [{"port": 443}, {"port": 8080, "handlers": ["http"]}]}),
        );
        assert_eq!(code, 400, "{body}");
        assert_eq!(
            body["message"],
            "Invalid services[1]: handlers [\"http\"] are not allowed on port 8080 (allowed \
             there: [\"tls\"] or [] (plain TCP))"
        );
        let (code, body) = api.post(
            "/v1/instances",
            &json!({"name": "x", "image": "base", "service_group": {"services": [
                {"port": 443, "handlers": ["tls"]}
            ]}}),
        );
        assert_eq!(code, 400, "{body}");
        assert_eq!(
            body["message"],
            "Invalid service_group.services[0]: handlers [\"tls\"] are not allowed on port \
             443 (allowed there: [\"http\", \"tls\"])"
        );
        assert_eq!(api.get("/v1/instances/x").0, 404);

        let root = site(scratch.path(), "app", "served over TLS\n");
        let inst = created(api.post(
            "/v1/instances",
            &json!({
                "name": "app",
                "image": "base",
                "args": ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", root],
                "service_group": {"services": [
                    {"port": 443, "destination_port": 8080},
                    {"port": 8443, "destination_port": 8080, "handlers": ["tls"]},
                    {"port": 80, "handlers": ["http", "redirect"]}
                ]}
            }),
        ));
        // An inline group without a name takes the instance's.
        assert_eq!(inst["service_group"]["name"], "app", "{inst}");
        let (_, body) = api.get("/v1/services/app");
        assert_eq!(
            body["data"]["service_groups"][0]["services"],
            json!([
                {"port": 443, "destination_port": 8080, "handlers": ["http", "tls"]},
                {"port": 8443, "destination_port": 8080, "handlers": ["tls"]},
                {"port": 80, "destination_port": 443, "handlers": ["http", "redirect"]}
            ])
        );

        let ca = ca_path.display().to_string();
        for port in [443, 8443] {
            let resolve = format!("app.example:{port}:{PROXY_ADDR}");
            let url = format!("https://app.example:{port}/");
            let page = wait_for(Duration::from_secs(30), Duration::from_millis(300), || {
                curl(&topo.inet, &["--cacert", &ca, "--resolve", &resolve, &url])
            });
            assert_eq!(page.as_deref(), Some("served over TLS\n"), "port {port}");
        }

        // Port 80 sends clients to HTTPS.
        let out = topo.inet.exec(&[
            "curl",
            "-s",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "-H",
            "Host: app.example",
            &format!("http://{PROXY_ADDR}/a?b=c"),
        ]);
        assert_eq!(text(out), "301 https://app.example/a?b=c");

        // The inline group goes with its instance, and its ports close.
        assert_eq!(api.delete("/v1/instances/app").0, 200);
        assert_eq!(api.get("/v1/services/app").0, 404);
        let closed = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
            (!listens(&topo.inet, 443)).then_some(())
        });
        assert!(closed.is_some(), "port 443 still listens");
    });
}

#[test]
fn proxy_follows_group_changes_without_restart() {
    let test = "proxy_follows_group_changes_without_restart";
    let Some((topo, weftd, scratch)) = start(test, "wgc", "") else {
        return;
    };
    let api = &weftd.api;
    run(&weftd, || {
        assert!(!listens(&topo.inet, 7000));
        let (code, body) = api.post(
            "/v1/services",
            &json!({"name": "g", "services": [{"port": 7000, "handlers": []}]}),
        );
        assert_eq!(code, 200, "{body}");
        let open = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            listens(&topo.inet, 7000).then_some(())
        });
        assert!(open.is_some(), "port 7000 does not listen");

        // The port is the group's: another group cannot have it.
        let (code, body) = api.post(
            "/v1/services",
            &json!({"name": "h", "services": [{"port": 7000, "handlers": []}]}),
        );
        assert_eq!(code, 409, "{body}");
        assert_eq!(
            body["message"],
            "Invalid services[0].port 7000: service group 'g' already publishes it"
        );

        // Nor can a port another program of the host listens on.
        let mut other = topo
            .host
            .command("busybox")
            .args(["httpd", "-f", "-p", "7100", "-h"])
            .arg(scratch.path())
            .spawn()
            .unwrap();
        let taken = wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
            listens(&topo.inet, 7100).then_some(())
        });
        let (code, body) = api.post(
            "/v1/services",
            &json!({"name": "h", "services": [{"port": 7100, "handlers": []}]}),
        );
        let _ = other.kill();
        let _ = other.wait();
        assert!(taken.is_some(), "the other program did not listen");
        assert_eq!(code, 409, "{body}");
        assert_eq!(
            body["message"],
            "Invalid services[0].port 7100: another program on this host listens on it"
        );

        assert_eq!(api.delete("/v1/services/g").0, 200);
        let closed = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
            (!listens(&topo.inet, 7000)).then_some(())
        });
        assert!(closed.is_some(), "port 7000 still listens");
        let (_, list) = api.get("/v1/services");
        assert_eq!(list["data"]["service_groups"], json!([]));
    });
}
