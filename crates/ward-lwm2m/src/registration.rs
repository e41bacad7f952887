//! The LwM2M Registration interface (LwM2M 1.1 Core §6.2) as data: Register, Update and
//! De-register requests, parsed (server side) with validation, and built (client side).
//!
//! * Register: `POST /rd?ep=NAME&lt=SECONDS&lwm2m=1.1&b=U[&sms=..][&Q]`, payload in link format.
//! * Update: `POST /rd/{location}[?lt=..&b=..&sms=..&Q]`, optional link-format payload.
//! * De-register: `DELETE /rd/{location}`.
//!
//! Unknown query parameters are ignored (later LwM2M versions add some); duplicated ones are an
//! error. Queue mode is accepted both as LwM2M 1.0's `b=UQ` and as 1.1's `Q` parameter.
//! [`RegistrationError::response_code`] says which CoAP error the server should answer with.

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use thiserror::Error;

use crate::coap;
use crate::content::{ContentFormat, Path};
use crate::link::{self, Link, LinkError};

/// Lifetime when `lt` is absent (LwM2M default: one day).
pub const DEFAULT_LIFETIME: u32 = 86_400;
/// Shortest lifetime accepted, seconds.
pub const MIN_LIFETIME: u32 = 1;
/// Longest lifetime accepted, seconds (one year; anything longer is a mistake or an attack on
/// the server's registration table).
pub const MAX_LIFETIME: u32 = 365 * 86_400;
/// Longest endpoint name accepted.
pub const MAX_ENDPOINT_LEN: usize = 128;
/// Longest registration location (the `{location}` in `/rd/{location}`).
pub const MAX_LOCATION_LEN: usize = 64;

/// LwM2M enabler versions this crate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// 1.0 (also assumed when `lwm2m` is absent).
    V1_0,
    /// 1.1.
    V1_1,
}

impl Version {
    /// The `lwm2m=` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V1_0 => "1.0",
            Self::V1_1 => "1.1",
        }
    }
}

/// Transport bindings a client offers (`b=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Binding {
    /// `U`: UDP.
    pub udp: bool,
    /// `T`: TCP.
    pub tcp: bool,
    /// `S`: SMS.
    pub sms: bool,
    /// `N`: non-IP.
    pub non_ip: bool,
}

impl Default for Binding {
    fn default() -> Self {
        Self::UDP
    }
}

impl Binding {
    /// UDP only.
    pub const UDP: Self = Self {
        udp: true,
        tcp: false,
        sms: false,
        non_ip: false,
    };

    /// Parses a `b=` value; returns the binding and whether a `Q` (1.0 queue mode) was in it.
    pub fn parse(value: &str) -> Result<(Self, bool), RegistrationError> {
        let bad = || RegistrationError::BadBinding(value.to_owned());
        let mut b = Self {
            udp: false,
            tcp: false,
            sms: false,
            non_ip: false,
        };
        let mut queue = false;
        for c in value.chars() {
            let flag = match c {
                'U' => &mut b.udp,
                'T' => &mut b.tcp,
                'S' => &mut b.sms,
                'N' => &mut b.non_ip,
                'Q' => &mut queue,
                _ => return Err(bad()),
            };
            if std::mem::replace(flag, true) {
                return Err(bad());
            }
        }
        if !(b.udp || b.tcp || b.sms || b.non_ip) {
            return Err(bad());
        }
        Ok((b, queue))
    }
}

