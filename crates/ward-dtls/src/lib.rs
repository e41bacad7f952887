//! DTLS 1.2 with pre-shared keys — the security mode LwM2M 1.1 names for constrained devices
//! (RFC 6347, RFC 4279, cipher suite TLS_PSK_WITH_AES_128_CCM_8 of RFC 6655) — over `dimpl`'s
//! sans-IO engine.
//!
//! [`DtlsServer`] keeps one session per peer address and turns datagrams into plaintext CoAP
//! messages tagged with the PSK identity that authenticated them; [`DtlsClient`] is one session
//! to one server. Neither does I/O: the caller feeds datagrams and time in and sends what
//! [`DtlsServer::poll_transmit`] / [`DtlsClient::poll_transmit`] hand out.
//!
//! What is bounded (the port is reachable by anyone, and a handshake's first datagram can come
//! from a forged address):
//!
//! * sessions: at most [`ServerLimits::max_sessions`]; half-open ones (handshake not finished)
//!   at most [`ServerLimits::max_handshakes`] — the oldest is dropped for a new one, so a flood
//!   of forged ClientHellos cannot lock real devices out — and each must finish within
//!   [`ServerLimits::handshake_timeout`]; one source address may start at most
//!   [`ServerLimits::handshakes_per_address_per_minute`];
//! * a session that carried nothing for [`ServerLimits::idle_timeout`] is dropped (the device
//!   handshakes again);
//! * a new handshake from the address of an established session runs beside it and replaces
//!   it only when it completes, so a forged ClientHello cannot end a device's session;
//! * identities and keys: [`MAX_IDENTITY_LEN`] and [`MAX_KEY_LEN`] bytes.
//!
//! Peers must offer the Extended Master Secret extension (RFC 7627); OpenSSL, GnuTLS, mbed TLS
//! and Scandium do.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dimpl::crypto::Dtls12CipherSuite;
use dimpl::{Config, Dtls, Output, PskResolver};
use record::{Established, Inbound, Watcher};

mod record;

/// The cipher suite offered and accepted (the one LwM2M mandates for PSK mode).
pub const CIPHER_SUITE: &str = "TLS_PSK_WITH_AES_128_CCM_8";
/// Longest PSK identity accepted.
pub const MAX_IDENTITY_LEN: usize = 128;
/// Longest pre-shared key accepted.
pub const MAX_KEY_LEN: usize = 64;
/// Shortest pre-shared key accepted (128 bits).
pub const MIN_KEY_LEN: usize = 16;
/// Largest DTLS record this side emits (fits a CoAP datagram of `ward_lwm2m::coap::MAX_DATAGRAM`
/// plus the record overhead).
const MTU: usize = 1400;
/// Output buffer bound: a record never needs more.
const MAX_RECORD: usize = 16 * 1024 + 256;
/// A session with nothing scheduled (an established one) reports a deadline ten years away,
/// renewed on every poll; deadlines this far off are not timers and are not kept (one per
/// datagram piled up in the timer heap of every established session).
const NO_TIMER: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A key, identity or configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtlsError {
    #[error("the PSK identity must be 1 to {MAX_IDENTITY_LEN} bytes")]
    Identity,
    #[error("the pre-shared key must be {MIN_KEY_LEN} to {MAX_KEY_LEN} bytes")]
    Key,
    #[error("the DTLS engine refused its configuration: {0}")]
    Engine(String),
}

fn check(identity: &[u8], key: &[u8]) -> Result<(), DtlsError> {
    if identity.is_empty() || identity.len() > MAX_IDENTITY_LEN {
        return Err(DtlsError::Identity);
    }
    if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
        return Err(DtlsError::Key);
    }
    Ok(())
}

/// Pre-shared keys by identity, shared by the server and whoever provisions devices.
#[derive(Default)]
pub struct PskTable {
    keys: RwLock<HashMap<Vec<u8>, Vec<u8>>>,
}

impl std::fmt::Debug for PskTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PskTable")
            .field("identities", &self.len())
            .finish()
    }
}

