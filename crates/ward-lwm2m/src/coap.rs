//! CoAP (RFC 7252) pieces shared by the client and the server: message helpers over
//! `coap-lite`'s codec, retransmission state for confirmable messages, and the duplicate cache.
//!
//! Everything here is sans-IO: callers pass the current [`Instant`] and get datagrams back.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType as Method, ResponseType};
use thiserror::Error;

/// Largest datagram sent or accepted. Block-wise transfer (RFC 7959) is not implemented, so
/// payloads must fit one datagram; 16 KiB is far above the 1152 bytes RFC 7252 §4.6 suggests
/// for unknown paths but safe on the loopback and typical LANs.
pub const MAX_DATAGRAM: usize = 16 * 1024;

/// A datagram that could not be parsed or built as CoAP.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoapError {
    /// Not a well-formed CoAP message.
    #[error("malformed CoAP message: {0}")]
    Malformed(String),
    /// Larger than [`MAX_DATAGRAM`].
    #[error("CoAP message larger than {MAX_DATAGRAM} bytes")]
    TooLarge,
}

/// RFC 7252 §4.8 transmission parameters. Defaults are the RFC's; tests shrink them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransmissionParams {
    /// ACK_TIMEOUT (2 s).
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR (1.5).
    pub ack_random_factor: f64,
    /// MAX_RETRANSMIT (4).
    pub max_retransmit: u32,
    /// MAX_LATENCY (100 s), used for EXCHANGE_LIFETIME.
    pub max_latency: Duration,
}

impl Default for TransmissionParams {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor: 1.5,
            max_retransmit: 4,
            max_latency: Duration::from_secs(100),
        }
    }
}

impl TransmissionParams {
    /// MAX_TRANSMIT_SPAN: ACK_TIMEOUT × (2^MAX_RETRANSMIT − 1) × ACK_RANDOM_FACTOR (45 s).
    pub fn max_transmit_span(&self) -> Duration {
        self.ack_timeout
            .mul_f64(((1u64 << self.max_retransmit.min(16)) - 1) as f64 * self.ack_random_factor)
    }

    /// MAX_TRANSMIT_WAIT: ACK_TIMEOUT × (2^(MAX_RETRANSMIT+1) − 1) × ACK_RANDOM_FACTOR (93 s).
    pub fn max_transmit_wait(&self) -> Duration {
        self.ack_timeout
            .mul_f64(((1u64 << (self.max_retransmit.min(16) + 1)) - 1) as f64 * self.ack_random_factor)
    }

    /// EXCHANGE_LIFETIME: MAX_TRANSMIT_SPAN + 2 × MAX_LATENCY + PROCESSING_DELAY (247 s).
    pub fn exchange_lifetime(&self) -> Duration {
        self.max_transmit_span() + self.max_latency * 2 + self.ack_timeout
    }

    /// The first timeout: uniformly random in [ACK_TIMEOUT, ACK_TIMEOUT × ACK_RANDOM_FACTOR].
    /// `unit` is a random number in [0, 1).
    pub fn initial_timeout(&self, unit: f64) -> Duration {
        let factor = 1.0 + (self.ack_random_factor - 1.0).max(0.0) * unit.clamp(0.0, 1.0);
        self.ack_timeout.mul_f64(factor)
    }
}

/// What a retransmission timer says when polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetransmitStep {
    /// Not yet due.
    Wait,
    /// Send this datagram again.
    Resend(Vec<u8>),
    /// MAX_RETRANSMIT reached and the last timeout expired: the exchange failed.
    GiveUp,
}

/// Retransmission state of one confirmable message (RFC 7252 §4.2): the timeout doubles after
/// each resend; after MAX_RETRANSMIT resends and one more timeout, give up.
#[derive(Debug, Clone)]
pub struct Retransmission {
    datagram: Vec<u8>,
    message_id: u16,
    resends: u32,
    max_retransmit: u32,
    timeout: Duration,
    deadline: Instant,
}

