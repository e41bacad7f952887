//! LwM2M endpoints on the wire: provisioning a constrained device for the gateway.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /lwm2m/endpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionLwm2mRequest {
    /// The LwM2M endpoint client name the device registers with (`ep=`): 1–128 characters of
    /// letters, digits and `-._~:@+`.
    pub endpoint: String,
    /// Site the device belongs to (`st-marys/icu`).
    pub site: String,
    /// `workstation`, `mobile`, `iot-gateway` or `medical`.
    pub class: String,
    /// `life-sustaining`, `high` or `normal` (default `normal`).
    #[serde(default)]
    pub criticality: Option<String>,
    /// The device stores or displays patient data.
    #[serde(default)]
    pub phi: bool,
    /// The device's own pre-shared key (hex, 16 to 64 bytes), for devices that come with one;
    /// without it the server generates a 16-byte key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psk: Option<String>,
}

/// A provisioned endpoint (never its key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Lwm2mEndpointView {
    pub endpoint: String,
    /// The Ward device it is (`/devices/{id}`).
    pub device_id: String,
    pub site: String,
    pub class: String,
    pub criticality: String,
    pub phi: bool,
    /// The DTLS PSK identity.
    pub psk_identity: String,
    /// Whether it has a pre-shared key (endpoints created on first contact have none).
    pub has_psk: bool,
    /// Registered with the gateway on this server right now.
    pub registered: bool,
    pub created_at: String,
}

/// The answer to `POST /lwm2m/endpoints`: the pre-shared key, shown only now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProvisionedLwm2mEndpoint {
    pub endpoint: Lwm2mEndpointView,
    /// The DTLS PSK identity to configure on the device.
    pub psk_identity: String,
    /// The pre-shared key, hex (16 bytes unless one was given). Not retrievable later.
    pub psk: String,
}
