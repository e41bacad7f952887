//! SenML (RFC 8428) in JSON (content format 110) and CBOR (112), as LwM2M 1.1 Core §7.4.4-5 uses it.
//!
//! Fields understood: `bn`, `bt`, `n`, `t`, `v`, `vs`, `vb`, `vd` and LwM2M's `vlo`. A record's
//! name is the latest base name plus its own name (`"/3/0/" + "9"`), and must be a resource or
//! resource-instance path. Unknown labels are skipped unless they end in `_` (must-understand,
//! RFC 8428 §4.4), which is an error. Numbers are typed through the [`TypeLookup`].

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use minicbor::data::Type;
use minicbor::{Decoder, Encoder};
use serde_json::{Map, Number, Value as Json};

use super::{ContentError, MAX_DEPTH, MAX_RECORDS, ObjLink, Path, Record, ResourceType, TypeLookup, Value};

/// CBOR labels (RFC 8428 §6 and LwM2M's text label for `vlo`).
mod label {
    pub const BASE_NAME: i64 = -2;
    pub const BASE_TIME: i64 = -3;
    pub const NAME: i64 = 0;
    pub const VALUE: i64 = 2;
    pub const STRING: i64 = 3;
    pub const BOOL: i64 = 4;
    pub const TIME: i64 = 6;
    pub const DATA: i64 = 8;
    pub const OBJLNK: &str = "vlo";
}

/// A SenML number before the resource type decides what it is.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

/// A value field before typing.
#[derive(Debug, Clone)]
enum Raw {
    Num(Num),
    Str(String),
    Bool(bool),
    Data(Vec<u8>),
    Link(String),
}

/// One SenML record as written, before base-field resolution.
#[derive(Debug, Default)]
struct RawRecord {
    base_name: Option<String>,
    base_time: Option<f64>,
    name: Option<String>,
    time: Option<f64>,
    value: Option<Raw>,
}

impl RawRecord {
    fn set_value(&mut self, index: usize, raw: Raw) -> Result<(), ContentError> {
        if self.value.replace(raw).is_some() {
            return Err(ContentError::BadRecord {
                index,
                reason: "more than one value field".into(),
            });
        }
        Ok(())
    }
}

/// Resolves base fields and types every record.
fn resolve(raw: Vec<RawRecord>, types: &dyn TypeLookup) -> Result<Vec<Record>, ContentError> {
    let mut base_name = String::new();
    let mut base_time = 0.0;
    let mut out = Vec::with_capacity(raw.len());
    for (index, record) in raw.into_iter().enumerate() {
        if let Some(bn) = record.base_name {
            base_name = bn;
        }
        if let Some(bt) = record.base_time {
            base_time = bt;
        }
        let name = format!("{base_name}{}", record.name.as_deref().unwrap_or(""));
        let path: Path = match name.parse::<Path>() {
            Ok(p) if p.is_resource_level() => p,
            _ => return Err(ContentError::UnresolvableName { index, name }),
        };
        let raw_value = record.value.ok_or(ContentError::MissingValue { index })?;
        let value = typed(&path, raw_value, types)?;
        let time = if record.time.is_none() && base_time == 0.0 {
            None
        } else {
            Some(base_time + record.time.unwrap_or(0.0))
        };
        out.push(Record { path, value, time });
    }
    Ok(out)
}

fn typed(path: &Path, raw: Raw, types: &dyn TypeLookup) -> Result<Value, ContentError> {
    let declared = path
        .resource_id()
        .and_then(|r| types.resource_type(path.object_id(), r));
    let Some(expected) = declared else {
        return Ok(untyped(raw));
    };
    let wrong = || ContentError::WrongType {
        path: *path,
        expected,
    };
    match (expected, raw) {
        (ResourceType::Integer, Raw::Num(n)) => integral(path, n).map(Value::Integer),
        (ResourceType::Time, Raw::Num(n)) => integral(path, n).map(Value::Time),
        (ResourceType::Float, Raw::Num(Num::Int(i))) => Ok(Value::Float(i as f64)),
        (ResourceType::Float, Raw::Num(Num::Float(f))) => Ok(Value::Float(f)),
        (ResourceType::Boolean, Raw::Bool(b)) => Ok(Value::Bool(b)),
        (ResourceType::String, Raw::Str(s)) => Ok(Value::String(s)),
        (ResourceType::Opaque | ResourceType::None, Raw::Data(d)) => Ok(Value::Opaque(d)),
        (ResourceType::ObjLink, Raw::Link(l)) => {
            l.parse::<ObjLink>()
                .map(Value::ObjLink)
                .map_err(|_| ContentError::InvalidValue {
                    path: *path,
                    reason: format!("{l:?} is not an object link"),
                })
        }
        _ => Err(wrong()),
    }
}

