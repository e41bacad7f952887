//! Server-side helpers for an LwM2M gateway (sans-IO): building device-management requests,
//! sending them as confirmable messages with retransmission, matching responses and
//! notifications by token, and deduplicating incoming confirmable messages.
//!
//! The [`Endpoint`] owns no socket. Feed it datagrams ([`Endpoint::handle_datagram`]) and time
//! ([`Endpoint::handle_timeout`]); drain [`Endpoint::poll_transmit`] to the socket and
//! [`Endpoint::poll_event`] to the application. One endpoint serves any number of devices.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

use crate::attributes::Attributes;
use crate::coap::{
    self, CoapError, DedupCache, MessageIds, Retransmission, RetransmitStep, Seen, TransmissionParams,
};
use crate::content::{self, ContentError, ContentFormat, Path, Record};

/// Most requests in flight at once per endpoint; more are refused with [`SendError::Busy`].
pub const MAX_PENDING: usize = 4096;
/// Most remembered incoming message ids (per endpoint).
pub const DEDUP_CAPACITY: usize = 8192;

/// A device-management request to send to a client.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// CoAP method.
    pub method: RequestType,
    /// Target path.
    pub path: Path,
    /// Accept option.
    pub accept: Option<ContentFormat>,
    /// Content-Format of the payload.
    pub content_format: Option<ContentFormat>,
    /// Payload.
    pub payload: Vec<u8>,
    /// Observe option (0 register, 1 deregister).
    pub observe: Option<u32>,
    /// Uri-Query options.
    pub queries: Vec<String>,
}

impl Request {
    fn new(method: RequestType, path: Path) -> Self {
        Self {
            method,
            path,
            accept: None,
            content_format: None,
            payload: Vec::new(),
            observe: None,
            queries: Vec::new(),
        }
    }

    /// Read: `GET path` with an optional Accept.
    pub fn read(path: Path, accept: Option<ContentFormat>) -> Self {
        Self {
            accept,
            ..Self::new(RequestType::Get, path)
        }
    }

    /// Discover: `GET path` with `Accept: application/link-format`.
    pub fn discover(path: Path) -> Self {
        Self::read(path, Some(ContentFormat::LinkFormat))
    }

    /// Observe: `GET path` with `Observe: 0`.
    pub fn observe(path: Path, accept: Option<ContentFormat>) -> Self {
        Self {
            observe: Some(0),
            ..Self::read(path, accept)
        }
    }

    /// Cancel observation: `GET path` with `Observe: 1` (send with the observation's token).
    pub fn cancel_observe(path: Path, accept: Option<ContentFormat>) -> Self {
        Self {
            observe: Some(1),
            ..Self::read(path, accept)
        }
    }

    /// Write an encoded payload: `PUT` (replace) or `POST` (partial update).
    pub fn write(path: Path, format: ContentFormat, payload: Vec<u8>, replace: bool) -> Self {
        let method = if replace {
            RequestType::Put
        } else {
            RequestType::Post
        };
        Self {
            content_format: Some(format),
            payload,
            ..Self::new(method, path)
        }
    }

    /// Write records, encoding them in `format`.
    pub fn write_records(
        path: Path,
        format: ContentFormat,
        records: &[Record],
        replace: bool,
    ) -> Result<Self, ContentError> {
        Ok(Self::write(
            path,
            format,
            content::encode(format, &path, records)?,
            replace,
        ))
    }

    /// Execute: `POST path` with optional text arguments.
    pub fn execute(path: Path, arguments: Option<&str>) -> Self {
        let payload = arguments.map(|a| a.as_bytes().to_vec()).unwrap_or_default();
        let content_format = arguments.map(|_| ContentFormat::Text);
        Self {
            payload,
            content_format,
            ..Self::new(RequestType::Post, path)
        }
    }

