//! Stored records that are not domain types in their own right (credentials, sessions, filters).

use ward_domain::access::{Role, SiteScope};
use ward_domain::command::{CommandKind, CommandState};
use ward_domain::device::{Criticality, DeviceClass, DeviceState};
use ward_domain::incident::{IncidentState, Severity, Situation};
use ward_domain::site::SiteSlug;

/// An admin account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// UUID text.
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub sites: SiteScope,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Must change the password at next login (set for generated passwords).
    pub must_change_password: bool,
    /// TOTP secret bytes; present once enrolment starts.
    pub totp_secret: Option<Vec<u8>>,
    /// Enrolment confirmed: logins need a code.
    pub totp_enabled: bool,
    /// Last accepted TOTP time step, so a code is never accepted twice.
    pub totp_last_step: i64,
    /// SHA-256 hex of unused recovery codes.
    pub recovery_codes: Vec<String>,
    /// Emergency account: every use raises an alert entry in the audit log.
    pub break_glass: bool,
    pub disabled: bool,
    pub created_ms: i64,
}

/// A browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 hex of the cookie value.
    pub token_hash: String,
    pub user_id: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    /// Absolute expiry regardless of activity.
    pub expires_ms: i64,
    pub source: Option<String>,
}

/// What an API token may do on behalf of its owner (never more than the owner's role allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    /// GET requests only.
    Read,
    /// Everything the owner may do.
    Write,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Write => "write",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(TokenScope::Read),
            "write" => Some(TokenScope::Write),
            _ => None,
        }
    }
}

/// An API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    /// Public part of the token, UUID text.
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// SHA-256 hex of the secret part.
    pub secret_hash: String,
    pub scope: TokenScope,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

/// Narrows an audit listing. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exact actor (`user:alice`).
    pub actor: Option<String>,
    /// Action, or a prefix ending in `.` (`auth.`).
    pub action: Option<String>,
    /// Exact target.
    pub target: Option<String>,
    /// Only entries at or after this time.
    pub since_ms: Option<i64>,
}

/// An enrollment token: lets devices join one site with default attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollTokenRecord {
    /// Public part, 32 hex characters.
    pub id: String,
    /// SHA-256 hex of the secret part.
    pub secret_hash: String,
    pub site: SiteSlug,
    pub class: DeviceClass,
    pub criticality: Criticality,
    /// Devices enrolled with it store or display patient data.
    pub phi: bool,
    /// Actor that created it (`user:alice`).
    pub created_by: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub max_uses: u32,
    pub uses: u32,
    pub revoked_ms: Option<i64>,
    /// Devices enrolled with it may be fully wiped (opt-in; the agent must allow it too).
    pub allow_full_wipe: bool,
}

/// A managed device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// UUID text; also the certificate's subject common name.
    pub id: String,
    pub site: SiteSlug,
    pub class: DeviceClass,
    pub criticality: Criticality,
    pub phi: bool,
    /// As reported at enrollment (bounded, control characters removed).
    pub hostname: String,
    pub state: DeviceState,
    /// SHA-256 hex of the current certificate's DER.
    pub cert_fingerprint: String,
    pub cert_not_after_ms: i64,
    pub enroll_token_id: String,
    pub enrolled_ms: i64,
    pub last_seen_ms: Option<i64>,
    /// Current facts, JSON text.
    pub facts: String,
    pub facts_updated_ms: Option<i64>,
    /// Its enrollment allowed a full wipe.
    pub allow_full_wipe: bool,
}

/// A remote action for one device, as stored: written before it is pushed, then moved through
/// its states, each with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// Delivery order (assigned by the store; 0 before insertion).
    pub seq: i64,
    /// UUID text.
    pub id: String,
    pub device_id: String,
    pub kind: CommandKind,
    /// Parameters, JSON object text: signed and sent as these exact bytes.
    pub params: String,
    pub not_after_ms: i64,
    /// Hex Ed25519 signature by the server's command key (64 bytes), followed for a command
    /// signed as one of a batch by its batch proof (`ward_domain::command::BatchProof`).
    pub signature: String,
    pub state: CommandState,
    /// Set when created by a bulk action (one filter, many devices).
    pub batch_id: Option<String>,
    /// Actor (`user:alice`).
    pub created_by: String,
    pub created_ms: i64,
    pub sent_ms: Option<i64>,
    pub acked_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// What the agent (or the server, for expiry and cancellation) said.
    pub detail: String,
    /// For wipes: the completion record (JSON text) and the device's signature over it (hex).
    pub proof: Option<String>,
    pub proof_signature: Option<String>,
    /// For diagnostics: the bundle, JSON text. Only filled by [`crate::CommandStore::command`].
    pub output: Option<String>,
}

