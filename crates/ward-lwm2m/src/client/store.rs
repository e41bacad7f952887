//! The client's object instances and their resource values, checked against the object model.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::content::{Path, Record, ResourceType, Value};
use crate::link::Link;
use crate::objects::{self, ResourceDef};

/// Why the store refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// No such object, instance or resource.
    #[error("{0} not found")]
    NotFound(Path),
    /// The resource does not allow the operation.
    #[error("operation not allowed on {0}")]
    NotAllowed(Path),
    /// The value's type does not match the resource definition.
    #[error("wrong value type for {path}: expected {expected}")]
    WrongType {
        /// The resource.
        path: Path,
        /// Its declared type.
        expected: ResourceType,
    },
}

/// Identity values for a fresh standard store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// /3/0/0.
    pub manufacturer: String,
    /// /3/0/1.
    pub model: String,
    /// /3/0/2.
    pub serial: String,
    /// /3/0/3.
    pub firmware_version: String,
}

/// Object instances and resource values of an LwM2M client.
///
/// Only objects defined in [`crate::objects`] can be held; values must match the resource's
/// declared type (Time resources also take integers, which are stored as times).
#[derive(Debug, Clone, Default)]
pub struct ObjectStore {
    instances: BTreeSet<Path>,
    values: BTreeMap<Path, Value>,
}

