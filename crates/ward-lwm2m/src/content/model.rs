//! The data model every content format maps to.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The largest identifier LwM2M allows (65535 is reserved).
pub const MAX_ID: u16 = 65534;

/// An LwM2M path: `/object[/instance[/resource[/resource-instance]]]`.
///
/// The constructors keep the invariant that a level is present only if the one above it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path {
    object: u16,
    instance: Option<u16>,
    resource: Option<u16>,
    resource_instance: Option<u16>,
}

/// Why a string is not an LwM2M path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    /// The path is empty or does not start with `/`.
    #[error("{0:?} does not start with '/'")]
    NoLeadingSlash(String),
    /// More than four levels.
    #[error("{0:?} has more than four levels")]
    TooLong(String),
    /// A segment is empty or not a number in 0..=65534.
    #[error("{path:?}: segment {segment:?} is not an id in 0..=65534")]
    BadSegment {
        /// The whole input.
        path: String,
        /// The offending segment.
        segment: String,
    },
}

impl Path {
    /// `/object`.
    pub const fn object(object: u16) -> Self {
        Self {
            object,
            instance: None,
            resource: None,
            resource_instance: None,
        }
    }

    /// `/object/instance`.
    pub const fn instance(object: u16, instance: u16) -> Self {
        Self {
            object,
            instance: Some(instance),
            resource: None,
            resource_instance: None,
        }
    }

    /// `/object/instance/resource`.
    pub const fn resource(object: u16, instance: u16, resource: u16) -> Self {
        Self {
            object,
            instance: Some(instance),
            resource: Some(resource),
            resource_instance: None,
        }
    }

    /// `/object/instance/resource/resource-instance`.
    pub const fn resource_instance(object: u16, instance: u16, resource: u16, ri: u16) -> Self {
        Self {
            object,
            instance: Some(instance),
            resource: Some(resource),
            resource_instance: Some(ri),
        }
    }

    /// The object id.
    pub const fn object_id(&self) -> u16 {
        self.object
    }

    /// The object-instance id, if the path goes that deep.
    pub const fn instance_id(&self) -> Option<u16> {
        self.instance
    }

    /// The resource id, if the path goes that deep.
    pub const fn resource_id(&self) -> Option<u16> {
        self.resource
    }

    /// The resource-instance id, if the path goes that deep.
    pub const fn resource_instance_id(&self) -> Option<u16> {
        self.resource_instance
    }

    /// Number of levels: 1 (object) to 4 (resource instance).
    pub const fn depth(&self) -> usize {
        match (self.instance, self.resource, self.resource_instance) {
            (None, _, _) => 1,
            (Some(_), None, _) => 2,
            (Some(_), Some(_), None) => 3,
            (Some(_), Some(_), Some(_)) => 4,
        }
    }

    /// True for a resource or resource-instance path (one that can carry a value).
    pub const fn is_resource_level(&self) -> bool {
        self.resource.is_some()
    }

    /// The path one level up, or `None` for an object path.
    pub const fn parent(&self) -> Option<Self> {
        match (self.instance, self.resource, self.resource_instance) {
            (None, _, _) => None,
            (Some(_), None, _) => Some(Self::object(self.object)),
            (Some(i), Some(_), None) => Some(Self::instance(self.object, i)),
            (Some(i), Some(r), Some(_)) => Some(Self::resource(self.object, i, r)),
        }
    }

    /// The resource path of a resource or resource-instance path.
    pub const fn resource_path(&self) -> Option<Self> {
        match (self.instance, self.resource) {
            (Some(i), Some(r)) => Some(Self::resource(self.object, i, r)),
            _ => None,
        }
    }

    /// True if `other` is this path or lies below it.
    pub fn contains(&self, other: &Path) -> bool {
        fn level(mine: Option<u16>, theirs: Option<u16>) -> bool {
            mine.is_none() || mine == theirs
        }
        self.object == other.object
            && level(self.instance, other.instance)
            && level(self.resource, other.resource)
            && level(self.resource_instance, other.resource_instance)
    }

    /// The same path one level deeper, or `None` at resource-instance depth.
    pub const fn child(&self, id: u16) -> Option<Self> {
        match (self.instance, self.resource, self.resource_instance) {
            (None, _, _) => Some(Self::instance(self.object, id)),
            (Some(i), None, _) => Some(Self::resource(self.object, i, id)),
            (Some(i), Some(r), None) => Some(Self::resource_instance(self.object, i, r, id)),
            _ => None,
        }
    }

