//! LwM2M content formats and the data model they share.
//!
//! Every format decodes into, and encodes from, a flat list of [`Record`]s: a resource (or
//! resource-instance) [`Path`] with a typed [`Value`]. OMA-TLV carries no types, so decoders take a
//! [`TypeLookup`] (see [`crate::objects::StandardObjects`]) to know how to read each resource.
//!
//! All decoders are meant for hostile input: the payload is size-checked first
//! ([`MAX_PAYLOAD`]), the number of records is bounded ([`MAX_RECORDS`]), nesting is bounded by
//! the format's own structure (TLV, at most three levels) or by [`MAX_DEPTH`] (SenML), and every
//! length field is checked against the bytes that remain. Nothing panics; errors say what and where.

mod model;
pub mod senml;
pub mod text;
pub mod tlv;

pub use model::{ObjLink, Path, PathError, Record, ResourceType, TypeLookup, Value};

use thiserror::Error;

/// Largest payload any decoder accepts, in bytes (a CoAP/UDP datagram is far smaller; block-wise
/// transfer is not supported, so anything larger is hostile or a mistake).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Largest number of records one payload may decode into.
pub const MAX_RECORDS: usize = 1024;
/// Deepest CBOR/JSON nesting accepted (SenML needs 2: an array of maps).
pub const MAX_DEPTH: usize = 8;

/// The CoAP content formats LwM2M 1.1 uses (IANA CoAP Content-Formats registry numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentFormat {
    /// `text/plain` (0): one resource value as text.
    Text,
    /// `application/link-format` (40): Discover responses and registration payloads.
    LinkFormat,
    /// `application/octet-stream` (42): one opaque resource value.
    Opaque,
    /// `application/senml+json` (110).
    SenmlJson,
    /// `application/senml+cbor` (112).
    SenmlCbor,
    /// `application/vnd.oma.lwm2m+tlv` (11542).
    Tlv,
}

impl ContentFormat {
    /// The CoAP Content-Format number.
    pub const fn code(self) -> u16 {
        match self {
            Self::Text => 0,
            Self::LinkFormat => 40,
            Self::Opaque => 42,
            Self::SenmlJson => 110,
            Self::SenmlCbor => 112,
            Self::Tlv => 11542,
        }
    }

    /// The format for a CoAP Content-Format number, if this crate knows it.
    pub const fn from_code(code: u16) -> Option<Self> {
        match code {
            0 => Some(Self::Text),
            40 => Some(Self::LinkFormat),
            42 => Some(Self::Opaque),
            110 => Some(Self::SenmlJson),
            112 => Some(Self::SenmlCbor),
            11542 => Some(Self::Tlv),
            _ => None,
        }
    }
}

