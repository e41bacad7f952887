//! What the gateway learns about an LwM2M device, as Ward facts under `facts.lwm2m` (the paths
//! the policy schema knows). Everything here comes from the device and is hostile: values are
//! mapped from a fixed list of resources, and the document is sanitised like an agent's facts.

use serde_json::{Map, Value, json};
use ward_lwm2m::content::{Path, Record, Value as Lwm2mValue};
use ward_lwm2m::objects::{connectivity, device};

/// Longest string kept from a device's resource (Device-object strings are short names).
const MAX_VALUE_CHARS: usize = 256;

/// Registration-level facts: endpoint, lifetime, binding, version and objects.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationFacts {
    pub endpoint: String,
    pub registered: bool,
    pub lifetime_s: u32,
    pub queue_mode: bool,
    pub version: &'static str,
    pub binding: String,
    pub objects: Vec<Path>,
    /// `psk` (DTLS) or `none` (plain UDP).
    pub security: &'static str,
}

/// Sets the registration part of the `facts.lwm2m` section, keeping what was read before.
pub fn set_registration(lwm2m: &mut Map<String, Value>, registration: &RegistrationFacts) {
    lwm2m.insert("endpoint".into(), json!(registration.endpoint));
    lwm2m.insert("registered".into(), json!(registration.registered));
    lwm2m.insert("lifetime_s".into(), json!(registration.lifetime_s));
    lwm2m.insert("queue_mode".into(), json!(registration.queue_mode));
    lwm2m.insert("version".into(), json!(registration.version));
    lwm2m.insert("binding".into(), json!(registration.binding));
    lwm2m.insert("security".into(), json!(registration.security));
    let objects: Vec<String> = registration.objects.iter().map(ToString::to_string).collect();
    lwm2m.insert("objects".into(), json!(objects));
}

/// The device's whole facts document: `base` (what is stored) with `lwm2m` as its `lwm2m`
/// section, sanitised like any device's facts.
pub fn document(base: &Value, lwm2m: &Map<String, Value>) -> Value {
    let mut root = match base {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    root.insert("lwm2m".into(), Value::Object(lwm2m.clone()));
    // Not an agent: policies checking the agent's version see "unknown", not a stale value.
    root.insert("agent_version".into(), Value::Null);
    ward_core::facts::sanitise(Value::Object(root))
}

/// The `lwm2m` section of stored facts (empty if there is none).
pub fn section_of(facts: &Value) -> Map<String, Value> {
    match facts.get("lwm2m") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    }
}

/// The Device object's resources Ward keeps, by resource id.
const DEVICE_FIELDS: &[(u16, &str)] = &[
    (device::MANUFACTURER, "manufacturer"),
    (device::MODEL, "model_number"),
    (device::SERIAL, "serial_number"),
    (device::FIRMWARE_VERSION, "firmware_version"),
    (device::BATTERY_LEVEL, "battery_level"),
    (device::MEMORY_FREE, "memory_free"),
    (device::ERROR_CODE, "error_codes"),
    (device::DEVICE_TYPE, "device_type"),
    (device::HARDWARE_VERSION, "hardware_version"),
    (device::SOFTWARE_VERSION, "software_version"),
    (device::BATTERY_STATUS, "battery_status"),
    (device::MEMORY_TOTAL, "memory_total"),
];

/// The Connectivity Monitoring object's resources Ward keeps.
const CONNECTIVITY_FIELDS: &[(u16, &str)] = &[
    (connectivity::NETWORK_BEARER, "network_bearer"),
    (connectivity::AVAILABLE_BEARERS, "available_bearers"),
    (connectivity::RADIO_SIGNAL_STRENGTH, "radio_signal_strength"),
    (connectivity::LINK_QUALITY, "link_quality"),
    (connectivity::IP_ADDRESSES, "ip_addresses"),
    (connectivity::APN, "apn"),
];

/// Resources that have instances and are kept as lists.
fn is_list(object: u16, resource: u16) -> bool {
    matches!(
        (object, resource),
        (device::ID, device::ERROR_CODE)
            | (connectivity::ID, connectivity::AVAILABLE_BEARERS)
            | (connectivity::ID, connectivity::IP_ADDRESSES)
            | (connectivity::ID, connectivity::APN)
    )
}

/// Records read from `/3/0` or `/4/0` into `facts.lwm2m.device` or `facts.lwm2m.connectivity`
/// (replacing what was there). Other objects and unknown resources are ignored.
pub fn set_object(lwm2m: &mut Map<String, Value>, object: u16, records: &[Record]) {
    let (key, fields) = match object {
        device::ID => ("device", DEVICE_FIELDS),
        connectivity::ID => ("connectivity", CONNECTIVITY_FIELDS),
        _ => return,
    };
    let mut out = Map::new();
    for record in records {
        let Some(resource) = record.path.resource_id() else {
            continue;
        };
        let Some((_, name)) = fields.iter().find(|(id, _)| *id == resource) else {
            continue;
        };
        let value = json_value(&record.value);
        if is_list(object, resource) {
            let list = out.entry(*name).or_insert_with(|| json!([]));
            if let Value::Array(items) = list {
                items.push(value);
            }
        } else {
            out.insert((*name).to_owned(), value);
        }
    }
    lwm2m.insert(key.into(), Value::Object(out));
}

