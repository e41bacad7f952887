//! The agent channel's framed transport: the same `AgentMessage` and `ServerMessage` protobufs as
//! the gRPC service in agent.proto, each preceded by its length (4 bytes, big-endian), on a mutual
//! TLS connection to the agent port without HTTP/2. An agent asks for it by offering the ALPN
//! protocol [`ALPN`]; the server keeps serving gRPC (ALPN `h2`) on the same port for renewals and
//! older agents.
//!
//! Why a second transport: HTTP/2 and tonic keep about 50 KiB of buffers per connection at fixed
//! sizes no setting changes (write buffer, read buffer, HPACK tables, decode buffer), which is most
//! of what an idle device costs the server (BENCHMARKS.md). A framed connection holds rustls' state
//! and nothing else while idle: a message is read into a buffer of its own size, which is dropped
//! as soon as the message is decoded.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// The ALPN protocol name of the framed agent channel.
pub const ALPN: &[u8] = b"ward-agent/2";

/// A body is read into a buffer grown this much at a time, so a length prefix alone (a peer that
/// announces megabytes and sends nothing) cannot make the reader allocate them.
const GROWTH: usize = 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The length prefix announces more than the reader accepts.
    TooLarge { length: usize, limit: usize },
    /// The frame's bytes are not a message of the expected type.
    Malformed(String),
    /// Reading failed, or the stream ended inside a frame.
    Io(std::io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { length, limit } => {
                write!(f, "a message of {length} bytes exceeds the limit of {limit}")
            }
            FrameError::Malformed(why) => write!(f, "not a valid message: {why}"),
            FrameError::Io(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads length-prefixed messages from `R`, at most `limit` bytes each.
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    limit: usize,
    header: [u8; 4],
    header_filled: usize,
    /// The body's length once its header has been read.
    length: Option<usize>,
    body: Vec<u8>,
    body_filled: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader accepting messages of at most `limit` bytes.
    pub fn new(reader: R, limit: usize) -> Self {
        Self {
            reader,
            limit,
            header: [0; 4],
            header_filled: 0,
            length: None,
            body: Vec::new(),
            body_filled: 0,
        }
    }

    /// The next message, or `Ok(None)` when the peer closed the stream between two messages.
    ///
    /// Cancel-safe: every await is a single `read` whose bytes are kept in `self` before the next
    /// await, so a call dropped by `select!` loses nothing and the next call goes on where it was.
    pub async fn message<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        loop {
            let Some(length) = self.length else {
                let read = self
                    .reader
                    .read(&mut self.header[self.header_filled..])
                    .await
                    .map_err(FrameError::Io)?;
                if read == 0 {
                    return if self.header_filled == 0 {
                        Ok(None)
                    } else {
                        Err(ended_inside_a_frame())
                    };
                }
                self.header_filled += read;
                if self.header_filled == self.header.len() {
                    self.header_filled = 0;
                    let length = u32::from_be_bytes(self.header) as usize;
                    if length > self.limit {
                        return Err(FrameError::TooLarge {
                            length,
                            limit: self.limit,
                        });
                    }
                    self.length = Some(length);
                }
                continue;
            };
            if self.body_filled == length {
                self.length = None;
                self.body_filled = 0;
                // Taken, not cleared: the buffer's memory goes back at once.
                let body = std::mem::take(&mut self.body);
                return M::decode(&body[..length])
                    .map(Some)
                    .map_err(|err| FrameError::Malformed(err.to_string()));
            }
            if self.body.len() == self.body_filled {
                self.body.resize(length.min(self.body_filled + GROWTH), 0);
            }
            let read = self
                .reader
                .read(&mut self.body[self.body_filled..])
                .await
                .map_err(FrameError::Io)?;
            if read == 0 {
                return Err(ended_inside_a_frame());
            }
            self.body_filled += read;
        }
    }
}

fn ended_inside_a_frame() -> FrameError {
    FrameError::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the stream ended inside a message",
    ))
}

/// Appends one message, length first, to `buffer`.
fn encode_frame_into<M: Message>(buffer: &mut Vec<u8>, message: &M) {
    let length = message.encoded_len();
    buffer.reserve(4 + length);
    buffer.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes());
    message.encode_raw(buffer);
}

/// Writes one message and flushes it.
pub async fn write_message<W, M>(writer: &mut W, message: &M) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    M: Message,
{
    write_messages(writer, std::slice::from_ref(message)).await
}

/// Writes several messages in order with one write and flushes them: what is queued together
/// leaves together (one TLS record and one system call while they fit in a record, where one
/// write each costs a record, a system call and a wake-up of the peer per message).
pub async fn write_messages<W, M>(writer: &mut W, messages: &[M]) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    M: Message,
{
    let mut frames = Vec::new();
    for message in messages {
        encode_frame_into(&mut frames, message);
    }
    writer.write_all(&frames).await?;
    writer.flush().await
}

