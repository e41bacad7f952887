//! An LwM2M client: a sans-IO core ([`ClientCore`]) and a thin tokio wrapper ([`spawn`]).
//!
//! The core registers with one server (CON `POST /rd`, retransmitted per RFC 7252), sends
//! Updates before the lifetime runs out, de-registers on request, and answers the server's
//! Read, Write, Execute, Discover, Observe and Write-Attributes requests from its
//! [`ObjectStore`]. Executes and security-relevant writes surface as [`ClientEvent`]s.
//!
//! Simplifications: one server; one confirmable request of its own in flight (NSTART = 1);
//! notifications are sent non-confirmable; no Create/Delete of instances; no bootstrap; no
//! block-wise transfer; PUT on an object instance updates the listed resources instead of
//! replacing the whole instance.

mod runtime;
mod store;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

pub use runtime::{ClientError, ClientHandle, Security, spawn, spawn_with};
pub use store::{DeviceInfo, ObjectStore, StoreError};

use crate::attributes::Attributes;
use crate::coap::{self, DedupCache, MessageIds, Retransmission, RetransmitStep, Seen, TransmissionParams};
use crate::content::{self, ContentFormat, Path, Record, Value};
use crate::link;
use crate::objects::firmware::{FirmwareState, FirmwareUpdate, InvalidTransition, UpdateResult};
use crate::objects::{StandardObjects, device, firmware_update as fw, lock_wipe};
use crate::registration::{self, Deregister, Register, Update, Version};

/// Most concurrent observations; further Observe requests are served as plain Reads.
pub const MAX_OBSERVATIONS: usize = 64;
/// Most remembered incoming message ids.
pub const DEDUP_CAPACITY: usize = 256;
/// Most remembered notification message ids (to map a Reset back to its observation).
const RECENT_NOTIFICATIONS: usize = 64;

/// Client configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Endpoint client name (`ep`).
    pub endpoint: String,
    /// Registration lifetime, seconds.
    pub lifetime: u32,
    /// LwM2M version to announce.
    pub version: Version,
    /// Queue mode.
    pub queue_mode: bool,
    /// CoAP transmission parameters.
    pub params: TransmissionParams,
    /// Wait before registering again after a failed registration.
    pub retry_delay: Duration,
}

impl ClientConfig {
    /// LwM2M 1.1 over UDP, one-day lifetime, RFC 7252 timing.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            lifetime: registration::DEFAULT_LIFETIME,
            version: Version::V1_1,
            queue_mode: false,
            params: TransmissionParams::default(),
            retry_delay: Duration::from_secs(30),
        }
    }
}

/// What the client tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Registered; the server assigned `location`.
    Registered {
        /// `/rd/{location}`.
        location: String,
    },
    /// Registration (or an update) failed; the client retries after `retry_delay`.
    RegistrationFailed {
        /// Why.
        reason: String,
    },
    /// An Update succeeded.
    Updated,
    /// De-registered (or gave up trying); the client is idle.
    Deregistered,
    /// /3/0/4 executed.
    Reboot,
    /// /3/0/5 executed.
    FactoryReset,
    /// /8/0/3 executed, with the targets written to /8/0/4.
    Wipe {
        /// Wipe targets.
        targets: Vec<String>,
    },
    /// /8/0/0 written: 0 unlocked, 1 partially locked, 2 fully locked; targets from /8/0/1.
    Lock {
        /// The new state.
        state: i64,
        /// Lock targets.
        targets: Vec<String>,
    },
    /// A non-empty /5/0/1 was written: download from `uri`, then report
    /// [`FirmwareProgress::Downloaded`] or [`FirmwareProgress::DownloadFailed`].
    FirmwareDownload {
        /// Package URI.
        uri: String,
    },
    /// /5/0/2 executed in state Downloaded: apply the package, then report
    /// [`FirmwareProgress::Updated`] or [`FirmwareProgress::UpdateFailed`].
    FirmwareUpdate {
        /// The package URI it came from (empty if pushed to /5/0/0).
        uri: String,
    },
    /// The server wrote a resource.
    Written {
        /// What was written.
        path: Path,
    },
}

