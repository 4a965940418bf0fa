//! Moving bytes between a client and its upstream: request after request with each head
//! judged (and rewritten when it carries placeholders), bodies passed on by their framing,
//! responses copied as they come. Buffers are bounded; an idle connection is closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::http::{chunk_size, parse_head, Body, HeadError, RequestHead, MAX_HEAD};

const COPY_BUF: usize = 16 * 1024;
const START_BUF: usize = 8 * 1024;
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// When either direction of a connection last moved a byte.
pub struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    pub fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns once nothing has moved for `limit`.
    pub async fn idle(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let quiet = self.base.elapsed().saturating_sub(last);
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit - quiet + Duration::from_millis(10)).await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Head(#[from] HeadError),
}

/// What the caller decided about one request head.
pub enum Verdict {
    Forward,
    Rewrite(Vec<u8>),
    Refuse(&'static str),
}

/// Why forwarding requests stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The client closed its side.
    Closed,
    /// A request was refused by the judge or could not be parsed; the reason is logged.
    Refused(&'static str),
    /// A WebSocket upgrade was accepted; the bytes after it were passed on as they came.
    Upgraded,
}

/// A client's byte stream with a read-ahead buffer that starts small and grows, only for
/// a long head, up to `MAX_HEAD`.
pub struct Incoming<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    activity: Arc<Activity>,
}

impl<R: AsyncRead + Unpin> Incoming<R> {
    pub fn new(inner: R, activity: Arc<Activity>) -> Incoming<R> {
        Incoming {
            inner,
            buf: vec![0u8; START_BUF],
            pos: 0,
            end: 0,
            activity,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Reads more; 0 at the end of the stream. Fails when the buffer is full.
    async fn fill(&mut self) -> Result<usize, StreamError> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_HEAD {
                return Err(HeadError::TooLarge.into());
            }
            self.buf.resize((self.buf.len() * 2).min(MAX_HEAD), 0);
        }
        let n = self.inner.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        self.activity.touch();
        Ok(n)
    }

    /// The next request head; None when the client closed between requests.
    pub async fn read_head(&mut self) -> Result<Option<RequestHead>, StreamError> {
        loop {
            if self.pos < self.end {
                if let Some((head, len)) = parse_head(self.buffered())? {
                    self.pos += len;
                    return Ok(Some(head));
                }
            }
            if self.fill().await? == 0 {
                if self.pos == self.end {
                    return Ok(None);
                }
                return Err(HeadError::Malformed("truncated-request").into());
            }
        }
    }

    /// One line, CRLF included, of at most `max` bytes.
    async fn read_line(&mut self, max: usize) -> Result<Vec<u8>, StreamError> {
        loop {
            if let Some(at) = self.buffered().windows(2).position(|w| w == b"\r\n") {
                let line = self.buffered()[..at + 2].to_vec();
                self.pos += at + 2;
                return Ok(line);
            }
            if self.end - self.pos > max {
                return Err(HeadError::Malformed("line-too-long").into());
            }
            if self.fill().await? == 0 {
                return Err(HeadError::Malformed("truncated-body").into());
            }
        }
    }

    async fn copy_exact<W: AsyncWrite + Unpin>(
        &mut self,
        mut n: u64,
        out: &mut W,
    ) -> Result<(), StreamError> {
        while n > 0 {
            if self.pos == self.end && self.fill().await? == 0 {
                return Err(HeadError::Malformed("truncated-body").into());
            }
            let take = (self.end - self.pos).min(usize::try_from(n).unwrap_or(usize::MAX));
            out.write_all(&self.buf[self.pos..self.pos + take]).await?;
            self.pos += take;
            n -= take as u64;
        }
        Ok(())
    }

    async fn copy_chunked<W: AsyncWrite + Unpin>(
        &mut self,
        out: &mut W,
    ) -> Result<(), StreamError> {
        loop {
            let line = self.read_line(MAX_CHUNK_LINE).await?;
            let size = chunk_size(&line)?;
            out.write_all(&line).await?;
            if size == 0 {
                break;
            }
            self.copy_exact(size, out).await?;
            let end = self.read_line(2).await?;
            if end != b"\r\n" {
                return Err(HeadError::Malformed("bad-chunk").into());
            }
            out.write_all(&end).await?;
        }
        // Trailer fields, then the blank line that ends the request.
        let mut trailers = 0;
        loop {
            let line = self.read_line(MAX_CHUNK_LINE).await?;
            trailers += line.len();
            if trailers > MAX_TRAILERS {
                return Err(HeadError::Malformed("trailers-too-large").into());
            }
            out.write_all(&line).await?;
            if line == b"\r\n" {
                return Ok(());
            }
        }
    }

