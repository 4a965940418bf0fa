//! A small TCP throughput and round-trip meter: servers that run in the internet namespace,
//! and a client that runs in a guest's namespace.
//!
//! Port [`STREAM_PORT`]: the client's first byte says the direction; `U` (upload) the client
//! sends until it shuts its side down and the server answers with the byte count; `D`
//! (download) followed by a duration in milliseconds (u32, big endian), the server sends for
//! that long and closes. Port [`ECHO_PORT`]: every byte is sent back.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::stats::Samples;
use crate::world::enter;

pub const STREAM_PORT: u16 = 5201;
pub const ECHO_PORT: u16 = 5202;
const CHUNK: usize = 128 * 1024;

/// The servers, serving until dropped.
pub struct Servers {
    stop: Arc<AtomicBool>,
}

impl Servers {
    /// Starts both servers on `addr` inside the namespace at `ns`.
    pub fn start(ns: &Path, addr: Ipv4Addr) -> anyhow::Result<Servers> {
        let stop = Arc::new(AtomicBool::new(false));
        for (port, serve) in [
            (STREAM_PORT, stream_conn as fn(TcpStream)),
            (ECHO_PORT, echo_conn),
        ] {
            let (ns, stop) = (ns.to_path_buf(), stop.clone());
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let listener = enter(&ns)
                    .and_then(|_| Ok(TcpListener::bind((addr, port))?))
                    .and_then(|l| {
                        l.set_nonblocking(true)?;
                        Ok(l)
                    });
                let listener = match listener {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let _ = conn.set_nonblocking(false);
                            std::thread::spawn(move || serve(conn));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
            ready_rx.recv().context("server thread")??;
        }
        Ok(Servers { stop })
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn stream_conn(mut conn: TcpStream) {
    let mut kind = [0u8; 1];
    if conn.read_exact(&mut kind).is_err() {
        return;
    }
    let mut buf = vec![0u8; CHUNK];
    match kind[0] {
        b'U' => {
            let mut total: u64 = 0;
            loop {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
                }
            }
            let _ = conn.write_all(&total.to_be_bytes());
        }
        b'D' => {
            let mut ms = [0u8; 4];
            if conn.read_exact(&mut ms).is_err() {
                return;
            }
            let until = Instant::now() + Duration::from_millis(u32::from_be_bytes(ms) as u64);
            while Instant::now() < until {
                if conn.write_all(&buf).is_err() {
                    return;
                }
            }
        }
        _ => {}
    }
}

fn echo_conn(mut conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let mut buf = [0u8; 64];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// What a client measured from one guest.
pub struct PathFigures {
    pub upload: f64,
    pub download: f64,
    pub rtt: Samples,
}

/// Measures from inside the namespace at `ns`: a stream each way for `secs`, then `rtts`
/// one-byte round trips. Connects with retries while the guest's network comes up.
pub fn measure(
    ns: &Path,
    server: Ipv4Addr,
    secs: Duration,
    rtts: usize,
) -> anyhow::Result<PathFigures> {
    let ns: PathBuf = ns.to_path_buf();
    std::thread::spawn(move || -> anyhow::Result<PathFigures> {
        enter(&ns)?;
        let stream_addr = SocketAddr::from((server, STREAM_PORT));
        let echo_addr = SocketAddr::from((server, ECHO_PORT));
        Ok(PathFigures {
            upload: upload(stream_addr, secs)?,
            download: download(stream_addr, secs)?,
            rtt: round_trips(echo_addr, rtts)?,
        })
    })
    .join()
    .expect("client thread")
}

/// Connects, retrying for a few seconds: a guest configures its network as it boots.
pub fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(conn) => return Ok(conn),
            Err(e) if Instant::now() >= deadline => {
                return Err(e).with_context(|| format!("connecting to {addr}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn upload(addr: SocketAddr, secs: Duration) -> anyhow::Result<f64> {
    let mut conn = connect(addr)?;
    let buf = vec![0x5au8; CHUNK];
    conn.write_all(b"U")?;
    let started = Instant::now();
    while started.elapsed() < secs {
        conn.write_all(&buf)?;
    }
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut total = [0u8; 8];
    conn.read_exact(&mut total)
        .context("reading the byte count")?;
    Ok(u64::from_be_bytes(total) as f64 / started.elapsed().as_secs_f64())
}

fn download(addr: SocketAddr, secs: Duration) -> anyhow::Result<f64> {
    let mut conn = connect(addr)?;
    let mut request = vec![b'D'];
    request.extend_from_slice(&(secs.as_millis() as u32).to_be_bytes());
    conn.write_all(&request)?;
    let mut buf = vec![0u8; CHUNK];
    let mut total: u64 = 0;
    let mut first = None;
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        first.get_or_insert_with(Instant::now);
        total += n as u64;
    }
    let elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
    Ok(total as f64 / elapsed.as_secs_f64().max(1e-9))
}

fn round_trips(addr: SocketAddr, n: usize) -> anyhow::Result<Samples> {
    let mut conn = connect(addr)?;
    conn.set_nodelay(true)?;
    let mut samples = Samples::new();
    let mut byte = [0u8; 1];
    for i in 0..n + 20 {
        let started = Instant::now();
        conn.write_all(b"p")?;
        conn.read_exact(&mut byte)?;
        if i >= 20 {
            samples.push(started.elapsed());
        }
    }
    Ok(samples)
}