impl PskTable {
    /// Adds or replaces the key of `identity`.
    pub fn insert(&self, identity: &[u8], key: &[u8]) -> Result<(), DtlsError> {
        check(identity, key)?;
        self.write().insert(identity.to_vec(), key.to_vec());
        Ok(())
    }

    /// Forgets `identity`: its next handshake fails.
    pub fn remove(&self, identity: &[u8]) {
        self.write().remove(identity);
    }

    /// The key of `identity`.
    pub fn get(&self, identity: &[u8]) -> Option<Vec<u8>> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(identity)
            .cloned()
    }

    /// How many identities have a key.
    pub fn len(&self) -> usize {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// True when no identity has a key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Vec<u8>, Vec<u8>>> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The server side's resolver, shared by every session (one configuration for all keeps a
/// session small): looks the identity up and remembers the identity last presented, which the
/// server moves into the session it was feeding (the engine does not report it; sessions are
/// fed one at a time).
struct SessionResolver {
    table: Arc<PskTable>,
    presented: Mutex<Option<Arc<[u8]>>>,
}

impl SessionResolver {
    fn take(&self) -> Option<Arc<[u8]>> {
        self.presented
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl PskResolver for SessionResolver {
    fn resolve(&self, identity: &[u8]) -> Option<Vec<u8>> {
        if identity.is_empty() || identity.len() > MAX_IDENTITY_LEN {
            return None;
        }
        let key = self.table.get(identity)?;
        *self
            .presented
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(identity.into());
        Some(key)
    }
}

/// The client side's resolver: one key.
struct FixedKey(Vec<u8>);

impl PskResolver for FixedKey {
    fn resolve(&self, _identity: &[u8]) -> Option<Vec<u8>> {
        Some(self.0.clone())
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent close_notify.
    PeerClosed,
    /// The handshake or the record layer failed (bad key, bad message, ...).
    Failed(String),
    /// The handshake did not finish in time.
    HandshakeTimeout,
    /// Nothing was received for the idle timeout.
    Idle,
    /// A newer handshake from the same address replaced it.
    Replaced,
    /// Dropped to make room for a newer handshake.
    Evicted,
    /// Closed by this side.
    Local,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PeerClosed => f.write_str("the peer closed the session"),
            Self::Failed(reason) => write!(f, "DTLS failed: {reason}"),
            Self::HandshakeTimeout => f.write_str("the handshake did not finish in time"),
            Self::Idle => f.write_str("idle"),
            Self::Replaced => f.write_str("replaced by a new handshake"),
            Self::Evicted => f.write_str("dropped for a newer handshake"),
            Self::Local => f.write_str("closed by the server"),
        }
    }
}

/// What runs a session's records.
enum Engine {
    /// `dimpl`: the handshake, and on the server everything until the watcher has proven the
    /// keys (the client never has a watcher).
    Dimpl {
        dtls: Box<Dtls>,
        watcher: Option<Box<Watcher>>,
    },
    /// The server's own record layer once the handshake is over ([`record`]), with what it
    /// decrypted and sealed until the session is next drained.
    Records {
        layer: Established,
        received: Vec<Vec<u8>>,
        sealed: Vec<Vec<u8>>,
    },
}

/// One DTLS session, either side.
struct Session {
    engine: Engine,
    /// The identity the peer presented in its handshake (server side).
    presented: Option<Arc<[u8]>>,
    /// The identity of the established session (server side).
    identity: Option<Arc<[u8]>>,
    connected: bool,
    closed: Option<CloseReason>,
    timeout: Option<Instant>,
    created: Instant,
    last_seen: Instant,
}

/// What draining a session's output produced besides packets.
#[derive(Default)]
struct Drained {
    connected: bool,
    plaintexts: Vec<Vec<u8>>,
}

impl Session {
    fn new(dtls: Dtls, watch: bool, now: Instant) -> Self {
        Self {
            engine: Engine::Dimpl {
                dtls: Box::new(dtls),
                watcher: watch.then(Box::default),
            },
            presented: None,
            identity: None,
            connected: false,
            closed: None,
            timeout: None,
            created: now,
            last_seen: now,
        }
    }

    fn fail(&mut self, err: &dimpl::Error) {
        if self.closed.is_none() {
            self.closed = Some(CloseReason::Failed(err.to_string()));
        }
    }

    fn receive(&mut self, datagram: &[u8], now: Instant) {
        self.last_seen = now;
        match &mut self.engine {
            Engine::Dimpl { dtls, .. } => {
                let result = dtls
                    .handle_timeout(now)
                    .and_then(|()| dtls.handle_packet(datagram));
                if let Err(err) = result {
                    self.fail(&err);
                }
            }
            Engine::Records { layer, received, .. } => {
                let closed = &mut self.closed;
                layer.receive(datagram, |inbound| match inbound {
                    Inbound::Data(plaintext) => received.push(plaintext),
                    Inbound::Closed => {
                        closed.get_or_insert(CloseReason::PeerClosed);
                    }
                    Inbound::Fatal(description) => {
                        closed.get_or_insert(CloseReason::Failed(format!(
                            "the peer sent fatal alert {description}"
                        )));
                    }
                });
            }
        }
    }

    /// Shows the watcher (if any) a datagram the engine just took; `psk` finds an identity's key.
    fn watch_inbound(&mut self, datagram: &[u8], psk: impl FnOnce(&[u8]) -> Option<Vec<u8>>) {
        if let Engine::Dimpl {
            watcher: Some(watcher),
            ..
        } = &mut self.engine
        {
            watcher.inbound(datagram, psk);
        }
    }

    /// Hands an established server session over to its own record layer once the watcher has
    /// proven the keys: `dimpl`'s engine and buffers are freed.
    fn hand_over(&mut self) {
        if !self.connected || self.closed.is_some() {
            return;
        }
        let Engine::Dimpl {
            watcher: Some(watcher),
            ..
        } = &self.engine
        else {
            return;
        };
        if let Some(layer) = watcher.established() {
            self.engine = Engine::Records {
                layer,
                received: Vec::new(),
                sealed: Vec::new(),
            };
            self.timeout = None;
        }
    }

    /// True once the session runs on [`record`]'s layer.
    fn is_handed_over(&self) -> bool {
        matches!(self.engine, Engine::Records { .. })
    }

    fn tick(&mut self, now: Instant) {
        if let Engine::Dimpl { dtls, .. } = &mut self.engine
            && let Err(err) = dtls.handle_timeout(now)
        {
            self.fail(&err);
        }
    }

    fn send(&mut self, plaintext: &[u8], now: Instant) -> bool {
        match &mut self.engine {
            Engine::Dimpl { dtls, .. } => {
                let result = dtls
                    .handle_timeout(now)
                    .and_then(|()| dtls.send_application_data(plaintext));
                match result {
                    Ok(_) => true,
                    Err(err) => {
                        self.fail(&err);
                        false
                    }
                }
            }
            Engine::Records { layer, sealed, .. } => match layer.seal_data(plaintext) {
                Some(record) => {
                    sealed.push(record);
                    true
                }
                None => false,
            },
        }
    }

    /// Starts closing with close_notify (sent by the next drain); false when nothing is sent.
    fn close(&mut self) -> bool {
        match &mut self.engine {
            Engine::Dimpl { dtls, .. } => dtls.close().is_ok(),
            Engine::Records { layer, sealed, .. } => {
                layer.seal_close().map(|record| sealed.push(record)).is_some()
            }
        }
    }

    /// Drains the engine: packets go to `transmit`, the rest is returned.
    fn drain(&mut self, buf: &mut Vec<u8>, mut transmit: impl FnMut(Vec<u8>)) -> Drained {
        let mut drained = Drained::default();
        let (dtls, mut watcher) = match &mut self.engine {
            Engine::Dimpl { dtls, watcher } => (dtls, watcher.as_deref_mut()),
            Engine::Records { received, sealed, .. } => {
                std::mem::take(sealed).into_iter().for_each(transmit);
                drained.plaintexts = std::mem::take(received);
                return drained;
            }
        };
        loop {
            match dtls.poll_output(buf) {
                Output::Packet(packet) => {
                    if let Some(watcher) = watcher.as_deref_mut() {
                        watcher.outbound(packet);
                    }
                    transmit(packet.to_vec());
                }
                Output::BufferTooSmall { needed } if needed <= MAX_RECORD => buf.resize(needed, 0),
                Output::BufferTooSmall { needed } => {
                    self.closed = Some(CloseReason::Failed(format!("a {needed}-byte record")));
                    break;
                }
                Output::Timeout(at) => {
                    self.timeout = Some(at);
                    break;
                }
                Output::Connected => {
                    self.connected = true;
                    drained.connected = true;
                    self.identity = self.presented.take();
                }
                Output::ApplicationData(data) => drained.plaintexts.push(data.to_vec()),
                Output::CloseNotify => {
                    self.closed = Some(CloseReason::PeerClosed);
                }
                _ => {}
            }
        }
        drained
    }
}

/// Bounds on the server's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Most sessions at once (established and half-open).
    pub max_sessions: usize,
    /// Most half-open sessions; the oldest makes room for a new one.
    pub max_handshakes: usize,
    /// A handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A session that carried nothing for this long is dropped.
    pub idle_timeout: Duration,
    /// Most handshakes one source address may start in a minute (one host cannot push
    /// everyone else's handshakes out); generous, for gateways and NATs with many devices.
    pub handshakes_per_address_per_minute: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_sessions: 110_000,
            max_handshakes: 4096,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(24 * 3600),
            handshakes_per_address_per_minute: 600,
        }
    }
}

