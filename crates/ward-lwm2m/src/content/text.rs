//! Plain text (content format 0) and opaque (42): one resource value, no structure.
//!
//! Text follows LwM2M 1.1 Core §7.4.1: integers and times in decimal, floats in decimal,
//! booleans as `0`/`1`, object links as `object:instance`, opaque as base64.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::tlv::lookup;
use super::{ContentError, ContentFormat, ObjLink, Path, Record, ResourceType, TypeLookup, Value};

/// The one record a single-value format can carry.
fn single(records: &[Record], format: ContentFormat) -> Result<&Record, ContentError> {
    match records {
        [] => Err(ContentError::Empty),
        [one] => Ok(one),
        _ => Err(ContentError::SingleResourceOnly(format)),
    }
}

/// The resource path a single-value payload is aimed at.
fn single_target(base: &Path, format: ContentFormat) -> Result<Path, ContentError> {
    if base.is_resource_level() {
        Ok(*base)
    } else {
        Err(ContentError::SingleResourceOnly(format))
    }
}

/// Encodes one record as plain text.
pub fn encode_text(records: &[Record]) -> Result<Vec<u8>, ContentError> {
    let record = single(records, ContentFormat::Text)?;
    let text = match &record.value {
        Value::Integer(v) | Value::Time(v) => v.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::String(s) => s.clone(),
        Value::Opaque(b) => STANDARD.encode(b),
        Value::ObjLink(l) => l.to_string(),
    };
    Ok(text.into_bytes())
}

/// Decodes a plain-text value for the resource at `base`.
pub fn decode_text(base: &Path, payload: &[u8], types: &dyn TypeLookup) -> Result<Vec<Record>, ContentError> {
    let path = single_target(base, ContentFormat::Text)?;
    let text = std::str::from_utf8(payload).map_err(|_| ContentError::InvalidUtf8(path))?;
    let kind = lookup(types, &path);
    let invalid = || ContentError::InvalidValue {
        path,
        reason: format!("{text:?} is not a valid {kind}"),
    };
    let value = match kind {
        ResourceType::String => Value::String(text.to_owned()),
        ResourceType::Integer => Value::Integer(text.trim().parse().map_err(|_| invalid())?),
        ResourceType::Time => Value::Time(text.trim().parse().map_err(|_| invalid())?),
        ResourceType::Float => Value::Float(text.trim().parse().map_err(|_| invalid())?),
        ResourceType::Boolean => match text.trim() {
            "0" => Value::Bool(false),
            "1" => Value::Bool(true),
            _ => return Err(invalid()),
        },
        ResourceType::ObjLink => Value::ObjLink(text.trim().parse::<ObjLink>().map_err(|_| invalid())?),
        ResourceType::Opaque | ResourceType::None => {
            Value::Opaque(STANDARD.decode(text.trim()).map_err(|_| invalid())?)
        }
    };
    Ok(vec![Record::new(path, value)])
}

/// Encodes one opaque record as raw bytes.
pub fn encode_opaque(records: &[Record]) -> Result<Vec<u8>, ContentError> {
    let record = single(records, ContentFormat::Opaque)?;
    match &record.value {
        Value::Opaque(b) => Ok(b.clone()),
        _ => Err(ContentError::WrongType {
            path: record.path,
            expected: ResourceType::Opaque,
        }),
    }
}

/// Decodes raw bytes for the opaque resource at `base`.
pub fn decode_opaque(
    base: &Path,
    payload: &[u8],
    types: &dyn TypeLookup,
) -> Result<Vec<Record>, ContentError> {
    let path = single_target(base, ContentFormat::Opaque)?;
    match lookup(types, &path) {
        ResourceType::Opaque | ResourceType::None => {
            Ok(vec![Record::new(path, Value::Opaque(payload.to_vec()))])
        }
        other => Err(ContentError::WrongType {
            path,
            expected: other,
        }),
    }
}