    pub async fn forward_body<W: AsyncWrite + Unpin>(
        &mut self,
        body: Body,
        out: &mut W,
    ) -> Result<(), StreamError> {
        match body {
            Body::None => Ok(()),
            Body::Length(n) => self.copy_exact(n, out).await,
            Body::Chunked => self.copy_chunked(out).await,
        }
    }

    /// Everything left, unparsed: what follows an accepted upgrade.
    async fn copy_rest<W: AsyncWrite + Unpin>(&mut self, out: &mut W) -> std::io::Result<()> {
        out.write_all(self.buffered()).await?;
        out.flush().await?;
        self.pos = self.end;
        copy_touching(&mut self.inner, out, &self.activity).await
    }
}

/// Passes on the requests of one connection. The first head was judged by the caller, who
/// gives the bytes to send for it; later ones are judged here. Only the first request may
/// be an upgrade: `upgraded` then says whether the server switched protocols.
pub async fn forward_requests<R, W>(
    incoming: &mut Incoming<R>,
    upstream: &mut W,
    first: (&RequestHead, &[u8]),
    upgraded: Option<oneshot::Receiver<bool>>,
    judge: &mut (dyn FnMut(&RequestHead) -> Verdict + Send),
) -> Result<Ending, std::io::Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let stop = |err: StreamError| match err {
        StreamError::Io(err) => Err(err),
        StreamError::Head(err) => Ok(Ending::Refused(err.reason())),
    };
    upstream.write_all(first.1).await?;
    if let Err(err) = incoming.forward_body(first.0.body, upstream).await {
        return stop(err);
    }
    upstream.flush().await?;

    if first.0.upgrade {
        let switched = match upgraded {
            Some(receiver) => receiver.await.unwrap_or(false),
            None => false,
        };
        if !switched {
            return Ok(Ending::Closed);
        }
        incoming.copy_rest(upstream).await?;
        return Ok(Ending::Upgraded);
    }

    loop {
        let head = match incoming.read_head().await {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(Ending::Closed),
            Err(err) => return stop(err),
        };
        if head.upgrade {
            return Ok(Ending::Refused("upgrade-not-first"));
        }
        match judge(&head) {
            Verdict::Refuse(reason) => return Ok(Ending::Refused(reason)),
            Verdict::Forward => upstream.write_all(&head.raw).await?,
            Verdict::Rewrite(bytes) => upstream.write_all(&bytes).await?,
        }
        if let Err(err) = incoming.forward_body(head.body, upstream).await {
            return stop(err);
        }
        upstream.flush().await?;
    }
}

/// Copies until the end of `from`, then shuts `to` down.
pub async fn copy_touching<R, W>(
    from: &mut R,
    to: &mut W,
    activity: &Activity,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        activity.touch();
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
    }
}

/// Copies responses to the client. When `upgrade` is given, the status of the first
/// response tells the request side whether the server switched protocols.
pub async fn copy_responses<R, W>(
    from: &mut R,
    to: &mut W,
    activity: &Activity,
    mut upgrade: Option<oneshot::Sender<bool>>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut status = Vec::new();
    while let Some(sender) = upgrade.take() {
        let mut buf = [0u8; 12];
        let n = from.read(&mut buf[..12 - status.len()]).await?;
        if n == 0 {
            let _ = sender.send(false);
            let _ = to.shutdown().await;
            return Ok(());
        }
        activity.touch();
        status.extend_from_slice(&buf[..n]);
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
        if status.len() < 12 {
            upgrade = Some(sender);
        } else {
            let switched =
                status.starts_with(b"HTTP/1.1 101") || status.starts_with(b"HTTP/1.0 101");
            let _ = sender.send(switched);
        }
    }
    copy_touching(from, to, activity).await
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