fn untyped(raw: Raw) -> Value {
    match raw {
        Raw::Num(Num::Int(i)) => Value::Integer(i),
        Raw::Num(Num::Float(f)) => Value::Float(f),
        Raw::Str(s) => Value::String(s),
        Raw::Bool(b) => Value::Bool(b),
        Raw::Data(d) => Value::Opaque(d),
        Raw::Link(l) => l
            .parse::<ObjLink>()
            .map(Value::ObjLink)
            .unwrap_or(Value::String(l)),
    }
}

fn integral(path: &Path, n: Num) -> Result<i64, ContentError> {
    match n {
        Num::Int(i) => Ok(i),
        // 2^63 as f64 is exactly representable; values at or above it do not fit.
        Num::Float(f) if f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63) => Ok(f as i64),
        Num::Float(f) => Err(ContentError::InvalidValue {
            path: *path,
            reason: format!("{f} is not an integer in range"),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Decodes SenML-JSON.
pub fn decode_json(payload: &[u8], types: &dyn TypeLookup) -> Result<Vec<Record>, ContentError> {
    let json: Json = serde_json::from_slice(payload).map_err(|e| ContentError::Json(e.to_string()))?;
    check_json_depth(&json, 0)?;
    let Json::Array(items) = json else {
        return Err(ContentError::Json("top level is not an array".into()));
    };
    if items.len() > MAX_RECORDS {
        return Err(ContentError::TooManyRecords);
    }
    let raw = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| json_record(i, item))
        .collect::<Result<_, _>>()?;
    resolve(raw, types)
}

fn check_json_depth(json: &Json, depth: usize) -> Result<(), ContentError> {
    if depth > MAX_DEPTH {
        return Err(ContentError::TooDeep);
    }
    match json {
        Json::Array(items) => items.iter().try_for_each(|j| check_json_depth(j, depth + 1)),
        Json::Object(map) => map.values().try_for_each(|j| check_json_depth(j, depth + 1)),
        _ => Ok(()),
    }
}

fn json_record(index: usize, item: Json) -> Result<RawRecord, ContentError> {
    let Json::Object(map) = item else {
        return Err(ContentError::BadRecord {
            index,
            reason: "record is not an object".into(),
        });
    };
    let bad = |field: &str, want: &str| ContentError::BadRecord {
        index,
        reason: format!("{field} must be {want}"),
    };
    let mut record = RawRecord::default();
    for (key, value) in map {
        match (key.as_str(), value) {
            ("bn", Json::String(s)) => record.base_name = Some(s),
            ("bt", Json::Number(n)) => record.base_time = Some(json_f64(&n)),
            ("n", Json::String(s)) => record.name = Some(s),
            ("t", Json::Number(n)) => record.time = Some(json_f64(&n)),
            ("v", Json::Number(n)) => record.set_value(index, Raw::Num(json_num(&n)))?,
            ("vs", Json::String(s)) => record.set_value(index, Raw::Str(s))?,
            ("vb", Json::Bool(b)) => record.set_value(index, Raw::Bool(b))?,
            ("vd", Json::String(s)) => record.set_value(index, Raw::Data(base64_decode(index, &s)?))?,
            ("vlo", Json::String(s)) => record.set_value(index, Raw::Link(s))?,
            ("bn" | "n" | "vs" | "vd" | "vlo", _) => return Err(bad(&key, "a string")),
            ("bt" | "t" | "v", _) => return Err(bad(&key, "a number")),
            ("vb", _) => return Err(bad(&key, "a boolean")),
            (other, _) if other.ends_with('_') => {
                return Err(ContentError::MustUnderstand {
                    index,
                    label: other.to_owned(),
                });
            }
            _ => {}
        }
    }
    Ok(record)
}

fn json_num(n: &Number) -> Num {
    match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => Num::Int(i),
        (None, Some(f)) => Num::Float(f),
        (None, None) => Num::Float(f64::NAN),
    }
}

fn json_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

fn base64_decode(index: usize, s: &str) -> Result<Vec<u8>, ContentError> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .or_else(|_| STANDARD.decode(s))
        .map_err(|_| ContentError::BadRecord {
            index,
            reason: "vd is not base64".into(),
        })
}