/// A device's TLS settings for the framed channel: trusts exactly the certificates in `ca_pem`,
/// presents the certificate chain in `cert_pem` with the key in `key_pem`, offers [`ALPN`].
pub fn client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|err| format!("reading the server's CA certificate: {err}"))?;
        roots
            .add(cert)
            .map_err(|err| format!("the server's CA certificate is not usable: {err}"))?;
    }
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("reading the device certificate: {err}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|err| format!("reading the device key: {err}"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS setup: {err}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|err| format!("the device certificate and key do not go together: {err}"))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Connects to the agent port at `host:port` (from `local` when given), completes the TLS
/// handshake within `timeout` and checks that the server chose the framed channel.
pub async fn connect(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    local: Option<IpAddr>,
    timeout: Duration,
) -> std::io::Result<TlsStream<TcpStream>> {
    let attempt = async {
        let mut last = None;
        for address in tokio::net::lookup_host((host, port)).await? {
            match connect_to(config.clone(), address, host, local).await {
                Ok(stream) => return Ok(stream),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} has no address"))
        }))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out"))?
}

/// Connects to the agent port at `address`, expecting a certificate for `server_name`.
pub async fn connect_to(
    config: Arc<rustls::ClientConfig>,
    address: SocketAddr,
    server_name: &str,
    local: Option<IpAddr>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{server_name:?} is not a valid server name"),
        )
    })?;
    let tcp = connect_tcp(address, local).await?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    if stream.get_ref().1.alpn_protocol() != Some(ALPN) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the server does not offer the framed agent channel (ALPN ward-agent/2)",
        ));
    }
    Ok(stream)
}

async fn connect_tcp(address: SocketAddr, local: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(local) = local {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    socket.set_nodelay(true)?;
    socket.connect(address).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AgentMessage, Heartbeat, agent_message};

    /// `message` with its length prefix, as it goes on the wire.
    fn encode_frame<M: Message>(message: &M) -> Vec<u8> {
        let mut frame = Vec::new();
        encode_frame_into(&mut frame, message);
        frame
    }

    fn heartbeat(seq: u64) -> AgentMessage {
        AgentMessage {
            body: Some(agent_message::Body::Heartbeat(Heartbeat { seq })),
        }
    }

    #[tokio::test]
    async fn frames_round_trip_across_any_split() {
        let mut wire = Vec::new();
        for seq in 0..3 {
            wire.extend(encode_frame(&heartbeat(seq)));
        }
        // One byte at a time: every header and body arrives in pieces.
        let (mut near, far) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            near.write_all(&wire).await.unwrap();
        });
        let mut reader = FrameReader::new(far, 1024);
        for seq in 0..3 {
            let message: AgentMessage = reader.message().await.unwrap().unwrap();
            assert_eq!(message, heartbeat(seq));
        }
        writer.await.unwrap();
        assert!(reader.message::<AgentMessage>().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn messages_written_together_arrive_whole_and_in_order() {
        let (mut near, far) = tokio::io::duplex(64 * 1024);
        let messages: Vec<AgentMessage> = (0..5).map(heartbeat).collect();
        write_messages(&mut near, &messages).await.unwrap();
        write_messages::<_, AgentMessage>(&mut near, &[]).await.unwrap();
        write_message(&mut near, &heartbeat(5)).await.unwrap();
        drop(near);
        let mut reader = FrameReader::new(far, 1024);
        for seq in 0..6 {
            let message: AgentMessage = reader.message().await.unwrap().unwrap();
            assert_eq!(message, heartbeat(seq));
        }
        assert!(reader.message::<AgentMessage>().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_truncated_and_garbled_frames_are_refused() {
        let mut reader = FrameReader::new(&[0u8, 0, 4, 1, 9][..], 1024);
        assert!(matches!(
            reader.message::<AgentMessage>().await,
            Err(FrameError::TooLarge {
                length: 1025,
                limit: 1024
            })
        ));
        let mut reader = FrameReader::new(&[0u8, 0, 0, 10, 1, 2][..], 1024);
        assert!(matches!(
            reader.message::<AgentMessage>().await,
            Err(FrameError::Io(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof
        ));
        let mut reader = FrameReader::new(&[0u8, 0][..], 1024);
        assert!(matches!(
            reader.message::<AgentMessage>().await,
            Err(FrameError::Io(_))
        ));
        let mut reader = FrameReader::new(&[0u8, 0, 0, 2, 0xff, 0xff][..], 1024);
        assert!(matches!(
            reader.message::<AgentMessage>().await,
            Err(FrameError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn a_large_announcement_is_not_allocated_up_front() {
        // 3 MiB announced, 10 bytes sent: the buffer holds at most one growth step.
        let mut wire = (3u32 * 1024 * 1024).to_be_bytes().to_vec();
        wire.extend([0u8; 10]);
        let mut reader = FrameReader::new(&wire[..], 4 * 1024 * 1024);
        assert!(reader.message::<AgentMessage>().await.is_err());
        assert!(reader.body.capacity() <= GROWTH);
    }

    #[tokio::test]
    async fn a_cancelled_read_loses_nothing() {
        let frame = encode_frame(&heartbeat(7));
        let (mut near, far) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(far, 1024);
        near.write_all(&frame[..3]).await.unwrap();
        // The read is abandoned with three header bytes taken.
        let abandoned =
            tokio::time::timeout(Duration::from_millis(20), reader.message::<AgentMessage>()).await;
        assert!(abandoned.is_err());
        near.write_all(&frame[3..]).await.unwrap();
        assert_eq!(
            reader.message::<AgentMessage>().await.unwrap().unwrap(),
            heartbeat(7)
        );
    }
}
