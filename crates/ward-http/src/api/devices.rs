//! `/devices`: inventory listing with selectors, device detail (every view audited), revocation,
//! retirement and the FHIR R4 export.

use crate::api::extract::ApiQuery;
use crate::caller::Caller;
use crate::error::ApiResult;
use axum::extract::{Path, State};
use serde_json::Value;
use ward_core::devices;
use ward_core::state::AppState;
use ward_proto::{DeviceDetail, DeviceQuery, DeviceView};

/// List devices, optionally filtered by a selector.
#[utoipa::path(get, path = "/devices", tag = "devices", params(DeviceQuery),
    responses((status = 200, body = Vec<DeviceView>), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DeviceQuery>,
) -> ApiResult<axum::Json<Vec<DeviceView>>> {
    Ok(axum::Json(devices::list(&state, &caller, query).await?))
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
    Ok(axum::Json(devices::show(&state, &caller, id).await?))
}

/// Revoke a device: its live connection is closed at once and its certificate refused from now on.
#[utoipa::path(post, path = "/devices/{id}/revoke", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = DeviceView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeviceView>> {
    Ok(axum::Json(devices::revoke(&state, &caller, id).await?))
}

/// Retire a device: gone from active views, history kept, connections refused.
#[utoipa::path(post, path = "/devices/{id}/retire", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = DeviceView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn retire(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeviceView>> {
    Ok(axum::Json(devices::retire(&state, &caller, id).await?))
}

/// Devices as a FHIR R4 Bundle of `Device` resources.
#[utoipa::path(get, path = "/devices/fhir", tag = "devices", params(DeviceQuery),
    responses((status = 200, content_type = "application/fhir+json", body = Object)))]
pub async fn fhir(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DeviceQuery>,
) -> ApiResult<([(axum::http::HeaderName, &'static str); 1], axum::Json<Value>)> {
    let bundle = devices::fhir_bundle(&state, &caller, &query).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/fhir+json")],
        axum::Json(bundle),
    ))
}
