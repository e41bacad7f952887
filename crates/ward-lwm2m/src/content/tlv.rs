//! OMA-TLV (content format 11542), LwM2M 1.1 Core §7.4.3.
//!
//! Each entry is a type byte (kind in bits 7-6, 16-bit id flag in bit 5, length-field size in
//! bits 4-3, short length in bits 2-0), an 8/16-bit id, a 0-3 byte length and the value. The
//! structure allows at most three levels (object instance → multiple resource → resource
//! instance); anything else is rejected, so nesting is bounded by construction.

use std::collections::BTreeMap;

use super::{ContentError, MAX_RECORDS, ObjLink, Path, Record, ResourceType, TypeLookup, Value};

/// The four TLV entry kinds (bits 7-6 of the type byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ObjectInstance = 0,
    ResourceInstance = 1,
    MultipleResource = 2,
    Resource = 3,
}

/// One parsed entry, its value still raw.
struct Entry<'a> {
    kind: Kind,
    id: u16,
    value: &'a [u8],
    /// Offset of the header in the whole payload, for error messages.
    at: usize,
    /// Offset of the value in the whole payload.
    value_at: usize,
}

/// Where a run of entries sits in the structure.
#[derive(Clone, Copy)]
enum Level {
    /// The payload's top level; the request path decides what is allowed.
    Top(Path),
    /// Inside an object-instance entry.
    Instance(Path),
    /// Inside a multiple-resource entry.
    Multiple(Path),
}

/// Decodes a TLV payload sent to or read from `base`.
pub fn decode(base: &Path, payload: &[u8], types: &dyn TypeLookup) -> Result<Vec<Record>, ContentError> {
    let mut out = Vec::new();
    decode_level(payload, 0, Level::Top(*base), types, &mut out)?;
    Ok(out)
}

fn decode_level(
    buf: &[u8],
    offset: usize,
    level: Level,
    types: &dyn TypeLookup,
    out: &mut Vec<Record>,
) -> Result<(), ContentError> {
    for entry in parse_entries(buf, offset)? {
        match entry.kind {
            Kind::ObjectInstance => {
                let path = instance_target(level, &entry)?;
                decode_level(entry.value, entry.value_at, Level::Instance(path), types, out)?;
            }
            Kind::Resource => {
                let path = resource_target(level, &entry)?;
                push(out, Record::new(path, decode_value(&path, entry.value, types)?))?;
            }
            Kind::MultipleResource => {
                let path = resource_target(level, &entry)?;
                decode_level(entry.value, entry.value_at, Level::Multiple(path), types, out)?;
            }
            Kind::ResourceInstance => {
                let path = resource_instance_target(level, &entry)?;
                push(out, Record::new(path, decode_value(&path, entry.value, types)?))?;
            }
        }
    }
    Ok(())
}

fn push(out: &mut Vec<Record>, record: Record) -> Result<(), ContentError> {
    if out.len() >= MAX_RECORDS {
        return Err(ContentError::TooManyRecords);
    }
    out.push(record);
    Ok(())
}

fn nesting(entry: &Entry<'_>, reason: &'static str) -> ContentError {
    ContentError::InvalidNesting { at: entry.at, reason }
}

fn instance_target(level: Level, entry: &Entry<'_>) -> Result<Path, ContentError> {
    match level {
        Level::Top(base) if base.depth() == 1 => base
            .child(entry.id)
            .ok_or_else(|| nesting(entry, "object instance below an object")),
        Level::Top(base) if base.depth() == 2 && base.instance_id() == Some(entry.id) => Ok(base),
        Level::Top(_) => Err(nesting(entry, "object instance does not match the target path")),
        _ => Err(nesting(entry, "object instance nested inside another entry")),
    }
}

fn resource_target(level: Level, entry: &Entry<'_>) -> Result<Path, ContentError> {
    let parent = match level {
        Level::Top(base) if base.depth() == 2 => base,
        Level::Top(base) if base.depth() == 3 && base.resource_id() == Some(entry.id) => {
            return Ok(base);
        }
        Level::Top(_) => return Err(nesting(entry, "resource does not match the target path")),
        Level::Instance(instance) => instance,
        Level::Multiple(_) => return Err(nesting(entry, "resource nested inside a multiple resource")),
    };
    parent
        .child(entry.id)
        .ok_or_else(|| nesting(entry, "resource below a resource"))
}

fn resource_instance_target(level: Level, entry: &Entry<'_>) -> Result<Path, ContentError> {
    let parent = match level {
        Level::Top(base) if base.depth() == 3 => base,
        Level::Top(base) if base.depth() == 4 && base.resource_instance_id() == Some(entry.id) => {
            return Ok(base);
        }
        Level::Top(_) => return Err(nesting(entry, "resource instance does not match the target path")),
        Level::Multiple(resource) => resource,
        Level::Instance(_) => {
            return Err(nesting(
                entry,
                "resource instance directly inside an object instance",
            ));
        }
    };
    parent
        .child(entry.id)
        .ok_or_else(|| nesting(entry, "resource instance below a resource instance"))
}

