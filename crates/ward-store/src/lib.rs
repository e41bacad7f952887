//! Ward's storage role traits. Adapters (SQLite, PostgreSQL) implement them; the server only ever
//! names these traits. Every method that changes state takes the [`Audit`] that records it and must
//! write it in the same transaction: if the audit write fails, the change fails (fail closed).

pub mod conformance;
mod records;
mod verify;

use async_trait::async_trait;
use ward_domain::audit::{AuditEntry, AuditHead, AuditRecord, Checkpoint};
use ward_domain::device::DeviceState;
use ward_domain::site::{Site, SiteSlug};

pub use records::{
    ApiTokenRecord, AuditFilter, CommandFilter, CommandFinish, CommandRecord, ComplianceKey,
    ComplianceRecord, DeviceRecord, EnrollTokenRecord, GroupRecord, IncidentRecord, Lwm2mEndpointRecord,
    PolicyVersionRecord, RemediationRecord, SessionRecord, TokenScope, UserRecord,
};
pub use verify::{VERIFY_PAGE, verify_log};

/// Errors every adapter reports in these terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record named does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The change collides with existing state (a duplicate name, a site that still has wards).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or refused the operation (including a failed audit write).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The audit entries that record a change, with the time they are stamped with.
#[derive(Debug, Clone)]
pub struct Audit {
    pub time_ms: i64,
    pub records: Vec<AuditRecord>,
}

impl Audit {
    /// One record at `time_ms`.
    pub fn one(time_ms: i64, record: AuditRecord) -> Self {
        Self {
            time_ms,
            records: vec![record],
        }
    }
}

/// Admin accounts.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts a user. `Conflict` if the username or id exists.
    async fn create_user(&self, user: &UserRecord, audit: Audit) -> StoreResult<()>;
    /// Replaces every field of the user with this id. `NotFound` if there is none. When the user is
    /// disabled by this update, their sessions are deleted in the same transaction.
    async fn update_user(&self, user: &UserRecord, audit: Audit) -> StoreResult<()>;
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    /// All users ordered by username.
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    async fn count_users(&self) -> StoreResult<u64>;
}

/// Browser sessions, keyed by the SHA-256 of the cookie value (the value itself is never stored).
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &SessionRecord, audit: Audit) -> StoreResult<()>;
    async fn session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>>;
    /// Records activity; not audited (it is not a change an auditor asks about).
    async fn touch_session(&self, token_hash: &str, now_ms: i64) -> StoreResult<()>;
    /// Deletes one session (logout or expiry). Deleting a missing session is not an error.
    async fn delete_session(&self, token_hash: &str, audit: Audit) -> StoreResult<()>;
}

/// API tokens for the CLI and scripts, keyed by id; the secret is stored as a SHA-256 hash.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// `Conflict` if the id exists.
    async fn create_token(&self, token: &ApiTokenRecord, audit: Audit) -> StoreResult<()>;
    async fn token(&self, id: &str) -> StoreResult<Option<ApiTokenRecord>>;
    /// Tokens of one user (or all users when `None`), newest first.
    async fn list_tokens(&self, user_id: Option<&str>) -> StoreResult<Vec<ApiTokenRecord>>;
    /// Marks a token revoked at `audit.time_ms`. `NotFound` if missing; revoking twice keeps the
    /// first time.
    async fn revoke_token(&self, id: &str, audit: Audit) -> StoreResult<()>;
    /// Records use; not audited here (mutations made with a token are audited with the token named).
    async fn touch_token(&self, id: &str, now_ms: i64) -> StoreResult<()>;
}