impl Retransmission {
    /// Starts the timer for `datagram` (already sent once at `now`).
    pub fn new(
        datagram: Vec<u8>,
        message_id: u16,
        now: Instant,
        params: &TransmissionParams,
        unit: f64,
    ) -> Self {
        let timeout = params.initial_timeout(unit);
        Self {
            datagram,
            message_id,
            resends: 0,
            max_retransmit: params.max_retransmit,
            timeout,
            deadline: now + timeout,
        }
    }

    /// The message id being retransmitted.
    pub const fn message_id(&self) -> u16 {
        self.message_id
    }

    /// When the next resend (or give-up) is due.
    pub const fn deadline(&self) -> Instant {
        self.deadline
    }

    /// How many times the message was resent so far.
    pub const fn resends(&self) -> u32 {
        self.resends
    }

    /// Advances the timer to `now`.
    pub fn poll(&mut self, now: Instant) -> RetransmitStep {
        if now < self.deadline {
            return RetransmitStep::Wait;
        }
        if self.resends >= self.max_retransmit {
            return RetransmitStep::GiveUp;
        }
        self.resends += 1;
        self.timeout *= 2;
        self.deadline = now + self.timeout;
        RetransmitStep::Resend(self.datagram.clone())
    }
}

/// What the duplicate cache knows about a message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Seen before and answered: send this again.
    Answered(Vec<u8>),
    /// Seen before, no response recorded (a NON, or an ACK-less message): ignore it.
    Ignored,
}

/// A peer and one of its message ids.
type DedupKey = (SocketAddr, u16);

/// Remembers recent incoming message ids per peer for EXCHANGE_LIFETIME, with their responses,
/// so a retransmitted CON gets the same answer and is not processed twice (RFC 7252 §4.5).
/// Bounded by `capacity`: the oldest entries go first.
#[derive(Debug)]
pub struct DedupCache {
    entries: HashMap<DedupKey, (Option<Vec<u8>>, Instant)>,
    order: VecDeque<(DedupKey, Instant)>,
    capacity: usize,
    lifetime: Duration,
}

impl DedupCache {
    /// A cache holding at most `capacity` ids, each for `lifetime`.
    pub fn new(capacity: usize, lifetime: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            lifetime,
        }
    }

    /// Number of remembered ids.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Looks up a message id from `peer`.
    pub fn lookup(&mut self, peer: SocketAddr, message_id: u16, now: Instant) -> Option<Seen> {
        self.expire(now);
        self.entries
            .get(&(peer, message_id))
            .map(|(response, _)| match response {
                Some(bytes) => Seen::Answered(bytes.clone()),
                None => Seen::Ignored,
            })
    }

    /// Remembers a message id and the response sent for it (if any).
    pub fn insert(&mut self, peer: SocketAddr, message_id: u16, response: Option<Vec<u8>>, now: Instant) {
        self.expire(now);
        while self.entries.len() >= self.capacity {
            let Some((key, at)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&key).is_some_and(|(_, t)| *t == at) {
                self.entries.remove(&key);
            }
        }
        self.entries.insert((peer, message_id), (response, now));
        self.order.push_back(((peer, message_id), now));
    }

    fn expire(&mut self, now: Instant) {
        while let Some((key, at)) = self.order.front().copied() {
            if now.saturating_duration_since(at) < self.lifetime {
                break;
            }
            self.order.pop_front();
            if self.entries.get(&key).is_some_and(|(_, t)| *t == at) {
                self.entries.remove(&key);
            }
        }
    }
}

/// Message ids: a random start, then sequential (RFC 7252 §4.4).
#[derive(Debug, Clone)]
pub struct MessageIds(u16);

impl Default for MessageIds {
    fn default() -> Self {
        Self(rand::random())
    }
}