/// Splits `buf` into entries, checking every header and length against what remains.
fn parse_entries(buf: &[u8], offset: usize) -> Result<Vec<Entry<'_>>, ContentError> {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        if entries.len() >= MAX_RECORDS {
            return Err(ContentError::TooManyRecords);
        }
        let (entry, next) = parse_entry(buf, pos, offset)?;
        entries.push(entry);
        pos = next;
    }
    Ok(entries)
}

fn parse_entry(buf: &[u8], start: usize, offset: usize) -> Result<(Entry<'_>, usize), ContentError> {
    let at = offset + start;
    let truncated = |p: usize| ContentError::Truncated(offset + p);
    let type_byte = *buf.get(start).ok_or_else(|| truncated(start))?;
    let kind = match type_byte >> 6 {
        0 => Kind::ObjectInstance,
        1 => Kind::ResourceInstance,
        2 => Kind::MultipleResource,
        _ => Kind::Resource,
    };
    let id_len = if type_byte & 0x20 != 0 { 2 } else { 1 };
    let len_len = usize::from((type_byte >> 3) & 0x03);
    let mut pos = start + 1;
    let id_bytes = buf.get(pos..pos + id_len).ok_or_else(|| truncated(pos))?;
    let id = id_bytes.iter().fold(0u16, |acc, b| (acc << 8) | u16::from(*b));
    pos += id_len;
    let len = if len_len == 0 {
        usize::from(type_byte & 0x07)
    } else {
        let len_bytes = buf.get(pos..pos + len_len).ok_or_else(|| truncated(pos))?;
        pos += len_len;
        len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let left = buf.len() - pos;
    if len > left {
        return Err(ContentError::LengthPastEnd { at, len, left });
    }
    let value = &buf[pos..pos + len];
    Ok((
        Entry {
            kind,
            id,
            value,
            at,
            value_at: offset + pos,
        },
        pos + len,
    ))
}

fn decode_value(path: &Path, raw: &[u8], types: &dyn TypeLookup) -> Result<Value, ContentError> {
    let kind = lookup(types, path);
    let invalid = |reason: String| ContentError::InvalidValue { path: *path, reason };
    match kind {
        ResourceType::Integer => decode_int(raw)
            .map(Value::Integer)
            .ok_or_else(|| bad_len(path, raw, "1, 2, 4 or 8")),
        ResourceType::Time => decode_int(raw)
            .map(Value::Time)
            .ok_or_else(|| bad_len(path, raw, "1, 2, 4 or 8")),
        ResourceType::Float => match raw.len() {
            4 => Ok(Value::Float(f64::from(f32::from_be_bytes([
                raw[0], raw[1], raw[2], raw[3],
            ])))),
            8 => Ok(Value::Float(f64::from_be_bytes(array8(raw)))),
            _ => Err(bad_len(path, raw, "4 or 8")),
        },
        ResourceType::Boolean => match raw {
            [0] => Ok(Value::Bool(false)),
            [1] => Ok(Value::Bool(true)),
            [b] => Err(invalid(format!("boolean byte {b} is neither 0 nor 1"))),
            _ => Err(bad_len(path, raw, "1")),
        },
        ResourceType::String => String::from_utf8(raw.to_vec())
            .map(Value::String)
            .map_err(|_| ContentError::InvalidUtf8(*path)),
        ResourceType::ObjLink => match raw {
            [a, b, c, d] => Ok(Value::ObjLink(ObjLink {
                object: u16::from_be_bytes([*a, *b]),
                instance: u16::from_be_bytes([*c, *d]),
            })),
            _ => Err(bad_len(path, raw, "4")),
        },
        ResourceType::Opaque | ResourceType::None => Ok(Value::Opaque(raw.to_vec())),
    }
}

/// The declared type of the resource at `path`; unknown resources are read as opaque.
pub(crate) fn lookup(types: &dyn TypeLookup, path: &Path) -> ResourceType {
    path.resource_id()
        .and_then(|r| types.resource_type(path.object_id(), r))
        .unwrap_or(ResourceType::Opaque)
}

fn bad_len(path: &Path, raw: &[u8], allowed: &str) -> ContentError {
    ContentError::InvalidValue {
        path: *path,
        reason: format!("length {} is not {allowed}", raw.len()),
    }
}

fn array8(raw: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&raw[..8]);
    a
}

fn decode_int(raw: &[u8]) -> Option<i64> {
    match raw.len() {
        1 => Some(i64::from(i8::from_be_bytes([raw[0]]))),
        2 => Some(i64::from(i16::from_be_bytes([raw[0], raw[1]]))),
        4 => Some(i64::from(i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]))),
        8 => Some(i64::from_be_bytes(array8(raw))),
        _ => None,
    }
}