impl std::fmt::Display for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (on, c) in [
            (self.udp, 'U'),
            (self.tcp, 'T'),
            (self.sms, 'S'),
            (self.non_ip, 'N'),
        ] {
            if on {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Why a registration request is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistrationError {
    /// The path is not `/rd` or `/rd/{location}`.
    #[error("not a registration path")]
    NotRegistrationPath,
    /// A method the interface does not have at that path.
    #[error("method not allowed on the registration interface")]
    MethodNotAllowed,
    /// `ep` is missing.
    #[error("missing endpoint name (ep)")]
    MissingEndpoint,
    /// `ep` has a bad length or character.
    #[error("invalid endpoint name {0:?}")]
    BadEndpoint(String),
    /// `lt` is not a number in [`MIN_LIFETIME`]..=[`MAX_LIFETIME`].
    #[error("invalid lifetime {0:?}")]
    BadLifetime(String),
    /// `lwm2m` names a version other than 1.0 or 1.1.
    #[error("unsupported LwM2M version {0:?}")]
    UnsupportedVersion(String),
    /// `b` is not a set of U, T, S, N (and Q).
    #[error("invalid binding {0:?}")]
    BadBinding(String),
    /// A query parameter is malformed, not UTF-8, or given twice.
    #[error("invalid query parameter {0:?}")]
    BadQuery(String),
    /// The payload is not link format.
    #[error("invalid link-format payload: {0}")]
    BadPayload(LinkError),
    /// The payload has a Content-Format other than link format.
    #[error("payload content format {0} is not link format")]
    BadContentFormat(u16),
}

impl RegistrationError {
    /// The CoAP response the server sends for this error: 4.12 Precondition Failed for an
    /// unsupported version (LwM2M 1.1 Core, Register: "Supported LwM2M Versions of the Server
    /// and the Client are not compatible"), 4.04 for an unknown path, 4.05 for a wrong method,
    /// 4.15 for a wrong content format, and 4.00 Bad Request for everything else.
    pub const fn response_code(&self) -> ResponseType {
        match self {
            Self::UnsupportedVersion(_) => ResponseType::PreconditionFailed,
            Self::NotRegistrationPath => ResponseType::NotFound,
            Self::MethodNotAllowed => ResponseType::MethodNotAllowed,
            Self::BadContentFormat(_) => ResponseType::UnsupportedContentFormat,
            _ => ResponseType::BadRequest,
        }
    }
}

/// A Register request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// Endpoint client name (`ep`).
    pub endpoint: String,
    /// Lifetime in seconds (`lt`).
    pub lifetime: u32,
    /// Enabler version (`lwm2m`).
    pub version: Version,
    /// Bindings (`b`).
    pub binding: Binding,
    /// Queue mode (`Q`, or `Q` in `b` for 1.0).
    pub queue_mode: bool,
    /// MSISDN for SMS binding (`sms`).
    pub sms_number: Option<String>,
    /// Objects and instances the client has (payload).
    pub links: Vec<Link>,
}

/// An Update request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// The registration location (`/rd/{location}`).
    pub location: String,
    /// New lifetime, if changed.
    pub lifetime: Option<u32>,
    /// New binding, if changed.
    pub binding: Option<Binding>,
    /// Queue mode, if stated.
    pub queue_mode: Option<bool>,
    /// New MSISDN, if changed.
    pub sms_number: Option<String>,
    /// New object list, if changed.
    pub links: Option<Vec<Link>>,
}

/// A De-register request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deregister {
    /// The registration location.
    pub location: String,
}

/// Any request of the Registration interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationRequest {
    /// `POST /rd?...`.
    Register(Register),
    /// `POST /rd/{location}`.
    Update(Update),
    /// `DELETE /rd/{location}`.
    Deregister(Deregister),
}

impl RegistrationRequest {
    /// Parses and validates a registration-interface request.
    pub fn from_packet(packet: &Packet) -> Result<Self, RegistrationError> {
        let segments = coap::string_options(packet, CoapOption::UriPath)
            .ok_or(RegistrationError::NotRegistrationPath)?;
        let location = match segments.as_slice() {
            [rd] if rd == "rd" => None,
            [rd, loc] if rd == "rd" && valid_location(loc) => Some(loc.clone()),
            _ => return Err(RegistrationError::NotRegistrationPath),
        };
        let method = match packet.header.code {
            MessageClass::Request(m) => m,
            _ => return Err(RegistrationError::MethodNotAllowed),
        };
        let query = Query::parse(packet)?;
        match (method, location) {
            (RequestType::Post, None) => Register::parse(&query, packet).map(Self::Register),
            (RequestType::Post, Some(location)) => Update::parse(location, &query, packet).map(Self::Update),
            (RequestType::Delete, Some(location)) => Ok(Self::Deregister(Deregister { location })),
            _ => Err(RegistrationError::MethodNotAllowed),
        }
    }
}