/// What the application reports about a firmware download or update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirmwareProgress {
    /// The package is downloaded and verified.
    Downloaded,
    /// The download failed.
    DownloadFailed(UpdateResult),
    /// The update was applied.
    Updated,
    /// Applying failed.
    UpdateFailed(UpdateResult),
}

/// Where the client is in the registration lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// Not registered (initially, or after a failure while waiting to retry).
    Unregistered,
    /// Register sent.
    Registering,
    /// Registered at `location`.
    Registered {
        /// `/rd/{location}`.
        location: String,
    },
    /// De-register sent.
    Deregistering,
    /// De-registered: the client is done.
    Deregistered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutgoingKind {
    Register,
    Update,
    Deregister,
}

#[derive(Debug)]
struct Outgoing {
    kind: OutgoingKind,
    token: Vec<u8>,
    retransmission: Option<Retransmission>,
    message_id: u16,
    deadline: Instant,
}

#[derive(Debug)]
struct Observation {
    path: Path,
    format: ContentFormat,
    sequence: u32,
    last_sent: Instant,
    dirty: bool,
}

/// A response being built.
struct Reply {
    code: ResponseType,
    format: Option<ContentFormat>,
    payload: Vec<u8>,
    observe: Option<u32>,
}

impl Reply {
    const fn code(code: ResponseType) -> Self {
        Self {
            code,
            format: None,
            payload: Vec::new(),
            observe: None,
        }
    }

    fn content(format: ContentFormat, payload: Vec<u8>) -> Self {
        Self {
            code: ResponseType::Content,
            format: Some(format),
            payload,
            observe: None,
        }
    }
}

impl From<StoreError> for Reply {
    fn from(e: StoreError) -> Self {
        Self::code(match e {
            StoreError::NotFound(_) => ResponseType::NotFound,
            StoreError::NotAllowed(_) => ResponseType::MethodNotAllowed,
            StoreError::WrongType { .. } => ResponseType::BadRequest,
        })
    }
}

/// The sans-IO LwM2M client. Feed it datagrams from the server and the time; send what
/// [`ClientCore::poll_transmit`] returns to the server; handle [`ClientCore::poll_event`].
#[derive(Debug)]
pub struct ClientCore {
    config: ClientConfig,
    store: ObjectStore,
    firmware: FirmwareUpdate,
    state: RegistrationState,
    outgoing: Option<Outgoing>,
    update_at: Option<Instant>,
    retry_at: Option<Instant>,
    dedup: DedupCache,
    ids: MessageIds,
    observations: BTreeMap<Vec<u8>, Observation>,
    recent_notifications: VecDeque<(u16, Vec<u8>)>,
    attributes: BTreeMap<Path, Attributes>,
    outbox: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
}

