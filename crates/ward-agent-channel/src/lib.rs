//! The agent channel: mutual TLS on its own port, in two transports chosen by ALPN — framed
//! protobuf messages (`ward-agent/2`, [`ward_proto::framed`]: what agents use) and the gRPC
//! service of agent.proto (`h2`: certificate renewal, older agents). Each device keeps one
//! bidirectional stream; the server identifies it by the certificate Ward's CA issued, refuses
//! revoked, retired or superseded certificates, stores inventory and presence, and closes the
//! stream at once when the device is revoked. Both transports run the same session.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use ward_proto::framed::{self, FrameError, FrameReader};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use ward_domain::audit::{AuditRecord, Outcome};
use ward_proto::agent::agent_channel_server::{AgentChannel, AgentChannelServer};
use ward_proto::agent::{
    AgentMessage, PROTOCOL_VERSION, Refusal, RenewRequest, RenewResponse, RequestInventory, ServerMessage,
    Welcome, agent_message, server_message,
};

use ward_proto::fragments::{FragmentError, Reassembly};

use ward_core::state::AppState;
use ward_core::{facts, ingest};

mod commands;
mod outbound;

pub use commands::verify_pushed;
use outbound::{FramedWrite, Outbound};

/// Largest message accepted from an agent (a full inventory with thousands of packages fits).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long a session keeps the device's parsed facts after its last message.
const FACTS_KEPT: Duration = Duration::from_secs(10);

type ServerStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<ServerMessage, Status>> + Send>>;

/// The tonic service.
pub struct AgentService {
    state: AppState,
}

/// The gRPC server for `state`, with message size limits.
pub fn service(state: AppState) -> AgentChannelServer<AgentService> {
    AgentChannelServer::new(AgentService { state })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(64 * 1024)
}

fn refusal(code: &str, message: impl Into<String>) -> ServerMessage {
    ServerMessage {
        body: Some(server_message::Body::Refusal(Refusal {
            code: code.into(),
            message: message.into(),
        })),
    }
}

/// A device a connection may serve.
struct Admitted {
    device_id: String,
    /// SHA-256 of the client certificate, hex.
    fingerprint: String,
    /// The certificate's public key (the EC point): wipe completion records are verified with
    /// it. Kept instead of the certificate, a tenth of its size, for the session's life.
    key: Vec<u8>,
}