/// The base name to factor out (the common object instance), and each record's name under it.
fn names(records: &[Record]) -> (Option<String>, Vec<String>) {
    let instance = |r: &Record| {
        r.path
            .instance_id()
            .map(|i| Path::instance(r.path.object_id(), i))
    };
    let first = records.first().and_then(instance);
    let common = first.filter(|f| records.iter().all(|r| instance(r).as_ref() == Some(f)));
    match common {
        Some(base) => {
            let prefix = format!("{base}/");
            let names = records
                .iter()
                .map(|r| {
                    r.path
                        .to_string()
                        .strip_prefix(&prefix)
                        .map(str::to_owned)
                        .unwrap_or_default()
                })
                .collect();
            (Some(prefix), names)
        }
        None => (None, records.iter().map(|r| r.path.to_string()).collect()),
    }
}

/// Encodes records as SenML-JSON.
pub fn encode_json(records: &[Record]) -> Result<Vec<u8>, ContentError> {
    let (base, names) = names(records);
    let mut out = Vec::with_capacity(records.len());
    for (i, (record, name)) in records.iter().zip(names).enumerate() {
        let mut map = Map::new();
        if let (0, Some(bn)) = (i, &base) {
            map.insert("bn".into(), Json::String(bn.clone()));
        }
        map.insert("n".into(), Json::String(name));
        if let Some(t) = record.time {
            map.insert("t".into(), json_float(&record.path, t)?);
        }
        let (key, value) = match &record.value {
            Value::Integer(v) | Value::Time(v) => ("v", Json::Number((*v).into())),
            Value::Float(f) => ("v", json_float(&record.path, *f)?),
            Value::Bool(b) => ("vb", Json::Bool(*b)),
            Value::String(s) => ("vs", Json::String(s.clone())),
            Value::Opaque(d) => ("vd", Json::String(URL_SAFE_NO_PAD.encode(d))),
            Value::ObjLink(l) => ("vlo", Json::String(l.to_string())),
        };
        map.insert(key.into(), value);
        out.push(Json::Object(map));
    }
    serde_json::to_vec(&Json::Array(out)).map_err(|e| ContentError::Json(e.to_string()))
}

fn json_float(path: &Path, f: f64) -> Result<Json, ContentError> {
    Number::from_f64(f)
        .map(Json::Number)
        .ok_or_else(|| ContentError::InvalidValue {
            path: *path,
            reason: format!("{f} cannot be written in JSON"),
        })
}

// ---------------------------------------------------------------------------------------------
// CBOR

fn cbor_err(d: &Decoder<'_>, reason: impl std::fmt::Display) -> ContentError {
    ContentError::Cbor {
        at: d.position(),
        reason: reason.to_string(),
    }
}

/// Decodes SenML-CBOR.
pub fn decode_cbor(payload: &[u8], types: &dyn TypeLookup) -> Result<Vec<Record>, ContentError> {
    let mut d = Decoder::new(payload);
    let len = d.array().map_err(|e| cbor_err(&d, e))?;
    let mut raw = Vec::new();
    match len {
        Some(n) if n > MAX_RECORDS as u64 => return Err(ContentError::TooManyRecords),
        Some(n) => {
            for index in 0..n as usize {
                raw.push(cbor_record(&mut d, index)?);
            }
        }
        None => {
            while !at_break(&mut d)? {
                if raw.len() >= MAX_RECORDS {
                    return Err(ContentError::TooManyRecords);
                }
                raw.push(cbor_record(&mut d, raw.len())?);
            }
        }
    }
    if d.position() != payload.len() {
        return Err(cbor_err(&d, "trailing bytes after the record array"));
    }
    resolve(raw, types)
}