    /// Write-Attributes: `PUT path?pmin=..&pmax=..` without payload.
    pub fn write_attributes(path: Path, attributes: &Attributes) -> Self {
        Self {
            queries: attributes.to_queries(),
            ..Self::new(RequestType::Put, path)
        }
    }

    /// The confirmable CoAP packet for this request.
    pub fn to_packet(&self, message_id: u16, token: Vec<u8>) -> Packet {
        let mut p = coap::request(self.method, true, message_id, token);
        if let Some(o) = self.observe {
            coap::set_observe(&mut p, o);
        }
        coap::add_path(&mut p, &self.path.segments());
        if let Some(cf) = self.content_format {
            coap::add_uint_option(&mut p, CoapOption::ContentFormat, u32::from(cf.code()));
        }
        coap::add_queries(&mut p, &self.queries);
        if let Some(a) = self.accept {
            coap::add_uint_option(&mut p, CoapOption::Accept, u32::from(a.code()));
        }
        p.payload = self.payload.clone();
        p
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub peer: SocketAddr,
    /// Bytes.
    pub datagram: Vec<u8>,
}

/// Something the application must handle.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The response to a request sent with [`Endpoint::send`] (for Observe, the first one).
    Response {
        /// The device.
        peer: SocketAddr,
        /// The request's token.
        token: Vec<u8>,
        /// The response.
        response: Packet,
    },
    /// A later notification of an observation.
    Notification {
        /// The device.
        peer: SocketAddr,
        /// The observation's token.
        token: Vec<u8>,
        /// The notification.
        response: Packet,
    },
    /// No answer after all retransmissions (or no separate response in EXCHANGE_LIFETIME).
    TimedOut {
        /// The device.
        peer: SocketAddr,
        /// The request's token.
        token: Vec<u8>,
    },
    /// The device rejected the request with a Reset.
    Reset {
        /// The device.
        peer: SocketAddr,
        /// The request's token.
        token: Vec<u8>,
    },
    /// A new request from a device (e.g. Register); answer with [`Endpoint::respond`].
    Request {
        /// The device.
        peer: SocketAddr,
        /// The request.
        request: Packet,
    },
}

/// Why a request could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Too many requests in flight.
    #[error("more than {MAX_PENDING} requests in flight")]
    Busy,
    /// The request does not fit a datagram.
    #[error(transparent)]
    Coap(#[from] CoapError),
}

#[derive(Debug)]
struct Pending {
    peer: SocketAddr,
    message_id: u16,
    /// `None` once the device acknowledged (waiting for a separate response).
    retransmission: Option<Retransmission>,
    observe: bool,
    /// When to give up waiting for a separate response.
    deadline: Instant,
}