/// One resource's content, grouped for encoding.
enum Slot<'a> {
    Single(&'a Value),
    Multiple(BTreeMap<u16, &'a Value>),
}

/// Encodes records at or below `base` as TLV, shaped by the depth of `base`.
pub fn encode(base: &Path, records: &[Record]) -> Result<Vec<u8>, ContentError> {
    let grouped = group(records)?;
    let mut out = Vec::new();
    match base.depth() {
        1 => {
            for (instance, resources) in &grouped {
                let inner = encode_resources(resources)?;
                write_entry(&mut out, Kind::ObjectInstance, *instance, &inner)?;
            }
        }
        2 | 3 => {
            for resources in grouped.values() {
                out.extend(encode_resources(resources)?);
            }
        }
        _ => {
            for record in records {
                let id = record.path.resource_instance_id().unwrap_or_default();
                write_entry(&mut out, Kind::ResourceInstance, id, &encode_value(&record.value))?;
            }
        }
    }
    Ok(out)
}

type Grouped<'a> = BTreeMap<u16, BTreeMap<u16, Slot<'a>>>;

fn group(records: &[Record]) -> Result<Grouped<'_>, ContentError> {
    let mut grouped: Grouped<'_> = BTreeMap::new();
    for record in records {
        let path = &record.path;
        let (Some(instance), Some(resource)) = (path.instance_id(), path.resource_id()) else {
            return Err(ContentError::InvalidValue {
                path: *path,
                reason: "not a resource path".into(),
            });
        };
        let slots = grouped.entry(instance).or_default();
        let mixed = || ContentError::InvalidValue {
            path: *path,
            reason: "resource given both as single value and as instances".into(),
        };
        match (path.resource_instance_id(), slots.get_mut(&resource)) {
            (None, None) => {
                slots.insert(resource, Slot::Single(&record.value));
            }
            (Some(ri), None) => {
                slots.insert(resource, Slot::Multiple(BTreeMap::from([(ri, &record.value)])));
            }
            (Some(ri), Some(Slot::Multiple(map))) => {
                map.insert(ri, &record.value);
            }
            _ => return Err(mixed()),
        }
    }
    Ok(grouped)
}

fn encode_resources(resources: &BTreeMap<u16, Slot<'_>>) -> Result<Vec<u8>, ContentError> {
    let mut out = Vec::new();
    for (id, slot) in resources {
        match slot {
            Slot::Single(value) => write_entry(&mut out, Kind::Resource, *id, &encode_value(value))?,
            Slot::Multiple(instances) => {
                let mut inner = Vec::new();
                for (ri, value) in instances {
                    write_entry(&mut inner, Kind::ResourceInstance, *ri, &encode_value(value))?;
                }
                write_entry(&mut out, Kind::MultipleResource, *id, &inner)?;
            }
        }
    }
    Ok(out)
}

fn write_entry(out: &mut Vec<u8>, kind: Kind, id: u16, value: &[u8]) -> Result<(), ContentError> {
    let len = value.len();
    let mut type_byte = (kind as u8) << 6;
    if id > 0xFF {
        type_byte |= 0x20;
    }
    let len_bytes: &[u8] = &len.to_be_bytes();
    let len_field = match len {
        0..=7 => {
            type_byte |= len as u8;
            &[][..]
        }
        8..=0xFF => {
            type_byte |= 0x08;
            &len_bytes[len_bytes.len() - 1..]
        }
        0x100..=0xFFFF => {
            type_byte |= 0x10;
            &len_bytes[len_bytes.len() - 2..]
        }
        0x1_0000..=0xFF_FFFF => {
            type_byte |= 0x18;
            &len_bytes[len_bytes.len() - 3..]
        }
        _ => return Err(ContentError::TooLarge(len)),
    };
    out.push(type_byte);
    if id > 0xFF {
        out.extend_from_slice(&id.to_be_bytes());
    } else {
        out.push(id as u8);
    }
    out.extend_from_slice(len_field);
    out.extend_from_slice(value);
    Ok(())
}

fn encode_value(value: &Value) -> Vec<u8> {
    match value {
        Value::Integer(v) | Value::Time(v) => encode_int(*v),
        Value::Float(v) => v.to_be_bytes().to_vec(),
        Value::Bool(b) => vec![u8::from(*b)],
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Opaque(b) => b.clone(),
        Value::ObjLink(l) => [l.object.to_be_bytes(), l.instance.to_be_bytes()].concat(),
    }
}

fn encode_int(v: i64) -> Vec<u8> {
    if let Ok(b) = i8::try_from(v) {
        b.to_be_bytes().to_vec()
    } else if let Ok(s) = i16::try_from(v) {
        s.to_be_bytes().to_vec()
    } else if let Ok(w) = i32::try_from(v) {
        w.to_be_bytes().to_vec()
    } else {
        v.to_be_bytes().to_vec()
    }
}