/// Hospitals and wards.
#[async_trait]
pub trait SiteStore: Send + Sync {
    /// `Conflict` if the slug exists; `NotFound` if a ward's hospital does not exist.
    async fn create_site(&self, site: &Site, audit: Audit) -> StoreResult<()>;
    /// Renames. `NotFound` if missing.
    async fn update_site(&self, site: &Site, audit: Audit) -> StoreResult<()>;
    /// `NotFound` if missing; `Conflict` if it still has wards.
    async fn delete_site(&self, slug: &SiteSlug, audit: Audit) -> StoreResult<()>;
    async fn site(&self, slug: &SiteSlug) -> StoreResult<Option<Site>>;
    /// All sites ordered by slug.
    async fn list_sites(&self) -> StoreResult<Vec<Site>>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends records on their own (logins, views, denials) in one transaction, in order.
    async fn append(&self, audit: Audit) -> StoreResult<Vec<AuditEntry>>;
    /// Entries with `seq > after`, ascending, at most `limit`, matching `filter`.
    async fn entries(&self, after: u64, limit: u32, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>>;
    /// At most `limit` entries with `seq > after`, ascending, unfiltered, straight from storage
    /// (for verification: no checks, so damage is visible).
    async fn raw_entries(&self, after: u64, limit: u32) -> StoreResult<Vec<AuditEntry>>;
    /// The recorded head (size, last hash, Merkle frontier). `Corrupt` if the head record is
    /// missing or does not decode: appending must stop until an operator looks.
    async fn head(&self) -> StoreResult<AuditHead>;
    /// The size recorded in the head, `None` if the head record is missing (for verification, which
    /// must report damage rather than fail on it).
    async fn recorded_size(&self) -> StoreResult<Option<u64>>;
    /// Signs the current head with `sign` and stores the checkpoint, atomically with reading the
    /// head; returns `None` when the log has not grown since the last checkpoint.
    async fn checkpoint(
        &self,
        sign: &(dyn for<'h> Fn(&'h AuditHead) -> Checkpoint + Send + Sync),
    ) -> StoreResult<Option<Checkpoint>>;
    /// All checkpoints by tree size.
    async fn checkpoints(&self) -> StoreResult<Vec<Checkpoint>>;
}

/// Enrollment tokens.
#[async_trait]
pub trait EnrollTokenStore: Send + Sync {
    /// `Conflict` if the id exists; `NotFound` if the site does not exist.
    async fn create_enroll_token(&self, token: &EnrollTokenRecord, audit: Audit) -> StoreResult<()>;
    async fn enroll_token(&self, id: &str) -> StoreResult<Option<EnrollTokenRecord>>;
    /// Newest first.
    async fn list_enroll_tokens(&self) -> StoreResult<Vec<EnrollTokenRecord>>;
    /// Marks revoked at `audit.time_ms` (the first revocation time is kept). `NotFound` if missing.
    async fn revoke_enroll_token(&self, id: &str, audit: Audit) -> StoreResult<()>;
}

/// Managed devices, their facts and the history of those facts.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Takes one use of enrollment token `token_id` and inserts `device`, atomically with `audit`.
    /// `Conflict` if the token has no use left, is revoked or has expired at `audit.time_ms` (two
    /// devices racing for the last use: exactly one wins).
    async fn enroll_device(&self, token_id: &str, device: &DeviceRecord, audit: Audit) -> StoreResult<()>;
    /// Several enrollments in one transaction (group commit for the enrollment writer), in order,
    /// each as [`DeviceStore::enroll_device`] would: an item whose token has no use left gets
    /// `Conflict` and writes nothing (not even its audit entry) while the others proceed. When the
    /// transaction itself fails, every item gets that error.
    async fn enroll_devices(&self, batch: &[NewEnrollment]) -> StoreResult<Vec<StoreResult<()>>>;
    async fn device(&self, id: &str) -> StoreResult<Option<DeviceRecord>>;
    /// Devices ordered by site then hostname; retired ones only when asked.
    async fn list_devices(&self, include_retired: bool) -> StoreResult<Vec<DeviceRecord>>;
    /// Changes the lifecycle state. `NotFound` if missing.
    async fn set_device_state(&self, id: &str, state: DeviceState, audit: Audit) -> StoreResult<()>;
    /// Replaces the current facts and appends `change` (JSON text: what changed) to the history.
    /// Device-reported data is not an admin action, so it is not audited; the history is its record.
    async fn record_facts(&self, id: &str, facts: &str, change: &str, now_ms: i64) -> StoreResult<()>;
    /// Stores several facts updates in one transaction (group commit for the agent channel's
    /// writer): each as [`DeviceStore::record_facts`] would, in order. An update for a device that
    /// no longer exists is skipped rather than failing the others.
    async fn record_facts_batch(&self, updates: &[FactsUpdate]) -> StoreResult<()>;
    /// Records that the device was heard from.
    async fn record_seen(&self, id: &str, now_ms: i64) -> StoreResult<()>;
    /// Records when each of several devices was last heard from, in one transaction: a time
    /// earlier than the one stored is ignored (a batch may arrive after a newer single write), and
    /// an id that names no device is skipped.
    async fn record_seen_all(&self, seen: &[(String, i64)]) -> StoreResult<()>;
    /// The newest `limit` fact changes, newest first: (time, change JSON text).
    async fn facts_history(&self, id: &str, limit: u32) -> StoreResult<Vec<(i64, String)>>;
    /// Records a renewed certificate. `NotFound` if missing.
    async fn renew_certificate(
        &self,
        id: &str,
        fingerprint: &str,
        not_after_ms: i64,
        audit: Audit,
    ) -> StoreResult<()>;
}