fn valid_location(loc: &str) -> bool {
    !loc.is_empty()
        && loc.len() <= MAX_LOCATION_LEN
        && loc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Query parameters as (name, optional value) pairs, each name at most once.
struct Query(Vec<(String, Option<String>)>);

impl Query {
    fn parse(packet: &Packet) -> Result<Self, RegistrationError> {
        let raw = coap::string_options(packet, CoapOption::UriQuery)
            .ok_or_else(|| RegistrationError::BadQuery("not UTF-8".into()))?;
        let mut pairs: Vec<(String, Option<String>)> = Vec::with_capacity(raw.len());
        for q in raw {
            let (name, value) = match q.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (q.clone(), None),
            };
            if name.is_empty() || pairs.iter().any(|(n, _)| *n == name) {
                return Err(RegistrationError::BadQuery(q));
            }
            pairs.push((name, value));
        }
        Ok(Self(pairs))
    }

    /// `Some(value)` for `name=value`; an error for a bare `name`.
    fn value(&self, name: &str) -> Result<Option<&str>, RegistrationError> {
        match self.0.iter().find(|(n, _)| n == name) {
            None => Ok(None),
            Some((_, Some(v))) => Ok(Some(v)),
            Some((n, None)) => Err(RegistrationError::BadQuery(n.clone())),
        }
    }

    /// True for a bare `name` flag; an error for `name=value`.
    fn flag(&self, name: &str) -> Result<bool, RegistrationError> {
        match self.0.iter().find(|(n, _)| n == name) {
            None => Ok(false),
            Some((_, None)) => Ok(true),
            Some((n, Some(v))) => Err(RegistrationError::BadQuery(format!("{n}={v}"))),
        }
    }
}

/// Whether `ep` is an endpoint name this crate accepts: 1..=[`MAX_ENDPOINT_LEN`] characters of
/// ASCII letters, digits and `-._~:@+` (what the gateway lets an admin provision).
pub fn is_valid_endpoint(ep: &str) -> bool {
    !ep.is_empty()
        && ep.len() <= MAX_ENDPOINT_LEN
        && ep
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:@+".contains(&b))
}

fn parse_endpoint(ep: &str) -> Result<String, RegistrationError> {
    if is_valid_endpoint(ep) {
        Ok(ep.to_owned())
    } else {
        Err(RegistrationError::BadEndpoint(ep.to_owned()))
    }
}

/// Parses an `lt` value.
pub fn parse_lifetime(lt: &str) -> Result<u32, RegistrationError> {
    let bad = || RegistrationError::BadLifetime(lt.to_owned());
    if lt.is_empty() || lt.len() > 10 || !lt.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    lt.parse::<u32>()
        .ok()
        .filter(|v| (MIN_LIFETIME..=MAX_LIFETIME).contains(v))
        .ok_or_else(bad)
}

fn parse_version(v: &str) -> Result<Version, RegistrationError> {
    match v {
        "1.0" => Ok(Version::V1_0),
        "1.1" => Ok(Version::V1_1),
        other => Err(RegistrationError::UnsupportedVersion(other.to_owned())),
    }
}

fn parse_sms(sms: &str) -> Result<String, RegistrationError> {
    let ok =
        !sms.is_empty() && sms.len() <= 20 && sms.trim_start_matches('+').bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(sms.to_owned())
    } else {
        Err(RegistrationError::BadQuery(format!("sms={sms}")))
    }
}