/// Sans-IO CoAP endpoint for the server side. See the module docs.
#[derive(Debug)]
pub struct Endpoint {
    params: TransmissionParams,
    pending: HashMap<Vec<u8>, Pending>,
    observations: HashMap<Vec<u8>, SocketAddr>,
    dedup: DedupCache,
    ids: MessageIds,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Endpoint {
    /// An endpoint with the given transmission parameters.
    pub fn new(params: TransmissionParams) -> Self {
        Self {
            params,
            pending: HashMap::new(),
            observations: HashMap::new(),
            dedup: DedupCache::new(DEDUP_CAPACITY, params.exchange_lifetime()),
            ids: MessageIds::default(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// A fresh message id (for NON responses).
    pub fn next_message_id(&mut self) -> u16 {
        self.ids.next_id()
    }

    /// Sends `request` to `peer` as a CON with a fresh token, which it returns.
    pub fn send(&mut self, peer: SocketAddr, request: &Request, now: Instant) -> Result<Vec<u8>, SendError> {
        self.send_with_token(peer, request, coap::new_token(), now)
    }

    /// Sends `request` with a given token (to cancel an observation with its own token).
    pub fn send_with_token(
        &mut self,
        peer: SocketAddr,
        request: &Request,
        token: Vec<u8>,
        now: Instant,
    ) -> Result<Vec<u8>, SendError> {
        if self.pending.len() >= MAX_PENDING {
            return Err(SendError::Busy);
        }
        let message_id = self.ids.next_id();
        let datagram = coap::serialize(&request.to_packet(message_id, token.clone()))?;
        let retransmission =
            Retransmission::new(datagram.clone(), message_id, now, &self.params, rand::random());
        if request.observe == Some(1) {
            self.observations.remove(&token);
        }
        let pending = Pending {
            peer,
            message_id,
            retransmission: Some(retransmission),
            observe: request.observe == Some(0),
            deadline: now + self.params.exchange_lifetime(),
        };
        self.pending.insert(token.clone(), pending);
        self.outbox.push_back(Transmit { peer, datagram });
        Ok(token)
    }

    /// Stops tracking an observation: its next notification is answered with a Reset.
    pub fn forget_observation(&mut self, token: &[u8]) {
        self.observations.remove(token);
    }

    /// Abandons the request with `token`: no more retransmissions, no event for it, and any
    /// observation it started is forgotten. For a request whose purpose is gone (the device
    /// registered again: a retransmitted Execute must not reach the restarted device).
    pub fn cancel(&mut self, token: &[u8]) {
        self.pending.remove(token);
        self.observations.remove(token);
    }

    /// Answers a device's request (from [`Event::Request`]); the answer is cached so a
    /// retransmitted request gets it again.
    pub fn respond(
        &mut self,
        peer: SocketAddr,
        request: &Packet,
        response: &Packet,
        now: Instant,
    ) -> Result<(), CoapError> {
        let datagram = coap::serialize(response)?;
        if request.header.get_type() == MessageType::Confirmable {
            self.dedup
                .insert(peer, request.header.message_id, Some(datagram.clone()), now);
        }
        self.outbox.push_back(Transmit { peer, datagram });
        Ok(())
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] should next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|p| {
                p.retransmission
                    .as_ref()
                    .map_or(p.deadline, Retransmission::deadline)
            })
            .min()
    }

    /// Retransmits and expires requests due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut failed = Vec::new();
        for (token, p) in &mut self.pending {
            match p.retransmission.as_mut().map(|r| r.poll(now)) {
                Some(RetransmitStep::Resend(datagram)) => self.outbox.push_back(Transmit {
                    peer: p.peer,
                    datagram,
                }),
                Some(RetransmitStep::GiveUp) => failed.push(token.clone()),
                Some(RetransmitStep::Wait) => {}
                None if now >= p.deadline => failed.push(token.clone()),
                None => {}
            }
        }
        for token in failed {
            if let Some(p) = self.pending.remove(&token) {
                self.events.push_back(Event::TimedOut { peer: p.peer, token });
            }
        }
    }

    /// Processes one datagram from `peer`. Malformed datagrams are dropped.
    pub fn handle_datagram(&mut self, peer: SocketAddr, datagram: &[u8], now: Instant) {
        let Ok(packet) = coap::parse(datagram) else {
            tracing::debug!(%peer, "dropping malformed CoAP datagram");
            return;
        };
        match packet.header.get_type() {
            MessageType::Acknowledgement | MessageType::Reset => self.on_ack_or_reset(peer, packet),
            MessageType::Confirmable | MessageType::NonConfirmable => self.on_message(peer, packet, now),
        }
    }

    fn token_for_message_id(&self, peer: SocketAddr, message_id: u16) -> Option<Vec<u8>> {
        self.pending
            .iter()
            .find(|(_, p)| p.peer == peer && p.message_id == message_id)
            .map(|(t, _)| t.clone())
    }

    fn on_ack_or_reset(&mut self, peer: SocketAddr, packet: Packet) {
        let Some(token) = self.token_for_message_id(peer, packet.header.message_id) else {
            return;
        };
        if packet.header.get_type() == MessageType::Reset {
            self.pending.remove(&token);
            self.events.push_back(Event::Reset { peer, token });
        } else if coap::is_empty(&packet) {
            if let Some(p) = self.pending.get_mut(&token) {
                p.retransmission = None;
            }
        } else if packet.get_token() == token.as_slice() {
            self.deliver_response(peer, token, packet);
        }
    }

    fn deliver_response(&mut self, peer: SocketAddr, token: Vec<u8>, response: Packet) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        let success = matches!(response.header.code, MessageClass::Response(r) if !r.is_error());
        if p.observe && success && coap::observe(&response).is_some() {
            self.observations.insert(token.clone(), peer);
        }
        self.events.push_back(Event::Response {
            peer,
            token,
            response,
        });
    }

