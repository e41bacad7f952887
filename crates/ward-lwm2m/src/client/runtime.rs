//! The tokio wrapper around [`ClientCore`]: one task, one UDP socket, talking to one server.

use std::net::SocketAddr;
use std::time::Instant;

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{
    ClientConfig, ClientCore, ClientEvent, FirmwareProgress, ObjectStore, RegistrationState, StoreError,
};
use crate::coap::MAX_DATAGRAM;
use crate::content::{Path, Value};
use crate::dtls::{DtlsClient, DtlsError};
use crate::objects::firmware::InvalidTransition;

/// Capacity of the event channel; events beyond it are dropped (with a warning) rather than
/// blocking the protocol.
const EVENT_CAPACITY: usize = 256;

/// Why a handle call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The client task has stopped.
    #[error("the client task has stopped")]
    Stopped,
    /// The store refused the value.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The firmware state machine refused the step.
    #[error(transparent)]
    Firmware(#[from] InvalidTransition),
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The pre-shared key or identity cannot be used.
    #[error(transparent)]
    Key(#[from] DtlsError),
}

/// How the client talks to the server.
#[derive(Clone, Default)]
pub enum Security {
    /// Plain CoAP over UDP (`coap://`).
    #[default]
    None,
    /// CoAP over DTLS 1.2 with a pre-shared key (`coaps://`, TLS_PSK_WITH_AES_128_CCM_8).
    Psk { identity: Vec<u8>, key: Vec<u8> },
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            // The key stays out of logs.
            Self::Psk { identity, .. } => write!(f, "Psk({})", String::from_utf8_lossy(identity)),
        }
    }
}

enum Command {
    Set(Path, Value, oneshot::Sender<Result<(), StoreError>>),
    Get(Path, oneshot::Sender<Option<Value>>),
    Firmware(FirmwareProgress, oneshot::Sender<Result<(), InvalidTransition>>),
    State(oneshot::Sender<RegistrationState>),
    Shutdown(oneshot::Sender<()>),
}

/// Controls a running client.
#[derive(Debug, Clone)]
pub struct ClientHandle {
    commands: mpsc::Sender<Command>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// Binds a UDP socket on `bind`, registers with `server`, and runs the client until
/// [`ClientHandle::shutdown`] (or every handle is dropped). Events arrive on the receiver.
pub async fn spawn(
    config: ClientConfig,
    store: ObjectStore,
    bind: SocketAddr,
    server: SocketAddr,
) -> Result<(ClientHandle, mpsc::Receiver<ClientEvent>, JoinHandle<()>), ClientError> {
    spawn_with(config, store, bind, server, Security::None).await
}

/// [`spawn`] with the given security mode.
pub async fn spawn_with(
    config: ClientConfig,
    store: ObjectStore,
    bind: SocketAddr,
    server: SocketAddr,
    security: Security,
) -> Result<(ClientHandle, mpsc::Receiver<ClientEvent>, JoinHandle<()>), ClientError> {
    let dtls = match &security {
        Security::None => None,
        Security::Psk { identity, key } => Some(DtlsClient::new(identity, key, now())?),
    };
    let socket = UdpSocket::bind(bind).await?;
    let local_addr = socket.local_addr()?;
    let (commands, rx) = mpsc::channel(32);
    let (events_tx, events) = mpsc::channel(EVENT_CAPACITY);
    let core = ClientCore::new(config, store);
    let link = Link { socket, server, dtls };
    let task = tokio::spawn(run(core, link, rx, events_tx));
    Ok((ClientHandle { commands, local_addr }, events, task))
}

impl ClientHandle {
    /// The client's local UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)
    }

    /// Sets a resource value as the device.
    pub async fn set(&self, path: Path, value: Value) -> Result<(), ClientError> {
        Ok(self.call(|tx| Command::Set(path, value, tx)).await??)
    }

    /// Reads a resource value.
    pub async fn get(&self, path: Path) -> Result<Option<Value>, ClientError> {
        self.call(|tx| Command::Get(path, tx)).await
    }

    /// Reports firmware progress.
    pub async fn firmware(&self, progress: FirmwareProgress) -> Result<(), ClientError> {
        Ok(self.call(|tx| Command::Firmware(progress, tx)).await??)
    }