/// What the server tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A handshake finished: `peer` is authenticated as `identity` (a new handshake from an
    /// address replaces the address's previous session).
    Connected { peer: SocketAddr, identity: Arc<[u8]> },
    /// A session ended; an established one had `identity`.
    Closed {
        peer: SocketAddr,
        identity: Option<Arc<[u8]>>,
        reason: CloseReason,
    },
}

/// Plaintext received on an established session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub peer: SocketAddr,
    /// The PSK identity that authenticated the session.
    pub identity: Arc<[u8]>,
    pub payload: Vec<u8>,
}

/// The sessions of one address: the established (or first) one, and a newer handshake. Boxed:
/// inline, an absent newer handshake would cost as much as a whole session in every slot of the
/// map; boxed, it costs a pointer.
struct Slot {
    current: Box<Session>,
    next: Option<Box<Session>>,
}

/// DTLS-PSK server: sessions by peer address (sans-IO).
pub struct DtlsServer {
    resolver: Arc<SessionResolver>,
    config: Arc<Config>,
    limits: ServerLimits,
    slots: HashMap<SocketAddr, Slot>,
    /// Half-open sessions by age (entries whose session has since connected or gone are skipped).
    handshakes: VecDeque<(SocketAddr, Instant)>,
    half_open: usize,
    /// Handshakes started per source address in the last minute.
    starts: HashMap<std::net::IpAddr, VecDeque<Instant>>,
    timers: BinaryHeap<Reverse<(Instant, SocketAddr)>>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    received: VecDeque<Received>,
    events: VecDeque<ServerEvent>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for DtlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsServer")
            .field("sessions", &self.slots.len())
            .field("half_open", &self.half_open)
            .finish()
    }
}