/// If the next item is a "break" (end of an indefinite container), consumes it and says so.
fn at_break(d: &mut Decoder<'_>) -> Result<bool, ContentError> {
    match d.datatype().map_err(|e| cbor_err(d, e))? {
        Type::Break => {
            d.set_position(d.position() + 1);
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A map key: SenML uses integer labels, LwM2M adds text ones.
enum Key {
    Int(i64),
    Text(String),
}

fn cbor_record(d: &mut Decoder<'_>, index: usize) -> Result<RawRecord, ContentError> {
    let len = d.map().map_err(|e| cbor_err(d, e))?;
    let mut record = RawRecord::default();
    let mut seen = 0u64;
    loop {
        match len {
            Some(n) if seen == n => break,
            None if at_break(d)? => break,
            _ => {}
        }
        seen += 1;
        if seen > 64 {
            return Err(ContentError::BadRecord {
                index,
                reason: "more than 64 fields".into(),
            });
        }
        let key = cbor_key(d)?;
        cbor_field(d, index, key, &mut record)?;
    }
    Ok(record)
}

fn cbor_key(d: &mut Decoder<'_>) -> Result<Key, ContentError> {
    match d.datatype().map_err(|e| cbor_err(d, e))? {
        Type::String => d
            .str()
            .map(|s| Key::Text(s.to_owned()))
            .map_err(|e| cbor_err(d, e)),
        Type::U8 | Type::U16 | Type::U32 | Type::U64 | Type::I8 | Type::I16 | Type::I32 | Type::I64 => {
            d.i64().map(Key::Int).map_err(|e| cbor_err(d, e))
        }
        other => Err(cbor_err(d, format!("map key of type {other}"))),
    }
}

fn cbor_field(
    d: &mut Decoder<'_>,
    index: usize,
    key: Key,
    record: &mut RawRecord,
) -> Result<(), ContentError> {
    let bad = |d: &Decoder<'_>, e: minicbor::decode::Error| ContentError::BadRecord {
        index,
        reason: format!("at byte {}: {e}", d.position()),
    };
    match key {
        Key::Int(label::BASE_NAME) => record.base_name = Some(d.str().map_err(|e| bad(d, e))?.to_owned()),
        Key::Int(label::BASE_TIME) => record.base_time = Some(cbor_num(d, index)?.as_f64()),
        Key::Int(label::NAME) => record.name = Some(d.str().map_err(|e| bad(d, e))?.to_owned()),
        Key::Int(label::TIME) => record.time = Some(cbor_num(d, index)?.as_f64()),
        Key::Int(label::VALUE) => record.set_value(index, Raw::Num(cbor_num(d, index)?))?,
        Key::Int(label::STRING) => {
            record.set_value(index, Raw::Str(d.str().map_err(|e| bad(d, e))?.to_owned()))?
        }
        Key::Int(label::BOOL) => record.set_value(index, Raw::Bool(d.bool().map_err(|e| bad(d, e))?))?,
        Key::Int(label::DATA) => {
            record.set_value(index, Raw::Data(d.bytes().map_err(|e| bad(d, e))?.to_vec()))?
        }
        Key::Text(t) if t == label::OBJLNK => {
            record.set_value(index, Raw::Link(d.str().map_err(|e| bad(d, e))?.to_owned()))?
        }
        Key::Text(t) if t.ends_with('_') => return Err(ContentError::MustUnderstand { index, label: t }),
        Key::Int(_) | Key::Text(_) => skip(d, 0)?,
    }
    Ok(())
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

fn cbor_num(d: &mut Decoder<'_>, index: usize) -> Result<Num, ContentError> {
    let bad = |d: &Decoder<'_>, reason: String| ContentError::BadRecord {
        index,
        reason: format!("at byte {}: {reason}", d.position()),
    };
    match d.datatype().map_err(|e| cbor_err(d, e))? {
        Type::U8 | Type::U16 | Type::U32 | Type::I8 | Type::I16 | Type::I32 | Type::I64 => {
            d.i64().map(Num::Int).map_err(|e| bad(d, e.to_string()))
        }
        Type::U64 => {
            let v = d.u64().map_err(|e| bad(d, e.to_string()))?;
            Ok(i64::try_from(v).map(Num::Int).unwrap_or(Num::Float(v as f64)))
        }
        Type::F16 => half(d).map(|f| Num::Float(f64::from(f))),
        Type::F32 => d
            .f32()
            .map(|f| Num::Float(f64::from(f)))
            .map_err(|e| bad(d, e.to_string())),
        Type::F64 => d.f64().map(Num::Float).map_err(|e| bad(d, e.to_string())),
        other => Err(bad(d, format!("expected a number, found {other}"))),
    }
}

/// Decodes an IEEE 754 half-precision float (CBOR major type 7, info 25) by hand.
fn half(d: &mut Decoder<'_>) -> Result<f32, ContentError> {
    let pos = d.position();
    let bytes = d
        .input()
        .get(pos + 1..pos + 3)
        .ok_or(ContentError::Truncated(pos))?;
    let bits = u16::from_be_bytes([bytes[0], bytes[1]]);
    d.set_position(pos + 3);
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1F);
    let mant = f32::from(bits & 0x3FF);
    let magnitude = match exp {
        0 => mant * 2f32.powi(-24),
        31 if mant == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + mant / 1024.0) * 2f32.powi(e - 15),
    };
    Ok(sign * magnitude)
}

