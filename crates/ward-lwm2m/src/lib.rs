//! OMA LwM2M 1.1 protocol core over CoAP/UDP (RFC 7252), for the Ward LwM2M gateway and the
//! `ward sim --lwm2m` simulator. No database and no Ward server code: protocol only.
//!
//! # Module map
//!
//! | module | what |
//! | --- | --- |
//! | [`content`] | the data model ([`content::Path`], [`content::Value`], [`content::Record`]) and the content formats: OMA-TLV (11542), SenML-JSON (110), SenML-CBOR (112), plain text (0), opaque (42) |
//! | [`link`] | CoRE link format (RFC 6690), parse and generate |
//! | [`registration`] | Register / Update / De-register requests: parsing with validation (server) and builders (client) |
//! | [`objects`] | definitions of /3 Device, /4 Connectivity Monitoring, /5 Firmware Update, /8 Lock and Wipe; the firmware-update state machine |
//! | [`attributes`] | Write-Attributes (`pmin`, `pmax`, `gt`, `lt`, `st`) |
//! | [`coap`] | CoAP helpers over `coap-lite`'s codec, transmission parameters, retransmission timer, duplicate cache |
//! | [`client`] | sans-IO client core ([`client::ClientCore`]) and a tokio UDP wrapper ([`client::spawn`]) |
//! | [`server`] | sans-IO server endpoint ([`server::Endpoint`]): requests with tokens, retransmission, response and notification matching, dedup |
//! | [`dtls`] | DTLS 1.2 with pre-shared keys (the `ward-dtls` crate): a sans-IO server of sessions by peer address, and a client |
//!
//! # What is bounded, and why
//!
//! Everything that parses network input assumes the sender is hostile (a compromised device,
//! or anyone who can reach the UDP port):
//!
//! * datagrams: at most [`coap::MAX_DATAGRAM`] bytes (no block-wise transfer);
//! * content payloads: [`content::MAX_PAYLOAD`] bytes, [`content::MAX_RECORDS`] records,
//!   nesting depth [`content::MAX_DEPTH`] (SenML) or the format's fixed three levels (TLV);
//!   every length field is checked against the bytes that remain before anything is allocated;
//! * link format: [`link::MAX_INPUT`] bytes, [`link::MAX_LINKS`] links, [`link::MAX_ATTRIBUTES`]
//!   attributes per link;
//! * registration: endpoint names of [`registration::MAX_ENDPOINT_LEN`] characters from a small
//!   charset, lifetimes within [`registration::MIN_LIFETIME`]..=[`registration::MAX_LIFETIME`];
//! * state: the duplicate caches are capacity-bounded and expire after EXCHANGE_LIFETIME, the
//!   client keeps at most [`client::MAX_OBSERVATIONS`] observations, the server endpoint at
//!   most [`server::MAX_PENDING`] requests in flight.
//!
//! Decoders never panic; they return errors that say what was wrong and where.

pub mod attributes;
pub mod client;
pub mod coap;
pub mod content;
/// DTLS-PSK, in its own crate (`ward-dtls`) and re-exported here, where LwM2M users look for it.
pub use ward_dtls as dtls;
pub mod link;
pub mod objects;
pub mod registration;
pub mod server;