impl ObjectStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Instances /3/0, /4/0, /5/0 and /8/0 with plausible initial values.
    pub fn standard(info: DeviceInfo) -> Self {
        let mut s = Self::new();
        for object in [3, 4, 5, 8] {
            s.instances.insert(Path::instance(object, 0));
        }
        let strings = [
            (3, 0, info.manufacturer),
            (3, 1, info.model),
            (3, 2, info.serial),
            (3, 3, info.firmware_version),
            (3, 14, "+00:00".into()),
            (3, 15, "Etc/UTC".into()),
            (3, 16, "U".into()),
            (3, 17, "medical-device".into()),
        ];
        for (o, r, v) in strings {
            s.values.insert(Path::resource(o, 0, r), Value::String(v));
        }
        let integers = [
            (3, 9, 100),
            (3, 10, 4096),
            (3, 20, 0),
            (3, 21, 8192),
            (4, 0, 41),
            (4, 2, -70),
            (4, 3, 100),
        ];
        for (o, r, v) in integers {
            s.values.insert(Path::resource(o, 0, r), Value::Integer(v));
        }
        s.values
            .insert(Path::resource_instance(3, 0, 11, 0), Value::Integer(0));
        s.values.insert(Path::resource(3, 0, 13), Value::Time(0));
        s.values.insert(
            Path::resource_instance(4, 0, 4, 0),
            Value::String("127.0.0.1".into()),
        );
        for (r, v) in [(3, 0), (5, 0), (9, 2)] {
            s.values.insert(Path::resource(5, 0, r), Value::Integer(v));
        }
        s.values
            .insert(Path::resource(5, 0, 1), Value::String(String::new()));
        s.values
            .insert(Path::resource_instance(5, 0, 8, 0), Value::Integer(0));
        s.values.insert(Path::resource(8, 0, 0), Value::Integer(0));
        s.values.insert(Path::resource(8, 0, 5), Value::Integer(0));
        s
    }

    /// Adds an instance of a defined object.
    pub fn add_instance(&mut self, object: u16, instance: u16) -> Result<(), StoreError> {
        objects::object(object).ok_or(StoreError::NotFound(Path::object(object)))?;
        self.instances.insert(Path::instance(object, instance));
        Ok(())
    }

    /// Removes every instance of `object` and its values (a device without, say, Lock and Wipe).
    pub fn remove_object(&mut self, object: u16) {
        self.instances.retain(|p| p.object_id() != object);
        self.values.retain(|p, _| p.object_id() != object);
    }

    /// True if the object has at least one instance.
    pub fn has_object(&self, object: u16) -> bool {
        self.instances.iter().any(|p| p.object_id() == object)
    }

    /// True if `path`'s object, instance and resource (as deep as the path goes) exist.
    pub fn exists(&self, path: &Path) -> bool {
        match path.instance_id() {
            None => self.has_object(path.object_id()),
            Some(i) => {
                self.instances.contains(&Path::instance(path.object_id(), i))
                    && path.resource_id().is_none_or(|_| self.definition(path).is_ok())
            }
        }
    }

    /// The definition of the resource at a resource or resource-instance path.
    pub fn definition(&self, path: &Path) -> Result<&'static ResourceDef, StoreError> {
        path.resource_id()
            .and_then(|r| objects::resource(path.object_id(), r))
            .ok_or(StoreError::NotFound(*path))
    }

    /// The value at a resource or resource-instance path.
    pub fn get(&self, path: &Path) -> Option<&Value> {
        self.values.get(path)
    }

    /// Sets a value (no operation check: this is the device itself writing). Returns whether
    /// the value changed.
    pub fn set(&mut self, path: Path, value: Value) -> Result<bool, StoreError> {
        let def = self.checked_def(&path)?;
        let value = conform(&path, def, value)?;
        Ok(self.values.insert(path, value.clone()).as_ref() != Some(&value))
    }

    /// Removes every instance of a multiple resource.
    pub fn clear_instances(&mut self, resource: &Path) {
        self.values
            .retain(|p, _| !(p.resource_instance_id().is_some() && resource.contains(p)));
    }

    /// The string values of a multiple resource's instances.
    pub fn strings(&self, resource: &Path) -> Vec<String> {
        self.values
            .iter()
            .filter(|(p, _)| resource.contains(p) && p.resource_instance_id().is_some())
            .filter_map(|(_, v)| v.as_str().map(str::to_owned))
            .collect()
    }

    fn checked_def(&self, path: &Path) -> Result<&'static ResourceDef, StoreError> {
        let def = self.definition(path)?;
        if !self.exists(path) || (def.multiple != path.resource_instance_id().is_some()) {
            return Err(StoreError::NotFound(*path));
        }
        Ok(def)
    }

    /// Checks that the server may write `record` (exists, writable, right type).
    pub fn check_write(&self, record: &Record) -> Result<(), StoreError> {
        let def = self.checked_def(&record.path)?;
        if !def.operations.write {
            return Err(StoreError::NotAllowed(record.path));
        }
        conform(&record.path, def, record.value.clone()).map(|_| ())
    }

    /// The readable values at or below `path`, for a Read or a notification.
    pub fn read(&self, path: &Path) -> Result<Vec<Record>, StoreError> {
        if !self.exists(path) {
            return Err(StoreError::NotFound(*path));
        }
        if path.is_resource_level() {
            let def = self.definition(path)?;
            if !def.operations.read {
                return Err(StoreError::NotAllowed(*path));
            }
        }
        let records: Vec<Record> = self
            .values
            .range(*path..)
            .take_while(|(p, _)| path.contains(p))
            .filter(|(p, _)| self.definition(p).is_ok_and(|d| d.operations.read))
            .map(|(p, v)| Record::new(*p, v.clone()))
            .collect();
        let empty_ok = path.resource_id().is_none() || self.definition(path).is_ok_and(|d| d.multiple);
        if records.is_empty() && !empty_ok {
            return Err(StoreError::NotFound(*path));
        }
        Ok(records)
    }

    /// The registration payload: one link per object instance (`</3/0>`), with `ver` for
    /// objects whose version is not 1.0.
    pub fn registration_links(&self) -> Vec<Link> {
        let mut links = Vec::new();
        let mut announced = BTreeSet::new();
        for p in &self.instances {
            let version = objects::object(p.object_id())
                .map(|o| o.version)
                .filter(|v| *v != "1.0");
            if let (Some(v), true) = (version, announced.insert(p.object_id())) {
                links.push(Link::to_path(&Path::object(p.object_id())).with("ver", Some(v.to_owned())));
            }
            links.push(Link::to_path(p));
        }
        links
    }

    /// Discover: the instances and resources at or below `path` (resources with `dim` for
    /// multiple ones), without attributes.
    pub fn discover(&self, path: &Path) -> Result<Vec<Link>, StoreError> {
        if !self.exists(path) {
            return Err(StoreError::NotFound(*path));
        }
        let mut links = Vec::new();
        if path.instance_id().is_none() {
            let mut link = Link::to_path(path);
            if let Some(o) = objects::object(path.object_id()).filter(|o| o.version != "1.0") {
                link = link.with("ver", Some(o.version.to_owned()));
            }
            links.push(link);
        }
        for instance in self
            .instances
            .iter()
            .filter(|i| path.contains(i) || i.contains(path))
        {
            if path.resource_id().is_none() {
                links.push(Link::to_path(instance));
            }
            let Some(object) = objects::object(instance.object_id()) else {
                continue;
            };
            for def in object.resources {
                let Some(rp) = instance.child(def.id) else {
                    continue;
                };
                if !path.contains(&rp) {
                    continue;
                }
                let mut link = Link::to_path(&rp);
                if def.multiple {
                    let dim = self
                        .values
                        .keys()
                        .filter(|p| rp.contains(p) && p.resource_instance_id().is_some())
                        .count();
                    link = link.with("dim", Some(dim.to_string()));
                }
                links.push(link);
            }
        }
        Ok(links)
    }
}

