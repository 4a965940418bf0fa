//! The watcher's reading against what a guest may send: valid announcements, garbage,
//! endless lines and floods. The tests play the VMM's side of the channel (a listening unix
//! socket, as QEMU's chardev and weft-netns serve it).

use std::io::Write as _;
use std::os::unix::net::UnixStream as StdStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::UnixStream;

use super::*;

const PRIMARY: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 2);

fn line(listeners: &[(&str, u16)]) -> String {
    let items: Vec<String> = listeners
        .iter()
        .map(|(addr, port)| format!(r#"{{"addr":"{addr}","port":{port},"proto":"tcp"}}"#))
        .collect();
    format!("{{\"v\":1,\"listeners\":[{}]}}\n", items.join(","))
}

fn counts(c: &AgentCounters) -> [u64; 4] {
    c.lines().map(|(_, n)| n)
}

#[test]
fn keeps_the_primary_and_wildcard_listeners_of_the_last_valid_line() {
    let counters = AgentCounters::default();
    let now = Instant::now();
    let mut session = Session::new(Some(PRIMARY), now);

    let first = line(&[("10.100.0.2", 8080), ("172.30.5.2", 9090)]);
    assert_eq!(
        session.take(first.as_bytes(), now, &counters),
        Some(vec!["tcp:8080".to_string()])
    );

    // Two lines in one read, the second cut in half: the first one counts until the second
    // is complete.
    let second = line(&[("0.0.0.0", 22), ("::", 443)]);
    let third = line(&[("10.100.0.2", 8080), ("10.100.0.2", 8080), ("::", 22)]);
    let (a, b) = third.split_at(20);
    let chunk = format!("{second}{a}");
    assert_eq!(
        session.take(chunk.as_bytes(), now, &counters),
        Some(vec!["tcp:22".to_string(), "tcp:443".to_string()])
    );
    assert_eq!(
        session.take(b.as_bytes(), now, &counters),
        Some(vec!["tcp:22".to_string(), "tcp:8080".to_string()])
    );

    // Garbage changes nothing.
    let garbage = b"\xff\x00garbage\n{}\n";
    assert_eq!(session.take(garbage, now, &counters), None);
    assert_eq!(counts(&counters), [3, 0, 2, 0]);
    let read = counters.bytes.load(Ordering::Relaxed) as usize;
    assert_eq!(read, first.len() + chunk.len() + b.len() + garbage.len());

    // An empty set is an announcement too: the app closed its ports.
    assert_eq!(
        session.take(line(&[]).as_bytes(), now, &counters),
        Some(vec![])
    );
}

#[test]
fn oversized_lines_are_dropped_and_reading_resumes_after_them() {
    let counters = AgentCounters::default();
    let now = Instant::now();
    let mut session = Session::new(Some(PRIMARY), now);
    let endless = vec![b'{'; 100_000];
    assert_eq!(session.take(&endless, now, &counters), None);
    assert_eq!(session.take(&endless, now, &counters), None);
    let tail = format!("}}\n{}", line(&[("0.0.0.0", 80)]));
    assert_eq!(
        session.take(tail.as_bytes(), now, &counters),
        Some(vec!["tcp:80".to_string()])
    );
    assert_eq!(counts(&counters), [1, 1, 0, 0]);
}

#[test]
fn a_flood_of_lines_is_parsed_only_up_to_the_rate() {
    let counters = AgentCounters::default();
    let t0 = Instant::now();
    let mut session = Session::new(Some(PRIMARY), t0);
    let flood = line(&[("0.0.0.0", 80)]).repeat(1000);
    assert!(session.take(flood.as_bytes(), t0, &counters).is_some());
    assert_eq!(
        counts(&counters),
        [LINE_BURST as u64, 0, 0, 1000 - LINE_BURST as u64]
    );

    // A second later, the rate's worth more is parsed.
    let t1 = t0 + Duration::from_secs(1);
    session.take(flood.as_bytes(), t1, &counters);
    let accepted = counters.accepted.load(Ordering::Relaxed);
    assert_eq!(accepted, LINE_BURST as u64 + LINES_PER_S as u64);

    // Reading pauses once the byte budget is spent.
    assert!(session.pause(BYTE_BURST as usize * 2, t1) >= Duration::from_millis(900));
}

/// Records what reaches the store.
#[derive(Default)]
struct Recorded(Vec<Vec<String>>);

impl ServicesSink for Recorded {
    async fn record(&mut self, services: Vec<String>) {
        self.0.push(services);
    }
}

/// A connected pair: the guest's end (as the VMM passes it on) and the watcher's.
fn channel() -> (StdStream, UnixStream) {
    let (guest, weftd) = StdStream::pair().unwrap();
    weftd.set_nonblocking(true).unwrap();
    (guest, UnixStream::from_std(weftd).unwrap())
}

#[tokio::test]
async fn reads_a_connection_to_its_end() {
    let (mut guest, mut weftd) = channel();
    let counters = AgentCounters::default();
    let mut session = Session::new(Some(PRIMARY), Instant::now());
    let mut sink = Recorded::default();

    guest
        .write_all(line(&[("10.100.0.2", 8080)]).as_bytes())
        .unwrap();
    guest.write_all(b"not json\n").unwrap();
    guest.write_all(line(&[]).as_bytes()).unwrap();
    drop(guest);

    let mut buffer = vec![0; READ_CHUNK];
    tokio::time::timeout(
        Duration::from_secs(5),
        read_connection(&mut weftd, &mut buffer, &mut session, &counters, &mut sink),
    )
    .await
    .expect("the connection's end ends the reading");
    // Each line carries the whole set: of what one read brings, the last valid line counts.
    assert_eq!(sink.0.last(), Some(&vec![]));
    assert_eq!(counts(&counters), [2, 0, 1, 0]);
}

/// A guest that writes as fast as it can: the watcher reads no faster than its byte rate,
/// counts what it drops, and the runtime it shares stays responsive throughout.
#[tokio::test(flavor = "current_thread")]
async fn a_flooding_guest_is_slowed_down_and_does_not_stall_the_runtime() {
    let (mut guest, mut weftd) = channel();
    let flooding = Duration::from_secs(2);

    // The guest, on a thread of its own: valid lines, garbage and one endless line, over and
    // over, until it has flooded long enough.
    let writer = std::thread::spawn(move || {
        let mut pattern = line(&[("0.0.0.0", 80)]).repeat(50).into_bytes();
        pattern.extend_from_slice(b"\x00\xffgarbage\n".repeat(50).as_slice());
        pattern.extend(std::iter::repeat_n(b'x', 20_000));
        pattern.push(b'\n');
        let started = Instant::now();
        let mut written = 0usize;
        guest
            .set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        while started.elapsed() < flooding {
            match guest.write(&pattern) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
        written
    });

    let counters = Arc::new(AgentCounters::default());
    let reader = {
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let mut session = Session::new(Some(PRIMARY), Instant::now());
            let mut sink = Recorded::default();
            let mut buffer = vec![0; READ_CHUNK];
            read_connection(&mut weftd, &mut buffer, &mut session, &counters, &mut sink).await;
            sink.0.len()
        })
    };

    // Something else on the same runtime: how late do its ticks come?
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    while started.elapsed() < flooding {
        let asked = Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        worst = worst.max(asked.elapsed().saturating_sub(Duration::from_millis(10)));
    }
    let written = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    reader.abort();

    let read = counters.bytes.load(Ordering::Relaxed) as f64;
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        read <= BYTE_BURST + BYTES_PER_S * seconds + READ_CHUNK as f64,
        "read {read} bytes in {seconds:.1} s, written {written}"
    );
    assert!(read > BYTES_PER_S * 0.5, "read only {read} bytes");
    let [accepted, oversized, malformed, rate] = counts(&counters);
    assert!(accepted <= LINE_BURST as u64 + (LINES_PER_S * seconds) as u64 + 1);
    assert!(oversized > 0 && rate > 0, "{:?}", counters.lines());
    assert!(accepted + malformed > 0);
    // A reader that did not yield would hold this single-threaded runtime for the whole
    // flood; the margin is for a busy test host.
    assert!(
        worst < Duration::from_millis(250),
        "the runtime stalled for {worst:?}"
    );
}
