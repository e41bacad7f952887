//! LwM2M endpoints as devices: provisioning (an ordinary device plus its LwM2M name and its DTLS
//! pre-shared key, shown once), listing, the device row for an endpoint, the mark
//! that tells such a device from an enrolled agent, and the table of pre-shared keys the
//! gateway's DTLS handshakes read.

use serde_json::json;
use ward_domain::access::Permission;
use ward_domain::audit::Outcome;
use ward_domain::device::{Criticality, DeviceClass, DeviceState};
use ward_domain::site::SiteSlug;
use ward_proto::{Lwm2mEndpointView, ProvisionLwm2mRequest, ProvisionedLwm2mEndpoint};
use ward_store::{DeviceRecord, Lwm2mEndpointRecord, StoreError};

use crate::caller::Caller;
use crate::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::views::rfc3339;

/// What an LwM2M device row carries in place of an enrollment token's id.
pub const ENROLLED_BY: &str = "lwm2m";

/// A device row for an LwM2M endpoint: no certificate, `lwm2m` in place of an enrollment token.
pub fn new_device(
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
        enroll_token_id: ENROLLED_BY.to_owned(),
        enrolled_ms: now_ms,
        last_seen_ms: None,
        facts: "{}".into(),
        facts_updated_ms: None,
        allow_full_wipe: false,
    }
}

/// Makes an endpoint's pre-shared key usable for DTLS handshakes (no-op without one).
pub fn add_key(state: &AppState, endpoint: &Lwm2mEndpointRecord) {
    if endpoint.psk.is_empty() {
        return;
    }
    let inserted = hex::decode(&endpoint.psk)
        .map_err(|err| err.to_string())
        .and_then(|key| {
            state
                .lwm2m_keys
                .insert(endpoint.psk_identity.as_bytes(), &key)
                .map_err(|err| err.to_string())
        });
    if let Err(err) = inserted {
        tracing::warn!(endpoint = %endpoint.endpoint, error = %err, "an LwM2M key cannot be used");
    }
}

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
pub async fn provision(
    state: &AppState,
    caller: &Caller,
    request: ProvisionLwm2mRequest,
) -> ServiceResult<ProvisionedLwm2mEndpoint> {
    if !ward_lwm2m::registration::is_valid_endpoint(&request.endpoint) {
        return Err(ServiceError::invalid(format!(
            "endpoint: 1 to {} characters of letters, digits and -._~:@+",
            ward_lwm2m::registration::MAX_ENDPOINT_LEN
        )));
    }
    let site = SiteSlug::parse(&request.site)
        .map_err(|err| ServiceError::invalid(format!("site: {}", err.reason)))?;
    let class: DeviceClass = request.class.parse()?;
    let criticality: Criticality = request.criticality.as_deref().unwrap_or("normal").parse()?;
    let device_id = uuid::Uuid::new_v4().to_string();
    let target = format!("device:{device_id}");
    state
        .authorize(caller, Permission::ManageEnrollment, "lwm2m.provision", &target)
        .await?;
    state
        .authorize_site(caller, &site, "lwm2m.provision", &target)
        .await?;
    let key = match request.psk.as_deref() {
        Some(text) => {
            let key = hex::decode(text.trim())
                .map_err(|_| ServiceError::invalid("psk: not hexadecimal (two digits per byte)"))?;
            if !(ward_lwm2m::dtls::MIN_KEY_LEN..=ward_lwm2m::dtls::MAX_KEY_LEN).contains(&key.len()) {
                return Err(ServiceError::invalid(format!(
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
            StoreError::NotFound(what) => ServiceError::invalid(format!("site: {what} does not exist")),
            other => other.into(),
        })?;
    add_key(state, &endpoint);
    Ok(ProvisionedLwm2mEndpoint {
        endpoint: endpoint_view(state, &endpoint, &device),
        psk_identity: endpoint.psk_identity.clone(),
        psk: endpoint.psk.clone(),
    })
}

/// List provisioned LwM2M endpoints in this account's sites (never their keys).
pub async fn list(state: &AppState, caller: &Caller) -> ServiceResult<Vec<Lwm2mEndpointView>> {
    state
        .authorize(
            caller,
            Permission::ManageEnrollment,
            "lwm2m.list",
            "lwm2m_endpoints",
        )
        .await?;
    let devices = crate::devices::records_by_id(state).await?;
    let endpoints = state.store.list_lwm2m_endpoints().await?;
    Ok(endpoints
        .iter()
        .filter_map(|e| devices.get(&e.device_id).map(|d| (e, d)))
        .filter(|(_, d)| caller.user.sites.covers(&d.site))
        .map(|(e, d)| endpoint_view(state, e, d))
        .collect())
}
