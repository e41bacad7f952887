//! `/devices`: inventory listing with selectors, device detail (every view audited), revocation,
//! retirement and the FHIR R4 export.

use axum::extract::{Path, State};
use serde_json::{Value, json};
use ward_domain::access::Permission;
use ward_domain::audit::Outcome;
use ward_domain::device::DeviceState;
use ward_proto::{DeviceDetail, DeviceQuery, DeviceView, FactsChangeView};

use ward_service::devices::{device_view, load, select_records};

use crate::api::extract::ApiQuery;
use crate::caller::Caller;
use crate::error::ApiResult;
use ward_service::state::AppState;
use ward_service::views::rfc3339;

/// Devices the caller may see that match the query.
async fn select(state: &AppState, caller: &Caller, query: &DeviceQuery) -> ApiResult<Vec<DeviceView>> {
    Ok(select_records(state, caller, query)
        .await?
        .into_iter()
        .map(|(_, view)| view)
        .collect())
}

/// List devices, optionally filtered by a selector.
#[utoipa::path(get, path = "/devices", tag = "devices", params(DeviceQuery),
    responses((status = 200, body = Vec<DeviceView>), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DeviceQuery>,
) -> ApiResult<axum::Json<Vec<DeviceView>>> {
    state
        .authorize(&caller, Permission::ViewDevices, "device.list", "devices")
        .await?;
    Ok(axum::Json(select(&state, &caller, &query).await?))
}

/// A device's detail and the history of its facts. Every view is audited (it may show patient
/// context such as the ward and the user).
#[utoipa::path(get, path = "/devices/{id}", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = DeviceDetail), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeviceDetail>> {
    let device = load(&state, &caller, &id, Permission::ViewDevices, "device.view").await?;
    let record = caller.record(
        "device.view",
        &format!("device:{id}"),
        Outcome::Success,
        json!({}),
    );
    state.store.append(state.audit(record)).await?;
    let history = state.store.facts_history(&id, 50).await?;
    Ok(axum::Json(DeviceDetail {
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
    }))
}

async fn change_state(
    state: &AppState,
    caller: &Caller,
    id: &str,
    new_state: DeviceState,
    action: &str,
) -> ApiResult<DeviceView> {
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
#[utoipa::path(post, path = "/devices/{id}/revoke", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = DeviceView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeviceView>> {
    Ok(axum::Json(
        change_state(&state, &caller, &id, DeviceState::Revoked, "device.revoke").await?,
    ))
}

/// Retire a device: gone from active views, history kept, connections refused.
#[utoipa::path(post, path = "/devices/{id}/retire", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = DeviceView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn retire(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeviceView>> {
    Ok(axum::Json(
        change_state(&state, &caller, &id, DeviceState::Retired, "device.retire").await?,
    ))
}

/// Devices as a FHIR R4 Bundle of `Device` resources.
#[utoipa::path(get, path = "/devices/fhir", tag = "devices", params(DeviceQuery),
    responses((status = 200, content_type = "application/fhir+json", body = Object)))]
pub async fn fhir(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DeviceQuery>,
) -> ApiResult<([(axum::http::HeaderName, &'static str); 1], axum::Json<Value>)> {
    state
        .authorize(&caller, Permission::ViewDevices, "device.export_fhir", "devices")
        .await?;
    let devices = select(&state, &caller, &query).await?;
    let record = caller.record(
        "device.export_fhir",
        "devices",
        Outcome::Success,
        json!({ "filter": query.filter, "devices": devices.len() }),
    );
    state.store.append(state.audit(record)).await?;
    let entries: Vec<Value> = devices
        .iter()
        .map(|d| json!({ "fullUrl": format!("urn:uuid:{}", d.id), "resource": fhir_device(d) }))
        .collect();
    let bundle =
        json!({ "resourceType": "Bundle", "type": "collection", "total": entries.len(), "entry": entries });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/fhir+json")],
        axum::Json(bundle),
    ))
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