/// The Firmware Update object's /5/0/3 State and /5/0/5 Update Result, as
/// `facts.lwm2m.firmware.state` and `facts.lwm2m.firmware.update_result` (what is unknown is kept).
pub fn set_firmware(lwm2m: &mut Map<String, Value>, state: Option<i64>, update_result: Option<i64>) {
    let object = lwm2m.entry("firmware").or_insert_with(|| json!({}));
    if !object.is_object() {
        *object = json!({});
    }
    if let Value::Object(map) = object {
        if let Some(state) = state {
            map.insert("state".into(), json!(state));
        }
        if let Some(result) = update_result {
            map.insert("update_result".into(), json!(result));
        }
    }
}

/// One resource value (`/3/0/9` from an observation) into its place.
pub fn set_resource(lwm2m: &mut Map<String, Value>, path: &Path, value: &Lwm2mValue) {
    let (key, fields) = match path.object_id() {
        device::ID => ("device", DEVICE_FIELDS),
        connectivity::ID => ("connectivity", CONNECTIVITY_FIELDS),
        _ => return,
    };
    let Some(resource) = path.resource_id() else {
        return;
    };
    if is_list(path.object_id(), resource) {
        return;
    }
    let Some((_, name)) = fields.iter().find(|(id, _)| *id == resource) else {
        return;
    };
    let object = lwm2m.entry(key).or_insert_with(|| json!({}));
    if let Value::Object(map) = object {
        map.insert((*name).to_owned(), json_value(value));
    }
}

fn json_value(value: &Lwm2mValue) -> Value {
    match value {
        Lwm2mValue::Integer(v) | Lwm2mValue::Time(v) => json!(v),
        Lwm2mValue::Float(v) => json!(v),
        Lwm2mValue::Bool(v) => json!(v),
        Lwm2mValue::String(text) => json!(bounded(text)),
        // Opaque values are not facts anyone checks; keep their size only.
        Lwm2mValue::Opaque(bytes) => json!(format!("<{} bytes>", bytes.len())),
        Lwm2mValue::ObjLink(link) => json!(bounded(&link.to_string())),
    }
}

/// Control characters out (the sanitiser does that for the whole document too) and bounded.
pub fn bounded(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_VALUE_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_records_become_bounded_facts() {
        let mut section = Map::new();
        set_registration(
            &mut section,
            &RegistrationFacts {
                endpoint: "urn:dev:p1".into(),
                registered: true,
                lifetime_s: 60,
                queue_mode: false,
                version: "1.1",
                binding: "U".into(),
                objects: vec![Path::instance(3, 0), Path::instance(8, 0)],
                security: "psk",
            },
        );
        let hostile = format!("Acme\u{1b}[2J{}", "x".repeat(10_000));
        set_object(
            &mut section,
            3,
            &[
                Record::new(Path::resource(3, 0, 0), Lwm2mValue::String(hostile)),
                Record::new(Path::resource(3, 0, 9), Lwm2mValue::Integer(87)),
                Record::new(Path::resource_instance(3, 0, 11, 0), Lwm2mValue::Integer(0)),
                Record::new(Path::resource(3, 0, 4242), Lwm2mValue::Integer(1)),
            ],
        );
        let facts = document(&json!({"hostname": "x", "agent_version": "1.0"}), &section);
        let device = &facts["lwm2m"]["device"];
        let manufacturer = device["manufacturer"].as_str().unwrap_or_default();
        assert!(manufacturer.starts_with("Acme[2J"), "{manufacturer}");
        assert_eq!(manufacturer.chars().count(), MAX_VALUE_CHARS);
        assert_eq!(device["battery_level"], 87);
        assert_eq!(device["error_codes"], json!([0]));
        assert_eq!(
            device.as_object().map(Map::len),
            Some(3),
            "unknown resources dropped"
        );
        assert_eq!(facts["lwm2m"]["objects"], json!(["/3/0", "/8/0"]));
        assert_eq!(facts["agent_version"], Value::Null);
        assert_eq!(facts["hostname"], "x");
        set_resource(&mut section, &Path::resource(3, 0, 9), &Lwm2mValue::Integer(40));
        assert_eq!(section["device"]["battery_level"], 40);
        assert_eq!(
            ward_core::devices::registration_presence(&facts),
            Some((true, 60_000))
        );
        section.insert("registered".into(), json!(false));
        assert_eq!(
            ward_core::devices::registration_presence(&document(&facts, &section)),
            Some((false, 60_000))
        );
        assert_eq!(
            ward_core::devices::registration_presence(&json!({"os": {}})),
            None
        );
        set_firmware(&mut section, Some(1), Some(0));
        set_firmware(&mut section, None, Some(8));
        assert_eq!(section["firmware"], json!({"state": 1, "update_result": 8}));
    }
}
