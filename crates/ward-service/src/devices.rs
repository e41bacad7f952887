//! Devices as the service sees them: presence, the wire view, selection by selector within the
//! caller's sites, and loading one device with the caller's permission and site checked.

use serde_json::Value;
use ward_domain::access::Permission;
use ward_domain::device::is_online;
use ward_domain::selector::Selector;
use ward_proto::{DeviceQuery, DeviceView};
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
/// `facts.`. The facts move into the subject and back rather than being copied (at 10 000 devices
/// the copy was a third of planning a containment).
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

/// Devices the caller may see that match the query, with their views.
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