    /// The registration state.
    pub async fn state(&self) -> Result<RegistrationState, ClientError> {
        self.call(Command::State).await
    }

    /// De-registers (waiting for the server's answer or the retransmission limit) and stops.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.call(Command::Shutdown).await
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The socket to the server, and the DTLS session over it when there is one.
struct Link {
    socket: UdpSocket,
    server: SocketAddr,
    dtls: Option<DtlsClient>,
}

impl Link {
    async fn send(&mut self, datagram: &[u8]) {
        match &mut self.dtls {
            None => {
                if let Err(e) = self.socket.send_to(datagram, self.server).await {
                    tracing::debug!(error = %e, "UDP send failed");
                }
            }
            Some(dtls) => dtls.send(datagram, now()),
        }
        self.flush_dtls().await;
    }

    async fn flush_dtls(&mut self) {
        let Some(dtls) = &mut self.dtls else {
            return;
        };
        while let Some(reason) = dtls.poll_failure() {
            tracing::warn!(%reason, "DTLS session failed; handshaking again");
        }
        while let Some(record) = dtls.poll_transmit() {
            if let Err(e) = self.socket.send_to(&record, self.server).await {
                tracing::debug!(error = %e, "UDP send failed");
            }
        }
    }

    /// Hands what arrived to the core (decrypted first over DTLS).
    async fn receive(&mut self, core: &mut ClientCore, datagram: &[u8]) {
        match &mut self.dtls {
            None => core.handle_datagram(self.server, datagram, now()),
            Some(dtls) => {
                dtls.handle_datagram(datagram, now());
                while let Some(plaintext) = dtls.poll_received() {
                    if plaintext.len() <= MAX_DATAGRAM {
                        core.handle_datagram(self.server, &plaintext, now());
                    }
                }
                self.flush_dtls().await;
            }
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.dtls.as_ref().and_then(DtlsClient::next_timeout)
    }

    async fn handle_timeout(&mut self) {
        if let Some(dtls) = &mut self.dtls {
            dtls.handle_timeout(now());
        }
        self.flush_dtls().await;
    }
}

async fn run(
    mut core: ClientCore,
    mut link: Link,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<ClientEvent>,
) {
    core.register(now());
    let mut buf = vec![0u8; MAX_DATAGRAM + 65];
    let mut shutdown_waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut commands_open = true;
    loop {
        flush(&mut core, &mut link, &events).await;
        if *core.state() == RegistrationState::Deregistered
            && (!shutdown_waiters.is_empty() || !commands_open)
        {
            break;
        }
        let deadline = [core.next_timeout(), link.next_timeout()]
            .into_iter()
            .flatten()
            .min()
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            received = link.socket.recv_from(&mut buf) => match received {
                Ok((n, from)) if from == link.server && n <= MAX_DATAGRAM + 64 => link.receive(&mut core, &buf[..n]).await,
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "UDP receive failed"),
            },
            command = commands.recv(), if commands_open => match command {
                Some(Command::Shutdown(done)) => {
                    shutdown_waiters.push(done);
                    core.deregister(now());
                }
                Some(c) => handle_command(&mut core, c),
                None => {
                    commands_open = false;
                    core.deregister(now());
                }
            },
            () = sleep_until(deadline) => {
                core.handle_timeout(now());
                link.handle_timeout().await;
            }
        }
    }
    for w in shutdown_waiters {
        let _ = w.send(());
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn handle_command(core: &mut ClientCore, command: Command) {
    // A dropped receiver only means the caller stopped waiting.
    match command {
        Command::Set(path, value, reply) => drop(reply.send(core.set_value(path, value))),
        Command::Get(path, reply) => drop(reply.send(core.store().get(&path).cloned())),
        Command::Firmware(progress, reply) => drop(reply.send(core.firmware_progress(progress))),
        Command::State(reply) => drop(reply.send(core.state().clone())),
        Command::Shutdown(_) => {}
    }
}

async fn flush(core: &mut ClientCore, link: &mut Link, events: &mpsc::Sender<ClientEvent>) {
    while let Some(datagram) = core.poll_transmit() {
        link.send(&datagram).await;
    }
    while let Some(event) = core.poll_event() {
        if events.try_send(event).is_err() {
            tracing::warn!("client event dropped: receiver full or gone");
        }
    }
}
