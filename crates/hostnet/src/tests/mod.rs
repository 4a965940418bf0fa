//! Privileged tests: each runs on its own thread inside a fresh network namespace, so the
//! host's own network is never touched. Without root, `/dev/net/tun` or `nft` they skip, and
//! under `CI=true` they fail instead.

mod forwarding;
mod guest;
mod pool;
mod relay;
mod relay_own;
mod relay_state;

use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{Handle, LinkUnspec, LinkVeth};
use weft_model::Ipv4Cidr;

use crate::{link, HostNet, PoolNet};

/// Why this machine cannot run privileged tests, if it cannot.
fn missing_privilege() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    if !crate::nft::nft_program().is_file() {
        return Some("no nft program".into());
    }
    None
}

fn skip_or_fail(test: &str, why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: privileged test cannot run under CI: {why}");
    }
    eprintln!("skipping {test}: {why}");
}

fn netns_id(path: &str) -> std::io::Result<std::path::PathBuf> {
    std::fs::read_link(path)
}

/// Moves the calling thread (only it) into a new network namespace and checks that it did,
/// so that nothing a test does can reach the host's namespace.
fn enter_new_netns() -> Result<(), String> {
    // SAFETY: unshare takes flags only; CLONE_NEWNET changes the calling thread's namespace
    // and no memory is shared with the call.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare: {}", std::io::Error::last_os_error()));
    }
    let thread = netns_id("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
    let process = netns_id("/proc/self/ns/net").map_err(|e| e.to_string())?;
    if thread == process {
        return Err("the thread is still in the process's network namespace".into());
    }
    Ok(())
}

/// Runs `body` in a fresh network namespace with `lo` up, on a current-thread runtime of its
/// own thread (children such as `nft` inherit the namespace).
pub(crate) fn in_netns<F, Fut>(test: &'static str, body: F)
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    if let Some(why) = missing_privilege() {
        skip_or_fail(test, &why);
        return;
    }

    let thread = std::thread::Builder::new()
        .name(test.into())
        .spawn(move || {
            if let Err(why) = enter_new_netns() {
                skip_or_fail(test, &why);
                return;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let (connection, handle, _) = rtnetlink::new_connection().expect("netlink");
                tokio::spawn(connection);
                set_up(&handle, "lo").await;
                body(handle).await;
            });
        })
        .expect("spawn test thread");

    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

pub(crate) async fn index_of(handle: &Handle, name: &str) -> u32 {
    link::link_by_name(handle, name)
        .await
        .expect("get link")
        .unwrap_or_else(|| panic!("no link {name}"))
        .header
        .index
}

pub(crate) async fn set_up(handle: &Handle, name: &str) {
    let index = index_of(handle, name).await;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .expect("link up");
}

/// A veth pair `<name>`/`<name>p`, both up: an uplink for the table.
pub(crate) async fn add_veth(handle: &Handle, name: &str) {
    let peer = format!("{name}p");
    handle
        .link()
        .add(LinkVeth::new(name, &peer).build())
        .execute()
        .await
        .expect("add veth");
    set_up(handle, name).await;
    set_up(handle, &peer).await;
}

pub(crate) async fn add_address(handle: &Handle, name: &str, addr: Ipv4Addr, prefix: u8) {
    let index = index_of(handle, name).await;
    handle
        .address()
        .add(index, addr.into(), prefix)
        .execute()
        .await
        .expect("add address");
}

pub(crate) async fn is_up(handle: &Handle, name: &str) -> bool {
    use rtnetlink::packet_route::link::LinkFlags;
    let link = link::link_by_name(handle, name).await.unwrap().unwrap();
    link.header.flags.contains(LinkFlags::Up)
}

pub(crate) async fn link_count(handle: &Handle) -> usize {
    let links: Vec<_> = handle.link().get().execute().try_collect().await.unwrap();
    links.len()
}

pub(crate) fn pool(uplink: &str, taps: u32) -> PoolNet {
    PoolNet {
        cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 100, 0, 0), 16).unwrap(),
        gateway: Ipv4Addr::new(10, 100, 255, 254),
        tap_prefix: "wtap".into(),
        tap_count: taps,
        uplink: uplink.into(),
    }
}

/// `nft -j list table ip weft` in the calling thread's namespace, as JSON.
pub(crate) fn list_table() -> Option<serde_json::Value> {
    let out = std::process::Command::new(crate::nft::nft_program())
        .args(["-j", "list", "table", "ip", crate::nft::TABLE])
        .output()
        .expect("run nft");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("nft json"))
}

pub(crate) async fn hostnet() -> HostNet {
    HostNet::connect().await.expect("connect")
}

/// A second namespace, made on a helper thread; the returned file keeps it alive.
pub(crate) fn new_netns() -> File {
    std::thread::spawn(|| {
        enter_new_netns().expect("far namespace");
        File::open("/proc/thread-self/ns/net").expect("open namespace")
    })
    .join()
    .expect("far namespace thread")
}

/// Runs `body` with a netlink handle inside the namespace `ns`, on a thread of its own.
pub(crate) fn within<F, Fut>(ns: &File, body: F)
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: `fd` is an open namespace file borrowed for the whole scope; setns only
            // switches the calling thread's namespace.
            assert_eq!(unsafe { libc::setns(fd, libc::CLONE_NEWNET) }, 0, "setns");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (connection, handle, _) = rtnetlink::new_connection().unwrap();
                tokio::spawn(connection);
                body(handle).await;
            });
        })
        .join()
        .expect("far namespace setup");
    });
}

pub(crate) async fn mac_of(handle: &Handle, name: &str) -> [u8; 6] {
    let link = link::link_by_name(handle, name).await.unwrap().unwrap();
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) => mac.as_slice().try_into().ok(),
            _ => None,
        })
        .expect("link has a MAC")
}

/// Waits until the kernel has the link operational. Carrier comes on as soon as a guest
/// attaches, but the kernel starts transmitting to the device only once its deferred link
/// watch has run, up to a second later; frames sent to it before then are dropped.
pub(crate) async fn wait_operational(handle: &Handle, name: &str) {
    use rtnetlink::packet_route::link::State;
    for _ in 0..50 {
        let link = link::link_by_name(handle, name).await.unwrap().unwrap();
        if link
            .attributes
            .contains(&LinkAttribute::OperState(State::Up))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} did not become operational");
}

/// Moves the link `name` into the namespace `ns`.
pub(crate) async fn move_to(handle: &Handle, name: &str, ns: &File) {
    let index = index_of(handle, name).await;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .setns_by_fd(ns.as_raw_fd())
                .build(),
        )
        .execute()
        .await
        .expect("move the link");
}

/// A UDP socket bound to `addr` in the namespace `ns` (a socket stays in the namespace it was
/// made in), with a read timeout.
pub(crate) fn udp_socket_in(ns: &File, addr: std::net::SocketAddrV4) -> std::net::UdpSocket {
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: `fd` is an open namespace file borrowed for the whole scope; setns only
            // switches the calling thread's namespace.
            assert_eq!(unsafe { libc::setns(fd, libc::CLONE_NEWNET) }, 0, "setns");
            let socket = std::net::UdpSocket::bind(addr).expect("bind");
            socket
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            socket
        })
        .join()
        .expect("socket thread")
    })
}
