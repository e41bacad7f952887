//! `/lwm2m/endpoints`: provisioning constrained devices for the LwM2M gateway. A provisioned
//! endpoint is an ordinary device (inventory, commands, incidents) plus its LwM2M name and its
//! DTLS pre-shared key, which is shown once.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use ward_domain::access::Permission;
use ward_domain::audit::Outcome;
use ward_domain::device::{Criticality, DeviceClass, DeviceState};
use ward_domain::site::SiteSlug;
use ward_proto::{Lwm2mEndpointView, ProvisionLwm2mRequest, ProvisionedLwm2mEndpoint};
use ward_store::{DeviceRecord, Lwm2mEndpointRecord, StoreError};

use crate::api::extract::ApiJson;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, rfc3339};

/// Bytes of a generated pre-shared key.
const PSK_BYTES: usize = 16;

fn endpoint_view(
    state: &AppState,
    endpoint: &Lwm2mEndpointRecord,
    device: &DeviceRecord,
) -> Lwm2mEndpointView {
    Lwm2mEndpointView {
        endpoint: endpoint.endpoint.clone(),
        device_id: endpoint.device_id.clone(),
        site: device.site.to_string(),
        class: device.class.to_string(),
        criticality: device.criticality.to_string(),
        phi: device.phi,
        psk_identity: endpoint.psk_identity.clone(),
        has_psk: !endpoint.psk.is_empty(),
        registered: state.channels.is_connected(&endpoint.device_id),
        created_at: rfc3339(endpoint.created_ms),
    }
}

/// Provision an LwM2M endpoint: creates the device and generates its pre-shared key (shown once).
#[utoipa::path(post, path = "/lwm2m/endpoints", tag = "enrollment", request_body = ProvisionLwm2mRequest,
    responses((status = 201, body = ProvisionedLwm2mEndpoint), (status = 403, body = ward_proto::ErrorBody),
              (status = 409, body = ward_proto::ErrorBody), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn provision(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<ProvisionLwm2mRequest>,
) -> ApiResult<(StatusCode, axum::Json<ProvisionedLwm2mEndpoint>)> {
    if !ward_lwm2m::registration::is_valid_endpoint(&request.endpoint) {
        return Err(ApiError::invalid(format!(
            "endpoint: 1 to {} characters of letters, digits and -._~:@+",
            ward_lwm2m::registration::MAX_ENDPOINT_LEN
        )));
    }
    let site =
        SiteSlug::parse(&request.site).map_err(|err| ApiError::invalid(format!("site: {}", err.reason)))?;
    let class: DeviceClass = request.class.parse()?;
    let criticality: Criticality = request.criticality.as_deref().unwrap_or("normal").parse()?;
    let device_id = uuid::Uuid::new_v4().to_string();
    let target = format!("device:{device_id}");
    state
        .authorize(&caller, Permission::ManageEnrollment, "lwm2m.provision", &target)
        .await?;
    state
        .authorize_site(&caller, &site, "lwm2m.provision", &target)
        .await?;
    let key = match request.psk.as_deref() {
        Some(text) => {
            let key = hex::decode(text.trim())
                .map_err(|_| ApiError::invalid("psk: not hexadecimal (two digits per byte)"))?;
            if !(ward_lwm2m::dtls::MIN_KEY_LEN..=ward_lwm2m::dtls::MAX_KEY_LEN).contains(&key.len()) {
                return Err(ApiError::invalid(format!(
                    "psk: {} bytes; a pre-shared key is {} to {} bytes",
                    key.len(),
                    ward_lwm2m::dtls::MIN_KEY_LEN,
                    ward_lwm2m::dtls::MAX_KEY_LEN
                )));
            }
            key
        }
        None => {
            let mut key = vec![0u8; PSK_BYTES];
            state.entropy.fill(&mut key);
            key
        }
    };
    let now = state.now_ms();
    let device = new_device(
        &device_id,
        &request.endpoint,
        site,
        class,
        criticality,
        request.phi,
        now,
    );
    let endpoint = Lwm2mEndpointRecord {
        endpoint: request.endpoint.clone(),
        device_id: device_id.clone(),
        psk_identity: request.endpoint.clone(),
        psk: hex::encode(key),
        created_ms: now,
    };
    let record = caller.record(
        "lwm2m.provision",
        &target,
        Outcome::Success,
        json!({ "endpoint": endpoint.endpoint, "site": device.site, "class": class,
                "criticality": criticality, "phi": device.phi,
               "psk": if request.psk.is_some() { "given" } else { "generated" } }),
    );
    state
        .store
        .create_lwm2m_endpoint(&device, &endpoint, state.audit(record))
        .await
        .map_err(|err| match err {
            StoreError::NotFound(what) => ApiError::invalid(format!("site: {what} does not exist")),
            other => other.into(),
        })?;
    crate::lwm2m::add_key(&state, &endpoint);
    Ok((
        StatusCode::CREATED,
        axum::Json(ProvisionedLwm2mEndpoint {
            endpoint: endpoint_view(&state, &endpoint, &device),
            psk_identity: endpoint.psk_identity.clone(),
            psk: endpoint.psk.clone(),
        }),
    ))
}

/// A device row for an LwM2M endpoint: no certificate, `lwm2m` in place of an enrollment token.
pub(crate) fn new_device(
    id: &str,
    endpoint: &str,
    site: SiteSlug,
    class: DeviceClass,
    criticality: Criticality,
    phi: bool,
    now_ms: i64,
) -> DeviceRecord {
    DeviceRecord {
        id: id.to_owned(),
        site,
        class,
        criticality,
        phi,
        hostname: endpoint.to_owned(),
        state: DeviceState::Active,
        cert_fingerprint: String::new(),
        cert_not_after_ms: 0,
        enroll_token_id: crate::lwm2m::ENROLLED_BY.to_owned(),
        enrolled_ms: now_ms,
        last_seen_ms: None,
        facts: "{}".into(),
        facts_updated_ms: None,
        allow_full_wipe: false,
    }
}

/// List provisioned LwM2M endpoints in this account's sites (never their keys).
#[utoipa::path(get, path = "/lwm2m/endpoints", tag = "enrollment",
    responses((status = 200, body = Vec<Lwm2mEndpointView>), (status = 403, body = ward_proto::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<Lwm2mEndpointView>>> {
    state
        .authorize(
            &caller,
            Permission::ManageEnrollment,
            "lwm2m.list",
            "lwm2m_endpoints",
        )
        .await?;
    let devices = crate::api::devices::records_by_id(&state).await?;
    let endpoints = state.store.list_lwm2m_endpoints().await?;
    Ok(axum::Json(
        endpoints
            .iter()
            .filter_map(|e| devices.get(&e.device_id).map(|d| (e, d)))
            .filter(|(_, d)| caller.user.sites.covers(&d.site))
            .map(|(e, d)| endpoint_view(&state, e, d))
            .collect(),
    ))
}