    fn on_message(&mut self, peer: SocketAddr, packet: Packet, now: Instant) {
        let confirmable = packet.header.get_type() == MessageType::Confirmable;
        let message_id = packet.header.message_id;
        match self.dedup.lookup(peer, message_id, now) {
            Some(Seen::Answered(datagram)) => return self.outbox.push_back(Transmit { peer, datagram }),
            Some(Seen::Ignored) => return,
            None => {}
        }
        match packet.header.code {
            MessageClass::Request(_) => {
                self.dedup.insert(peer, message_id, None, now);
                self.events.push_back(Event::Request {
                    peer,
                    request: packet,
                });
            }
            MessageClass::Response(_) => {
                let token = packet.get_token().to_vec();
                let known = self.pending.get(&token).is_some_and(|p| p.peer == peer)
                    || self.observations.get(&token) == Some(&peer);
                let kind = if known {
                    MessageType::Acknowledgement
                } else {
                    MessageType::Reset
                };
                let reply = coap::serialize(&coap::empty(kind, message_id)).ok();
                if (confirmable || !known)
                    && let Some(datagram) = reply.clone()
                {
                    self.outbox.push_back(Transmit { peer, datagram });
                }
                self.dedup
                    .insert(peer, message_id, if confirmable { reply } else { None }, now);
                if self.pending.contains_key(&token) {
                    self.deliver_response(peer, token, packet);
                } else if known {
                    self.events.push_back(Event::Notification {
                        peer,
                        token,
                        response: packet,
                    });
                }
            }
            MessageClass::Empty if confirmable => {
                // CoAP ping: answer with a Reset.
                if let Ok(datagram) = coap::serialize(&coap::empty(MessageType::Reset, message_id)) {
                    self.outbox.push_back(Transmit { peer, datagram });
                }
            }
            _ => {}
        }
    }
}