fn parse_payload(packet: &Packet) -> Result<Option<Vec<Link>>, RegistrationError> {
    if packet.payload.is_empty() {
        return Ok(None);
    }
    match coap::content_format(packet) {
        None => {}
        Some(cf) if cf == ContentFormat::LinkFormat.code() => {}
        Some(other) => return Err(RegistrationError::BadContentFormat(other)),
    }
    link::parse_bytes(&packet.payload)
        .map(Some)
        .map_err(RegistrationError::BadPayload)
}

impl Register {
    /// A UDP, LwM2M 1.1 registration with the default lifetime.
    pub fn new(endpoint: impl Into<String>, links: Vec<Link>) -> Self {
        Self {
            endpoint: endpoint.into(),
            lifetime: DEFAULT_LIFETIME,
            version: Version::V1_1,
            binding: Binding::UDP,
            queue_mode: false,
            sms_number: None,
            links,
        }
    }

    fn parse(query: &Query, packet: &Packet) -> Result<Self, RegistrationError> {
        let endpoint = parse_endpoint(query.value("ep")?.ok_or(RegistrationError::MissingEndpoint)?)?;
        let version = query.value("lwm2m")?.map_or(Ok(Version::V1_0), parse_version)?;
        let lifetime = query.value("lt")?.map_or(Ok(DEFAULT_LIFETIME), parse_lifetime)?;
        let (binding, queue_in_b) = query
            .value("b")?
            .map_or(Ok((Binding::UDP, false)), Binding::parse)?;
        let queue_mode = queue_in_b || query.flag("Q")?;
        let sms_number = query.value("sms")?.map(parse_sms).transpose()?;
        let links = parse_payload(packet)?.unwrap_or_default();
        Ok(Self {
            endpoint,
            lifetime,
            version,
            binding,
            queue_mode,
            sms_number,
            links,
        })
    }

    /// The object instances (and instance-less objects) the client announced.
    pub fn object_paths(&self) -> Vec<Path> {
        self.links.iter().filter_map(Link::path).collect()
    }

    /// The `POST /rd?...` request for this registration.
    pub fn to_packet(&self, message_id: u16, token: Vec<u8>) -> Packet {
        let mut p = coap::request(RequestType::Post, true, message_id, token);
        coap::add_path(&mut p, &["rd"]);
        let mut queries = vec![
            format!("ep={}", self.endpoint),
            format!("lt={}", self.lifetime),
            format!("lwm2m={}", self.version.as_str()),
        ];
        let q = if self.queue_mode && self.version == Version::V1_0 {
            "Q"
        } else {
            ""
        };
        queries.push(format!("b={}{q}", self.binding));
        if let Some(sms) = &self.sms_number {
            queries.push(format!("sms={sms}"));
        }
        if self.queue_mode && self.version == Version::V1_1 {
            queries.push("Q".into());
        }
        coap::add_queries(&mut p, &queries);
        set_links(&mut p, &self.links);
        p
    }
}

fn set_links(p: &mut Packet, links: &[Link]) {
    if !links.is_empty() {
        coap::add_uint_option(
            p,
            CoapOption::ContentFormat,
            u32::from(ContentFormat::LinkFormat.code()),
        );
        p.payload = link::format(links).into_bytes();
    }
}

impl Update {
    fn parse(location: String, query: &Query, packet: &Packet) -> Result<Self, RegistrationError> {
        let lifetime = query.value("lt")?.map(parse_lifetime).transpose()?;
        let parsed_b = query.value("b")?.map(Binding::parse).transpose()?;
        let q_flag = query.flag("Q")?;
        let queue_mode = match (parsed_b, q_flag) {
            (Some((_, true)), _) | (_, true) => Some(true),
            (Some((_, false)), false) => Some(false),
            (None, false) => None,
        };
        let sms_number = query.value("sms")?.map(parse_sms).transpose()?;
        let links = parse_payload(packet)?;
        Ok(Self {
            location,
            lifetime,
            binding: parsed_b.map(|(b, _)| b),
            queue_mode,
            sms_number,
            links,
        })
    }