impl ClientCore {
    /// A client with these objects, not yet registered.
    pub fn new(config: ClientConfig, store: ObjectStore) -> Self {
        let lifetime = config.params.exchange_lifetime();
        Self {
            config,
            store,
            firmware: FirmwareUpdate::new(),
            state: RegistrationState::Unregistered,
            outgoing: None,
            update_at: None,
            retry_at: None,
            dedup: DedupCache::new(DEDUP_CAPACITY, lifetime),
            ids: MessageIds::default(),
            observations: BTreeMap::new(),
            recent_notifications: VecDeque::new(),
            attributes: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The registration state.
    pub fn state(&self) -> &RegistrationState {
        &self.state
    }

    /// The objects.
    pub fn store(&self) -> &ObjectStore {
        &self.store
    }

    /// The firmware-update state machine.
    pub fn firmware(&self) -> &FirmwareUpdate {
        &self.firmware
    }

    /// Number of active observations.
    pub fn observation_count(&self) -> usize {
        self.observations.len()
    }

    /// Next datagram for the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Sends Register (CON `POST /rd`).
    pub fn register(&mut self, now: Instant) {
        let mut reg = Register::new(self.config.endpoint.clone(), self.store.registration_links());
        reg.lifetime = self.config.lifetime;
        reg.version = self.config.version;
        reg.queue_mode = self.config.queue_mode;
        self.retry_at = None;
        self.update_at = None;
        self.state = RegistrationState::Registering;
        self.send_own(
            OutgoingKind::Register,
            |mid, token| reg.to_packet(mid, token),
            now,
        );
    }

    /// Sends De-register (CON `DELETE /rd/{location}`), or finishes at once if not registered.
    pub fn deregister(&mut self, now: Instant) {
        self.retry_at = None;
        self.update_at = None;
        self.observations.clear();
        match &self.state {
            RegistrationState::Registered { location } => {
                let d = Deregister {
                    location: location.clone(),
                };
                self.state = RegistrationState::Deregistering;
                self.send_own(
                    OutgoingKind::Deregister,
                    |mid, token| d.to_packet(mid, token),
                    now,
                );
            }
            RegistrationState::Deregistering => {}
            _ => self.finish_deregistration(),
        }
    }

    fn finish_deregistration(&mut self) {
        self.outgoing = None;
        self.state = RegistrationState::Deregistered;
        self.events.push_back(ClientEvent::Deregistered);
    }

    fn send_own(&mut self, kind: OutgoingKind, build: impl FnOnce(u16, Vec<u8>) -> Packet, now: Instant) {
        let message_id = self.ids.next_id();
        let token = coap::new_token();
        let packet = build(message_id, token.clone());
        let Ok(datagram) = coap::serialize(&packet) else {
            self.events.push_back(ClientEvent::RegistrationFailed {
                reason: "request too large".into(),
            });
            return;
        };
        let retransmission = Retransmission::new(
            datagram.clone(),
            message_id,
            now,
            &self.config.params,
            rand::random(),
        );
        let deadline = now + self.config.params.exchange_lifetime();
        self.outgoing = Some(Outgoing {
            kind,
            token,
            retransmission: Some(retransmission),
            message_id,
            deadline,
        });
        self.outbox.push_back(datagram);
    }

    /// Sets a resource value as the device (e.g. a new battery level); observers are notified
    /// when their attributes allow.
    pub fn set_value(&mut self, path: Path, value: Value) -> Result<(), StoreError> {
        if self.store.set(path, value)? {
            self.mark_dirty(&path);
        }
        Ok(())
    }

    fn mark_dirty(&mut self, changed: &Path) {
        for o in self.observations.values_mut() {
            if o.path.contains(changed) || changed.contains(&o.path) {
                o.dirty = true;
            }
        }
    }

    /// Reports firmware download/update progress.
    pub fn firmware_progress(&mut self, progress: FirmwareProgress) -> Result<(), InvalidTransition> {
        match progress {
            FirmwareProgress::Downloaded => self.firmware.download_complete()?,
            FirmwareProgress::DownloadFailed(r) => self.firmware.download_failed(r)?,
            FirmwareProgress::Updated => self.firmware.update_succeeded()?,
            FirmwareProgress::UpdateFailed(r) => self.firmware.update_failed(r)?,
        }
        self.sync_firmware();
        Ok(())
    }

    fn sync_firmware(&mut self) {
        let state = Value::Integer(self.firmware.state() as i64);
        let result = Value::Integer(self.firmware.result() as i64);
        for (r, v) in [(fw::STATE, state), (fw::UPDATE_RESULT, result)] {
            if let Err(e) = self.set_value(Path::resource(fw::ID, 0, r), v) {
                tracing::warn!(error = %e, "firmware object missing");
            }
        }
    }

    /// When [`ClientCore::handle_timeout`] should next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        let outgoing = self.outgoing.as_ref().map(|o| {
            o.retransmission
                .as_ref()
                .map_or(o.deadline, Retransmission::deadline)
        });
        let update = if self.outgoing.is_none() {
            self.update_at
        } else {
            None
        };
        let observations = self
            .observations
            .values()
            .filter_map(|o| self.notification_due(o));
        [outgoing, update, self.retry_at]
            .into_iter()
            .flatten()
            .chain(observations)
            .min()
    }

    fn effective_attributes(&self, path: &Path) -> Attributes {
        let mut attrs = Attributes::default();
        let mut cursor = Some(*path);
        while let Some(p) = cursor {
            if let Some(a) = self.attributes.get(&p) {
                attrs = attrs.inherit(a);
            }
            cursor = p.parent();
        }
        attrs
    }

    fn notification_due(&self, o: &Observation) -> Option<Instant> {
        let attrs = self.effective_attributes(&o.path);
        let pmin = o.last_sent + Duration::from_secs(u64::from(attrs.pmin.unwrap_or(0)));
        let pmax = attrs
            .pmax
            .filter(|p| *p > 0)
            .map(|p| o.last_sent + Duration::from_secs(u64::from(p)));
        let on_change = o.dirty.then_some(pmin);
        match (on_change, pmax) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Retransmits, sends Updates, retries registration and sends due notifications.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.poll_outgoing(now);
        if self.outgoing.is_none() && self.update_at.is_some_and(|t| now >= t) {
            self.send_update(now);
        }
        if self.retry_at.is_some_and(|t| now >= t) {
            self.register(now);
        }
        self.send_due_notifications(now);
    }

    fn poll_outgoing(&mut self, now: Instant) {
        let Some(out) = self.outgoing.as_mut() else { return };
        let step = match out.retransmission.as_mut() {
            Some(r) => r.poll(now),
            None if now >= out.deadline => RetransmitStep::GiveUp,
            None => RetransmitStep::Wait,
        };
        match step {
            RetransmitStep::Wait => {}
            RetransmitStep::Resend(d) => self.outbox.push_back(d),
            RetransmitStep::GiveUp => {
                let kind = out.kind;
                self.outgoing = None;
                self.own_request_failed(kind, "no response from the server", now);
            }
        }
    }

    fn send_update(&mut self, now: Instant) {
        let RegistrationState::Registered { location } = &self.state else {
            return;
        };
        let update = Update {
            location: location.clone(),
            ..Update::default()
        };
        self.update_at = None;
        self.send_own(
            OutgoingKind::Update,
            |mid, token| update.to_packet(mid, token),
            now,
        );
    }

    fn own_request_failed(&mut self, kind: OutgoingKind, reason: &str, now: Instant) {
        match kind {
            OutgoingKind::Deregister => self.finish_deregistration(),
            OutgoingKind::Register | OutgoingKind::Update => {
                self.state = RegistrationState::Unregistered;
                self.observations.clear();
                self.retry_at = Some(now + self.config.retry_delay);
                self.events.push_back(ClientEvent::RegistrationFailed {
                    reason: reason.to_owned(),
                });
            }
        }
    }

    /// When to send the next Update: early enough for a full retransmission sequence, and no
    /// later than 90 % of the lifetime.
    fn update_delay(&self) -> Duration {
        let lifetime = Duration::from_secs(u64::from(self.config.lifetime));
        lifetime
            .saturating_sub(self.config.params.max_transmit_wait())
            .max(lifetime.mul_f64(0.5))
            .min(lifetime.mul_f64(0.9))
    }

    /// Processes one datagram from `from` (the wrapper passes only the server's).
    pub fn handle_datagram(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) {
        let Ok(packet) = coap::parse(datagram) else {
            tracing::debug!("dropping malformed datagram");
            return;
        };
        match packet.header.get_type() {
            MessageType::Acknowledgement => self.on_ack(packet, now),
            MessageType::Reset => self.on_reset(packet.header.message_id, now),
            MessageType::Confirmable | MessageType::NonConfirmable => self.on_message(from, packet, now),
        }
    }

    fn on_ack(&mut self, packet: Packet, now: Instant) {
        let Some(out) = self.outgoing.as_mut() else { return };
        if out.message_id != packet.header.message_id {
            return;
        }
        if coap::is_empty(&packet) {
            out.retransmission = None;
        } else if packet.get_token() == out.token.as_slice() {
            self.on_own_response(&packet, now);
        }
    }

    fn on_reset(&mut self, message_id: u16, now: Instant) {
        if let Some(out) = self.outgoing.as_ref().filter(|o| o.message_id == message_id) {
            let kind = out.kind;
            self.outgoing = None;
            return self.own_request_failed(kind, "reset by the server", now);
        }
        let found = self
            .recent_notifications
            .iter()
            .find(|(mid, _)| *mid == message_id)
            .map(|(_, t)| t.clone());
        if let Some(token) = found {
            self.observations.remove(&token);
        }
    }

    fn on_own_response(&mut self, packet: &Packet, now: Instant) {
        let Some(out) = self.outgoing.take() else { return };
        let code = match packet.header.code {
            MessageClass::Response(r) => r,
            _ => return,
        };
        match (out.kind, code) {
            (OutgoingKind::Register, ResponseType::Created) => match registration::location_of(packet) {
                Some(location) => {
                    self.state = RegistrationState::Registered {
                        location: location.clone(),
                    };
                    self.update_at = Some(now + self.update_delay());
                    self.events.push_back(ClientEvent::Registered { location });
                }
                None => self.own_request_failed(out.kind, "2.01 without a valid Location-Path", now),
            },
            (OutgoingKind::Update, ResponseType::Changed) => {
                self.update_at = Some(now + self.update_delay());
                self.events.push_back(ClientEvent::Updated);
            }
            (OutgoingKind::Update, ResponseType::NotFound) => {
                // The server forgot us: register again at once.
                self.register(now);
            }
            (OutgoingKind::Deregister, _) => self.finish_deregistration(),
            (kind, code) => {
                let reason = format!("server answered {}", MessageClass::Response(code));
                self.own_request_failed(kind, &reason, now);
            }
        }
    }

    fn on_message(&mut self, from: SocketAddr, packet: Packet, now: Instant) {
        let message_id = packet.header.message_id;
        let confirmable = packet.header.get_type() == MessageType::Confirmable;
        match self.dedup.lookup(from, message_id, now) {
            Some(Seen::Answered(d)) => return self.outbox.push_back(d),
            Some(Seen::Ignored) => return,
            None => {}
        }
        match packet.header.code {
            MessageClass::Request(_) => {
                let reply = self.dispatch(&packet, now);
                let response = self.build_response(&packet, reply);
                let datagram = coap::serialize(&response).or_else(|_| {
                    coap::serialize(
                        &self.build_response(&packet, Reply::code(ResponseType::InternalServerError)),
                    )
                });
                let Ok(datagram) = datagram else { return };
                self.dedup
                    .insert(from, message_id, confirmable.then(|| datagram.clone()), now);
                self.outbox.push_back(datagram);
            }
            MessageClass::Response(_) => {
                // A separate response to our own request.
                let ours = self
                    .outgoing
                    .as_ref()
                    .is_some_and(|o| o.token.as_slice() == packet.get_token());
                let kind = if ours {
                    MessageType::Acknowledgement
                } else {
                    MessageType::Reset
                };
                let reply = coap::serialize(&coap::empty(kind, message_id)).ok();
                if let Some(d) = reply.clone().filter(|_| confirmable || !ours) {
                    self.outbox.push_back(d);
                }
                self.dedup
                    .insert(from, message_id, reply.filter(|_| confirmable), now);
                if ours {
                    self.on_own_response(&packet, now);
                }
            }
            MessageClass::Empty if confirmable => {
                if let Ok(d) = coap::serialize(&coap::empty(MessageType::Reset, message_id)) {
                    self.outbox.push_back(d);
                }
            }
            _ => {}
        }
    }

    fn build_response(&mut self, request: &Packet, reply: Reply) -> Packet {
        let fresh = self.ids.next_id();
        let mut p = coap::response_to(request, reply.code, fresh);
        if let Some(seq) = reply.observe {
            coap::set_observe(&mut p, seq);
        }
        if let Some(f) = reply.format {
            coap::add_uint_option(&mut p, CoapOption::ContentFormat, u32::from(f.code()));
        }
        p.payload = reply.payload;
        p
    }

    fn dispatch(&mut self, request: &Packet, now: Instant) -> Reply {
        let MessageClass::Request(method) = request.header.code else {
            return Reply::code(ResponseType::BadRequest);
        };
        let Some(segments) = coap::string_options(request, CoapOption::UriPath) else {
            return Reply::code(ResponseType::BadRequest);
        };
        if segments.is_empty() {
            return Reply::code(ResponseType::NotFound);
        }
        let Ok(path) = Path::from_segments(&segments) else {
            return Reply::code(ResponseType::NotFound);
        };
        let accept = coap::accept(request);
        match method {
            RequestType::Get if accept == Some(ContentFormat::LinkFormat.code()) => self.discover(&path),
            RequestType::Get => match coap::observe(request) {
                Some(0) => self.observe(request, path, accept, now),
                Some(1) => {
                    self.observations.remove(request.get_token());
                    self.read(&path, accept)
                }
                _ => self.read(&path, accept),
            },
            RequestType::Put if request.payload.is_empty() && coap::content_format(request).is_none() => {
                self.write_attributes(request, path)
            }
            RequestType::Put => self.write(request, path, true),
            RequestType::Post if self.is_executable(&path) => self.execute(path),
            // A POST without content on a resource is an Execute attempt on a non-executable.
            RequestType::Post if path.depth() == 3 && coap::content_format(request).is_none() => {
                self.execute(path)
            }
            RequestType::Post if path.instance_id().is_some() => self.write(request, path, false),
            _ => Reply::code(ResponseType::MethodNotAllowed),
        }
    }

    fn is_executable(&self, path: &Path) -> bool {
        path.depth() == 3 && self.store.definition(path).is_ok_and(|d| d.operations.execute)
    }

    /// The format for a Read/notification of `records` at `path`, or the error to answer.
    fn choose_format(accept: Option<u16>, path: &Path, records: &[Record]) -> Result<ContentFormat, Reply> {
        let not_acceptable = || Reply::code(ResponseType::NotAcceptable);
        let single = path.is_resource_level() && records.len() == 1 && records[0].path == *path;
        match accept.map(ContentFormat::from_code) {
            None => Ok(ContentFormat::Tlv),
            Some(Some(f @ (ContentFormat::Tlv | ContentFormat::SenmlJson | ContentFormat::SenmlCbor))) => {
                Ok(f)
            }
            Some(Some(ContentFormat::Text)) if single => Ok(ContentFormat::Text),
            Some(Some(ContentFormat::Opaque)) if single && matches!(records[0].value, Value::Opaque(_)) => {
                Ok(ContentFormat::Opaque)
            }
            _ => Err(not_acceptable()),
        }
    }

    fn encode_read(&self, path: &Path, accept: Option<u16>) -> Result<(ContentFormat, Vec<u8>), Reply> {
        let records = self.store.read(path).map_err(Reply::from)?;
        let format = Self::choose_format(accept, path, &records)?;
        let payload = content::encode(format, path, &records).map_err(|e| {
            tracing::warn!(error = %e, %path, "encoding a read failed");
            Reply::code(ResponseType::InternalServerError)
        })?;
        Ok((format, payload))
    }

    fn read(&self, path: &Path, accept: Option<u16>) -> Reply {
        match self.encode_read(path, accept) {
            Ok((format, payload)) => Reply::content(format, payload),
            Err(reply) => reply,
        }
    }

    fn discover(&self, path: &Path) -> Reply {
        let links = match self.store.discover(path) {
            Ok(l) => l,
            Err(e) => return e.into(),
        };
        let links: Vec<link::Link> = links
            .into_iter()
            .map(|mut l| {
                if let Some(attrs) = l.path().and_then(|p| self.attributes.get(&p)) {
                    for q in attrs.to_queries() {
                        let (name, value) = q.split_once('=').unwrap_or((q.as_str(), ""));
                        l = l.with(name, Some(value.to_owned()));
                    }
                }
                l
            })
            .collect();
        Reply::content(ContentFormat::LinkFormat, link::format(&links).into_bytes())
    }

    fn observe(&mut self, request: &Packet, path: Path, accept: Option<u16>, now: Instant) -> Reply {
        let (format, payload) = match self.encode_read(&path, accept) {
            Ok(ok) => ok,
            Err(reply) => return reply,
        };
        let token = request.get_token().to_vec();
        let mut reply = Reply::content(format, payload);
        if self.observations.len() < MAX_OBSERVATIONS || self.observations.contains_key(&token) {
            self.observations.insert(
                token,
                Observation {
                    path,
                    format,
                    sequence: 0,
                    last_sent: now,
                    dirty: false,
                },
            );
            reply.observe = Some(0);
        }
        reply
    }

    fn send_due_notifications(&mut self, now: Instant) {
        let due: Vec<Vec<u8>> = self
            .observations
            .iter()
            .filter(|(_, o)| self.notification_due(o).is_some_and(|t| now >= t))
            .map(|(t, _)| t.clone())
            .collect();
        for token in due {
            self.notify(token, now);
        }
    }

    fn notify(&mut self, token: Vec<u8>, now: Instant) {
        let Some(o) = self.observations.get(&token) else {
            return;
        };
        let (path, format) = (o.path, o.format);
        let encoded = self
            .store
            .read(&path)
            .ok()
            .and_then(|r| content::encode(format, &path, &r).ok());
        let Some(payload) = encoded else {
            self.observations.remove(&token);
            return;
        };
        let Some(o) = self.observations.get_mut(&token) else {
            return;
        };
        o.sequence = (o.sequence + 1) & 0x00FF_FFFF;
        o.last_sent = now;
        o.dirty = false;
        let message_id = self.ids.next_id();
        let mut p = coap::request(RequestType::Get, false, message_id, token.clone());
        p.header.code = MessageClass::Response(ResponseType::Content);
        coap::set_observe(&mut p, o.sequence);
        coap::add_uint_option(&mut p, CoapOption::ContentFormat, u32::from(format.code()));
        p.payload = payload;
        if let Ok(d) = coap::serialize(&p) {
            self.outbox.push_back(d);
            self.recent_notifications.push_back((message_id, token));
            if self.recent_notifications.len() > RECENT_NOTIFICATIONS {
                self.recent_notifications.pop_front();
            }
        }
    }

    fn write_attributes(&mut self, request: &Packet, path: Path) -> Reply {
        if !self.store.exists(&path) {
            return Reply::code(ResponseType::NotFound);
        }
        let Some(queries) = coap::string_options(request, CoapOption::UriQuery) else {
            return Reply::code(ResponseType::BadRequest);
        };
        let mut attrs = self.attributes.get(&path).copied().unwrap_or_default();
        if attrs.apply_queries(&queries).is_err() {
            return Reply::code(ResponseType::BadRequest);
        }
        if attrs.is_empty() {
            self.attributes.remove(&path);
        } else {
            self.attributes.insert(path, attrs);
        }
        Reply::code(ResponseType::Changed)
    }

    fn write(&mut self, request: &Packet, path: Path, replace: bool) -> Reply {
        let Some(code) = coap::content_format(request) else {
            return Reply::code(ResponseType::BadRequest);
        };
        let format = match ContentFormat::from_code(code) {
            Some(f) if f != ContentFormat::LinkFormat => f,
            _ => return Reply::code(ResponseType::UnsupportedContentFormat),
        };
        if !self.store.exists(&path) {
            return Reply::code(ResponseType::NotFound);
        }
        let records = match content::decode(format, &path, &request.payload, &StandardObjects) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, %path, "rejecting write");
                return Reply::code(ResponseType::BadRequest);
            }
        };
        if let Err(e) = records.iter().try_for_each(|r| self.store.check_write(r)) {
            return e.into();
        }
        if let Err(reply) = self.check_firmware_write(&records) {
            return reply;
        }
        if replace && path.depth() == 3 && self.store.definition(&path).is_ok_and(|d| d.multiple) {
            self.store.clear_instances(&path);
            self.mark_dirty(&path);
        }
        for record in records {
            self.apply_write(record);
        }
        Reply::code(ResponseType::Changed)
    }

    /// Firmware writes must be allowed by the state machine before anything is applied.
    fn check_firmware_write(&self, records: &[Record]) -> Result<(), Reply> {
        let mut fw_copy = self.firmware;
        for r in records.iter().filter(|r| r.path.object_id() == fw::ID) {
            let empty = match (&r.value, r.path.resource_id()) {
                (Value::String(s), Some(fw::PACKAGE_URI)) => s.is_empty(),
                (Value::Opaque(b), Some(fw::PACKAGE)) => b.is_empty(),
                _ => continue,
            };
            let step = if empty {
                fw_copy.cancel()
            } else {
                fw_copy.start_download()
            };
            step.map_err(|_| Reply::code(ResponseType::BadRequest))?;
        }
        Ok(())
    }

    fn apply_write(&mut self, record: Record) {
        let path = record.path;
        let value = record.value.clone();
        if let Err(e) = self.set_value(path, record.value) {
            tracing::warn!(error = %e, %path, "checked write failed");
            return;
        }
        self.events.push_back(ClientEvent::Written { path });
        match (path.object_id(), path.resource_id(), value) {
            (fw::ID, Some(fw::PACKAGE_URI), Value::String(uri)) => self.firmware_uri_written(uri),
            (fw::ID, Some(fw::PACKAGE), Value::Opaque(bytes)) => {
                self.firmware_package_written(bytes.is_empty())
            }
            (lock_wipe::ID, Some(lock_wipe::STATE), Value::Integer(state)) => {
                let targets = self
                    .store
                    .strings(&Path::resource(lock_wipe::ID, 0, lock_wipe::LOCK_TARGET));
                self.events.push_back(ClientEvent::Lock { state, targets });
            }
            _ => {}
        }
    }

    fn firmware_uri_written(&mut self, uri: String) {
        let step = if uri.is_empty() {
            self.firmware.cancel()
        } else {
            self.firmware.start_download()
        };
        if step.is_ok() && !uri.is_empty() {
            self.events.push_back(ClientEvent::FirmwareDownload { uri });
        }
        self.sync_firmware();
    }

    fn firmware_package_written(&mut self, empty: bool) {
        let step = if empty {
            self.firmware.cancel()
        } else {
            self.firmware
                .start_download()
                .and_then(|()| self.firmware.download_complete())
        };
        if let Err(e) = step {
            tracing::warn!(error = %e, "firmware package write");
        }
        self.sync_firmware();
    }

    fn execute(&mut self, path: Path) -> Reply {
        if !self.store.exists(&path) {
            return Reply::code(ResponseType::NotFound);
        }
        let event = match (path.object_id(), path.resource_id()) {
            (device::ID, Some(device::REBOOT)) => ClientEvent::Reboot,
            (device::ID, Some(device::FACTORY_RESET)) => ClientEvent::FactoryReset,
            (lock_wipe::ID, Some(lock_wipe::WIPE)) => ClientEvent::Wipe {
                targets: self
                    .store
                    .strings(&Path::resource(lock_wipe::ID, 0, lock_wipe::WIPE_TARGET)),
            },
            (fw::ID, Some(fw::UPDATE)) => {
                if self.firmware.state() != FirmwareState::Downloaded
                    || self.firmware.execute_update().is_err()
                {
                    return Reply::code(ResponseType::MethodNotAllowed);
                }
                self.sync_firmware();
                let uri = self
                    .store
                    .get(&Path::resource(fw::ID, 0, fw::PACKAGE_URI))
                    .and_then(Value::as_str);
                ClientEvent::FirmwareUpdate {
                    uri: uri.unwrap_or_default().to_owned(),
                }
            }
            _ if self.store.definition(&path).is_err() => return Reply::code(ResponseType::NotFound),
            _ => return Reply::code(ResponseType::MethodNotAllowed),
        };
        self.events.push_back(event);
        Reply::code(ResponseType::Changed)
    }
}

#[cfg(test)]
mod tests;