/// The response code of a packet, if it is a response.
pub fn response_code(packet: &Packet) -> Option<ResponseType> {
    match packet.header.code {
        MessageClass::Response(r) => Some(r),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn device() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 56830))
    }

    fn fast() -> TransmissionParams {
        TransmissionParams {
            ack_timeout: Duration::from_millis(100),
            ack_random_factor: 1.0,
            ..Default::default()
        }
    }

    fn reply_to(datagram: &[u8], code: ResponseType) -> Result<Vec<u8>, CoapError> {
        let req = coap::parse(datagram)?;
        coap::serialize(&coap::response_to(&req, code, 0))
    }

    #[test]
    fn request_retransmits_then_matches_response() -> Result<(), Box<dyn std::error::Error>> {
        let t0 = Instant::now();
        let mut ep = Endpoint::new(fast());
        let token = ep.send(
            device(),
            &Request::read(Path::instance(3, 0), Some(ContentFormat::SenmlJson)),
            t0,
        )?;
        let first = ep.poll_transmit().ok_or("no datagram")?;
        let packet = coap::parse(&first.datagram)?;
        assert_eq!(coap::accept(&packet), Some(110));
        assert_eq!(
            coap::string_options(&packet, CoapOption::UriPath),
            Some(vec!["3".into(), "0".into()])
        );
        ep.handle_timeout(t0 + Duration::from_millis(100));
        let again = ep.poll_transmit().ok_or("no retransmission")?;
        assert_eq!(again.datagram, first.datagram);
        ep.handle_datagram(device(), &reply_to(&first.datagram, ResponseType::Content)?, t0);
        match ep.poll_event() {
            Some(Event::Response {
                token: t, response, ..
            }) => {
                assert_eq!(t, token);
                assert_eq!(response_code(&response), Some(ResponseType::Content));
            }
            other => return Err(format!("unexpected {other:?}").into()),
        }
        assert_eq!(ep.next_timeout(), None);
        Ok(())
    }

    #[test]
    fn request_times_out_after_max_retransmit() -> Result<(), SendError> {
        let t0 = Instant::now();
        let mut ep = Endpoint::new(fast());
        let token = ep.send(device(), &Request::execute(Path::resource(3, 0, 4), None), t0)?;
        let mut sent = 0;
        while let Some(at) = ep.next_timeout() {
            while ep.poll_transmit().is_some() {
                sent += 1;
            }
            ep.handle_timeout(at);
        }
        assert_eq!(sent, 5, "one send and MAX_RETRANSMIT resends");
        assert_eq!(
            ep.poll_event(),
            Some(Event::TimedOut {
                peer: device(),
                token
            })
        );
        Ok(())
    }

    #[test]
    fn duplicate_requests_get_the_cached_answer() -> Result<(), CoapError> {
        let t0 = Instant::now();
        let mut ep = Endpoint::new(fast());
        let mut reg = coap::request(RequestType::Post, true, 77, vec![1]);
        coap::add_path(&mut reg, &["rd"]);
        let bytes = coap::serialize(&reg)?;
        ep.handle_datagram(device(), &bytes, t0);
        let Some(Event::Request { request, .. }) = ep.poll_event() else {
            panic!("no request event")
        };
        let answer = crate::registration::created(&request, "r1", 0);
        ep.respond(device(), &request, &answer, t0)?;
        let first = ep.poll_transmit();
        ep.handle_datagram(device(), &bytes, t0 + Duration::from_millis(5));
        assert_eq!(ep.poll_event(), None, "not processed twice");
        assert_eq!(ep.poll_transmit(), first);
        Ok(())
    }

    #[test]
    fn notifications_are_matched_acked_and_rejected_after_forget() -> Result<(), Box<dyn std::error::Error>> {
        let t0 = Instant::now();
        let mut ep = Endpoint::new(fast());
        let token = ep.send(device(), &Request::observe(Path::resource(3, 0, 9), None), t0)?;
        let req = coap::parse(&ep.poll_transmit().ok_or("none")?.datagram)?;
        let mut first = coap::response_to(&req, ResponseType::Content, 0);
        coap::set_observe(&mut first, 1);
        ep.handle_datagram(device(), &coap::serialize(&first)?, t0);
        assert!(matches!(ep.poll_event(), Some(Event::Response { .. })));
        let mut note = coap::request(RequestType::Get, true, 500, token.clone());
        note.header.code = MessageClass::Response(ResponseType::Content);
        coap::set_observe(&mut note, 2);
        ep.handle_datagram(device(), &coap::serialize(&note)?, t0);
        assert!(matches!(ep.poll_event(), Some(Event::Notification { .. })));
        let ack = coap::parse(&ep.poll_transmit().ok_or("no ack")?.datagram)?;
        assert_eq!(
            (ack.header.get_type(), ack.header.message_id),
            (MessageType::Acknowledgement, 500)
        );
        ep.forget_observation(&token);
        note.header.message_id = 501;
        ep.handle_datagram(device(), &coap::serialize(&note)?, t0);
        assert_eq!(ep.poll_event(), None);
        let rst = coap::parse(&ep.poll_transmit().ok_or("no rst")?.datagram)?;
        assert_eq!(rst.header.get_type(), MessageType::Reset);
        Ok(())
    }
}