/// Skips one item of an unknown field, refusing nesting deeper than [`MAX_DEPTH`].
fn skip(d: &mut Decoder<'_>, depth: usize) -> Result<(), ContentError> {
    if depth > MAX_DEPTH {
        return Err(ContentError::TooDeep);
    }
    let container = |len: Option<u64>, per: u64, d: &mut Decoder<'_>| -> Result<(), ContentError> {
        match len {
            Some(n) => {
                let items = n.checked_mul(per).filter(|m| *m <= d.input().len() as u64);
                let items = items.ok_or_else(|| cbor_err(d, "container longer than the input"))?;
                (0..items).try_for_each(|_| skip(d, depth + 1))
            }
            None => {
                while !at_break(d)? {
                    skip(d, depth + 1)?;
                }
                Ok(())
            }
        }
    };
    match d.datatype().map_err(|e| cbor_err(d, e))? {
        Type::Array | Type::ArrayIndef => {
            let len = d.array().map_err(|e| cbor_err(d, e))?;
            container(len, 1, d)
        }
        Type::Map | Type::MapIndef => {
            let len = d.map().map_err(|e| cbor_err(d, e))?;
            container(len, 2, d)
        }
        Type::Tag => {
            d.tag().map_err(|e| cbor_err(d, e))?;
            skip(d, depth + 1)
        }
        Type::F16 => half(d).map(|_| ()),
        _ => d.skip().map_err(|e| cbor_err(d, e)),
    }
}

/// Encodes records as SenML-CBOR.
pub fn encode_cbor(records: &[Record]) -> Result<Vec<u8>, ContentError> {
    let (base, names) = names(records);
    let mut e = Encoder::new(Vec::new());
    let fail = |e: minicbor::encode::Error<core::convert::Infallible>| ContentError::Cbor {
        at: 0,
        reason: e.to_string(),
    };
    e.array(records.len() as u64).map_err(fail)?;
    for (i, (record, name)) in records.iter().zip(names).enumerate() {
        let with_base = i == 0 && base.is_some();
        let fields = 2 + u64::from(with_base) + u64::from(record.time.is_some());
        e.map(fields).map_err(fail)?;
        if let (true, Some(bn)) = (with_base, &base) {
            e.i64(label::BASE_NAME).map_err(fail)?.str(bn).map_err(fail)?;
        }
        e.i64(label::NAME).map_err(fail)?.str(&name).map_err(fail)?;
        if let Some(t) = record.time {
            e.i64(label::TIME).map_err(fail)?.f64(t).map_err(fail)?;
        }
        match &record.value {
            Value::Integer(v) | Value::Time(v) => e.i64(label::VALUE).map_err(fail)?.i64(*v).map_err(fail)?,
            Value::Float(f) => e.i64(label::VALUE).map_err(fail)?.f64(*f).map_err(fail)?,
            Value::Bool(b) => e.i64(label::BOOL).map_err(fail)?.bool(*b).map_err(fail)?,
            Value::String(s) => e.i64(label::STRING).map_err(fail)?.str(s).map_err(fail)?,
            Value::Opaque(b) => e.i64(label::DATA).map_err(fail)?.bytes(b).map_err(fail)?,
            Value::ObjLink(l) => e
                .str(label::OBJLNK)
                .map_err(fail)?
                .str(&l.to_string())
                .map_err(fail)?,
        };
    }
    Ok(e.into_writer())
}