impl std::fmt::Display for ContentFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// Why a payload could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ContentError {
    /// The payload is larger than [`MAX_PAYLOAD`].
    #[error("payload of {0} bytes exceeds the limit of {MAX_PAYLOAD}")]
    TooLarge(usize),
    /// More than [`MAX_RECORDS`] records.
    #[error("more than {MAX_RECORDS} records")]
    TooManyRecords,
    /// The input ended inside a header or value.
    #[error("input truncated at byte {0}")]
    Truncated(usize),
    /// A TLV length field points past the end of its enclosing data.
    #[error("length field at byte {at} claims {len} bytes but only {left} remain")]
    LengthPastEnd {
        /// Offset of the TLV header.
        at: usize,
        /// The claimed length.
        len: usize,
        /// Bytes actually left.
        left: usize,
    },
    /// A TLV entry appears where the structure does not allow it.
    #[error("invalid nesting at byte {at}: {reason}")]
    InvalidNesting {
        /// Offset of the offending entry.
        at: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A string value is not UTF-8.
    #[error("invalid UTF-8 in the value of {0}")]
    InvalidUtf8(Path),
    /// A value does not have the type the resource needs.
    #[error("wrong type for {path}: expected {expected}")]
    WrongType {
        /// The resource.
        path: Path,
        /// The type its definition has.
        expected: ResourceType,
    },
    /// A value has the right type but cannot be represented (bad length, out of range, ...).
    #[error("invalid value for {path}: {reason}")]
    InvalidValue {
        /// The resource.
        path: Path,
        /// What was wrong.
        reason: String,
    },
    /// A path or SenML name is not a valid LwM2M path.
    #[error("invalid path: {0}")]
    InvalidPath(#[from] PathError),
    /// A SenML record's base name + name is not a resource path.
    #[error("SenML record {index}: name {name:?} does not resolve to a resource path")]
    UnresolvableName {
        /// Index of the record.
        index: usize,
        /// The resolved name.
        name: String,
    },
    /// A SenML record carries no value field.
    #[error("SenML record {index} has no value")]
    MissingValue {
        /// Index of the record.
        index: usize,
    },
    /// A SenML record carries more than one value field, or a field with the wrong type.
    #[error("SenML record {index}: {reason}")]
    BadRecord {
        /// Index of the record.
        index: usize,
        /// What was wrong.
        reason: String,
    },
    /// A SenML record uses a must-understand label (ending in `_`) this crate does not know.
    #[error("SenML record {index}: unsupported must-understand label {label:?}")]
    MustUnderstand {
        /// Index of the record.
        index: usize,
        /// The label.
        label: String,
    },
    /// The JSON is malformed.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// The CBOR is malformed.
    #[error("malformed CBOR at byte {at}: {reason}")]
    Cbor {
        /// Offset in the input.
        at: usize,
        /// What was wrong.
        reason: String,
    },
    /// A decoded record lies outside the path the request targeted.
    #[error("{path} is outside the target {base}")]
    OutsideTarget {
        /// The record's path.
        path: Path,
        /// The request path.
        base: Path,
    },
    /// The format carries one resource value only and the data is not that.
    #[error("content format {0} carries a single resource value only")]
    SingleResourceOnly(ContentFormat),
    /// The content format is not one LwM2M data can be carried in.
    #[error("content format {0} is not supported for LwM2M data")]
    UnsupportedFormat(u16),
    /// There is nothing to encode.
    #[error("no records to encode")]
    Empty,
}

/// Encodes `records`, all at or below `base` (the request's path), in `format`.
pub fn encode(format: ContentFormat, base: &Path, records: &[Record]) -> Result<Vec<u8>, ContentError> {
    check_targets(base, records)?;
    match format {
        ContentFormat::Tlv => tlv::encode(base, records),
        ContentFormat::SenmlJson => senml::encode_json(records),
        ContentFormat::SenmlCbor => senml::encode_cbor(records),
        ContentFormat::Text => text::encode_text(records),
        ContentFormat::Opaque => text::encode_opaque(records),
        ContentFormat::LinkFormat => Err(ContentError::UnsupportedFormat(format.code())),
    }
}

/// Decodes a payload in `format` sent to (or read from) `base`.
///
/// Every record must lie at or below `base`; TLV and text take their paths from `base`.
pub fn decode(
    format: ContentFormat,
    base: &Path,
    payload: &[u8],
    types: &dyn TypeLookup,
) -> Result<Vec<Record>, ContentError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(ContentError::TooLarge(payload.len()));
    }
    let records = match format {
        ContentFormat::Tlv => tlv::decode(base, payload, types)?,
        ContentFormat::SenmlJson => senml::decode_json(payload, types)?,
        ContentFormat::SenmlCbor => senml::decode_cbor(payload, types)?,
        ContentFormat::Text => text::decode_text(base, payload, types)?,
        ContentFormat::Opaque => text::decode_opaque(base, payload, types)?,
        ContentFormat::LinkFormat => return Err(ContentError::UnsupportedFormat(format.code())),
    };
    check_targets(base, &records)?;
    Ok(records)
}

fn check_targets(base: &Path, records: &[Record]) -> Result<(), ContentError> {
    if records.len() > MAX_RECORDS {
        return Err(ContentError::TooManyRecords);
    }
    match records.iter().find(|r| !base.contains(&r.path)) {
        Some(r) => Err(ContentError::OutsideTarget {
            path: r.path,
            base: *base,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
