//! Ward's wire types: the HTTP API's request and response bodies and its stable error codes.
//! The server, the client and the CLI all speak these; the OpenAPI document is generated from them.

mod error;
mod lwm2m;
mod policies;

/// The agent channel (gRPC), generated from `proto/ward/agent/v1/agent.proto`.
#[cfg(feature = "agent")]
pub mod agent {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("ward.agent.v1");

    /// The protocol version this build speaks.
    pub const PROTOCOL_VERSION: u32 = 1;
}

#[cfg(feature = "agent")]
pub mod fragments;

#[cfg(feature = "agent")]
pub mod framed;

/// The agent channel's codec: prost encoding, as tonic's default, with small initial buffers.
/// Each live stream keeps an encode and a decode buffer for as long as the device is connected,
/// and tonic starts both at 8 KiB; the messages of an idle session (heartbeats, commands, acks)
/// are tens of bytes, and a large one (an inventory) grows its buffer as it needs.
#[cfg(feature = "agent")]
pub mod agent_codec {
    use std::marker::PhantomData;

    use tonic::codec::{BufferSettings, Codec};
    use tonic_prost::{ProstDecoder, ProstEncoder};

    /// Initial size of each stream's encode and decode buffer.
    pub const BUFFER_SIZE: usize = 512;
    /// An encoder hands its output on once it holds this much (tonic's default is 32 KiB): with
    /// messages of at most a fragment ([`crate::fragments::FRAGMENT_BYTES`]), each HTTP/2 DATA
    /// frame stays under 8 KiB, and so does the receiving connection's read buffer.
    const YIELD_THRESHOLD: usize = 4 * 1024;

    fn settings() -> BufferSettings {
        BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
    }

    /// Used by the generated client and server (`codec_path` in build.rs).
    #[derive(Debug, Clone)]
    pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

    impl<T, U> Default for LeanCodec<T, U> {
        fn default() -> Self {
            Self(PhantomData)
        }
    }

    impl<T, U> Codec for LeanCodec<T, U>
    where
        T: prost::Message + Send + 'static,
        U: prost::Message + Default + Send + 'static,
    {
        type Encode = T;
        type Decode = U;
        type Encoder = ProstEncoder<T>;
        type Decoder = ProstDecoder<U>;

        fn encoder(&mut self) -> Self::Encoder {
            ProstEncoder::new(settings())
        }

        fn decoder(&mut self) -> Self::Decoder {
            ProstDecoder::new(settings())
        }
    }
}

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use lwm2m::*;
pub use policies::*;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The API's base path.
pub const API_PREFIX: &str = "/api/v1";
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ward_session";
/// Prefix of API token strings (`ward_<id>_<secret>`), so leaked tokens are easy to scan for.
pub const TOKEN_PREFIX: &str = "ward_";

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
    /// `sqlite` or `postgres`.
    pub backend: String,
}

/// Credentials for `POST /auth/login` (session cookie) and `POST /auth/cli-login` (API token).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// Six-digit TOTP code, required once TOTP is enrolled (or give `recovery_code`).
    #[serde(default)]
    pub totp_code: Option<String>,
    /// A one-time recovery code instead of a TOTP code.
    #[serde(default)]
    pub recovery_code: Option<String>,
    /// `cli-login` only: the token's name (default `cli`).
    #[serde(default)]
    pub token_name: Option<String>,
    /// `cli-login` only: days until the token expires (default 30, at most 365).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// Answer to a successful session login.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    pub user: UserView,
    /// The session ends after this long without a request.
    pub idle_timeout_seconds: u64,
}

/// Who the caller is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub user: UserView,
    /// `session` or `token`.
    pub via: String,
    /// The token's id when `via` is `token`.
    pub token_id: Option<String>,
    /// `read` or `write`.
    pub scope: String,
}

/// An admin account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub display_name: String,
    /// `admin`, `security`, `operator`, `helpdesk` or `auditor`.
    pub role: String,
    /// Site slugs the account is limited to; empty means every site.
    pub sites: Vec<String>,
    pub totp_enabled: bool,
    pub break_glass: bool,
    pub disabled: bool,
    pub must_change_password: bool,
    /// RFC 3339.
    pub created_at: String,
}