    /// The `POST /rd/{location}` request.
    pub fn to_packet(&self, message_id: u16, token: Vec<u8>) -> Packet {
        let mut p = coap::request(RequestType::Post, true, message_id, token);
        coap::add_path(&mut p, &["rd", self.location.as_str()]);
        let mut queries = Vec::new();
        if let Some(lt) = self.lifetime {
            queries.push(format!("lt={lt}"));
        }
        if let Some(b) = self.binding {
            queries.push(format!("b={b}"));
        }
        if let Some(sms) = &self.sms_number {
            queries.push(format!("sms={sms}"));
        }
        if self.queue_mode == Some(true) {
            queries.push("Q".into());
        }
        coap::add_queries(&mut p, &queries);
        if let Some(links) = &self.links {
            set_links(&mut p, links);
        }
        p
    }
}

impl Deregister {
    /// The `DELETE /rd/{location}` request.
    pub fn to_packet(&self, message_id: u16, token: Vec<u8>) -> Packet {
        let mut p = coap::request(RequestType::Delete, true, message_id, token);
        coap::add_path(&mut p, &["rd", self.location.as_str()]);
        p
    }
}

/// The server's 2.01 Created answer to a Register, carrying `Location-Path: rd/{location}`.
pub fn created(request: &Packet, location: &str, fresh_id: u16) -> Packet {
    let mut p = coap::response_to(request, ResponseType::Created, fresh_id);
    p.add_option(CoapOption::LocationPath, b"rd".to_vec());
    p.add_option(CoapOption::LocationPath, location.as_bytes().to_vec());
    p
}