/// Something a device's connection reported about a command, for
/// [`CommandQueue::record_command_events`].
#[derive(Debug, Clone)]
pub enum CommandEvent {
    /// Pushed on the device's stream.
    Sent { id: String, time_ms: i64 },
    Acknowledged {
        id: String,
        device_id: String,
        time_ms: i64,
    },
    /// Succeeded or failed; `finish.device_state` is ignored (derived from `kind`).
    Finished {
        id: String,
        device_id: String,
        kind: ward_domain::command::CommandKind,
        finish: CommandFinish,
        audit: Audit,
    },
}

/// One enrollment, for [`DeviceStore::enroll_devices`].
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    pub token_id: String,
    pub device: DeviceRecord,
    pub audit: Audit,
}

/// One device's new facts, for [`DeviceStore::record_facts_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactsUpdate {
    pub device_id: String,
    /// Current facts, JSON text.
    pub facts: String,
    /// What changed, JSON text (appended to the history).
    pub change: String,
    pub time_ms: i64,
}

/// Durable remote actions. A command is stored before it is pushed; each state change is stored
/// with its time. Transitions only move forward: a late or repeated report never rewinds a command.
#[async_trait]
pub trait CommandQueue: Send + Sync {
    /// Inserts queued commands, atomically with `audit`. `NotFound` if a device does not exist;
    /// `Conflict` if an id exists.
    async fn create_commands(&self, commands: &[CommandRecord], audit: Audit) -> StoreResult<()>;
    /// One command with its output.
    async fn command(&self, id: &str) -> StoreResult<Option<CommandRecord>>;
    /// Commands matching `filter`, newest first, without their output.
    async fn list_commands(&self, filter: &CommandFilter) -> StoreResult<Vec<CommandRecord>>;
    /// What the device should be given now: queued, sent and acknowledged commands, in order.
    async fn pending_commands(&self, device_id: &str) -> StoreResult<Vec<CommandRecord>>;
    /// queued → sent. Not audited (delivery, not a decision). Other states are left alone.
    async fn mark_sent(&self, ids: &[String], now_ms: i64) -> StoreResult<()>;
    /// queued or sent → acknowledged, for the device it was addressed to. False when the
    /// command is unknown, another device's, or past that state.
    async fn mark_acknowledged(&self, id: &str, device_id: &str, now_ms: i64) -> StoreResult<bool>;
    /// A non-final command of `device_id` → succeeded or failed (with the device's new lifecycle
    /// state, unless it is revoked or retired), atomically with `audit`. False, and nothing
    /// written, when the command is unknown, another device's, or already final.
    async fn finish_command(
        &self,
        id: &str,
        device_id: &str,
        finish: &CommandFinish,
        audit: Audit,
    ) -> StoreResult<bool>;
    /// queued → cancelled, atomically with `audit`. `NotFound` if missing; `Conflict` once the
    /// command has been delivered or is over.
    async fn cancel_command(&self, id: &str, audit: Audit) -> StoreResult<CommandRecord>;
    /// Applies what devices reported, in order, in one transaction (group commit for the agent
    /// channel): each event as [`CommandQueue::mark_sent`], [`CommandQueue::mark_acknowledged`] or
    /// [`CommandQueue::finish_command`] would — a finished command's device state is derived here
    /// from its kind and the device's current state, and its audit entries are written only when
    /// the command was still pending. Events that no longer apply change nothing.
    async fn record_command_events(&self, events: &[CommandEvent]) -> StoreResult<()>;
    /// Queued or sent commands whose not-after has passed at `now_ms` → expired, each with the
    /// audit record `record` makes for it, in one transaction. Returns them.
    async fn expire_commands(
        &self,
        now_ms: i64,
        record: &(dyn for<'c> Fn(&'c CommandRecord) -> AuditRecord + Send + Sync),
    ) -> StoreResult<Vec<CommandRecord>>;
}

/// Incidents. Every change moves the incident from the state the caller read (optimistic: a
/// concurrent change makes it `Conflict`) and may queue commands, all in one transaction with the
/// audit entries.
#[async_trait]
pub trait IncidentStore: Send + Sync {
    /// `Conflict` if the id exists.
    async fn create_incident(&self, incident: &IncidentRecord, audit: Audit) -> StoreResult<()>;
    async fn incident(&self, id: &str) -> StoreResult<Option<IncidentRecord>>;
    /// Newest first.
    async fn list_incidents(&self) -> StoreResult<Vec<IncidentRecord>>;
    /// Replaces the incident's fields if its state is still `expected`, and queues `commands`.
    /// `NotFound` if missing; `Conflict` if its state moved on.
    async fn update_incident(
        &self,
        incident: &IncidentRecord,
        expected: ward_domain::incident::IncidentState,
        commands: &[CommandRecord],
        audit: Audit,
    ) -> StoreResult<()>;
}