/// The device id (certificate subject CN), SHA-256 fingerprint and public key of a client
/// certificate.
fn identify(leaf: &[u8]) -> Result<Admitted, Denied> {
    if leaf.is_empty() {
        return Err(Denied::Unauthenticated("a client certificate is required"));
    }
    let fingerprint = hex::encode(Sha256::digest(leaf));
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|_| Denied::Unauthenticated("unreadable client certificate"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or(Denied::Unauthenticated("client certificate has no device id"))?;
    Ok(Admitted {
        device_id: cn.to_owned(),
        fingerprint,
        key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

/// Why a connection was not admitted.
#[derive(Debug)]
enum Denied {
    /// No usable client certificate.
    Unauthenticated(&'static str),
    /// Unknown, revoked, retired or superseded: audited.
    Refused(&'static str),
    /// The store could not be asked.
    Unavailable,
}

impl Denied {
    fn status(&self) -> Status {
        match self {
            Denied::Unauthenticated(why) => Status::unauthenticated(*why),
            Denied::Refused(reason) => {
                Status::permission_denied(format!("this device may not connect: {reason}"))
            }
            Denied::Unavailable => Status::unavailable("storage unavailable"),
        }
    }

    /// The refusal a framed connection gets; the codes are the ones an agent already knows.
    fn refusal(&self) -> ServerMessage {
        match self {
            Denied::Unauthenticated(why) => refusal("unauthenticated", *why),
            Denied::Refused(reason) => refusal("revoked", format!("this device may not connect: {reason}")),
            Denied::Unavailable => refusal("unavailable", "storage unavailable; try again later"),
        }
    }
}

/// The device behind the client certificate `leaf`, if it may connect; refusals are audited.
async fn admit(state: &AppState, leaf: &[u8], source: Option<IpAddr>) -> Result<Admitted, Denied> {
    let admitted = identify(leaf)?;
    let (device_id, fingerprint) = (&admitted.device_id, &admitted.fingerprint);
    let device = state
        .store
        .device(device_id)
        .await
        .map_err(|_| Denied::Unavailable)?;
    let reason = match &device {
        None => Some("unknown device"),
        Some(d) if !d.state.may_connect() => Some("revoked"),
        Some(d) if d.cert_fingerprint != *fingerprint => Some("superseded certificate"),
        Some(_) => None,
    };
    if let Some(reason) = reason {
        let record = AuditRecord::new(
            format!("device:{device_id}"),
            "device.connect",
            format!("device:{device_id}"),
            Outcome::Denied,
            json!({ "reason": reason }),
        )
        .with_source(source.map(|ip| ip.to_string()));
        let _ = state.store.append(state.audit(record)).await;
        return Err(Denied::Refused(reason));
    }
    Ok(admitted)
}

/// The first certificate a gRPC request's connection presented, as DER (empty without one).
fn leaf_of<T>(request: &Request<T>) -> Vec<u8> {
    request
        .peer_certs()
        .and_then(|certs| certs.first().map(|cert| cert.as_ref().to_vec()))
        .unwrap_or_default()
}

impl AgentService {
    /// The device behind a request's client certificate, if it may connect.
    async fn authenticate<T>(&self, request: &Request<T>) -> Result<Admitted, Status> {
        let source = request.remote_addr().map(|a| a.ip());
        admit(&self.state, &leaf_of(request), source)
            .await
            .map_err(|denied| denied.status())
    }
}

#[tonic::async_trait]
impl AgentChannel for AgentService {
    type SessionStream = ServerStream;

    async fn renew(&self, request: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        let Admitted {
            device_id,
            fingerprint: old_fingerprint,
            ..
        } = self.authenticate(&request).await?;
        let state = &self.state;
        let now = state.now_ms();
        let issued = state
            .keys
            .issue_device_certificate(&request.get_ref().csr_pem, &device_id, now)
            .map_err(|why| Status::invalid_argument(format!("csr_pem: {why}")))?;
        let record = AuditRecord::new(
            format!("device:{device_id}"),
            "device.renew_certificate",
            format!("device:{device_id}"),
            Outcome::Success,
            json!({ "old": old_fingerprint, "new": issued.fingerprint }),
        )
        .with_source(request.remote_addr().map(|a| a.ip().to_string()));
        state
            .store
            .renew_certificate(
                &device_id,
                &issued.fingerprint,
                issued.not_after_ms,
                state.audit(record),
            )
            .await
            .map_err(|_| Status::unavailable("storage unavailable"))?;
        Ok(Response::new(RenewResponse {
            certificate_pem: issued.pem,
            not_after_ms: issued.not_after_ms,
        }))
    }

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let state = self.state.clone();
        let Admitted { device_id, key, .. } = self.authenticate(&request).await?;
        if !state.channels.allow_attempt(&device_id, state.now_ms()) {
            return Err(Status::resource_exhausted(
                "too many connections from this device; back off",
            ));
        }
        let registration = state.channels.register(&device_id);
        // Boxed messages: a channel allocates its slots in blocks of 32, and 32 inline messages
        // would take 4 KiB per idle connection. Nothing is ever sent as an error status.
        let (sender, receiver) = mpsc::channel::<Box<ServerMessage>>(8);
        tokio::spawn(run_session(
            state,
            device_id,
            key,
            Inbound::Grpc(Box::new(request.into_inner())),
            Outbound::Grpc(sender),
            registration,
        ));
        let stream = tokio_stream::StreamExt::map(ReceiverStream::new(receiver), |message| Ok(*message));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Where a session's messages come from: either transport.
enum Inbound {
    // Boxed: tonic's stream state is a few hundred bytes a framed session need not carry.
    Grpc(Box<Streaming<AgentMessage>>),
    Framed(FrameReader<tokio::io::ReadHalf<TlsStream<TcpStream>>>),
}

/// Why a session's next message could not be read.
enum InboundError {
    /// Over [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// Not an `AgentMessage`.
    Malformed,
    /// The connection failed or the stream was reset.
    Lost,
}

impl Inbound {
    /// The next message, `Ok(None)` when the agent ended the stream. Cancel-safe.
    async fn message(&mut self) -> Result<Option<AgentMessage>, InboundError> {
        match self {
            Inbound::Grpc(stream) => stream.message().await.map_err(|status| {
                if status.code() == tonic::Code::OutOfRange || status.message().contains("message length") {
                    InboundError::TooLarge
                } else {
                    InboundError::Lost
                }
            }),
            Inbound::Framed(reader) => reader.message().await.map_err(|err| match err {
                FrameError::TooLarge { .. } => InboundError::TooLarge,
                FrameError::Malformed(_) => InboundError::Malformed,
                FrameError::Io(_) => InboundError::Lost,
            }),
        }
    }
}

/// Drives one stream until the agent leaves, goes silent, misbehaves or is revoked.
async fn run_session(
    state: AppState,
    device_id: String,
    device_key: Vec<u8>,
    mut inbound: Inbound,
    mut outbound: Outbound,
    registration: ward_core::channels::Registration,
) {
    let silence = Duration::from_millis(3 * state.config.heartbeat_ms as u64);
    let mut greeted = false;
    // The device's current facts, kept only while it reports in a burst (a second facts message
    // within FACTS_KEPT of the one before) and dropped once it has been quiet for FACTS_KEPT. A
    // parsed inventory is hundreds of KiB in small allocations: an idle session must not hold one,
    // and one held for seconds after every connect leaves the allocator's pages fragmented with
    // the connection state allocated meanwhile (BENCHMARKS.md, idle agents). The usual agent (an
    // inventory on connect, a diff minutes later) has its facts read from the store each time.
    let mut current: Option<Value> = None;
    let mut last_facts: Option<tokio::time::Instant> = None;
    let mut last_heard = tokio::time::Instant::now();
    let mut fragments = Reassembly::new(MAX_MESSAGE_BYTES);
    // Commands pushed on this connection (each is pushed once per connection, again on reconnect
    // until the agent reports a result).
    let mut pushed = crate::commands::Pushed::new();
    loop {
        let message = tokio::select! {
            delivery = registration.next(greeted) => match delivery {
                ward_core::channels::Delivery::Closed => {
                    let _ = outbound.send(refusal("revoked", "this device's access was withdrawn")).await;
                    break;
                }
                ward_core::channels::Delivery::Command(command) => {
                    // A containment puts a device's actions in its mailbox together: they leave
                    // in one write.
                    let mut commands = vec![command];
                    commands.extend(std::iter::from_fn(|| registration.next_now()));
                    if Box::pin(crate::commands::push(&state, &commands, &mut outbound, &mut pushed)).await.is_err() {
                        break;
                    }
                    continue;
                }
            },
            next = tokio::time::timeout_at(
                last_heard + if current.is_some() { FACTS_KEPT.min(silence) } else { silence },
                inbound.message(),
            ) => next,
        };
        let message = match message {
            Err(_) if current.is_some() => {
                current = None;
                continue;
            }
            Err(_) => break, // silent past the offline threshold
            Ok(Err(InboundError::TooLarge)) => {
                let _ = outbound.send(refusal("too_large", "message too large")).await;
                break;
            }
            Ok(Err(InboundError::Malformed)) => {
                let _ = outbound
                    .send(refusal("bad_message", "not a valid agent message"))
                    .await;
                break;
            }
            Ok(Err(InboundError::Lost)) => break,
            Ok(Ok(None)) => break,
            Ok(Ok(Some(message))) => message,
        };
        last_heard = tokio::time::Instant::now();
        let message = match fragments.accept(message) {
            Ok(Some(whole)) => whole,
            Ok(None) => continue,
            Err(why) => {
                let code = if why == FragmentError::TooLarge {
                    "too_large"
                } else {
                    "bad_message"
                };
                let _ = outbound.send(refusal(code, why.to_string())).await;
                break;
            }
        };
        let was_greeted = greeted;
        let facts_message = matches!(
            message.body,
            Some(agent_message::Body::Inventory(_) | agent_message::Body::InventoryDiff(_))
        );
        // Boxed, like the pushes: handling a message awaits the store, whose futures are large,
        // and an unboxed await would make every idle session's task that large for its lifetime.
        let handled = Box::pin(handle(
            &state,
            &device_id,
            &device_key,
            message,
            &mut greeted,
            &mut current,
            &pushed,
        ))
        .await;
        if facts_message {
            let now = tokio::time::Instant::now();
            if last_facts.is_none_or(|last| now.duration_since(last) >= FACTS_KEPT) {
                current = None;
            }
            last_facts = Some(now);
        }
        match handled {
            Ok(Some(reply)) => {
                if outbound.send(reply).await.is_err() {
                    break;
                }
                // Welcomed: the device's queue follows, in order.
                if !was_greeted
                    && greeted
                    && Box::pin(crate::commands::deliver(
                        &state,
                        &device_id,
                        &mut outbound,
                        &mut pushed,
                    ))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Ok(None) => {}
            Err(reply) => {
                let _ = outbound.send(reply).await;
                break;
            }
        }
    }
    state.channels.unregister(&device_id, registration.connection_id);
    outbound.close().await;
}

/// Handles one message: `Ok(reply)` to continue, `Err(refusal)` to end the stream.
async fn handle(
    state: &AppState,
    device_id: &str,
    device_key: &[u8],
    message: AgentMessage,
    greeted: &mut bool,
    current: &mut Option<Value>,
    pushed: &crate::commands::Pushed,
) -> Result<Option<ServerMessage>, ServerMessage> {
    let now = state.now_ms();
    let Some(body) = message.body else {
        return Err(refusal("bad_message", "empty message"));
    };
    if !*greeted {
        let agent_message::Body::Hello(hello) = body else {
            return Err(refusal("bad_message", "the first message must be hello"));
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(refusal(
                "unsupported_version",
                format!(
                    "this server speaks protocol {PROTOCOL_VERSION}, not {}",
                    hello.protocol_version
                ),
            ));
        }
        *greeted = true;
        let _ = state.store.record_seen(device_id, now).await;
        return Ok(Some(ServerMessage {
            body: Some(server_message::Body::Welcome(Welcome {
                protocol_version: PROTOCOL_VERSION,
                device_id: device_id.to_owned(),
                heartbeat_seconds: (state.config.heartbeat_ms / 1000) as u32,
            })),
        }));
    }
    match body {
        agent_message::Body::Hello(_) => Err(refusal("bad_message", "hello was already sent")),
        // Joined by the session before it gets here.
        agent_message::Body::Fragment(_) => Err(refusal("bad_message", "a fragment inside a fragment")),
        agent_message::Body::CommandUpdate(update) => {
            crate::commands::record_update(state, device_id, device_key, update, pushed).await;
            Ok(None)
        }
        agent_message::Body::Heartbeat(_) => {
            state.presence.heard(device_id, now);
            Ok(None)
        }
        agent_message::Body::Inventory(inventory) => {
            let (facts, clean) = facts::parse_facts_keeping_text(&inventory.facts_json)
                .map_err(|why| refusal("bad_message", why))?;
            let text = clean.then_some(inventory.facts_json);
            let old = match current.take() {
                Some(old) => old,
                None => ingest::current(state, device_id).await,
            };
            // A reconnect sends everything again: the same facts only mean the device was heard from.
            ingest::reported(state, device_id, &old, &facts, text, now).await;
            *current = Some(facts);
            Ok(None)
        }
        agent_message::Body::InventoryDiff(diff) => {
            let old = match current.take() {
                Some(old) => old,
                None => ingest::current(state, device_id).await,
            };
            match facts::apply_diff(&old, &diff.diff_json) {
                Ok(new) => {
                    let new = facts::sanitise(new);
                    let change = facts::json_diff(&old, &new);
                    ingest::store(state, device_id, &new, None, &change, now).await;
                    *current = Some(new);
                    Ok(None)
                }
                // The server cannot follow: ask for everything again rather than guess.
                Err(_) => Ok(Some(ServerMessage {
                    body: Some(server_message::Body::RequestInventory(RequestInventory {})),
                })),
            }
        }
    }
}

/// The agent port's TLS settings: client certificates from Ward's CA required, the framed
/// channel offered before gRPC.
fn tls_config(state: &AppState, chain_pem: &str, key_pem: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(state.keys.ca_cert_pem.as_bytes()) {
        roots
            .add(cert.context("reading the CA certificate")?)
            .context("adding the CA certificate")?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .context("building the client certificate verifier")?;
    let (chain, key) = ward_core::keys::chain_and_key(chain_pem, key_pem)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("building the agent port's TLS configuration")?;
    config.alpn_protocols = vec![framed::ALPN.to_vec(), b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the agent channel on `listener` with mutual TLS (client certificates from Ward's CA):
/// each connection's handshake is finished here, then it goes to the framed session or, for
/// ALPN `h2` (or none), to the gRPC server.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    cert_chain_pem: String,
    key_pem: String,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config(&state, &cert_chain_pem, &key_pem)?);
    let (grpc_connections, incoming) = mpsc::channel::<std::io::Result<TlsStream<TcpStream>>>(64);
    let grpc = tonic::transport::Server::builder()
        .timeout(Duration::from_secs(3600 * 24 * 365))
        .http2_keepalive_interval(Some(Duration::from_secs(60)))
        // An agent holds one stream; a few more are room for a reconnect overlapping.
        .max_concurrent_streams(Some(4))
        .add_service(service(state.clone()))
        .serve_with_incoming(ReceiverStream::new(incoming));
    let grpc = tokio::spawn(grpc);
    loop {
        if grpc.is_finished() {
            anyhow::bail!("the gRPC agent channel stopped");
        }
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "agent port: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        let grpc_connections = grpc_connections.clone();
        // The task lives as long as the connection and is allocated at its largest state's size:
        // the handshake (rustls' connection inline) and admission (store futures) run in a box
        // freed before the session starts, and the session in a box of its own size.
        tokio::spawn(async move {
            let session = Box::pin(async move {
                let (read, write, leaf) = handshake(acceptor, tcp, peer, grpc_connections).await?;
                framed_session(state, read, write, leaf, peer).await
            })
            .await;
            if let Some(session) = session {
                session.await;
            }
        });
    }
}

type FramedRead = tokio::io::ReadHalf<TlsStream<TcpStream>>;

/// Finishes the TLS handshake (within 10 s). A connection that chose gRPC is handed to the gRPC
/// server; a framed one comes back split, with its client certificate (DER).
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    grpc_connections: mpsc::Sender<std::io::Result<TlsStream<TcpStream>>>,
) -> Option<(FramedRead, FramedWrite, Vec<u8>)> {
    let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "agent port: TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "agent port: TLS handshake timed out");
            return None;
        }
    };
    if stream.get_ref().1.alpn_protocol() != Some(framed::ALPN) {
        let _ = grpc_connections.send(Ok(stream)).await;
        return None;
    }
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first().map(|cert| cert.as_ref().to_vec()))
        .unwrap_or_default();
    let (read, write) = tokio::io::split(stream);
    Some((read, write, leaf))
}

/// Admits a framed connection like a gRPC session: its session (boxed, to be run by the
/// connection's task), or `None` after telling the device why not.
async fn framed_session(
    state: AppState,
    read: FramedRead,
    mut write: FramedWrite,
    leaf: Vec<u8>,
    peer: SocketAddr,
) -> Option<SessionFuture> {
    let admitted = match Box::pin(admit(&state, &leaf, Some(peer.ip()))).await {
        Ok(admitted) if !state.channels.allow_attempt(&admitted.device_id, state.now_ms()) => Err(refusal(
            "throttled",
            "too many connections from this device; back off",
        )),
        Ok(admitted) => Ok(admitted),
        Err(denied) => Err(denied.refusal()),
    };
    drop(leaf);
    let Admitted { device_id, key, .. } = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let _ = framed::write_message(&mut write, &refusal).await;
            let _ = write.shutdown().await;
            return None;
        }
    };
    let registration = state.channels.register(&device_id);
    let inbound = Inbound::Framed(FrameReader::new(read, MAX_MESSAGE_BYTES));
    Some(Box::pin(run_session(
        state,
        device_id,
        key,
        inbound,
        Outbound::Framed(write),
        registration,
    )))
}

type SessionFuture = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