/// True for a DTLS handshake record of epoch 0 carrying a ClientHello: the only datagram that
/// may start a session.
fn is_client_hello(datagram: &[u8]) -> bool {
    datagram.len() > 13
        && datagram[0] == 22
        && datagram[1] == 0xfe
        && datagram[3..5] == [0, 0]
        && datagram[13] == 1
}

/// True for handshake and ChangeCipherSpec records (they belong to a handshake in progress).
fn is_handshake_record(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(20 | 22))
}

impl DtlsServer {
    /// A server resolving identities in `table`.
    pub fn new(table: Arc<PskTable>, limits: ServerLimits) -> Result<Self, DtlsError> {
        let resolver = Arc::new(SessionResolver {
            table,
            presented: Mutex::new(None),
        });
        let config = Config::builder()
            .with_psk_server(None, Arc::clone(&resolver) as Arc<dyn PskResolver>)
            .dtls12_cipher_suites(&[Dtls12CipherSuite::PSK_AES128_CCM_8])
            .dtls13_cipher_suites(&[])
            .handshake_timeout(limits.handshake_timeout)
            .mtu(MTU)
            .build()
            .map_err(|err| DtlsError::Engine(err.to_string()))?;
        Ok(Self {
            resolver,
            config: Arc::new(config),
            limits,
            slots: HashMap::new(),
            handshakes: VecDeque::new(),
            half_open: 0,
            starts: HashMap::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            received: VecDeque::new(),
            events: VecDeque::new(),
            buf: vec![0u8; 2048],
        })
    }