/// The location from a 2.01 Created response (`rd/{location}` → `{location}`).
pub fn location_of(response: &Packet) -> Option<String> {
    let segments = coap::string_options(response, CoapOption::LocationPath)?;
    match segments.as_slice() {
        [rd, loc] if rd == "rd" && valid_location(loc) => Some(loc.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register_packet(queries: &[&str], payload: &str) -> Packet {
        let mut p = coap::request(RequestType::Post, true, 1, vec![1, 2]);
        coap::add_path(&mut p, &["rd"]);
        coap::add_queries(&mut p, queries);
        p.payload = payload.as_bytes().to_vec();
        p
    }

    fn parse_register(queries: &[&str]) -> Result<Register, RegistrationError> {
        match RegistrationRequest::from_packet(&register_packet(queries, "</1/0>,</3/0>"))? {
            RegistrationRequest::Register(r) => Ok(r),
            other => panic!("not a register: {other:?}"),
        }
    }

    #[test]
    fn parses_a_register() -> Result<(), RegistrationError> {
        let r = parse_register(&["ep=urn:imei:123", "lt=300", "lwm2m=1.1", "b=U", "Q"])?;
        assert_eq!(r.endpoint, "urn:imei:123");
        assert_eq!(
            (r.lifetime, r.version, r.binding, r.queue_mode),
            (300, Version::V1_1, Binding::UDP, true)
        );
        assert_eq!(r.object_paths(), vec![Path::instance(1, 0), Path::instance(3, 0)]);
        let r = parse_register(&["ep=a", "b=UQ"])?;
        assert_eq!(
            (r.version, r.lifetime, r.queue_mode),
            (Version::V1_0, DEFAULT_LIFETIME, true)
        );
        Ok(())
    }

    #[test]
    fn rejects_bad_registers() {
        use RegistrationError as E;
        let err = |q: &[&str]| parse_register(q).err();
        assert_eq!(err(&["lt=60"]), Some(E::MissingEndpoint));
        assert_eq!(err(&["ep="]), Some(E::BadEndpoint(String::new())));
        assert_eq!(err(&["ep=a b"]), Some(E::BadEndpoint("a b".into())));
        assert!(matches!(
            err(&[&format!("ep={}", "x".repeat(MAX_ENDPOINT_LEN + 1))]),
            Some(E::BadEndpoint(_))
        ));
        assert_eq!(err(&["ep=a", "lt=0"]), Some(E::BadLifetime("0".into())));
        assert_eq!(
            err(&["ep=a", "lt=99999999999"]),
            Some(E::BadLifetime("99999999999".into()))
        );
        assert_eq!(err(&["ep=a", "lt=-5"]), Some(E::BadLifetime("-5".into())));
        assert_eq!(
            err(&["ep=a", "lt=31536001"]),
            Some(E::BadLifetime("31536001".into()))
        );
        let v2 = err(&["ep=a", "lwm2m=2.0"]);
        assert_eq!(v2, Some(E::UnsupportedVersion("2.0".into())));
        assert_eq!(
            v2.map(|e| e.response_code()),
            Some(ResponseType::PreconditionFailed)
        );
        assert_eq!(err(&["ep=a", "b=X"]), Some(E::BadBinding("X".into())));
        assert_eq!(err(&["ep=a", "b=UU"]), Some(E::BadBinding("UU".into())));
        assert_eq!(err(&["ep=a", "b=Q"]), Some(E::BadBinding("Q".into())));
        assert_eq!(err(&["ep=a", "b="]), Some(E::BadBinding(String::new())));
        assert_eq!(err(&["ep=a", "ep=b"]), Some(E::BadQuery("ep=b".into())));
        assert_eq!(err(&["ep"]), Some(E::BadQuery("ep".into())));
        assert_eq!(err(&["ep=a", "Q=1"]), Some(E::BadQuery("Q=1".into())));
        assert!(
            err(&["ep=a", "unknown=1"]).is_none(),
            "unknown parameters are ignored"
        );
        let bad_links = RegistrationRequest::from_packet(&register_packet(&["ep=a"], "</1/0"));
        assert!(matches!(bad_links, Err(E::BadPayload(_))));
    }

    #[test]
    fn routes_update_and_deregister() -> Result<(), RegistrationError> {
        let update = Update {
            location: "x7".into(),
            lifetime: Some(60),
            ..Update::default()
        };
        let parsed = RegistrationRequest::from_packet(&update.to_packet(2, vec![]))?;
        assert_eq!(parsed, RegistrationRequest::Update(update));
        let d = Deregister {
            location: "x7".into(),
        };
        assert_eq!(
            RegistrationRequest::from_packet(&d.to_packet(3, vec![]))?,
            RegistrationRequest::Deregister(d)
        );
        let mut get = coap::request(RequestType::Get, true, 4, vec![]);
        coap::add_path(&mut get, &["rd"]);
        assert_eq!(
            RegistrationRequest::from_packet(&get),
            Err(RegistrationError::MethodNotAllowed)
        );
        let mut other = coap::request(RequestType::Post, true, 4, vec![]);
        coap::add_path(&mut other, &["rd", "a/b", "c"]);
        assert_eq!(
            RegistrationRequest::from_packet(&other),
            Err(RegistrationError::NotRegistrationPath)
        );
        Ok(())
    }

    #[test]
    fn builder_round_trips() -> Result<(), RegistrationError> {
        let mut r = Register::new("dev-1", vec![Link::new("/3/0"), Link::new("/5/0")]);
        r.lifetime = 120;
        r.queue_mode = true;
        let bytes =
            coap::serialize(&r.to_packet(9, vec![7])).map_err(|_| RegistrationError::MissingEndpoint)?;
        let packet = coap::parse(&bytes).map_err(|_| RegistrationError::MissingEndpoint)?;
        assert_eq!(
            RegistrationRequest::from_packet(&packet)?,
            RegistrationRequest::Register(r)
        );
        let reply = created(&packet, "abc", 0);
        assert_eq!(location_of(&reply).as_deref(), Some("abc"));
        Ok(())
    }
}