/// `POST /users`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub username: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub role: String,
    /// Site slugs; empty for every site.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Leave out to have the server generate one (returned once, must be changed at first login).
    #[serde(default)]
    pub password: Option<String>,
    /// An emergency account: every use raises an alert entry in the audit log.
    #[serde(default)]
    pub break_glass: bool,
}

/// A created account, with its generated password when the server made one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedUser {
    pub user: UserView,
    pub initial_password: Option<String>,
}

/// `PATCH /users/{username}`: only the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub sites: Option<Vec<String>>,
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// `POST /auth/password`: change your own password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

/// A password generated by the server (`POST /users/{username}/reset-password`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GeneratedPassword {
    pub password: String,
}

/// Started TOTP enrolment: add the secret to an authenticator app, then confirm with a code.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TotpEnrolment {
    /// Base32 secret.
    pub secret: String,
    /// `otpauth://` URL for authenticator apps.
    pub otpauth_url: String,
    /// One-time recovery codes, shown only now.
    pub recovery_codes: Vec<String>,
}

/// `POST /auth/totp/confirm`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmRequest {
    pub code: String,
}

/// An API token (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    /// Owner's username.
    pub owner: String,
    /// `read` (GET only) or `write`.
    pub scope: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// `POST /tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    pub name: String,
    /// `read` or `write` (default `read`).
    #[serde(default)]
    pub scope: Option<String>,
    /// Days until expiry, 1 to 365 (default 90).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A new token with its secret, shown only once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub token: TokenView,
    /// Use as `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// A hospital or ward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SiteView {
    pub slug: String,
    pub name: String,
    /// `hospital` or `ward`.
    pub kind: String,
    pub parent: Option<String>,
    pub created_at: String,
}

/// `POST /sites`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSiteRequest {
    /// `hospital` or `hospital/ward`: a-z, 0-9 and -.
    pub slug: String,
    pub name: String,
}

/// `PATCH /sites/{slug}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSiteRequest {
    pub name: String,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryView {
    pub seq: u64,
    /// RFC 3339 with milliseconds.
    pub time: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// `success`, `failure`, `denied` or `alert`.
    pub outcome: String,
    /// The canonical JSON text that was hashed.
    pub details: String,
    pub source: Option<String>,
    /// Hex SHA-256.
    pub prev_hash: String,
    pub hash: String,
}

/// Query for `GET /audit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries after this sequence number (default 0).
    #[serde(default)]
    pub after: Option<u64>,
    /// At most this many (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub actor: Option<String>,
    /// An action, or a prefix ending in `.` such as `auth.`.
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
}

/// A page of audit entries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

/// Where verification found the log altered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerifyFailureView {
    pub seq: u64,
    /// `entry_edited`, `chain_broken`, `entry_missing`, `out_of_order`, `truncated`,
    /// `checkpoint_mismatch` or `bad_signature`.
    pub kind: String,
    pub detail: String,
}

/// `GET /audit/verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerifyReportView {
    pub ok: bool,
    pub entries_checked: u64,
    pub checkpoints_checked: u64,
    /// Merkle root (hex) over the entries checked.
    pub root: String,
    pub failure: Option<VerifyFailureView>,
}

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    pub tree_size: u64,
    pub root: String,
    pub head_hash: String,
    pub time: String,
    /// Hex Ed25519 signature.
    pub signature: String,
}

/// The audit public key, for verifying exports elsewhere.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditKeyView {
    /// Hex Ed25519 public key.
    pub public_key: String,
}

/// Prefix of enrollment token strings (`wardenroll_<id>_<secret>`).
pub const ENROLL_TOKEN_PREFIX: &str = "wardenroll_";

