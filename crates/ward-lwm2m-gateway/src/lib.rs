//! The LwM2M gateway: constrained devices (infusion pumps, monitors, sensors) speaking OMA LwM2M
//! 1.1 over CoAP/UDP appear as ordinary Ward devices — inventory, presence, commands, incidents
//! and audit — next to the agent-managed ones (`docs/lwm2m.md`).
//!
//! One task owns one UDP socket and `ward-lwm2m`'s sans-IO [`Endpoint`] (retransmission, dedup,
//! token matching). It handles the Registration interface (Register, Update, De-register,
//! lifetime expiry), reads `/3/0` and `/4/0` into the device's facts, observes the battery level,
//! and carries out the device's commands from the durable queue one at a time (see [`actions`]).
//! A registered device is registered in [`ward_core::channels`] like an agent's stream, so commands
//! created while it is registered are handed over at once and revocation ends its registration.
//!
//! Two sockets feed the same endpoint: plain CoAP (`coap://`, only on a loopback address unless
//! `allow_plain_udp` is set) and CoAP over DTLS 1.2 with pre-shared keys (`coaps://`,
//! TLS_PSK_WITH_AES_128_CCM_8, [`ward_lwm2m::dtls`]). A DTLS session is authenticated as a PSK
//! identity; a registration made over DTLS records that identity, may only be made for the
//! endpoint provisioned with it, and is only updated, de-registered and talked to over a session
//! of the same identity — never over plain UDP.

mod actions;
mod facts;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Map, Value, json};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use ward_domain::audit::{AuditRecord, Outcome};
use ward_domain::device::{Criticality, DeviceClass, DeviceState};
use ward_lwm2m::coap::{self, MAX_DATAGRAM, MessageClass, Packet, ResponseType, TransmissionParams};
use ward_lwm2m::content::{self, ContentFormat, Path};
use ward_lwm2m::dtls::{DtlsServer, ServerEvent, ServerLimits};
use ward_lwm2m::objects::{StandardObjects, connectivity, device, firmware_update, lock_wipe};
use ward_lwm2m::registration::{self, Register, RegistrationRequest, Update};
use ward_lwm2m::server::{Endpoint, Event, Request};
use ward_store::{CommandRecord, Lwm2mEndpointRecord};

use ward_core::channels::Handover;
use ward_core::commands::{Report, record_acknowledged, record_finished, record_sent};
use ward_core::config::Lwm2mConfig;
use ward_core::facts::FactsWork;
use ward_core::state::AppState;

/// What LwM2M devices carry in `devices.enroll_token_id` (they are provisioned, not enrolled).
pub use ward_core::lwm2m::ENROLLED_BY;
/// Most devices registered at once on this node; further Registers get 5.03.
pub const MAX_REGISTRATIONS: usize = 100_000;
/// Most commands held for one registered device (the store keeps the rest; they come on the next
/// registration).
const MAX_QUEUED: usize = 256;
/// Source addresses whose recent Register attempts are remembered.
const MAX_TRACKED_SOURCES: usize = 100_000;

/// The gateway's sockets: plain CoAP and CoAP over DTLS, either may be off.
#[derive(Debug)]
pub struct Sockets {
    pub plain: Option<UdpSocket>,
    pub dtls: Option<UdpSocket>,
}

impl Sockets {
    /// The plain socket's address.
    pub fn plain_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.plain.as_ref().map(UdpSocket::local_addr).transpose()
    }

    /// The DTLS socket's address.
    pub fn dtls_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.dtls.as_ref().map(UdpSocket::local_addr).transpose()
    }
}

/// Binds the gateway's UDP sockets; `None` when the gateway is off.
pub async fn bind(config: &Lwm2mConfig) -> anyhow::Result<Option<Sockets>> {
    let plain = match config.listen {
        None => None,
        Some(addr) => Some(
            UdpSocket::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} (LwM2M, UDP)"))?,
        ),
    };
    let dtls = match config.dtls_listen {
        None => None,
        Some(addr) => Some(
            UdpSocket::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} (LwM2M, DTLS)"))?,
        ),
    };
    Ok((plain.is_some() || dtls.is_some()).then_some(Sockets { plain, dtls }))
}

/// Loads every provisioned pre-shared key into the table DTLS handshakes read.
async fn load_keys(state: &AppState) {
    match state.store.list_lwm2m_endpoints().await {
        Ok(endpoints) => {
            for endpoint in endpoints {
                ward_core::lwm2m::add_key(state, &endpoint);
            }
        }
        Err(err) => tracing::error!(error = %err, "reading LwM2M keys failed; DTLS handshakes will fail"),
    }
}

