//! Devices as the service sees them: presence, the wire view, selection by selector within the
//! caller's sites, loading one device with the caller's permission and site checked, and the
//! operations on devices: list, detail (every view audited), revoke, retire.

use serde_json::{Value, json};
use ward_domain::access::Permission;
use ward_domain::audit::Outcome;
use ward_domain::device::{DeviceState, is_online};
use ward_domain::selector::Selector;
use ward_proto::{DeviceDetail, DeviceQuery, DeviceView, FactsChangeView};
use ward_store::DeviceRecord;

use crate::caller::Caller;
use crate::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::views::rfc3339;

/// `(registered, lifetime in ms)` when `facts` are those of a device whose platform keeps a
/// registration lifetime (LwM2M: `facts.lwm2m`), for presence.
pub fn registration_presence(facts: &Value) -> Option<(bool, i64)> {
    let lwm2m = facts.get("lwm2m")?;
    let registered = lwm2m.get("registered")?.as_bool()?;
    let lifetime_s = lwm2m.get("lifetime_s")?.as_i64()?;
    Some((registered, lifetime_s.saturating_mul(1000)))
}

/// Whether a device counts as online at `now_ms`: an agent while heard from within three
/// heartbeats; an LwM2M device while registered and within its registration lifetime.
pub fn online(device: &DeviceRecord, facts: &Value, now_ms: i64, heartbeat_ms: i64) -> bool {
    if !device.state.may_connect() {
        return false;
    }
    match registration_presence(facts) {
        Some((registered, lifetime_ms)) => {
            registered
                && device
                    .last_seen_ms
                    .is_some_and(|seen| now_ms - seen < lifetime_ms)
        }
        None => is_online(device.last_seen_ms, now_ms, heartbeat_ms),
    }
}

/// The wire view of a device at `now_ms`.
pub fn device_view(device: &DeviceRecord, now_ms: i64, heartbeat_ms: i64) -> DeviceView {
    let facts: Value = serde_json::from_str(&device.facts).unwrap_or(Value::Null);
    DeviceView {
        id: device.id.clone(),
        site: device.site.to_string(),
        class: device.class.to_string(),
        criticality: device.criticality.to_string(),
        phi: device.phi,
        hostname: device.hostname.clone(),
        state: device.state.to_string(),
        online: online(device, &facts, now_ms, heartbeat_ms),
        last_seen_at: device.last_seen_ms.map(rfc3339),
        enrolled_at: rfc3339(device.enrolled_ms),
        certificate_expires_at: rfc3339(device.cert_not_after_ms),
        facts,
        groups: Vec::new(),
        compliance: Default::default(),
    }
}

/// Whether `selector` matches what it sees of a device: its attributes, and its facts under
/// `facts.`. The facts move into the subject and back rather than being copied: planning a
/// containment runs its selector over every device, and copying each one's facts would be much of
/// that work.
fn selects(selector: &Selector, view: &mut DeviceView) -> bool {
    let facts = std::mem::take(&mut view.facts);
    let Ok(Value::Object(mut subject)) = serde_json::to_value(&*view) else {
        view.facts = facts;
        return false;
    };
    subject.insert("facts".into(), facts);
    let subject = Value::Object(subject);
    let matched = selector.matches(&subject);
    if let Value::Object(mut subject) = subject {
        view.facts = subject.remove("facts").unwrap_or_default();
    }
    matched
}

/// Every device (retired ones too) by id.
pub async fn records_by_id(
    state: &AppState,
) -> ServiceResult<std::collections::HashMap<String, DeviceRecord>> {
    Ok(state
        .store
        .list_devices(true)
        .await?
        .into_iter()
        .map(|d| (d.id.clone(), d))
        .collect())
}

/// Devices the caller may see that match the query, with their views (groups and compliance
/// filled in).
pub async fn select_records(
    state: &AppState,
    caller: &Caller,
    query: &DeviceQuery,
) -> ServiceResult<Vec<(DeviceRecord, DeviceView)>> {
    let selector = match query.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        Some(text) => {
            Some(Selector::parse(text).map_err(|err| ServiceError::invalid(format!("filter: {err}")))?)
        }
        None => None,
    };
    let now = state.now_ms();
    let devices = state.store.list_devices(query.include_retired).await?;
    Ok(devices
        .into_iter()
        .filter(|d| caller.user.sites.covers(&d.site))
        .filter_map(|d| {
            let mut view = device_view(&d, now, state.config.heartbeat_ms);
            state.policy.annotate(&mut view);
            selector
                .as_ref()
                .is_none_or(|s| selects(s, &mut view))
                .then_some((d, view))
        })
        .collect())
}

/// One device, with the caller's permission and site checked (refusals audited).
pub async fn load(
    state: &AppState,
    caller: &Caller,
    id: &str,
    permission: Permission,
    action: &str,
) -> ServiceResult<DeviceRecord> {
    let target = format!("device:{id}");
    state.authorize(caller, permission, action, &target).await?;
    let device = state
        .store
        .device(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("device {id:?}")))?;
    state
        .authorize_site(caller, &device.site, action, &target)
        .await?;
    Ok(device)
}

/// Devices the caller may see that match the query.
async fn select(state: &AppState, caller: &Caller, query: &DeviceQuery) -> ServiceResult<Vec<DeviceView>> {
    Ok(select_records(state, caller, query)
        .await?
        .into_iter()
        .map(|(_, view)| view)
        .collect())
}