impl MessageIds {
    /// The next id.
    pub fn next_id(&mut self) -> u16 {
        self.0 = self.0.wrapping_add(1);
        self.0
    }
}

/// A fresh random 8-byte token.
pub fn new_token() -> Vec<u8> {
    rand::random::<[u8; 8]>().to_vec()
}

/// Parses a datagram, checking size and version.
pub fn parse(datagram: &[u8]) -> Result<Packet, CoapError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(CoapError::TooLarge);
    }
    if datagram.first().is_some_and(|b| b >> 6 != 1) {
        return Err(CoapError::Malformed("version is not 1".into()));
    }
    Packet::from_bytes(datagram).map_err(|e| CoapError::Malformed(e.to_string()))
}

/// Serializes a packet, bounded by [`MAX_DATAGRAM`].
pub fn serialize(packet: &Packet) -> Result<Vec<u8>, CoapError> {
    packet
        .to_bytes_with_limit(MAX_DATAGRAM)
        .map_err(|_| CoapError::TooLarge)
}

/// An option's values as strings (`None` if absent-safe: an absent option gives an empty list;
/// `None` only if a value is not UTF-8).
pub fn string_options(packet: &Packet, option: CoapOption) -> Option<Vec<String>> {
    match packet.get_option(option) {
        None => Some(Vec::new()),
        Some(values) => values.iter().map(|v| String::from_utf8(v.clone()).ok()).collect(),
    }
}

/// The first value of an unsigned-integer option (at most 4 bytes).
pub fn uint_option(packet: &Packet, option: CoapOption) -> Option<u32> {
    let raw = packet.get_first_option(option)?;
    if raw.len() > 4 {
        return None;
    }
    Some(raw.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// Adds an unsigned-integer option in its shortest form (0 is the empty value).
pub fn add_uint_option(packet: &mut Packet, option: CoapOption, value: u32) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    packet.add_option(option, bytes[skip..].to_vec());
}

/// Replaces the Observe option.
pub fn set_observe(packet: &mut Packet, value: u32) {
    packet.clear_option(CoapOption::Observe);
    add_uint_option(packet, CoapOption::Observe, value & 0x00FF_FFFF);
}

/// The Content-Format option.
pub fn content_format(packet: &Packet) -> Option<u16> {
    uint_option(packet, CoapOption::ContentFormat).and_then(|v| u16::try_from(v).ok())
}

/// The Accept option.
pub fn accept(packet: &Packet) -> Option<u16> {
    uint_option(packet, CoapOption::Accept).and_then(|v| u16::try_from(v).ok())
}

/// The Observe option.
pub fn observe(packet: &Packet) -> Option<u32> {
    uint_option(packet, CoapOption::Observe)
}

/// Adds Uri-Path options, one per segment.
pub fn add_path<S: AsRef<str>>(packet: &mut Packet, segments: &[S]) {
    for s in segments {
        packet.add_option(CoapOption::UriPath, s.as_ref().as_bytes().to_vec());
    }
}

/// Adds Uri-Query options.
pub fn add_queries<S: AsRef<str>>(packet: &mut Packet, queries: &[S]) {
    for q in queries {
        packet.add_option(CoapOption::UriQuery, q.as_ref().as_bytes().to_vec());
    }
}

/// A request packet.
pub fn request(method: Method, confirmable: bool, message_id: u16, token: Vec<u8>) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(if confirmable {
        MessageType::Confirmable
    } else {
        MessageType::NonConfirmable
    });
    p.header.code = MessageClass::Request(method);
    p.header.message_id = message_id;
    p.set_token(token);
    p
}

/// A response to `request`: piggybacked on an ACK for a CON, a NON (with `fresh_id`) otherwise.
pub fn response_to(request: &Packet, code: ResponseType, fresh_id: u16) -> Packet {
    let mut p = Packet::new();
    if request.header.get_type() == MessageType::Confirmable {
        p.header.set_type(MessageType::Acknowledgement);
        p.header.message_id = request.header.message_id;
    } else {
        p.header.set_type(MessageType::NonConfirmable);
        p.header.message_id = fresh_id;
    }
    p.header.code = MessageClass::Response(code);
    p.set_token(request.get_token().to_vec());
    p
}