    /// Counts a handshake from `peer`'s address; false when the address is over its limit.
    fn allow_start(&mut self, peer: SocketAddr, now: Instant) -> bool {
        let window = Duration::from_secs(60);
        if self.starts.len() > 100_000 {
            self.starts.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
        }
        let times = self.starts.entry(peer.ip()).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.len() >= self.limits.handshakes_per_address_per_minute {
            return false;
        }
        times.push_back(now);
        true
    }

    fn new_session(&mut self, peer: SocketAddr, now: Instant) -> Option<Box<Session>> {
        if !self.allow_start(peer, now) {
            return None;
        }
        if self.half_open >= self.limits.max_handshakes {
            self.evict_oldest_handshake();
        }
        if self.half_open >= self.limits.max_handshakes {
            return None;
        }
        self.half_open += 1;
        self.handshakes.push_back((peer, now));
        Some(Box::new(Session::new(
            Dtls::new_12_psk(Arc::clone(&self.config), now),
            true,
            now,
        )))
    }

    /// Removes `peer`'s sessions, keeping the half-open count right.
    fn remove_slot(&mut self, peer: SocketAddr) -> Option<Slot> {
        let slot = self.slots.remove(&peer)?;
        if !slot.current.connected {
            self.half_open -= 1;
        }
        if slot.next.as_ref().is_some_and(|n| !n.connected) {
            self.half_open -= 1;
        }
        Some(slot)
    }

    fn evict_oldest_handshake(&mut self) {
        while let Some((peer, created)) = self.handshakes.pop_front() {
            let Some(slot) = self.slots.get_mut(&peer) else {
                continue;
            };
            if let Some(next) = &slot.next
                && !next.connected
                && next.created == created
            {
                slot.next = None;
                self.half_open -= 1;
                return;
            }
            if !slot.current.connected && slot.current.created == created {
                self.remove_slot(peer);
                self.events.push_back(ServerEvent::Closed {
                    peer,
                    identity: None,
                    reason: CloseReason::Evicted,
                });
                return;
            }
        }
    }

    /// Feeds a datagram received from `peer`.
    pub fn handle_datagram(&mut self, peer: SocketAddr, datagram: &[u8], now: Instant) {
        let hello = is_client_hello(datagram);
        match self.slots.get(&peer) {
            None => {
                if !hello || self.slots.len() >= self.limits.max_sessions {
                    return;
                }
                let Some(session) = self.new_session(peer, now) else {
                    return;
                };
                self.slots.insert(
                    peer,
                    Slot {
                        current: session,
                        next: None,
                    },
                );
            }
            Some(slot) if slot.current.connected && hello && slot.next.is_none() => {
                let Some(session) = self.new_session(peer, now) else {
                    return;
                };
                if let Some(slot) = self.slots.get_mut(&peer) {
                    slot.next = Some(session);
                }
            }
            Some(_) => {}
        }
        let Some(slot) = self.slots.get_mut(&peer) else {
            return;
        };
        let to_next = slot.next.is_some() && is_handshake_record(datagram);
        let session = match (&mut slot.next, to_next) {
            (Some(next), true) => next,
            _ => &mut slot.current,
        };
        self.resolver.take();
        session.receive(datagram, now);
        if let Some(identity) = self.resolver.take() {
            session.presented = Some(identity);
        }
        let table = &self.resolver.table;
        session.watch_inbound(datagram, |identity| table.get(identity));
        self.settle(peer, now);
    }