/// `POST /enroll-tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollTokenRequest {
    /// Site the enrolled devices belong to (`st-marys/icu`).
    pub site: String,
    /// `workstation`, `mobile`, `iot-gateway` or `medical`.
    pub class: String,
    /// `life-sustaining`, `high` or `normal` (default `normal`).
    #[serde(default)]
    pub criticality: Option<String>,
    /// The devices store or display patient data.
    #[serde(default)]
    pub phi: bool,
    /// How long the token is valid: `30m`, `24h`, `7d` (default `24h`, at most `365d`).
    #[serde(default)]
    pub expires: Option<String>,
    /// How many devices may enroll with it (default 1, at most 100000).
    #[serde(default)]
    pub uses: Option<u32>,
    /// Devices enrolled with it may be fully wiped (the device's own agent config must allow it too).
    #[serde(default)]
    pub allow_full_wipe: bool,
}

/// An enrollment token (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnrollTokenView {
    pub id: String,
    pub site: String,
    pub class: String,
    pub criticality: String,
    pub phi: bool,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub max_uses: u32,
    pub uses: u32,
    pub revoked_at: Option<String>,
}

/// A new enrollment token with its secret, shown only once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedEnrollToken {
    pub token: EnrollTokenView,
    /// Give to `ward-agent enroll --token`.
    pub secret: String,
}

/// `POST /enroll` (by the agent; the token authenticates).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    /// PKCS#10 certificate signing request, PEM. The private key stays on the device.
    pub csr_pem: String,
    /// The device's hostname as it reports it.
    pub hostname: String,
}

/// The device's identity.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrollResponse {
    pub device_id: String,
    /// The device certificate, PEM (subject common name = device id).
    pub certificate_pem: String,
    /// Ward's CA certificate, PEM, to verify the server with.
    pub ca_pem: String,
    /// RFC 3339 expiry of the certificate.
    pub not_after: String,
    /// Port of the agent channel (mutual TLS) on the same host.
    pub agent_port: u16,
    /// The server's command public key (Ed25519, hex): every command the device receives must
    /// carry a signature that verifies with it.
    #[serde(default)]
    pub command_key: String,
    /// Whether this device may be fully wiped (decided by the enrollment token).
    #[serde(default)]
    pub allow_full_wipe: bool,
}

/// A device as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub site: String,
    pub class: String,
    pub criticality: String,
    pub phi: bool,
    pub hostname: String,
    /// `active`, `locked`, `quarantined`, `wiped`, `lost`, `retired` or `revoked`.
    pub state: String,
    /// Heard from within the presence window.
    pub online: bool,
    pub last_seen_at: Option<String>,
    pub enrolled_at: String,
    pub certificate_expires_at: String,
    /// Current facts as the device reported them (bounded and sanitised by the agent and server).
    pub facts: serde_json::Value,
    /// The dynamic groups the device is in.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub compliance: ComplianceBrief,
}

/// One change to a device's facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FactsChangeView {
    pub time: String,
    pub change: serde_json::Value,
}

/// `GET /devices/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceDetail {
    pub device: DeviceView,
    /// Newest first, at most 50.
    pub history: Vec<FactsChangeView>,
}

/// Query for `GET /devices` and `GET /devices/fhir`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    /// Selector, e.g. `site within "st-marys" and class = "medical" and facts.os.version_id < "22.04"`.
    #[serde(default)]
    pub filter: Option<String>,
    /// Include retired devices.
    #[serde(default)]
    pub include_retired: bool,
}

/// A named clinician's confirmation of an action that would power off or wipe a medical or
/// life-sustaining device. Recorded in the audit log with the action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClinicianConfirmation {
    /// The clinician's name (and role), as they gave it.
    pub name: String,
    /// Why it is safe for the patient now.
    pub reason: String,
}

/// `POST /devices/{id}/commands`: one remote action for one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCommandRequest {
    /// A command kind (the OpenAPI document lists them from the command-kind table).
    pub kind: String,
    /// Parameters for the kind: `message` and `lost-mode` take `text`; `wipe-full` takes
    /// `confirm_hostname`; `collect-diagnostics` takes `max_bytes`; `firmware-update` takes `uri`.
    /// Others take none.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// How long the command may wait for an offline device: `30m`, `24h`, `7d` (default `7d`).
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub clinician: Option<ClinicianConfirmation>,
}