    /// Builds a path from CoAP Uri-Path segments (`["3", "0", "1"]`).
    pub fn from_segments<S: AsRef<str>>(segments: &[S]) -> Result<Self, PathError> {
        let joined = || segments.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join("/");
        if segments.is_empty() {
            return Err(PathError::NoLeadingSlash(String::new()));
        }
        if segments.len() > 4 {
            return Err(PathError::TooLong(format!("/{}", joined())));
        }
        let mut ids = [None; 4];
        for (slot, segment) in ids.iter_mut().zip(segments) {
            *slot = Some(parse_id(segment.as_ref()).ok_or_else(|| PathError::BadSegment {
                path: format!("/{}", joined()),
                segment: segment.as_ref().to_owned(),
            })?);
        }
        let [Some(object), instance, resource, resource_instance] = ids else {
            return Err(PathError::NoLeadingSlash(String::new()));
        };
        Ok(Self {
            object,
            instance,
            resource,
            resource_instance,
        })
    }

    /// The path as CoAP Uri-Path segments.
    pub fn segments(&self) -> Vec<String> {
        [
            Some(self.object),
            self.instance,
            self.resource,
            self.resource_instance,
        ]
        .into_iter()
        .flatten()
        .map(|id| id.to_string())
        .collect()
    }
}

fn parse_id(segment: &str) -> Option<u16> {
    // Plain decimal digits only: no sign, no whitespace, at most five digits.
    if segment.is_empty() || segment.len() > 5 || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse::<u16>().ok().filter(|id| *id <= MAX_ID)
}

impl FromStr for Path {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(rest) = s.strip_prefix('/') else {
            return Err(PathError::NoLeadingSlash(s.to_owned()));
        };
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.len() > 4 {
            return Err(PathError::TooLong(s.to_owned()));
        }
        Self::from_segments(&segments).map_err(|e| match e {
            PathError::BadSegment { segment, .. } => PathError::BadSegment {
                path: s.to_owned(),
                segment,
            },
            other => other,
        })
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.object)?;
        for id in [self.instance, self.resource, self.resource_instance]
            .into_iter()
            .flatten()
        {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

/// An object link: a reference to an object instance (`objlnk`, written `object:instance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjLink {
    /// Object id.
    pub object: u16,
    /// Object-instance id.
    pub instance: u16,
}

impl fmt::Display for ObjLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.object, self.instance)
    }
}

impl FromStr for ObjLink {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (o, i) = s.split_once(':').ok_or(())?;
        let digits = |t: &str| !t.is_empty() && t.len() <= 5 && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(o) || !digits(i) {
            return Err(());
        }
        Ok(Self {
            object: o.parse().map_err(|_| ())?,
            instance: i.parse().map_err(|_| ())?,
        })
    }
}

/// A resource value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A signed integer (LwM2M Integer; Unsigned Integer values that fit are read as this too).
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    String(String),
    /// Raw bytes.
    Opaque(Vec<u8>),
    /// Seconds since the Unix epoch.
    Time(i64),
    /// A reference to an object instance.
    ObjLink(ObjLink),
}

impl Value {
    /// The resource type this value has.
    pub const fn kind(&self) -> ResourceType {
        match self {
            Self::Integer(_) => ResourceType::Integer,
            Self::Float(_) => ResourceType::Float,
            Self::Bool(_) => ResourceType::Boolean,
            Self::String(_) => ResourceType::String,
            Self::Opaque(_) => ResourceType::Opaque,
            Self::Time(_) => ResourceType::Time,
            Self::ObjLink(_) => ResourceType::ObjLink,
        }
    }

    /// The integer, if this is an integer or time.
    pub const fn as_integer(&self) -> Option<i64> {
        match self {
            Self::Integer(v) | Self::Time(v) => Some(*v),
            _ => None,
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One value at one resource or resource-instance path.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Where the value lives (resource or resource-instance level).
    pub path: Path,
    /// The value.
    pub value: Value,
    /// SenML time (`bt` + `t`), seconds; absolute if above 2^28, else relative to now.
    /// Only SenML carries it; TLV and text ignore it.
    pub time: Option<f64>,
}

impl Record {
    /// A record without a time.
    pub const fn new(path: Path, value: Value) -> Self {
        Self {
            path,
            value,
            time: None,
        }
    }
}

/// The data type of a resource, as its object definition declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// UTF-8 string.
    String,
    /// Signed integer (also used for Unsigned Integer in this crate).
    Integer,
    /// Floating point.
    Float,
    /// Boolean.
    Boolean,
    /// Raw bytes.
    Opaque,
    /// Unix time in seconds.
    Time,
    /// Object link.
    ObjLink,
    /// No value: an executable resource.
    None,
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Float => "float",
            Self::Boolean => "boolean",
            Self::Opaque => "opaque",
            Self::Time => "time",
            Self::ObjLink => "objlnk",
            Self::None => "none",
        };
        f.write_str(name)
    }
}

/// Where decoders learn a resource's type (TLV and text carry none; SenML numbers are ambiguous).
pub trait TypeLookup {
    /// The type of resource `resource` in object `object`, or `None` if unknown.
    fn resource_type(&self, object: u16, resource: u16) -> Option<ResourceType>;
}

impl<F: Fn(u16, u16) -> Option<ResourceType>> TypeLookup for F {
    fn resource_type(&self, object: u16, resource: u16) -> Option<ResourceType> {
        self(object, resource)
    }
}