    /// Drains `peer`'s sessions and applies what happened.
    fn settle(&mut self, peer: SocketAddr, now: Instant) {
        let Some(slot) = self.slots.get_mut(&peer) else {
            return;
        };
        let transmits = &mut self.transmits;
        let buf = &mut self.buf;
        let current = slot.current.drain(buf, |p| transmits.push_back((peer, p)));
        let mut next_connected = false;
        if let Some(next) = &mut slot.next {
            next_connected = next.drain(buf, |p| transmits.push_back((peer, p))).connected;
        }
        if current.connected {
            self.half_open -= 1;
            if let Some(identity) = slot.current.identity.clone() {
                self.events.push_back(ServerEvent::Connected { peer, identity });
            }
        }
        if let Some(identity) = slot.current.identity.clone() {
            for payload in current.plaintexts {
                self.received.push_back(Received {
                    peer,
                    identity: Arc::clone(&identity),
                    payload,
                });
            }
        }
        // A newer handshake that completed replaces the session; one that failed is dropped.
        if next_connected && let Some(next) = slot.next.take() {
            self.half_open -= 1;
            let old = std::mem::replace(&mut slot.current, next);
            self.events.push_back(ServerEvent::Closed {
                peer,
                identity: old.identity,
                reason: CloseReason::Replaced,
            });
            if let Some(identity) = slot.current.identity.clone() {
                self.events.push_back(ServerEvent::Connected { peer, identity });
            }
        } else if slot.next.as_ref().is_some_and(|n| n.closed.is_some()) {
            slot.next = None;
            self.half_open -= 1;
        }
        slot.current.hand_over();
        if let Some(reason) = slot.current.closed.clone() {
            if let Some(slot) = self.remove_slot(peer) {
                self.events.push_back(ServerEvent::Closed {
                    peer,
                    identity: slot.current.identity,
                    reason,
                });
            }
            return;
        }
        let deadlines = [slot.current.timeout, slot.next.as_ref().and_then(|n| n.timeout)];
        for at in deadlines.into_iter().flatten().filter(|at| *at < now + NO_TIMER) {
            // Never due again at this instant: a timer the engine reports as already past is
            // tried on the next tick rather than in a loop.
            let at = at.max(now + Duration::from_millis(1));
            self.timers.push(Reverse((at, peer)));
        }
        if self.timers.len() > 4 * self.slots.len() + 1024 {
            self.rebuild_timers(now);
        }
    }

    fn rebuild_timers(&mut self, now: Instant) {
        self.timers = self
            .slots
            .iter()
            .flat_map(|(peer, slot)| {
                [slot.current.timeout, slot.next.as_ref().and_then(|n| n.timeout)]
                    .into_iter()
                    .flatten()
                    .filter(move |at| *at < now + NO_TIMER)
                    .map(move |at| Reverse((at, *peer)))
            })
            .collect();
    }

    /// Encrypts `plaintext` for `peer`'s established session; false when there is none.
    pub fn send(&mut self, peer: SocketAddr, plaintext: &[u8], now: Instant) -> bool {
        let Some(slot) = self.slots.get_mut(&peer) else {
            return false;
        };
        if !slot.current.connected || slot.current.closed.is_some() {
            return false;
        }
        let sent = slot.current.send(plaintext, now);
        self.settle(peer, now);
        sent
    }

    /// The identity of `peer`'s established session.
    pub fn identity(&self, peer: SocketAddr) -> Option<&Arc<[u8]>> {
        self.slots
            .get(&peer)
            .filter(|slot| slot.current.connected)
            .and_then(|slot| slot.current.identity.as_ref())
    }

    /// True when `peer`'s established session runs on this crate's record layer, `dimpl`'s
    /// engine freed (after its first application data; see [`record`]).
    pub fn is_handed_over(&self, peer: SocketAddr) -> bool {
        self.slots
            .get(&peer)
            .is_some_and(|slot| slot.current.is_handed_over())
    }

