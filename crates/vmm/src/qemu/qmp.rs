//! Just enough of QMP to know that QEMU has finished starting.
//!
//! QEMU greets a QMP client early, but answers commands only from its main loop, which runs
//! after every backend (TAP devices, sockets) and the kernel have been set up. An answer to
//! `qmp_capabilities` therefore means that the start-up errors are behind it.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::time::Instant;

/// How often a socket that does not exist yet or refuses is tried again.
const RETRY: Duration = Duration::from_millis(10);

/// Waits until QEMU answers on its QMP socket. Gives up with the last error after `bound`.
pub(crate) async fn wait_ready(socket: &Path, bound: Duration) -> io::Result<()> {
    let deadline = Instant::now() + bound;
    loop {
        let attempt = tokio::time::timeout_at(deadline, handshake(socket)).await;
        match attempt {
            Ok(Ok(())) => return Ok(()),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("QMP did not answer within {bound:?}"),
                ))
            }
            Ok(Err(err)) if retryable(&err) && Instant::now() + RETRY < deadline => {
                tokio::time::sleep(RETRY).await;
            }
            Ok(Err(err)) => return Err(err),
        }
    }
}

/// The socket is not there yet, or is a stale one nobody listens on.
fn retryable(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

async fn handshake(socket: &Path) -> io::Result<()> {
    let stream = UnixStream::connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();

    let greeting = next_message(&mut lines).await?;
    if greeting.get("QMP").is_none() {
        return Err(protocol(format!("unexpected QMP greeting {greeting}")));
    }

    write
        .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
        .await?;
    loop {
        let message = next_message(&mut lines).await?;
        if message.get("return").is_some() {
            return Ok(());
        }
        if let Some(error) = message.get("error") {
            return Err(protocol(format!("QMP refused qmp_capabilities: {error}")));
        }
        // Anything else is an asynchronous event; the answer follows.
    }
}

async fn next_message(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
) -> io::Result<serde_json::Value> {
    let line = lines.next_line().await?.ok_or_else(|| {
        io::Error::new(io::ErrorKind::UnexpectedEof, "QEMU closed the QMP socket")
    })?;
    serde_json::from_str(&line).map_err(|err| protocol(format!("bad QMP message: {err}")))
}

fn protocol(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    fn socket_path(name: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("weft-qmp-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    /// A QMP server that greets, sends an event, and then answers `reply`.
    async fn serve(listener: UnixListener, reply: &'static str) {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}\r\n")
            .await
            .unwrap();
        let command = lines.next_line().await.unwrap().unwrap();
        assert!(command.contains("qmp_capabilities"));
        write
            .write_all(b"{\"event\": \"RESUME\", \"data\": {}}\r\n")
            .await
            .unwrap();
        write.write_all(reply.as_bytes()).await.unwrap();
    }

    #[tokio::test]
    async fn ready_once_answered() {
        let path = socket_path("ready");
        let waiter = tokio::spawn({
            let path = path.clone();
            async move { wait_ready(&path, Duration::from_secs(5)).await }
        });
        // The socket appears only after the client started trying.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let listener = UnixListener::bind(&path).unwrap();
        serve(listener, "{\"return\": {}}\r\n").await;
        waiter.await.unwrap().unwrap();
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn refusal_is_an_error() {
        let path = socket_path("refused");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(serve(
            listener,
            "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no\"}}\r\n",
        ));
        let err = wait_ready(&path, Duration::from_secs(5)).await.unwrap_err();
        assert!(err.to_string().contains("CommandNotFound"), "{err}");
        server.await.unwrap();
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn bounded_when_nobody_listens() {
        let path = socket_path("absent");
        let started = std::time::Instant::now();
        let err = wait_ready(&path, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(
            err.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::NotFound
        ));
    }
}