/// Checks (and for Time, converts) a value against a resource definition.
fn conform(path: &Path, def: &ResourceDef, value: Value) -> Result<Value, StoreError> {
    match (def.kind, value) {
        (ResourceType::Time, Value::Integer(t)) => Ok(Value::Time(t)),
        (ResourceType::Float, Value::Integer(i)) => Ok(Value::Float(i as f64)),
        (kind, v) if v.kind() == kind => Ok(v),
        (kind, _) => Err(StoreError::WrongType {
            path: *path,
            expected: kind,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> ObjectStore {
        ObjectStore::standard(DeviceInfo {
            manufacturer: "Ward".into(),
            model: "Pump".into(),
            serial: "S1".into(),
            firmware_version: "1.0.0".into(),
        })
    }

    #[test]
    fn read_set_and_checks() -> Result<(), StoreError> {
        let mut s = store();
        assert!(
            s.read(&Path::instance(3, 0))?
                .iter()
                .all(|r| r.path.resource_id() != Some(4))
        );
        assert!(s.set(Path::resource(3, 0, 9), Value::Integer(50))?);
        assert!(!s.set(Path::resource(3, 0, 9), Value::Integer(50))?);
        assert_eq!(
            s.read(&Path::resource(3, 0, 9))?,
            vec![Record::new(Path::resource(3, 0, 9), Value::Integer(50))]
        );
        assert_eq!(
            s.read(&Path::resource(3, 0, 4)),
            Err(StoreError::NotAllowed(Path::resource(3, 0, 4)))
        );
        assert_eq!(
            s.read(&Path::instance(3, 1)),
            Err(StoreError::NotFound(Path::instance(3, 1)))
        );
        assert_eq!(
            s.read(&Path::resource(3, 0, 99)),
            Err(StoreError::NotFound(Path::resource(3, 0, 99)))
        );
        assert!(matches!(
            s.set(Path::resource(3, 0, 9), Value::Bool(true)),
            Err(StoreError::WrongType { .. })
        ));
        let write = Record::new(Path::resource(3, 0, 0), Value::String("x".into()));
        assert_eq!(s.check_write(&write), Err(StoreError::NotAllowed(write.path)));
        assert!(
            s.check_write(&Record::new(Path::resource(3, 0, 13), Value::Integer(5)))
                .is_ok()
        );
        Ok(())
    }

    #[test]
    fn links() -> Result<(), StoreError> {
        let s = store();
        let reg = crate::link::format(&s.registration_links());
        assert_eq!(reg, "</3>;ver=1.1,</3/0>,</4/0>,</5/0>,</8/0>");
        let d = crate::link::format(&s.discover(&Path::resource(3, 0, 11))?);
        assert_eq!(d, "</3/0/11>;dim=1");
        assert!(crate::link::format(&s.discover(&Path::object(8))?).starts_with("</8>,</8/0>,</8/0/0>"));
        Ok(())
    }
}