    /// True when `peer` has a session (established or not).
    pub fn has_session(&self, peer: SocketAddr) -> bool {
        self.slots.contains_key(&peer)
    }

    /// Ends `peer`'s session with close_notify.
    pub fn close(&mut self, peer: SocketAddr) {
        let Some(mut slot) = self.remove_slot(peer) else {
            return;
        };
        if slot.current.connected && slot.current.close() {
            let transmits = &mut self.transmits;
            slot.current
                .drain(&mut self.buf, |p| transmits.push_back((peer, p)));
        }
        self.events.push_back(ServerEvent::Closed {
            peer,
            identity: slot.current.identity,
            reason: CloseReason::Local,
        });
    }

    /// Ends every session whose identity is `identity` (its key was withdrawn).
    pub fn close_identity(&mut self, identity: &[u8]) {
        let peers: Vec<SocketAddr> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.current.identity.as_deref() == Some(identity))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in peers {
            self.close(peer);
        }
    }

    /// When [`Self::handle_timeout`] should next run.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Runs retransmissions and handshake deadlines that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, peer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.slots.get_mut(&peer) else {
                continue;
            };
            let mut due = false;
            if slot.current.timeout.is_some_and(|t| t <= now) {
                slot.current.tick(now);
                due = true;
            }
            if let Some(next) = &mut slot.next
                && next.timeout.is_some_and(|t| t <= now)
            {
                next.tick(now);
                due = true;
            }
            if due {
                self.settle(peer, now);
            }
        }
    }

    /// Drops half-open sessions past the handshake timeout and idle established ones; run it
    /// now and then (it visits every session).
    pub fn expire(&mut self, now: Instant) {
        let handshake = self.limits.handshake_timeout;
        let idle = self.limits.idle_timeout;
        let expired: Vec<(SocketAddr, CloseReason)> = self
            .slots
            .iter()
            .filter_map(|(peer, slot)| {
                let s = &slot.current;
                if !s.connected && now.saturating_duration_since(s.created) > handshake {
                    Some((*peer, CloseReason::HandshakeTimeout))
                } else if s.connected && now.saturating_duration_since(s.last_seen) > idle {
                    Some((*peer, CloseReason::Idle))
                } else {
                    None
                }
            })
            .collect();
        for (peer, reason) in expired {
            if let Some(slot) = self.remove_slot(peer) {
                self.events.push_back(ServerEvent::Closed {
                    peer,
                    identity: slot.current.identity,
                    reason,
                });
            }
        }
        // A stale newer handshake beside an established session.
        let mut dropped = 0;
        for slot in self.slots.values_mut() {
            if slot
                .next
                .as_ref()
                .is_some_and(|n| now.saturating_duration_since(n.created) > handshake)
            {
                slot.next = None;
                dropped += 1;
            }
        }
        self.half_open -= dropped;
        self.handshakes
            .retain(|(_, created)| now.saturating_duration_since(*created) <= handshake);
    }

    /// A datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// Plaintext received.
    pub fn poll_received(&mut self) -> Option<Received> {
        self.received.pop_front()
    }

    /// A session started or ended.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Sessions (established and half-open).
    pub fn sessions(&self) -> usize {
        self.slots.len()
    }

    /// Half-open sessions.
    pub fn handshakes(&self) -> usize {
        self.half_open
    }
}

/// DTLS-PSK client: one session to one server (sans-IO). Plaintext sent before the handshake
/// finishes is held (a little of it) and goes out once it does.
pub struct DtlsClient {
    identity: Vec<u8>,
    key: Vec<u8>,
    session: Session,
    transmits: VecDeque<Vec<u8>>,
    received: VecDeque<Vec<u8>>,
    held: VecDeque<Vec<u8>>,
    failures: VecDeque<CloseReason>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for DtlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsClient")
            .field("identity", &String::from_utf8_lossy(&self.identity))
            .field("connected", &self.session.connected)
            .finish()
    }
}

