//! Asks the upstream resolver, over UDP and over TCP when the answer is truncated. This is
//! the shield's only way to resolve names: it never uses the C library's resolver.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

const UDP_TRY: Duration = Duration::from_secs(2);
const UDP_TRIES: usize = 2;
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// The EDNS buffer size the shield offers and accepts (the size DNS flag day 2020 settled on).
pub const EDNS_PAYLOAD: u16 = 1232;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no answer from {0}")]
    Timeout(SocketAddrV4),
    #[error("talking to {server}: {source}")]
    Io {
        server: SocketAddrV4,
        source: std::io::Error,
    },
    #[error("bad answer from {0}")]
    Malformed(SocketAddrV4),
}

/// Resolves one question and returns the upstream's response.
pub async fn resolve(
    server: SocketAddrV4,
    query: &Query,
    checking_disabled: bool,
) -> Result<Message, UpstreamError> {
    let mut request = Message::new();
    request
        .set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_checking_disabled(checking_disabled)
        .add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    request.set_edns(edns);
    let bytes = request
        .to_vec()
        .map_err(|_| UpstreamError::Malformed(server))?;

    let response = over_udp(server, &bytes, &request).await?;
    if !response.truncated() {
        return Ok(response);
    }
    over_tcp(server, &bytes, &request).await
}

/// Whether a response answers our request: same id, same question.
fn answers(request: &Message, response: &Message) -> bool {
    response.id() == request.id()
        && response.message_type() == MessageType::Response
        && response.queries() == request.queries()
}

async fn over_udp(
    server: SocketAddrV4,
    bytes: &[u8],
    request: &Message,
) -> Result<Message, UpstreamError> {
    let io = |source| UpstreamError::Io { server, source };
    // A fresh socket per question: a random source port, and stray answers of earlier
    // questions cannot arrive on it.
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
        .await
        .map_err(io)?;
    socket.connect(server).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    for _ in 0..UDP_TRIES {
        socket.send(bytes).await.map_err(io)?;
        let deadline = tokio::time::Instant::now() + UDP_TRY;
        loop {
            let received = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await;
            let Ok(received) = received else { break };
            let n = received.map_err(io)?;
            // Anything that is not the answer to this question is ignored, not trusted.
            if let Ok(response) = Message::from_vec(&buf[..n]) {
                if answers(request, &response) {
                    return Ok(response);
                }
            }
        }
    }
    Err(UpstreamError::Timeout(server))
}

async fn over_tcp(
    server: SocketAddrV4,
    bytes: &[u8],
    request: &Message,
) -> Result<Message, UpstreamError> {
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(bytes);
        stream.write_all(&framed).await?;
        let len = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = timeout(TCP_TIMEOUT, exchange)
        .await
        .map_err(|_| UpstreamError::Timeout(server))?
        .map_err(|source| UpstreamError::Io { server, source })?;
    let response = Message::from_vec(&buf).map_err(|_| UpstreamError::Malformed(server))?;
    if !answers(request, &response) {
        return Err(UpstreamError::Malformed(server));
    }
    Ok(response)
}