/// Policies (every version kept), compliance results, remediations, the settings last sent to
/// each device, and dynamic groups.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// Stores new versions of several policies atomically with `audit`: all or none. `Conflict` if
    /// a (name, version) exists (someone else applied first).
    async fn apply_policies(&self, versions: &[PolicyVersionRecord], audit: Audit) -> StoreResult<()>;
    /// Every version of `name` (or of all policies), by name then version.
    async fn policy_versions(&self, name: Option<&str>) -> StoreResult<Vec<PolicyVersionRecord>>;
    /// The newest version of each policy that is not removed, by name.
    async fn current_policies(&self) -> StoreResult<Vec<PolicyVersionRecord>>;
    /// Compliance results of one device (or all), by device, policy, check.
    async fn compliance(&self, device_id: Option<&str>) -> StoreResult<Vec<ComplianceRecord>>;
    /// Inserts or replaces `upserts` and deletes `removals`, in one transaction. Device-derived
    /// state, not an admin action: not audited (the policy change or the facts are the record).
    async fn record_compliance(
        &self,
        upserts: &[ComplianceRecord],
        removals: &[ComplianceKey],
    ) -> StoreResult<()>;
    /// Every remediation started.
    async fn remediations(&self) -> StoreResult<Vec<RemediationRecord>>;
    /// Records a remediation and queues its commands atomically with `audit`. False, and nothing
    /// written, when this lapse was already remediated.
    async fn record_remediation(
        &self,
        remediation: &RemediationRecord,
        commands: &[CommandRecord],
        audit: Audit,
    ) -> StoreResult<bool>;
    /// (device id, digest) of the settings last sent to each device.
    async fn device_settings(&self) -> StoreResult<Vec<(String, String)>>;
    /// Records the settings digests sent and queues the apply-settings commands (one per device,
    /// `commands[i]` for `digests[i]`) atomically with `audit`.
    async fn record_device_settings(
        &self,
        digests: &[(String, String)],
        commands: &[CommandRecord],
        audit: Audit,
    ) -> StoreResult<()>;
    /// Creates or replaces a group.
    async fn put_group(&self, group: &GroupRecord, audit: Audit) -> StoreResult<()>;
    /// `NotFound` if missing.
    async fn delete_group(&self, name: &str, audit: Audit) -> StoreResult<()>;
    /// All groups by name.
    async fn groups(&self) -> StoreResult<Vec<GroupRecord>>;
}

/// LwM2M endpoints provisioned for the gateway. Each is a row of `devices` (the inventory, commands
/// and incidents see it like any device) plus the endpoint's name and DTLS pre-shared key.
#[async_trait]
pub trait Lwm2mStore: Send + Sync {
    /// Inserts `device` and `endpoint` (whose `device_id` must be `device.id`) atomically with
    /// `audit`. `Conflict` if the endpoint name or the device id exists; `NotFound` if the
    /// device's site does not exist.
    async fn create_lwm2m_endpoint(
        &self,
        device: &DeviceRecord,
        endpoint: &Lwm2mEndpointRecord,
        audit: Audit,
    ) -> StoreResult<()>;
    /// The endpoint with this name, if provisioned.
    async fn lwm2m_endpoint(&self, endpoint: &str) -> StoreResult<Option<Lwm2mEndpointRecord>>;
    /// Every endpoint, by name.
    async fn list_lwm2m_endpoints(&self) -> StoreResult<Vec<Lwm2mEndpointRecord>>;
}

/// Everything the server needs from storage.
#[async_trait]
pub trait Store:
    UserStore
    + SessionStore
    + TokenStore
    + SiteStore
    + AuditLog
    + EnrollTokenStore
    + DeviceStore
    + CommandQueue
    + IncidentStore
    + PolicyStore
    + Lwm2mStore
{
    /// A short name for logs and `/health`: `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Copies what the write-ahead log holds into the database file, as far as readers allow
    /// (SQLite; other backends do this themselves). The server calls it when no containment is
    /// being written, so that a fan-out's commits do not stop to do it.
    async fn checkpoint_log(&self) -> StoreResult<()>;
}