/// Waits for a datagram on `socket`, forever when there is none.
async fn recv_from(socket: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Runs the gateway on `sockets` until the task is aborted.
pub async fn run(state: AppState, sockets: Sockets) {
    load_keys(&state).await;
    let (inbox, mut inbox_rx) = mpsc::unbounded_channel();
    let params = TransmissionParams {
        ack_timeout: Duration::from_millis(state.config.lwm2m.ack_timeout_ms),
        ..TransmissionParams::default()
    };
    let dtls = match DtlsServer::new(state.lwm2m_keys.clone(), ServerLimits::default()) {
        Ok(dtls) => dtls,
        Err(err) => {
            tracing::error!(error = %err, "the LwM2M gateway cannot start");
            return;
        }
    };
    let mut gateway = Gateway {
        endpoint: Endpoint::new(params),
        dtls,
        secure_peers: HashMap::new(),
        sockets,
        state,
        devices: HashMap::new(),
        locations: HashMap::new(),
        requests: HashMap::new(),
        attempts: HashMap::new(),
        inbox,
        facts_epoch: 0,
        facts_flush: None,
    };
    let mut sweep = tokio::time::interval(Duration::from_millis(
        gateway.state.config.lwm2m.sweep_interval_ms.max(10),
    ));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut dtls_buf = vec![0u8; MAX_RECORD + 1];
    loop {
        gateway.flush().await;
        let wake = [gateway.endpoint.next_timeout(), gateway.dtls.next_timeout()]
            .into_iter()
            .flatten()
            .min()
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            received = recv_from(gateway.sockets.plain.as_ref(), &mut buf) => match received {
                Ok((_, peer)) if gateway.dtls.has_session(peer) => {
                    tracing::debug!(%peer, "dropping plain CoAP from an address with a DTLS session");
                }
                Ok((n, peer)) if n <= MAX_DATAGRAM => gateway.endpoint.handle_datagram(peer, &buf[..n], now()),
                Ok((_, peer)) => tracing::debug!(%peer, "dropping an oversized LwM2M datagram"),
                Err(err) => tracing::debug!(error = %err, "LwM2M receive failed"),
            },
            received = recv_from(gateway.sockets.dtls.as_ref(), &mut dtls_buf) => match received {
                Ok((n, peer)) if n <= MAX_RECORD => gateway.on_dtls_datagram(peer, &dtls_buf[..n]),
                Ok((_, peer)) => tracing::debug!(%peer, "dropping an oversized DTLS datagram"),
                Err(err) => tracing::debug!(error = %err, "LwM2M (DTLS) receive failed"),
            },
            Some(message) = inbox_rx.recv() => gateway.on_inbox(message).await,
            () = sleep_until(wake) => {
                gateway.endpoint.handle_timeout(now());
                gateway.dtls.handle_timeout(now());
            }
            _ = sweep.tick() => gateway.sweep().await,
        }
        gateway.on_dtls_events();
        while let Some(event) = gateway.endpoint.poll_event() {
            gateway.on_event(event).await;
        }
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Largest DTLS datagram read: a full CoAP datagram plus record overhead.
const MAX_RECORD: usize = MAX_DATAGRAM + 128;

/// How a request reached the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Transport {
    /// Plain CoAP over UDP.
    Plain,
    /// A DTLS session authenticated as this PSK identity.
    Dtls(Arc<[u8]>),
}

impl Transport {
    fn name(&self) -> &'static str {
        match self {
            Self::Plain => "none",
            Self::Dtls(_) => "psk",
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Why a request to a device was sent.
#[derive(Debug, Clone)]
enum Purpose {
    /// Read of `/object/0` into facts.
    Read(u16),
    /// Observation of `/3/0/9`.
    Battery,
    /// A step of the device's active command.
    Step { command_id: String },
    /// A request of the device's active firmware update.
    Firmware {
        command_id: String,
        request: FirmwareRequest,
    },
}

/// What a firmware update's request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirmwareRequest {
    /// Read of `/5/0` (State and Update Result).
    Poll,
    /// Execute of `/5/0/2` Update.
    Execute,
    /// Read of `/3/0/3` Firmware Version after success.
    Version,
}

/// A firmware update in progress (the active command's).
#[derive(Debug)]
struct FirmwareJob {
    stage: actions::FirmwareStage,
    /// The command fails when the update is not over by then.
    deadline: Instant,
    /// A request of this update is in flight (no new read until it is answered).
    busy: bool,
    /// The last /5/0/3 State read.
    state: Option<i64>,
}

#[derive(Debug)]
struct Pending {
    device_id: Arc<str>,
    connection_id: u64,
    purpose: Purpose,
}

/// A command being carried out.
#[derive(Debug)]
struct Active {
    command: CommandRecord,
    requests: VecDeque<Request>,
    detail: String,
    acknowledged: bool,
    /// Set for a firmware update: followed after its requests were sent.
    firmware: Option<FirmwareJob>,
}

/// Commands handed over on one registration.
#[derive(Debug, Default)]
struct Queued {
    /// Commands waiting, with when they were queued here (server clock).
    commands: VecDeque<(CommandRecord, i64)>,
    /// Every command handed over (a command arrives once per registration).
    pushed: HashSet<String>,
}

/// A facts document handed to the facts writer.
#[derive(Debug)]
struct StoredFacts {
    /// Compact JSON text (a parsed tree would cost several times as much memory).
    text: Box<str>,
    /// [`Gateway::facts_epoch`] when it was handed over: the writer's answer to that epoch's
    /// flush means the store has it.
    epoch: u64,
}

/// One registered device (its device id is its key in [`Gateway::devices`]). Kept compact: the
/// gateway holds one per registered device, so every byte here counts ten thousand times.
#[derive(Debug)]
struct Registration {
    /// Its location, `rd/{location:016x}` (see [`location_key`]).
    location: u64,
    peer: SocketAddr,
    /// How it registered; updates and requests must use the same.
    transport: Transport,
    connection_id: u64,
    endpoint: Box<str>,
    lifetime_s: u32,
    version: &'static str,
    binding: Box<str>,
    queue_mode: bool,
    objects: Box<[Path]>,
    /// Registered or last updated (server clock, for lifetime expiry).
    updated_ms: i64,
    /// Queue mode: the device listens until then (after a Register or Update).
    awake_until: Instant,
    /// The facts document last handed to the facts writer, until the writer has stored it; then
    /// the store has it and the next change reads it from there (facts change in bursts — after a
    /// Register, on an Update — so a quiet registration holds no copy of them).
    stored: Option<StoredFacts>,
    /// Boxed, like the active command: most registrations are never handed a command.
    queued: Option<Box<Queued>>,
    /// Boxed: a command is rarely in flight, and inline it would make every registration (and
    /// every empty slot of the registrations map) hundreds of bytes larger.
    active: Option<Box<Active>>,
    battery_token: Option<Box<[u8]>>,
}

impl Registration {
    fn has_object(&self, object: u16) -> bool {
        self.objects.iter().any(|p| p.object_id() == object)
    }

    fn awake(&self, at: Instant) -> bool {
        !self.queue_mode || at < self.awake_until
    }

    fn facts(&self, registered: bool) -> facts::RegistrationFacts {
        facts::RegistrationFacts {
            endpoint: self.endpoint.to_string(),
            registered,
            lifetime_s: self.lifetime_s,
            queue_mode: self.queue_mode,
            version: self.version,
            binding: self.binding.to_string(),
            objects: self.objects.to_vec(),
            security: self.transport.name(),
        }
    }
}

struct Gateway {
    state: AppState,
    endpoint: Endpoint,
    sockets: Sockets,
    dtls: DtlsServer,
    /// Addresses of registrations made over DTLS (with how many): nothing goes to them in plain.
    secure_peers: HashMap<SocketAddr, usize>,
    /// Registered devices by device id (shared with `locations` and `requests`).
    devices: HashMap<Arc<str>, Registration>,
    /// Registration location → device id.
    locations: HashMap<u64, Arc<str>>,
    /// Requests in flight (and observations) by token.
    requests: HashMap<Vec<u8>, Pending>,
    /// Recent Register attempts per source address (monotonic time: a flood limit, not a record).
    attempts: HashMap<IpAddr, VecDeque<Instant>>,
    /// Commands and close orders for registered devices (from [`ward_core::channels`]).
    inbox: mpsc::UnboundedSender<Handover>,
    /// Flushes of the facts writer asked for so far (see [`StoredFacts::epoch`]).
    facts_epoch: u64,
    /// The flush asked for last, by epoch, until the writer answers it.
    facts_flush: Option<(u64, oneshot::Receiver<()>)>,
}

impl Gateway {
    fn config(&self) -> &Lwm2mConfig {
        &self.state.config.lwm2m
    }

    /// Sends what the endpoint and the DTLS sessions have for the wire: over a peer's DTLS
    /// session when it has one, in plain only to a peer that never registered over DTLS.
    async fn flush(&mut self) {
        let at = now();
        while let Some(transmit) = self.endpoint.poll_transmit() {
            if self.dtls.identity(transmit.peer).is_some() {
                self.dtls.send(transmit.peer, &transmit.datagram, at);
            } else if self.secure_peers.contains_key(&transmit.peer) || self.dtls.has_session(transmit.peer) {
                tracing::debug!(peer = %transmit.peer, "no DTLS session to the device; not sending in plain");
            } else if let Some(socket) = &self.sockets.plain
                && let Err(err) = socket.send_to(&transmit.datagram, transmit.peer).await
            {
                tracing::debug!(peer = %transmit.peer, error = %err, "LwM2M send failed");
            }
        }
        while let Some((peer, record)) = self.dtls.poll_transmit() {
            if let Some(socket) = &self.sockets.dtls
                && let Err(err) = socket.send_to(&record, peer).await
            {
                tracing::debug!(%peer, error = %err, "LwM2M (DTLS) send failed");
            }
        }
    }

    /// A datagram on the DTLS socket: decrypted CoAP goes to the endpoint.
    fn on_dtls_datagram(&mut self, peer: SocketAddr, datagram: &[u8]) {
        let at = now();
        self.dtls.handle_datagram(peer, datagram, at);
        while let Some(received) = self.dtls.poll_received() {
            if received.payload.len() <= MAX_DATAGRAM {
                self.endpoint
                    .handle_datagram(received.peer, &received.payload, at);
            }
        }
    }

    fn on_dtls_events(&mut self) {
        while let Some(event) = self.dtls.poll_event() {
            match event {
                ServerEvent::Connected { peer, identity } => {
                    tracing::debug!(%peer, identity = %String::from_utf8_lossy(&identity), "DTLS session up");
                }
                ServerEvent::Closed {
                    peer,
                    identity,
                    reason,
                } => {
                    let identity = identity.map(|i| String::from_utf8_lossy(&i).into_owned());
                    tracing::debug!(%peer, ?identity, %reason, "DTLS session ended");
                }
            }
        }
    }

    /// How a request from `peer` arrived.
    fn transport(&self, peer: SocketAddr) -> Transport {
        match self.dtls.identity(peer) {
            Some(identity) => Transport::Dtls(identity.clone()),
            None => Transport::Plain,
        }
    }

    fn add_secure_peer(&mut self, peer: SocketAddr, transport: &Transport) {
        if matches!(transport, Transport::Dtls(_)) {
            *self.secure_peers.entry(peer).or_default() += 1;
        }
    }

    fn remove_secure_peer(&mut self, peer: SocketAddr, transport: &Transport) {
        if matches!(transport, Transport::Dtls(_))
            && let Some(count) = self.secure_peers.get_mut(&peer)
        {
            *count -= 1;
            if *count == 0 {
                self.secure_peers.remove(&peer);
            }
        }
    }

    fn respond(&mut self, peer: SocketAddr, request: &Packet, code: ResponseType) {
        let id = self.endpoint.next_message_id();
        let response = coap::response_to(request, code, id);
        if let Err(err) = self.endpoint.respond(peer, request, &response, now()) {
            tracing::debug!(%peer, error = %err, "LwM2M response not sent");
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Request { peer, request } => self.on_request(peer, request).await,
            Event::Response { token, response, .. } => self.on_response(token, response).await,
            Event::Notification { token, response, .. } => self.on_notification(&token, &response).await,
            Event::TimedOut { token, .. } => {
                self.on_failure(token, actions::NO_ANSWER.to_owned()).await;
            }
            Event::Reset { token, .. } => {
                self.on_failure(token, "the device rejected the request (reset)".to_owned())
                    .await;
            }
        }
    }

    async fn on_request(&mut self, peer: SocketAddr, request: Packet) {
        match RegistrationRequest::from_packet(&request) {
            Err(err) => {
                tracing::debug!(%peer, error = %err, "refusing an LwM2M request");
                self.respond(peer, &request, err.response_code());
            }
            Ok(RegistrationRequest::Register(register)) => self.on_register(peer, &request, register).await,
            Ok(RegistrationRequest::Update(update)) => self.on_update(peer, &request, update).await,
            Ok(RegistrationRequest::Deregister(deregister)) => {
                let transport = self.transport(peer);
                let owned = self
                    .device_at(&deregister.location)
                    .filter(|id| self.devices.get(*id).is_some_and(|r| r.transport == transport))
                    .cloned();
                match owned {
                    Some(device_id) => {
                        self.respond(peer, &request, ResponseType::Deleted);
                        self.remove(&device_id).await;
                    }
                    None => self.respond(peer, &request, ResponseType::NotFound),
                }
            }
        }
    }

    /// Counts a Register from `ip`; false when it is flooding.
    fn allow_register(&mut self, ip: IpAddr, at: Instant) -> bool {
        let window = Duration::from_secs(60);
        if self.attempts.len() > MAX_TRACKED_SOURCES {
            self.attempts
                .retain(|_, times| times.back().is_some_and(|t| at.duration_since(*t) < window));
        }
        let limit = self.config().max_registrations_per_minute;
        let times = self.attempts.entry(ip).or_default();
        while times.front().is_some_and(|t| at.duration_since(*t) >= window) {
            times.pop_front();
        }
        if times.len() >= limit {
            return false;
        }
        times.push_back(at);
        true
    }

    /// Records a refused registration.
    async fn deny(&self, peer: SocketAddr, endpoint: &str, target: &str, reason: &str) {
        let record = AuditRecord::new(
            format!("lwm2m:{endpoint}"),
            "device.connect",
            target,
            Outcome::Denied,
            json!({ "reason": reason, "channel": "lwm2m", "endpoint": endpoint }),
        )
        .with_source(Some(peer.ip().to_string()));
        if let Err(err) = self.state.store.append(self.state.audit(record)).await {
            tracing::warn!(error = %err, "recording a refused LwM2M registration failed");
        }
    }

    /// The endpoint's record, creating it (quarantined) when unknown and `auto_create` is on.
    async fn endpoint_record(&self, register: &Register) -> Result<Option<Lwm2mEndpointRecord>, ()> {
        let store = &self.state.store;
        match store.lwm2m_endpoint(&register.endpoint).await {
            Ok(Some(record)) => return Ok(Some(record)),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, "reading an LwM2M endpoint failed");
                return Err(());
            }
        }
        let (true, Some(site)) = (self.config().auto_create, self.config().auto_create_site.clone()) else {
            return Ok(None);
        };
        let now = self.state.now_ms();
        let device_id = uuid::Uuid::new_v4().to_string();
        // Unknown hardware is treated as the most sensitive kind until someone looks at it:
        // quarantined, and never wiped or powered off without a clinician.
        let mut device = ward_core::lwm2m::new_device(
            &device_id,
            &register.endpoint,
            site,
            DeviceClass::Medical,
            Criticality::LifeSustaining,
            true,
            now,
        );
        device.state = DeviceState::Quarantined;
        let record = Lwm2mEndpointRecord {
            endpoint: register.endpoint.clone(),
            device_id: device_id.clone(),
            psk_identity: register.endpoint.clone(),
            psk: String::new(),
            created_ms: now,
        };
        let audit = AuditRecord::new(
            "system",
            "lwm2m.auto_create",
            format!("device:{device_id}"),
            Outcome::Success,
            json!({ "endpoint": register.endpoint, "site": device.site, "state": device.state }),
        );
        match store
            .create_lwm2m_endpoint(&device, &record, self.state.audit(audit))
            .await
        {
            Ok(()) => Ok(Some(record)),
            Err(err) => {
                tracing::warn!(error = %err, "creating an LwM2M endpoint on first contact failed");
                Err(())
            }
        }
    }

    async fn on_register(&mut self, peer: SocketAddr, request: &Packet, register: Register) {
        let at = now();
        if !self.allow_register(peer.ip(), at) {
            tracing::warn!(%peer, "LwM2M register flood; refusing");
            return self.respond(peer, request, ResponseType::TooManyRequests);
        }
        let endpoint = match self.endpoint_record(&register).await {
            Ok(Some(endpoint)) => endpoint,
            Ok(None) => {
                self.deny(peer, &register.endpoint, "lwm2m", "unknown endpoint")
                    .await;
                return self.respond(peer, request, ResponseType::Forbidden);
            }
            Err(()) => return self.respond(peer, request, ResponseType::ServiceUnavailable),
        };
        let transport = self.transport(peer);
        if let Transport::Dtls(identity) = &transport
            && endpoint.psk_identity.as_bytes() != &identity[..]
        {
            let reason = format!(
                "the DTLS identity {:?} may not register this endpoint",
                String::from_utf8_lossy(identity)
            );
            self.deny(
                peer,
                &register.endpoint,
                &format!("device:{}", endpoint.device_id),
                &reason,
            )
            .await;
            return self.respond(peer, request, ResponseType::Forbidden);
        }
        let device_id: Arc<str> = Arc::from(endpoint.device_id.as_str());
        let target = format!("device:{device_id}");
        let device = match self.state.store.device(&device_id).await {
            Ok(Some(device)) if device.state.may_connect() => device,
            Ok(_) => {
                self.deny(peer, &endpoint.endpoint, &target, "revoked").await;
                return self.respond(peer, request, ResponseType::Forbidden);
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading an LwM2M device failed");
                return self.respond(peer, request, ResponseType::ServiceUnavailable);
            }
        };
        let previous = self.devices.contains_key(&device_id);
        if !previous && self.devices.len() >= MAX_REGISTRATIONS {
            return self.respond(peer, request, ResponseType::ServiceUnavailable);
        }
        // A Register from a registered device replaces its registration (it rebooted). The command
        // it was carrying out is known here even before the store has recorded it as sent.
        let mut in_flight: Option<Box<Active>> = None;
        // What the store has, unless the facts writer may not have stored the last registration's
        // latest document yet.
        let mut stored = StoredFacts {
            text: device.facts.into_boxed_str(),
            epoch: self.facts_epoch,
        };
        if let Some(old) = self.devices.remove(&device_id) {
            in_flight = old.active;
            stored = old.stored.unwrap_or(stored);
            self.locations.remove(&old.location);
            self.remove_secure_peer(old.peer, &old.transport);
            self.forget_requests(&device_id);
        }
        let mut location_bytes = [0u8; 8];
        self.state.entropy.fill(&mut location_bytes);
        let location = u64::from_be_bytes(location_bytes);
        let id = self.endpoint.next_message_id();
        let created = registration::created(request, &format!("{location:016x}"), id);
        if let Err(err) = self.endpoint.respond(peer, request, &created, at) {
            tracing::debug!(%peer, error = %err, "LwM2M response not sent");
            return;
        }
        let connection_id = self.state.channels.register_shared(&device_id, &self.inbox);
        let now_ms = self.state.now_ms();
        let _ = self.state.store.record_seen(&device_id, now_ms).await;
        let in_flight_id = in_flight.as_ref().map(|a| a.command.id.clone());
        // A firmware update whose Update was executed: the device restarts to apply it, so its
        // new registration is where the update ends (its /5/0/5 Update Result is read there).
        let mut carried = in_flight.filter(|active| {
            active
                .firmware
                .as_ref()
                .is_some_and(|job| job.stage == actions::FirmwareStage::Updating)
        });
        let binding_text = format!(
            "{}{}",
            register.binding,
            if register.queue_mode { "Q" } else { "" }
        );
        self.add_secure_peer(peer, &transport);
        let registration = Registration {
            location,
            peer,
            transport,
            connection_id,
            endpoint: endpoint.endpoint.into_boxed_str(),
            lifetime_s: register.lifetime,
            version: register.version.as_str(),
            binding: binding_text.into_boxed_str(),
            queue_mode: register.queue_mode,
            objects: register.object_paths().into_boxed_slice(),
            updated_ms: now_ms,
            awake_until: at + Duration::from_millis(self.config().queue_awake_ms),
            stored: Some(stored),
            queued: None,
            active: None,
            battery_token: None,
        };
        tracing::info!(device = %device_id, endpoint = %registration.endpoint, %peer,
            security = registration.transport.name(), "LwM2M device registered");
        self.locations.insert(location, device_id.clone());
        self.devices.insert(device_id.clone(), registration);
        self.store_registration(&device_id, true).await;
        // What the device is: the Device object always, Connectivity Monitoring when it has it.
        self.send(
            &device_id,
            Request::read(Path::instance(device::ID, 0), None),
            Purpose::Read(device::ID),
        );
        if self
            .devices
            .get(&device_id)
            .is_some_and(|r| r.has_object(connectivity::ID))
        {
            self.send(
                &device_id,
                Request::read(Path::instance(connectivity::ID, 0), None),
                Purpose::Read(connectivity::ID),
            );
        }
        // Its queue from the store, then whatever is created while it stays registered.
        match self.state.store.pending_commands(&device_id).await {
            Ok(pending) => {
                for command in pending {
                    if let Some(mut active) = carried.take_if(|a| a.command.id == command.id) {
                        tracing::info!(device = %device_id, command = %command.id,
                            "firmware update continues on the device's new registration");
                        if let Some(registration) = self.devices.get_mut(&device_id) {
                            active.requests.clear();
                            if let Some(job) = active.firmware.as_mut() {
                                job.busy = false;
                            }
                            registration.active = Some(active);
                        }
                        continue;
                    }
                    // Sent to an earlier registration and not finished: its answer was lost with
                    // that registration. Repeat only what is harmless twice.
                    let resumed = if command.sent_ms.is_some()
                        || in_flight_id.as_deref() == Some(command.id.as_str())
                    {
                        actions::resumed(command.kind)
                    } else {
                        actions::Resumed::Repeat
                    };
                    match resumed {
                        actions::Resumed::Repeat => self.enqueue(&device_id, command),
                        actions::Resumed::Succeeded(detail) => {
                            record_acknowledged(&self.state, &device_id, &command.id).await;
                            self.finish(&device_id, &command, true, detail).await;
                        }
                        actions::Resumed::Interrupted(reason) => {
                            self.finish(&device_id, &command, false, reason).await;
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(device = %device_id, error = %err, "reading pending commands failed"),
        }
        self.run_commands(&device_id).await;
    }

    async fn on_update(&mut self, peer: SocketAddr, request: &Packet, update: Update) {
        let Some(device_id) = self.device_at(&update.location).cloned() else {
            // Unknown location: the client registers again.
            return self.respond(peer, request, ResponseType::NotFound);
        };
        let now_ms = self.state.now_ms();
        let window = Duration::from_millis(self.config().queue_awake_ms);
        let transport = self.transport(peer);
        let Some(registration) = self.devices.get_mut(&device_id) else {
            return self.respond(peer, request, ResponseType::NotFound);
        };
        // Only the way it registered: a plain datagram cannot touch a DTLS registration, nor
        // one identity's session another's.
        if registration.transport != transport {
            return self.respond(peer, request, ResponseType::NotFound);
        }
        let old_peer = std::mem::replace(&mut registration.peer, peer);
        registration.updated_ms = now_ms;
        registration.awake_until = now() + window;
        if let Some(lifetime) = update.lifetime {
            registration.lifetime_s = lifetime;
        }
        if let Some(queue_mode) = update.queue_mode {
            registration.queue_mode = queue_mode;
        }
        if let Some(binding) = update.binding {
            let q = if registration.queue_mode { "Q" } else { "" };
            registration.binding = format!("{binding}{q}").into_boxed_str();
        }
        if let Some(links) = &update.links {
            registration.objects = links.iter().filter_map(|l| l.path()).collect();
        }
        if old_peer != peer {
            self.remove_secure_peer(old_peer, &transport);
            self.add_secure_peer(peer, &transport);
        }
        self.respond(peer, request, ResponseType::Changed);
        let _ = self.state.store.record_seen(&device_id, now_ms).await;
        self.store_registration(&device_id, true).await;
        // Queue mode: the device listens now; what was held goes out.
        self.run_commands(&device_id).await;
    }

    /// Ends a registration (de-registered, expired, revoked): the device goes offline.
    async fn remove(&mut self, device_id: &str) {
        let Some(registration) = self.devices.get(device_id) else {
            return;
        };
        tracing::info!(device = %device_id, endpoint = %registration.endpoint, "LwM2M registration ended");
        self.store_registration(device_id, false).await;
        if let Some(registration) = self.devices.remove(device_id) {
            self.locations.remove(&registration.location);
            self.remove_secure_peer(registration.peer, &registration.transport);
            self.state
                .channels
                .unregister(device_id, registration.connection_id);
            if let Some(token) = &registration.battery_token {
                self.endpoint.forget_observation(token);
            }
        }
        self.forget_requests(device_id);
    }

    /// Forgets the device's requests in flight and stops their retransmission.
    /// The device registered at `location` (as the client sends it back), if any.
    fn device_at(&self, location: &str) -> Option<&Arc<str>> {
        self.locations.get(&location_key(location)?)
    }

    fn forget_requests(&mut self, device_id: &str) {
        let endpoint = &mut self.endpoint;
        self.requests.retain(|token, p| {
            let keep = &*p.device_id != device_id;
            if !keep {
                endpoint.cancel(token);
            }
            keep
        });
    }

    /// Stores the registration part of the facts (`registered` as given).
    async fn store_registration(&mut self, device_id: &str, registered: bool) {
        let Some(registration) = self.devices.get_mut(device_id) else {
            return;
        };
        let summary = registration.facts(registered);
        self.update_facts(device_id, |section| facts::set_registration(section, &summary))
            .await;
    }

    /// Changes the device's `facts.lwm2m` section and hands the document to the facts writer if
    /// that changed it.
    async fn update_facts(&mut self, device_id: &str, change: impl FnOnce(&mut Map<String, Value>)) {
        let Some(registration) = self.devices.get(device_id) else {
            return;
        };
        let parse = |text: &str| serde_json::from_str(text).unwrap_or_else(|_| json!({}));
        let before: Value = match &registration.stored {
            Some(stored) => parse(&stored.text),
            None => match self.state.store.device(device_id).await {
                Ok(Some(device)) => parse(&device.facts),
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(device = %device_id, error = %err, "reading facts failed; LwM2M facts not updated");
                    return;
                }
            },
        };
        let mut section = facts::section_of(&before);
        change(&mut section);
        let document = facts::document(&before, &section);
        let diff = ward_core::facts::json_diff(&before, &document);
        if ward_core::facts::is_empty_diff(&diff) {
            return;
        }
        let Some(registration) = self.devices.get_mut(device_id) else {
            return;
        };
        registration.stored = Some(StoredFacts {
            text: document.to_string().into_boxed_str(),
            epoch: self.facts_epoch,
        });
        let now_ms = self.state.now_ms();
        ward_core::ingest::store(&self.state, device_id, &document, None, &diff, now_ms).await;
    }

    /// Sends a request to a registered device.
    fn send(&mut self, device_id: &str, request: Request, purpose: Purpose) -> bool {
        let Some((device_id, registration)) = self.devices.get_key_value(device_id) else {
            return false;
        };
        let (device_id, connection_id) = (device_id.clone(), registration.connection_id);
        match self.endpoint.send(registration.peer, &request, now()) {
            Ok(token) => {
                if matches!(purpose, Purpose::Battery)
                    && let Some(r) = self.devices.get_mut(&device_id)
                {
                    r.battery_token = Some(token.clone().into_boxed_slice());
                }
                self.requests.insert(
                    token,
                    Pending {
                        device_id,
                        connection_id,
                        purpose,
                    },
                );
                true
            }
            Err(err) => {
                tracing::warn!(device = %device_id, error = %err, "LwM2M request not sent");
                false
            }
        }
    }

    /// Adds a command to the device's queue unless this registration already has it.
    fn enqueue(&mut self, device_id: &str, command: CommandRecord) {
        let now_ms = self.state.now_ms();
        let Some(registration) = self.devices.get_mut(device_id) else {
            return;
        };
        let queued = registration.queued.get_or_insert_default();
        if queued.commands.len() >= MAX_QUEUED || !queued.pushed.insert(command.id.clone()) {
            return;
        }
        queued.commands.push_back((command, now_ms));
    }

    /// Starts the device's next commands while it listens and none is in progress.
    async fn run_commands(&mut self, device_id: &str) {
        loop {
            let Some(registration) = self.devices.get_mut(device_id) else {
                return;
            };
            if registration.active.is_some() || !registration.awake(now()) {
                return;
            }
            let Some((command, _)) = registration
                .queued
                .as_mut()
                .and_then(|queued| queued.commands.pop_front())
            else {
                return;
            };
            let has_lock_wipe = registration.has_object(lock_wipe::ID);
            let has_firmware = registration.has_object(firmware_update::ID);
            record_sent(&self.state, &command).await;
            let params: Value = serde_json::from_str(&command.params).unwrap_or(Value::Null);
            match actions::plan(command.kind, &params, has_lock_wipe, has_firmware) {
                actions::Plan::Refuse(reason) => {
                    self.finish(device_id, &command, false, reason).await;
                }
                actions::Plan::Done(detail) => {
                    record_acknowledged(&self.state, device_id, &command.id).await;
                    self.finish(device_id, &command, true, detail).await;
                }
                actions::Plan::Requests { requests, detail } => {
                    if let Some(registration) = self.devices.get_mut(device_id) {
                        registration.active = Some(Box::new(Active {
                            command,
                            requests: requests.into(),
                            detail,
                            acknowledged: false,
                            firmware: None,
                        }));
                    }
                    self.next_step(device_id).await;
                    return;
                }
                actions::Plan::Firmware { write } => {
                    let timeout = Duration::from_millis(self.config().firmware_timeout_ms);
                    if let Some(registration) = self.devices.get_mut(device_id) {
                        registration.active = Some(Box::new(Active {
                            command,
                            requests: VecDeque::from([write]),
                            detail: String::new(),
                            acknowledged: false,
                            firmware: Some(FirmwareJob {
                                stage: actions::FirmwareStage::Downloading,
                                deadline: now() + timeout,
                                busy: false,
                                state: None,
                            }),
                        }));
                    }
                    self.next_step(device_id).await;
                    return;
                }
            }
        }
    }

    /// Sends the active command's next request, or finishes it when none is left.
    async fn next_step(&mut self, device_id: &str) {
        let Some(active) = self.devices.get_mut(device_id).and_then(|r| r.active.as_mut()) else {
            return;
        };
        let command_id = active.command.id.clone();
        match active.requests.pop_front() {
            Some(request) => {
                if !self.send(device_id, request, Purpose::Step { command_id }) {
                    self.end_active(device_id, false, "the gateway could not send the request".into())
                        .await;
                }
            }
            None if active.firmware.is_some() => self.poll_firmware(device_id),
            None => {
                let detail = active.detail.clone();
                self.end_active(device_id, true, detail).await;
            }
        }
    }

    /// Whether `command_id` is the device's active command.
    fn is_active(&self, device_id: &str, command_id: &str) -> bool {
        self.devices
            .get(device_id)
            .and_then(|r| r.active.as_ref())
            .is_some_and(|a| a.command.id == command_id)
    }

    /// The active command's firmware update, if it is `command_id`'s.
    fn firmware_job(&mut self, device_id: &str, command_id: &str) -> Option<&mut FirmwareJob> {
        self.devices
            .get_mut(device_id)
            .and_then(|r| r.active.as_mut())
            .filter(|a| a.command.id == command_id)
            .and_then(|a| a.firmware.as_mut())
    }

    /// Sends a request of the active firmware update.
    fn send_firmware(&mut self, device_id: &str, request: FirmwareRequest) -> bool {
        let Some(command_id) = self
            .devices
            .get(device_id)
            .and_then(|r| r.active.as_ref())
            .map(|a| a.command.id.clone())
        else {
            return false;
        };
        let message = match request {
            FirmwareRequest::Poll => Request::read(Path::instance(firmware_update::ID, 0), None),
            FirmwareRequest::Execute => Request::execute(
                Path::resource(firmware_update::ID, 0, firmware_update::UPDATE),
                None,
            ),
            FirmwareRequest::Version => {
                Request::read(Path::resource(device::ID, 0, device::FIRMWARE_VERSION), None)
            }
        };
        let sent = self.send(
            device_id,
            message,
            Purpose::Firmware {
                command_id: command_id.clone(),
                request,
            },
        );
        if let Some(job) = self.firmware_job(device_id, &command_id) {
            job.busy = sent;
        }
        sent
    }

    /// Reads `/5/0` for the active firmware update unless a request of it is in flight.
    fn poll_firmware(&mut self, device_id: &str) {
        let ready = self
            .devices
            .get(device_id)
            .and_then(|r| r.active.as_ref())
            .and_then(|a| a.firmware.as_ref())
            .is_some_and(|job| !job.busy && job.stage != actions::FirmwareStage::ReadingVersion);
        if ready {
            self.send_firmware(device_id, FirmwareRequest::Poll);
        }
    }

    /// A firmware update's request was answered (`None`: it failed with `reason`).
    async fn on_firmware(
        &mut self,
        device_id: &str,
        command_id: &str,
        request: FirmwareRequest,
        response: Result<&Packet, String>,
    ) {
        let Some(job) = self.firmware_job(device_id, command_id) else {
            return;
        };
        job.busy = false;
        let stage = job.stage;
        let refused = |response: &Packet| {
            let code = ward_lwm2m::server::response_code(response);
            code.filter(|c| !c.is_error())
                .is_none()
                .then(|| code.map_or_else(|| "no code".to_owned(), |c| MessageClass::Response(c).to_string()))
        };
        match request {
            FirmwareRequest::Poll => {
                // An unanswered read is tried again at the next sweep.
                let Ok(response) = response else {
                    return;
                };
                if let Some(answer) = refused(response) {
                    let reason = format!("the device answered {answer} to a read of /5/0");
                    return self.end_active(device_id, false, reason).await;
                }
                let records = decode(response, &Path::instance(firmware_update::ID, 0)).unwrap_or_default();
                let value = |resource| {
                    records
                        .iter()
                        .find(|r| r.path.resource_id() == Some(resource))
                        .and_then(|r| r.value.as_integer())
                };
                let (state, result) = (
                    value(firmware_update::STATE),
                    value(firmware_update::UPDATE_RESULT),
                );
                self.update_facts(device_id, |section| facts::set_firmware(section, state, result))
                    .await;
                if let Some(job) = self.firmware_job(device_id, command_id) {
                    job.state = state.or(job.state);
                }
                match actions::firmware_next(stage, state, result) {
                    actions::FirmwareNext::Wait => {}
                    actions::FirmwareNext::ExecuteUpdate => {
                        if let Some(job) = self.firmware_job(device_id, command_id) {
                            job.stage = actions::FirmwareStage::Updating;
                        }
                        if !self.send_firmware(device_id, FirmwareRequest::Execute) {
                            let reason = "the gateway could not send the request".to_owned();
                            self.end_active(device_id, false, reason).await;
                        }
                    }
                    actions::FirmwareNext::Succeeded => {
                        if let Some(job) = self.firmware_job(device_id, command_id) {
                            job.stage = actions::FirmwareStage::ReadingVersion;
                        }
                        if !self.send_firmware(device_id, FirmwareRequest::Version) {
                            self.end_active(device_id, true, firmware_success(None)).await;
                        }
                    }
                    actions::FirmwareNext::Failed(reason) => self.end_active(device_id, false, reason).await,
                }
            }
            FirmwareRequest::Execute => {
                let answer = match response {
                    Ok(response) => refused(response),
                    Err(reason) => Some(reason),
                };
                if let Some(answer) = answer {
                    let reason = format!("Update (/5/0/2) failed: {answer}");
                    self.end_active(device_id, false, reason).await;
                }
            }
            FirmwareRequest::Version => {
                let path = Path::resource(device::ID, 0, device::FIRMWARE_VERSION);
                let version = response
                    .ok()
                    .filter(|r| refused(r).is_none())
                    .and_then(|r| decode(r, &path))
                    .and_then(|records| records.into_iter().find(|r| r.path == path))
                    .map(|record| record.value);
                if let Some(value) = &version {
                    self.update_facts(device_id, |section| facts::set_resource(section, &path, value))
                        .await;
                }
                let version = version.as_ref().and_then(|v| v.as_str().map(facts::bounded));
                self.end_active(device_id, true, firmware_success(version)).await;
            }
        }
    }

    /// Finishes the active command and starts the next one.
    async fn end_active(&mut self, device_id: &str, succeeded: bool, detail: String) {
        let Some(active) = self.devices.get_mut(device_id).and_then(|r| r.active.take()) else {
            return;
        };
        self.finish(device_id, &active.command, succeeded, detail).await;
        Box::pin(self.run_commands(device_id)).await;
    }

    async fn finish(&self, device_id: &str, command: &CommandRecord, succeeded: bool, detail: String) {
        let report = Report {
            succeeded,
            detail,
            ..Report::default()
        };
        record_finished(&self.state, device_id, &command.id, command.kind, report).await;
    }

    /// Looks up a request's purpose, if it belongs to a current registration.
    fn take_request(&mut self, token: &[u8], keep: bool) -> Option<(Arc<str>, Purpose)> {
        let pending = if keep {
            let p = self.requests.get(token)?;
            Pending {
                device_id: p.device_id.clone(),
                connection_id: p.connection_id,
                purpose: p.purpose.clone(),
            }
        } else {
            self.requests.remove(token)?
        };
        let current = self
            .devices
            .get(&pending.device_id)
            .is_some_and(|r| r.connection_id == pending.connection_id);
        current.then_some((pending.device_id, pending.purpose))
    }

    async fn on_response(&mut self, token: Vec<u8>, response: Packet) {
        let observing = self
            .requests
            .get(&token)
            .is_some_and(|p| matches!(p.purpose, Purpose::Battery));
        let Some((device_id, purpose)) = self.take_request(&token, observing) else {
            return;
        };
        let code = ward_lwm2m::server::response_code(&response);
        let success = code.is_some_and(|c| !c.is_error());
        match purpose {
            Purpose::Step { command_id } => {
                let is_active = self.is_active(&device_id, &command_id);
                if !is_active {
                    return;
                }
                if !success {
                    let answer =
                        code.map_or_else(|| "no code".to_owned(), |c| MessageClass::Response(c).to_string());
                    return self
                        .end_active(&device_id, false, format!("the device answered {answer}"))
                        .await;
                }
                if let Some(active) = self.devices.get_mut(&device_id).and_then(|r| r.active.as_mut())
                    && !active.acknowledged
                {
                    active.acknowledged = true;
                    record_acknowledged(&self.state, &device_id, &command_id).await;
                }
                self.next_step(&device_id).await;
            }
            Purpose::Read(object) => {
                if !success {
                    tracing::debug!(device = %device_id, object, "LwM2M read refused");
                    return;
                }
                let base = Path::instance(object, 0);
                let Some(records) = decode(&response, &base) else {
                    return;
                };
                let has_battery = records
                    .iter()
                    .any(|r| r.path.resource_id() == Some(device::BATTERY_LEVEL));
                self.update_facts(&device_id, |section| facts::set_object(section, object, &records))
                    .await;
                if object == device::ID && has_battery {
                    let battery = Path::resource(device::ID, 0, device::BATTERY_LEVEL);
                    self.send(
                        &device_id,
                        Request::observe(battery, Some(ContentFormat::Text)),
                        Purpose::Battery,
                    );
                }
            }
            Purpose::Battery => {
                if !success {
                    self.requests.remove(&token);
                    return;
                }
                self.on_battery(&device_id, &response).await;
            }
            Purpose::Firmware { command_id, request } => {
                self.on_firmware(&device_id, &command_id, request, Ok(&response))
                    .await;
            }
        }
    }

    async fn on_notification(&mut self, token: &[u8], response: &Packet) {
        if let Some((device_id, Purpose::Battery)) = self.take_request(token, true) {
            self.on_battery(&device_id, response).await;
        }
    }

    async fn on_battery(&mut self, device_id: &str, response: &Packet) {
        let path = Path::resource(device::ID, 0, device::BATTERY_LEVEL);
        let Some(records) = decode(response, &path) else {
            return;
        };
        let Some(record) = records.iter().find(|r| r.path == path) else {
            return;
        };
        self.update_facts(device_id, |section| {
            facts::set_resource(section, &path, &record.value)
        })
        .await;
    }

    async fn on_failure(&mut self, token: Vec<u8>, reason: String) {
        let Some((device_id, purpose)) = self.take_request(&token, false) else {
            return;
        };
        match purpose {
            Purpose::Step { command_id } => {
                let is_active = self.is_active(&device_id, &command_id);
                if is_active {
                    self.end_active(&device_id, false, reason).await;
                }
            }
            Purpose::Read(object) => {
                tracing::debug!(device = %device_id, object, %reason, "LwM2M read failed")
            }
            Purpose::Battery => {}
            Purpose::Firmware { command_id, request } => {
                self.on_firmware(&device_id, &command_id, request, Err(reason))
                    .await;
            }
        }
    }

    async fn on_inbox(&mut self, message: Handover) {
        match message {
            Handover::Command {
                device_id,
                connection_id,
                command,
            } => {
                if self
                    .devices
                    .get(device_id.as_str())
                    .is_some_and(|r| r.connection_id == connection_id)
                {
                    self.enqueue(&device_id, *command);
                    self.run_commands(&device_id).await;
                }
            }
            Handover::Closed {
                device_id,
                connection_id,
            } => {
                let Some(registration) = self
                    .devices
                    .get(device_id.as_str())
                    .filter(|r| r.connection_id == connection_id)
                else {
                    return;
                };
                // Revoked or retired: its DTLS session ends too (a new one is refused at Register).
                let secured = match &registration.transport {
                    Transport::Dtls(_) => Some(registration.peer),
                    Transport::Plain => None,
                };
                self.remove(&device_id).await;
                if let Some(peer) = secured {
                    self.dtls.close(peer);
                }
            }
        }
    }

    /// Drops the facts documents the writer has stored since the last sweep, and asks it to tell
    /// when it has stored the ones handed over since.
    async fn release_stored_facts(&mut self) {
        if let Some((epoch, answer)) = &mut self.facts_flush {
            match answer.try_recv() {
                Ok(()) => {
                    let epoch = *epoch;
                    for registration in self.devices.values_mut() {
                        if registration.stored.as_ref().is_some_and(|s| s.epoch <= epoch) {
                            registration.stored = None;
                        }
                    }
                }
                Err(oneshot::error::TryRecvError::Empty) => return,
                // The writer stopped: nothing handed to it can be counted on as stored.
                Err(oneshot::error::TryRecvError::Closed) => {}
            }
            self.facts_flush = None;
        }
        if !self.devices.values().any(|r| r.stored.is_some()) {
            return;
        }
        let (ask, answer) = oneshot::channel();
        if self.state.facts_writer.send(FactsWork::Flush(ask)).await.is_ok() {
            self.facts_flush = Some((self.facts_epoch, answer));
            self.facts_epoch += 1;
        }
    }

    /// Ends registrations whose lifetime passed, and fails commands a queue-mode device did not
    /// come for in time.
    async fn sweep(&mut self) {
        self.dtls.expire(now());
        self.release_stored_facts().await;
        let now_ms = self.state.now_ms();
        let queue_timeout = self.config().queue_timeout_ms;
        let expired: Vec<Arc<str>> = self
            .devices
            .iter()
            .filter(|(_, r)| now_ms >= r.updated_ms + i64::from(r.lifetime_s) * 1000)
            .map(|(device_id, _)| device_id.clone())
            .collect();
        for device_id in expired {
            self.remove(&device_id).await;
        }
        let mut overdue = Vec::new();
        for (device_id, registration) in &mut self.devices {
            let Some(queued) = registration.queued.as_mut() else {
                continue;
            };
            while queued
                .commands
                .front()
                .is_some_and(|(_, since)| now_ms - since >= queue_timeout)
            {
                if let Some((command, _)) = queued.commands.pop_front() {
                    overdue.push((device_id.clone(), command));
                }
            }
        }
        for (device_id, command) in overdue {
            self.finish(&device_id, &command, false, actions::NO_ANSWER.to_owned())
                .await;
        }
        // Firmware updates: read their progress again, or fail them when they took too long.
        let at = now();
        let timeout_s = self.config().firmware_timeout_ms / 1000;
        let mut updating = Vec::new();
        for (device_id, registration) in &self.devices {
            if let Some(job) = registration.active.as_ref().and_then(|a| a.firmware.as_ref()) {
                updating.push((device_id.clone(), at >= job.deadline, job.state));
            }
        }
        for (device_id, late, state) in updating {
            if late {
                let state = state.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
                let reason = format!("firmware update timed out after {timeout_s} s (/5/0/3 State {state})");
                self.end_active(&device_id, false, reason).await;
            } else {
                self.poll_firmware(&device_id);
            }
        }
    }
}

/// A registration's location as the gateway keys it: the 16 lowercase hex digits it handed out
/// in `rd/{location}`, and nothing else (`None` for any other text: no registration has it).
fn location_key(location: &str) -> Option<u64> {
    let digits = location.as_bytes();
    if digits.len() != 16 || !digits.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(location, 16).ok()
}

/// What a successful firmware update reports.
fn firmware_success(version: Option<String>) -> String {
    match version {
        Some(version) => {
            format!("firmware updated (/5/0/5 Update Result 1); firmware version now {version} (/3/0/3)")
        }
        None => "firmware updated (/5/0/5 Update Result 1)".to_owned(),
    }
}

/// Decodes a response's payload at `base` (in whatever format it says it is in).
fn decode(response: &Packet, base: &Path) -> Option<Vec<content::Record>> {
    let format = coap::content_format(response).and_then(ContentFormat::from_code)?;
    match content::decode(format, base, &response.payload, &StandardObjects) {
        Ok(records) => Some(records),
        Err(err) => {
            tracing::debug!(error = %err, "undecodable LwM2M payload");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::location_key;

    #[test]
    fn a_location_is_only_the_sixteen_lowercase_hex_digits_handed_out() {
        assert_eq!(location_key("00000000000000ff"), Some(0xff));
        assert_eq!(location_key(&format!("{:016x}", u64::MAX)), Some(u64::MAX));
        for other in [
            "",
            "ff",
            "00000000000000FF",
            "+0000000000000ff",
            "000000000000000ff",
            "0000000000000g0f",
        ] {
            assert_eq!(location_key(other), None, "{other:?}");
        }
    }
}