/// Plaintext datagrams held while a handshake runs (CoAP retransmits the rest).
const MAX_HELD: usize = 16;

impl DtlsClient {
    /// A client that authenticates as `identity` with `key`; the handshake starts at once.
    pub fn new(identity: &[u8], key: &[u8], now: Instant) -> Result<Self, DtlsError> {
        check(identity, key)?;
        let mut client = Self {
            identity: identity.to_vec(),
            key: key.to_vec(),
            session: Self::session(identity, key, now).map_err(|err| DtlsError::Engine(err.to_string()))?,
            transmits: VecDeque::new(),
            received: VecDeque::new(),
            held: VecDeque::new(),
            failures: VecDeque::new(),
            buf: vec![0u8; 2048],
        };
        client.settle(now);
        Ok(client)
    }

    fn session(identity: &[u8], key: &[u8], now: Instant) -> Result<Session, dimpl::Error> {
        let config = Config::builder()
            .with_psk_client(identity.to_vec(), Arc::new(FixedKey(key.to_vec())))
            .dtls12_cipher_suites(&[Dtls12CipherSuite::PSK_AES128_CCM_8])
            .dtls13_cipher_suites(&[])
            .mtu(MTU)
            .build()?;
        let mut dtls = Dtls::new_12_psk(Arc::new(config), now);
        dtls.set_active(true);
        let mut session = Session::new(dtls, false, now);
        // The engine starts its clock (and its first flight) here.
        session.tick(now);
        Ok(session)
    }

    fn settle(&mut self, now: Instant) {
        let transmits = &mut self.transmits;
        let drained = self.session.drain(&mut self.buf, |p| transmits.push_back(p));
        self.received.extend(drained.plaintexts);
        if drained.connected {
            while let Some(plaintext) = self.held.pop_front() {
                if !self.session.send(&plaintext, now) {
                    break;
                }
            }
            let transmits = &mut self.transmits;
            self.session.drain(&mut self.buf, |p| transmits.push_back(p));
        }
        if let Some(reason) = self.session.closed.take() {
            // Start over: the server may have restarted or dropped the session.
            self.failures.push_back(reason);
            match Self::session(&self.identity, &self.key, now) {
                Ok(session) => self.session = session,
                Err(err) => {
                    self.failures.push_back(CloseReason::Failed(err.to_string()));
                    return;
                }
            }
            let transmits = &mut self.transmits;
            self.session.drain(&mut self.buf, |p| transmits.push_back(p));
        }
    }

    /// True once the handshake finished.
    pub fn is_connected(&self) -> bool {
        self.session.connected
    }

    /// Feeds a datagram received from the server.
    pub fn handle_datagram(&mut self, datagram: &[u8], now: Instant) {
        self.session.receive(datagram, now);
        self.settle(now);
    }

    /// Encrypts `plaintext` (held until the handshake finishes).
    pub fn send(&mut self, plaintext: &[u8], now: Instant) {
        if self.session.connected {
            self.session.send(plaintext, now);
        } else {
            if self.held.len() >= MAX_HELD {
                self.held.pop_front();
            }
            self.held.push_back(plaintext.to_vec());
        }
        self.settle(now);
    }

    /// Ends the session with close_notify (a device going away); a later send starts a new
    /// handshake.
    pub fn close(&mut self, now: Instant) {
        if self.session.connected && self.session.close() {
            self.settle(now);
        }
    }

    /// When [`Self::handle_timeout`] should next run.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.session.timeout
    }

    /// Runs retransmissions.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.session.timeout.is_some_and(|t| t <= now) {
            self.session.tick(now);
            self.settle(now);
        }
    }

    /// A datagram to send to the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// Plaintext received from the server.
    pub fn poll_received(&mut self) -> Option<Vec<u8>> {
        self.received.pop_front()
    }

    /// Why a session failed (the client has started a new handshake).
    pub fn poll_failure(&mut self) -> Option<CloseReason> {
        self.failures.pop_front()
    }
}

#[cfg(test)]
mod tests;