/// `POST /commands`: one action for every device a selector matches (in the caller's sites).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkCommandRequest {
    /// Selector, as for `GET /devices?filter=`. Required: an empty filter is refused.
    pub filter: String,
    pub kind: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub clinician: Option<ClinicianConfirmation>,
    /// Only count what would happen; queue nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a bulk action matched and queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BulkCommandResponse {
    /// Set when commands were queued; `GET /commands?batch=` follows them.
    pub batch_id: Option<String>,
    /// Devices the selector matched (revoked and retired ones are never matched).
    pub matched: u32,
    /// Of those, medical or life-sustaining devices this action would power off or wipe.
    pub needs_clinician: u32,
    /// Of those, devices not connected now (they get the command when they reconnect).
    pub offline: u32,
    /// Devices the selector matched whose platform cannot carry out this kind (left out).
    #[serde(default)]
    pub unsupported: u32,
    pub command_ids: Vec<String>,
    pub dry_run: bool,
}

/// A command as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CommandView {
    pub id: String,
    pub device_id: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// `queued`, `sent`, `acknowledged`, `succeeded`, `failed`, `expired` or `cancelled`.
    pub state: String,
    pub batch_id: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub sent_at: Option<String>,
    pub acknowledged_at: Option<String>,
    pub finished_at: Option<String>,
    /// The device refuses the command after this time.
    pub expires_at: String,
    /// What the device (or the server) said about it.
    pub detail: String,
    /// A wipe's signed completion record is kept.
    pub has_proof: bool,
}

/// A command with its proof and output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CommandDetail {
    pub command: CommandView,
    /// The wipe's completion record (what was erased, when), signed by the device's key.
    #[schema(value_type = Option<Object>)]
    pub proof: Option<serde_json::Value>,
    /// Hex ECDSA P-256 signature over the record's exact text; verified by the server on receipt.
    pub proof_signature: Option<String>,
    /// The diagnostics bundle.
    #[schema(value_type = Option<Object>)]
    pub output: Option<serde_json::Value>,
}

/// Query for `GET /commands`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CommandQuery {
    /// Only this device's commands.
    #[serde(default)]
    pub device: Option<String>,
    /// Only commands in this state.
    #[serde(default)]
    pub state: Option<String>,
    /// Only commands of this bulk action.
    #[serde(default)]
    pub batch: Option<String>,
    /// At most this many, newest first (default 100, at most 10000).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `POST /incidents`: declare an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclareIncidentRequest {
    pub title: String,
    /// `low`, `medium`, `high` (default) or `critical`.
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub description: String,
    /// `breach` (default) or `lost` (lost or stolen devices: lost mode and a selective wipe).
    #[serde(default)]
    pub situation: Option<String>,
    /// RFC 3339; default now.
    #[serde(default)]
    pub discovered_at: Option<String>,
    /// When the organisation became aware (regulatory deadlines count from here); default now.
    #[serde(default)]
    pub aware_at: Option<String>,
    /// Selector over devices, as for `GET /devices?filter=`.
    pub scope: String,
    /// Containment plan name (default `default`).
    #[serde(default)]
    pub plan: Option<String>,
}

/// Regulatory notification deadlines, RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadlinesView {
    /// GDPR Art. 33 / ICO: 72 hours from awareness.
    pub gdpr: String,
    /// NIS2 early warning: 24 hours from awareness.
    pub nis2_early_warning: String,
    /// HIPAA: 60 days from discovery.
    pub hipaa: String,
}

/// An incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncidentView {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub description: String,
    pub situation: String,
    pub discovered_at: String,
    pub aware_at: String,
    pub scope: String,
    pub plan: String,
    /// `declared`, `approved`, `containing`, `lifted` or `closed`.
    pub state: String,
    pub declared_by: String,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
    pub clinician: Option<ClinicianConfirmation>,
    /// When containment started ("go").
    pub contained_at: Option<String>,
    pub lifted_at: Option<String>,
    pub closed_at: Option<String>,
    pub created_at: String,
    pub deadlines: DeadlinesView,
}