/// An empty message (ACK or RST) for `message_id`.
pub fn empty(kind: MessageType, message_id: u16) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(kind);
    p.header.code = MessageClass::Empty;
    p.header.message_id = message_id;
    p
}

/// True for an empty message (code 0.00).
pub fn is_empty(packet: &Packet) -> bool {
    packet.header.code == MessageClass::Empty
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5683))
    }

    #[test]
    fn params_match_rfc_defaults() {
        let p = TransmissionParams::default();
        assert_eq!(p.max_transmit_span(), Duration::from_secs(45));
        assert_eq!(p.max_transmit_wait(), Duration::from_secs(93));
        assert_eq!(p.exchange_lifetime(), Duration::from_secs(247));
        assert_eq!(p.initial_timeout(0.0), Duration::from_secs(2));
        assert_eq!(p.initial_timeout(1.0), Duration::from_secs(3));
    }

    #[test]
    fn retransmission_doubles_then_gives_up() {
        let p = TransmissionParams::default();
        let t0 = Instant::now();
        let mut r = Retransmission::new(vec![1, 2], 7, t0, &p, 0.0);
        assert_eq!(r.poll(t0 + Duration::from_millis(1999)), RetransmitStep::Wait);
        let mut now = t0;
        let mut gaps = Vec::new();
        for _ in 0..4 {
            let due = r.deadline();
            gaps.push(due - now);
            now = due;
            assert_eq!(r.poll(now), RetransmitStep::Resend(vec![1, 2]));
        }
        assert_eq!(gaps, [2, 4, 8, 16].map(Duration::from_secs));
        assert_eq!(r.deadline() - now, Duration::from_secs(32));
        assert_eq!(r.poll(r.deadline()), RetransmitStep::GiveUp);
        assert_eq!(r.resends(), 4);
    }

    #[test]
    fn dedup_cache_answers_expires_and_is_bounded() {
        let t0 = Instant::now();
        let mut c = DedupCache::new(2, Duration::from_secs(10));
        assert_eq!(c.lookup(peer(), 1, t0), None);
        c.insert(peer(), 1, Some(vec![9]), t0);
        c.insert(peer(), 2, None, t0);
        assert_eq!(c.lookup(peer(), 1, t0), Some(Seen::Answered(vec![9])));
        assert_eq!(c.lookup(peer(), 2, t0), Some(Seen::Ignored));
        c.insert(peer(), 3, None, t0);
        assert_eq!(c.len(), 2);
        assert_eq!(c.lookup(peer(), 1, t0), None, "oldest evicted");
        assert_eq!(c.lookup(peer(), 3, t0 + Duration::from_secs(10)), None, "expired");
        assert!(c.is_empty());
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x40, 1]).is_err());
        assert!(parse(&[0x80, 1, 0, 0]).is_err(), "version 2");
        assert!(parse(&[0x49, 1, 0, 0]).is_err(), "token length 9");
        assert!(parse(&[0x40, 1, 0, 0, 0xF0]).is_err(), "option delta 15");
        assert!(parse(&vec![0x40; MAX_DATAGRAM + 1]).is_err());
    }

    #[test]
    fn uint_options_round_trip() -> Result<(), CoapError> {
        let mut p = request(Method::Get, true, 1, vec![1]);
        add_uint_option(&mut p, CoapOption::Accept, 11542);
        set_observe(&mut p, 0);
        let q = parse(&serialize(&p)?)?;
        assert_eq!(accept(&q), Some(11542));
        assert_eq!(observe(&q), Some(0));
        assert_eq!(content_format(&q), None);
        Ok(())
    }
}