/// How a command ended on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFinish {
    /// `Succeeded` or `Failed`.
    pub state: CommandState,
    pub detail: String,
    pub proof: Option<String>,
    pub proof_signature: Option<String>,
    pub output: Option<String>,
    /// The device's new lifecycle state, when the action changes it (locked, quarantined, ...).
    pub device_state: Option<DeviceState>,
}

/// Narrows a command listing. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandFilter {
    pub device_id: Option<String>,
    pub state: Option<CommandState>,
    pub batch_id: Option<String>,
    /// Newest first, at most this many (default 100).
    pub limit: Option<u32>,
}

/// A declared incident as stored. The plan is kept as the exact YAML text it was declared with, so
/// editing a plan later never changes what an incident did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRecord {
    /// UUID text.
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub description: String,
    pub situation: Situation,
    /// When the breach was discovered, and when the organisation became aware (deadlines count
    /// from this), Unix ms.
    pub discovered_ms: i64,
    pub aware_ms: i64,
    /// Selector over devices.
    pub scope: String,
    pub plan_name: String,
    pub plan: String,
    pub state: IncidentState,
    /// Actor text, and the user id (the declarer may never approve).
    pub declared_by: String,
    pub declared_by_user: String,
    pub approved_by: Option<String>,
    pub approved_ms: Option<i64>,
    /// JSON `{name, reason}` of the clinician who confirmed actions beyond isolation.
    pub clinician: Option<String>,
    /// When containment was started ("go"); time-to-contain counts from here.
    pub contain_ms: Option<i64>,
    pub lifted_ms: Option<i64>,
    pub closed_ms: Option<i64>,
    /// The closing details and final report, JSON text.
    pub report: Option<String>,
    pub created_ms: i64,
}

/// One applied version of a policy. A removal is a version too (`removed`, empty source), so the
/// history shows when and by whom a policy was withdrawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersionRecord {
    pub name: String,
    /// 1, 2, ... per name.
    pub version: i64,
    /// The YAML text as applied.
    pub source: String,
    /// The parsed policy as canonical JSON (what the engine runs).
    pub spec: String,
    pub removed: bool,
    pub created_ms: i64,
    /// The account that applied it (`user:NAME`).
    pub created_by: String,
}

/// The result of one check of one policy on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceRecord {
    pub device_id: String,
    pub policy: String,
    pub check_id: String,
    pub status: ward_domain::policy::CheckStatus,
    /// When the status last changed.
    pub since_ms: i64,
    /// When it was last evaluated.
    pub evaluated_ms: i64,
    pub policy_version: i64,
}

/// Identifies a compliance result, for removing it (the policy or check is gone, or no longer
/// applies to the device).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ComplianceKey {
    pub device_id: String,
    pub policy: String,
    pub check_id: String,
}

/// A remediation started for a device that stayed non-compliant with a policy past its grace
/// period; one per (device, policy, failing since), so it runs once per lapse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemediationRecord {
    pub device_id: String,
    pub policy: String,
    pub failing_since_ms: i64,
    pub action: ward_domain::policy::RemediationAction,
    /// The command it queued, if any.
    pub command_id: Option<String>,
    pub time_ms: i64,
}

/// A dynamic group: a named selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub name: String,
    pub selector: String,
    pub description: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A provisioned LwM2M endpoint: the constrained device's LwM2M name, the Ward device it is, and
/// its pre-shared key for DTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lwm2mEndpointRecord {
    /// The LwM2M endpoint client name (`ep=`), unique.
    pub endpoint: String,
    /// The device row it is (`devices.id`).
    pub device_id: String,
    /// The DTLS PSK identity the device presents.
    pub psk_identity: String,
    /// The pre-shared key, hex. Stored in clear because the DTLS server needs the key itself to
    /// complete a PSK handshake (a hash would not do); empty for an endpoint created on first
    /// contact (`auto_create`), which has no key.
    pub psk: String,
    pub created_ms: i64,
}