/// An action withheld from a device, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WithheldView {
    pub action: String,
    pub reason: String,
}

/// One device in an incident's scope and what it will get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlannedDeviceView {
    pub id: String,
    pub hostname: String,
    pub site: String,
    pub class: String,
    pub criticality: String,
    pub phi: bool,
    pub online: bool,
    pub actions: Vec<String>,
    pub withheld: Vec<WithheldView>,
}

/// A device left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExcludedDeviceView {
    pub id: String,
    pub hostname: String,
    pub reason: String,
}

/// Clinical impact in one ward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WardImpactView {
    pub site: String,
    pub devices: u32,
    pub life_sustaining: u32,
    pub high: u32,
}

/// What devices of one class lose with one action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LossView {
    pub class: String,
    pub action: String,
    pub devices: u32,
    pub loses: String,
}

/// Clinical impact first: how many life-sustaining and high-criticality devices, where, and what
/// they lose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClinicalImpactView {
    pub life_sustaining: u32,
    pub high: u32,
    pub wards: Vec<WardImpactView>,
    pub losses: Vec<LossView>,
}

/// `GET /incidents/{id}/preview`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncidentPreview {
    pub incident_id: String,
    pub clinical_impact: ClinicalImpactView,
    /// Devices in scope that get at least one action.
    pub devices: Vec<PlannedDeviceView>,
    /// Of those, not connected now (their commands wait for them).
    pub offline: u32,
    pub excluded: Vec<ExcludedDeviceView>,
    /// Action → number of devices.
    pub actions: std::collections::BTreeMap<String, u32>,
    /// Devices with an action withheld until a clinician confirms.
    pub needs_clinician: u32,
    pub needs_second_approval: bool,
    pub approval_reasons: Vec<String>,
}

/// `POST /incidents/{id}/approve` and `/contain`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentActionRequest {
    /// A clinician's confirmation: actions beyond isolation on medical and life-sustaining devices.
    #[serde(default)]
    pub clinician: Option<ClinicianConfirmation>,
    /// `lift` only: just these devices (default all).
    #[serde(default)]
    pub devices: Option<Vec<String>>,
}

/// Time-to-contain statistics, milliseconds from "go" to each acknowledgement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LatenciesView {
    pub count: u64,
    pub p50_ms: i64,
    pub p95_ms: i64,
    pub p99_ms: i64,
    pub max_ms: i64,
}

/// Progress of containment (or of lifting it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressView {
    pub commands: u64,
    pub acknowledged: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Queued or sent: not yet acknowledged.
    pub outstanding: u64,
    /// Outstanding commands whose device is offline now.
    pub offline: u64,
}

/// `GET /incidents/{id}/status` (and each server-sent event of `/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncidentStatus {
    pub incident_id: String,
    pub state: String,
    pub contain: ProgressView,
    pub time_to_contain: LatenciesView,
    pub lift: ProgressView,
}

/// `POST /incidents/{id}/close`: what the breach report needs beyond what Ward knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseIncidentRequest {
    /// Nature of the breach (GDPR Art. 33(3)(a)).
    pub nature: String,
    /// Categories of data subjects (patients, staff, ...).
    #[serde(default)]
    pub data_subject_categories: Vec<String>,
    /// Approximate number of data subjects (HIPAA: individuals).
    #[serde(default)]
    pub data_subjects: u64,
    /// Approximate number of records.
    #[serde(default)]
    pub records: u64,
    /// Types of PHI involved (names, diagnoses, ...).
    #[serde(default)]
    pub phi_types: Vec<String>,
    /// The data protection officer or other contact point.
    pub contact_point: String,
    pub likely_consequences: String,
    /// Measures taken or proposed, beyond Ward's containment (which the report lists itself).
    #[serde(default)]
    pub measures: String,
    /// Revoke the certificates of every device in scope.
    #[serde(default)]
    pub revoke_certificates: bool,
}