/// List devices, optionally filtered by a selector.
pub async fn list(state: &AppState, caller: &Caller, query: DeviceQuery) -> ServiceResult<Vec<DeviceView>> {
    state
        .authorize(caller, Permission::ViewDevices, "device.list", "devices")
        .await?;
    select(state, caller, &query).await
}

/// A device's detail and the history of its facts. Every view is audited (it may show patient
/// context such as the ward and the user).
pub async fn show(state: &AppState, caller: &Caller, id: String) -> ServiceResult<DeviceDetail> {
    let device = load(state, caller, &id, Permission::ViewDevices, "device.view").await?;
    let record = caller.record(
        "device.view",
        &format!("device:{id}"),
        Outcome::Success,
        json!({}),
    );
    state.store.append(state.audit(record)).await?;
    let history = state.store.facts_history(&id, 50).await?;
    Ok(DeviceDetail {
        device: {
            let mut view = device_view(&device, state.now_ms(), state.config.heartbeat_ms);
            state.policy.annotate(&mut view);
            view
        },
        history: history
            .into_iter()
            .map(|(time_ms, change)| FactsChangeView {
                time: rfc3339(time_ms),
                change: serde_json::from_str(&change).unwrap_or(Value::String(change)),
            })
            .collect(),
    })
}

async fn change_state(
    state: &AppState,
    caller: &Caller,
    id: &str,
    new_state: DeviceState,
    action: &str,
) -> ServiceResult<DeviceView> {
    let mut device = load(state, caller, id, Permission::ManageDevices, action).await?;
    let record = caller.record(
        action,
        &format!("device:{id}"),
        Outcome::Success,
        json!({ "from": device.state, "to": new_state, "hostname": device.hostname }),
    );
    state
        .store
        .set_device_state(id, new_state, state.audit(record))
        .await?;
    device.state = new_state;
    if !new_state.may_connect() {
        state.channels.disconnect(id);
    }
    let mut view = device_view(&device, state.now_ms(), state.config.heartbeat_ms);
    state.policy.annotate(&mut view);
    Ok(view)
}

/// Revoke a device: its live connection is closed at once and its certificate refused from now on.
pub async fn revoke(state: &AppState, caller: &Caller, id: String) -> ServiceResult<DeviceView> {
    change_state(state, caller, &id, DeviceState::Revoked, "device.revoke").await
}

/// Retire a device: gone from active views, history kept, connections refused.
pub async fn retire(state: &AppState, caller: &Caller, id: String) -> ServiceResult<DeviceView> {
    change_state(state, caller, &id, DeviceState::Retired, "device.retire").await
}

/// The devices the query selects as a FHIR R4 Bundle of `Device` resources (the export audited).
pub async fn fhir_bundle(state: &AppState, caller: &Caller, query: &DeviceQuery) -> ServiceResult<Value> {
    state
        .authorize(caller, Permission::ViewDevices, "device.export_fhir", "devices")
        .await?;
    let devices = select(state, caller, query).await?;
    let record = caller.record(
        "device.export_fhir",
        "devices",
        Outcome::Success,
        json!({ "filter": &query.filter, "devices": devices.len() }),
    );
    state.store.append(state.audit(record)).await?;
    let entries: Vec<Value> = devices
        .iter()
        .map(|d| json!({ "fullUrl": format!("urn:uuid:{}", d.id), "resource": fhir_device(d) }))
        .collect();
    let bundle =
        json!({ "resourceType": "Bundle", "type": "collection", "total": entries.len(), "entry": entries });
    Ok(bundle)
}

fn fact<'a>(facts: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(facts, |value, key| value.get(key))?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// One FHIR R4 `Device` resource.
pub fn fhir_device(device: &DeviceView) -> Value {
    let status = match device.state.as_str() {
        "retired" | "revoked" | "wiped" => "inactive",
        _ => "active",
    };
    let reason = if device.online { "online" } else { "offline" };
    let mut resource = json!({
        "resourceType": "Device",
        "id": device.id,
        "identifier": [{ "system": "urn:ward:device-id", "value": device.id }],
        "status": status,
        "statusReason": [{
            "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/device-status-reason", "code": reason }],
            "text": format!("ward state: {}", device.state),
        }],
        "deviceName": [{ "name": device.hostname, "type": "user-friendly-name" }],
        "owner": { "display": device.site.split('/').next().unwrap_or(&device.site) },
        "location": { "display": device.site },
        "property": [
            { "type": { "text": "criticality" }, "valueCode": [{ "text": device.criticality }] },
            { "type": { "text": "class" }, "valueCode": [{ "text": device.class }] },
            { "type": { "text": "stores-phi" }, "valueCode": [{ "text": device.phi.to_string() }] },
        ],
    });
    let facts = &device.facts;
    let optional = [
        ("serialNumber", fact(facts, &["hardware", "serial"])),
        ("manufacturer", fact(facts, &["hardware", "vendor"])),
        ("modelNumber", fact(facts, &["hardware", "model"])),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            resource[key] = json!(value);
        }
    }
    let version = fact(facts, &["os", "pretty_name"]).or(fact(facts, &["os", "version"]));
    if let Some(version) = version {
        resource["version"] = json!([{ "type": { "text": "os" }, "value": version }]);
    }
    resource
}
