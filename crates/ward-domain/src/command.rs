//! Remote actions ("commands"): what can be asked of a device, the parameters each kind takes, the
//! states a command moves through, the bytes the server's command key signs, the clinical-safety
//! rule, and the signed completion record a wipe returns.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::device::{Criticality, DeviceClass, DeviceState, string_enum};
use crate::{ValidationError, merkle};

string_enum!(
    /// What a command asks the device to do.
    CommandKind, "kind", {
        Lock => "lock",
        Unlock => "unlock",
        /// Show a text to the device's user.
        Message => "message",
        Reboot => "reboot",
        Shutdown => "shutdown",
        /// Cut the device off the network except for the Ward server, DNS and loopback.
        Quarantine => "quarantine",
        Release => "release",
        /// Erase the managed data directories and the agent's data key.
        WipeSelective => "wipe-selective",
        /// Erase the device (only where its enrollment allowed it).
        WipeFull => "wipe-full",
        CollectDiagnostics => "collect-diagnostics",
        /// Lock, show a message and report where the device is.
        LostMode => "lost-mode",
        /// Enforce the settings the policies in scope ask for (sent by the policy engine).
        ApplySettings => "apply-settings",
        /// Install the firmware package at `uri` (LwM2M devices: object /5); restarts the device.
        FirmwareUpdate => "firmware-update",
    }
);

string_enum!(
    /// Where a command is: queued → sent → acknowledged → succeeded | failed, or expired / cancelled.
    CommandState, "state", {
        Queued => "queued",
        Sent => "sent",
        Acknowledged => "acknowledged",
        Succeeded => "succeeded",
        Failed => "failed",
        Expired => "expired",
        Cancelled => "cancelled",
    }
);

impl CommandState {
    /// Whether the command is over (nothing more will happen to it).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CommandState::Succeeded | CommandState::Failed | CommandState::Expired | CommandState::Cancelled
        )
    }
}

string_enum!(
    /// A kind of device Ward manages, by how commands reach it and are carried out. Apple MDM and
    /// Windows MDM devices will join as platforms of their own.
    Platform, "platform", {
        /// The Linux agent (`ward-agent`), over its gRPC channel.
        Agent => "agent",
        /// Constrained devices speaking LwM2M over CoAP/DTLS, through the server's gateway.
        Lwm2m => "lwm2m",
    }
);

/// What Ward knows about one kind of command: one row of [`KINDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: CommandKind,
    /// A short human label for buttons and menus.
    pub label: &'static str,
    /// Takes the device (or its data) away from its user. It needs the write permission on
    /// devices, and the command line asks before sending it even to one device.
    pub destructive: bool,
    /// Powers the device off, restarts it (a firmware update does) or destroys its data: never
    /// on a medical or life-sustaining device without a named clinician's confirmation (see
    /// [`needs_clinician`]).
    pub endangers_patients: bool,
    /// Counts towards a containment plan's approval threshold: more devices than that getting
    /// one of these needs a second approver.
    pub needs_approval_in_bulk: bool,
    /// A containment plan may name it among a rule's actions (diagnostics and messages are not
    /// containment).
    pub in_containment_plans: bool,
    /// A containment plan may name it to lift (undo) one of its actions when the incident is lifted.
    pub lifts: bool,
    /// On success the agent reports a completion record signed with the device's key
    /// ([`WipeProof`]), which the server verifies and keeps.
    pub signed_proof: bool,
    /// The parameters it takes (see [`validate_params`]).
    pub params: &'static [&'static str],
    /// The platforms that can carry it out. A device of the platform may still lack what the
    /// kind needs (an LwM2M device without object 8 cannot be locked): it then fails, saying why.
    pub platforms: &'static [Platform],
}

impl KindInfo {
    /// The kind's name on the wire, in the API and in the audit log.
    pub fn name(&self) -> &'static str {
        self.kind.as_str()
    }
}

const EVERY_PLATFORM: &[Platform] = &[Platform::Agent, Platform::Lwm2m];
const AGENT_ONLY: &[Platform] = &[Platform::Agent];
const LWM2M_ONLY: &[Platform] = &[Platform::Lwm2m];

/// Every command kind, once, in the order [`CommandKind`] declares them (checked when compiling).
///
/// LwM2M carries out lock, unlock and the wipes with object 8 (Lock and Wipe), reboot with /3/0/4
/// and firmware updates with object 5. It has no network isolation of its own: quarantine and
/// release succeed with a note that the hospital network enforces the isolation (and lock or
/// unlock object 8 where the device has it). The agent does everything but firmware updates.
pub const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: CommandKind::Lock,
        label: "Lock",
        destructive: true,
        endangers_patients: false,
        needs_approval_in_bulk: false,
        in_containment_plans: true,
        lifts: false,
        signed_proof: false,
        params: &[],
        platforms: EVERY_PLATFORM,
    },
    KindInfo {
        kind: CommandKind::Unlock,
        label: "Unlock",
        destructive: false,
        endangers_patients: false,
        needs_approval_in_bulk: false,
        in_containment_plans: true,
        lifts: true,
        signed_proof: false,
        params: &[],
        platforms: EVERY_PLATFORM,
    },
    KindInfo {
        kind: CommandKind::Message,
        label: "Send a message",
        destructive: false,
        endangers_patients: false,
        needs_approval_in_bulk: false,
        in_containment_plans: false,
        lifts: false,
        signed_proof: false,
        params: &["text"],
        platforms: AGENT_ONLY,
    },
    KindInfo {
        kind: CommandKind::Reboot,
        label: "Reboot",
        destructive: true,
        endangers_patients: true,
        needs_approval_in_bulk: true,
        in_containment_plans: true,
        lifts: false,
        signed_proof: false,
        params: &[],
        platforms: EVERY_PLATFORM,
    },
    KindInfo {
        kind: CommandKind::Shutdown,
        label: "Shut down",
        destructive: true,
        endangers_patients: true,
        needs_approval_in_bulk: true,
        in_containment_plans: true,
        lifts: false,
        signed_proof: false,
        params: &[],
        platforms: AGENT_ONLY,
    },
    KindInfo {
        kind: CommandKind::Quarantine,
        label: "Quarantine (isolate from the network)",
        destructive: true,
        endangers_patients: false,
        needs_approval_in_bulk: false,
        in_containment_plans: true,
        lifts: false,
        signed_proof: false,
        params: &[],
        platforms: EVERY_PLATFORM,
    },
    KindInfo {
        kind: CommandKind::Release,
        label: "Release from quarantine",
        destructive: false,
        endangers_patients: false,
        needs_approval_in_bulk: false,
        in_containment_plans: true,
        lifts: true,
        signed_proof: false,
        params: &[],
        platforms: EVERY_PLATFORM,
    },
    KindInfo {
        kind: CommandKind::WipeSelective,
        label: "Wipe managed data (selective)",
        destructive: true,
        endangers_patients: true,
        needs_approval_in_bulk: true,
        in_containment_plans: true,
        lifts: false,
        signed_proof: true,
        params: &[],
        platforms: EVERY_PLATFORM,
    },
    KindInfo {
        kind: CommandKind::WipeFull,
        label: "Wipe the whole device",
        destructive: true,
        endangers_patients: true,
        needs_approval_in_bulk: true,
        in_containment_plans: true,
        lifts: false,
        signed_proof: true,
        params: &["confirm_hostname"],
        platforms: EVERY_PLATFORM,
    },
    KindInfo {
        kind: CommandKind::CollectDiagnostics,
        label: "Collect diagnostics",
        destructive: false,
        endangers_patients: false,
        needs_approval_in_bulk: false,
        in_containment_plans: false,
        lifts: false,
        signed_proof: false,
        params: &["max_bytes"],
        platforms: AGENT_ONLY,
    },
    KindInfo {
        kind: CommandKind::LostMode,
        label: "Lost mode",
        destructive: true,
        endangers_patients: false,
        needs_approval_in_bulk: false,
        in_containment_plans: true,
        lifts: false,
        signed_proof: false,
        params: &["text"],
        platforms: AGENT_ONLY,
    },
    KindInfo {
        kind: CommandKind::ApplySettings,
        label: "Apply policy settings",
        destructive: false,
        endangers_patients: false,
        needs_approval_in_bulk: false,
        in_containment_plans: true,
        lifts: false,
        signed_proof: false,
        params: &["settings", "digest"],
        platforms: AGENT_ONLY,
    },
    KindInfo {
        kind: CommandKind::FirmwareUpdate,
        label: "Update firmware",
        destructive: true,
        endangers_patients: true,
        needs_approval_in_bulk: false,
        in_containment_plans: true,
        lifts: false,
        signed_proof: false,
        params: &["uri"],
        platforms: LWM2M_ONLY,
    },
];

// `CommandKind::info` indexes `KINDS` by the kind's position: row `i` must be the `i`th kind.
// With as many rows as kinds, that also makes every kind appear exactly once.
const _: () = {
    assert!(
        KINDS.len() == CommandKind::ALL.len(),
        "KINDS needs one row per CommandKind"
    );
    let mut i = 0;
    while i < KINDS.len() {
        assert!(
            KINDS[i].kind as usize == i,
            "KINDS must list the kinds in the order CommandKind declares them"
        );
        i += 1;
    }
};

impl CommandKind {
    /// This kind's row of [`KINDS`].
    pub fn info(self) -> &'static KindInfo {
        &KINDS[self as usize]
    }

    /// A short human label for buttons and menus.
    pub fn label(self) -> &'static str {
        self.info().label
    }

    /// Actions that take the device (or its data) away from its user. They need the write
    /// permission on devices, and are what the safety rules below are about.
    pub fn is_destructive(self) -> bool {
        self.info().destructive
    }

    /// Powers the device off, restarts it (a firmware update does) or destroys its data: never on
    /// a medical or life-sustaining device without a named clinician's confirmation.
    pub fn endangers_patients(self) -> bool {
        self.info().endangers_patients
    }

    /// Whether the agent reports a signed completion record (see [`KindInfo::signed_proof`]).
    pub fn is_wipe(self) -> bool {
        self.info().signed_proof
    }

    /// Whether a device of `platform` can carry it out (see [`KindInfo::platforms`]).
    pub fn supported_on(self, platform: Platform) -> bool {
        self.info().platforms.contains(&platform)
    }
}

/// The device's lifecycle state after `kind` succeeded on it, when that changes it. Unlock only
/// undoes a lock (or lost mode), release only a quarantine, so one does not hide the other.
pub fn device_state_after(kind: CommandKind, current: DeviceState) -> Option<DeviceState> {
    let next = match (kind, current) {
        (_, DeviceState::Revoked | DeviceState::Retired) => return None,
        (CommandKind::Lock, DeviceState::Active) => DeviceState::Locked,
        (CommandKind::LostMode, _) => DeviceState::Lost,
        (CommandKind::Unlock, DeviceState::Locked | DeviceState::Lost) => DeviceState::Active,
        (CommandKind::Quarantine, _) => DeviceState::Quarantined,
        (CommandKind::Release, DeviceState::Quarantined) => DeviceState::Active,
        (CommandKind::WipeSelective | CommandKind::WipeFull, _) => DeviceState::Wiped,
        _ => return None,
    };
    (next != current).then_some(next)
}

/// Whether `kind` on a device of this class and criticality needs a clinician's confirmation.
pub fn needs_clinician(kind: CommandKind, class: DeviceClass, criticality: Criticality) -> bool {
    kind.endangers_patients() && (class == DeviceClass::Medical || criticality == Criticality::LifeSustaining)
}

/// Longest message text shown on a device.
pub const MAX_MESSAGE_CHARS: usize = 500;
/// Default and largest diagnostics bundle (bytes).
pub const DEFAULT_DIAGNOSTICS_BYTES: u64 = 1024 * 1024;
pub const MAX_DIAGNOSTICS_BYTES: u64 = 3 * 1024 * 1024;
/// What lost mode shows when no text is given.
pub const DEFAULT_LOST_TEXT: &str =
    "This device has been reported lost. Please hand it to the hospital IT service desk.";

/// Longest firmware package URI (the LwM2M /5/0/1 Package URI is a string of at most 255 bytes).
pub const MAX_FIRMWARE_URI_CHARS: usize = 255;

/// A firmware package URI: http, https, coap or coaps, at most 255 characters, no spaces or
/// control characters.
fn firmware_uri(value: Option<&Value>) -> Result<String, ValidationError> {
    let uri = value
        .ok_or_else(|| ValidationError::new("uri", "a firmware update needs the package's uri"))?
        .as_str()
        .ok_or_else(|| ValidationError::new("uri", "must be a string"))?;
    if uri.len() > MAX_FIRMWARE_URI_CHARS {
        return Err(ValidationError::new(
            "uri",
            format!("must be at most {MAX_FIRMWARE_URI_CHARS} characters"),
        ));
    }
    if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ValidationError::new(
            "uri",
            "must not contain spaces or control characters",
        ));
    }
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| ValidationError::new("uri", "must be an absolute URI (scheme://host/...)"))?;
    if !matches!(scheme, "http" | "https" | "coap" | "coaps") {
        return Err(ValidationError::new(
            "uri",
            "the scheme must be http, https, coap or coaps",
        ));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(ValidationError::new("uri", "must name a host"));
    }
    Ok(uri.to_owned())
}

fn text_param(value: &Value, field: &'static str) -> Result<String, ValidationError> {
    let text = value
        .as_str()
        .ok_or_else(|| ValidationError::new(field, "must be a string"))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ValidationError::new(
            field,
            "must not contain control characters (other than newlines)",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Checks a command's parameters and returns them normalised (unknown keys are refused, so a typo
/// never silently changes what a device does).
pub fn validate_params(kind: CommandKind, params: &Value) -> Result<Value, ValidationError> {
    let empty = Map::new();
    let object = match params {
        Value::Null => &empty,
        Value::Object(object) => object,
        _ => return Err(ValidationError::new("params", "must be a JSON object")),
    };
    let allowed = kind.info().params;
    if let Some(unknown) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        let expected = if allowed.is_empty() {
            "none".to_owned()
        } else {
            allowed.join(", ")
        };
        return Err(ValidationError::new(
            "params",
            format!("{kind} does not take `{unknown}` (parameters: {expected})"),
        ));
    }
    let mut out = Map::new();
    match kind {
        CommandKind::Message => {
            let text = object
                .get("text")
                .ok_or_else(|| ValidationError::new("text", "a message needs a text"))?;
            out.insert("text".into(), text_param(text, "text")?.into());
        }
        CommandKind::LostMode => {
            let text = match object.get("text") {
                Some(text) => text_param(text, "text")?,
                None => DEFAULT_LOST_TEXT.to_owned(),
            };
            out.insert("text".into(), text.into());
        }
        CommandKind::WipeFull => {
            let hostname = object
                .get("confirm_hostname")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ValidationError::new(
                        "confirm_hostname",
                        "a full wipe needs the device's hostname typed out as confirmation",
                    )
                })?;
            out.insert("confirm_hostname".into(), hostname.into());
        }
        CommandKind::CollectDiagnostics => {
            let max = match object.get("max_bytes") {
                None => DEFAULT_DIAGNOSTICS_BYTES,
                Some(value) => value
                    .as_u64()
                    .filter(|n| (1024..=MAX_DIAGNOSTICS_BYTES).contains(n))
                    .ok_or_else(|| {
                        ValidationError::new(
                            "max_bytes",
                            format!("must be a whole number from 1024 to {MAX_DIAGNOSTICS_BYTES}"),
                        )
                    })?,
            };
            out.insert("max_bytes".into(), max.into());
        }
        CommandKind::ApplySettings => {
            let settings: crate::policy::Settings = object
                .get("settings")
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|err| ValidationError::new("settings", err.to_string()))?
                .unwrap_or_default();
            if let Some(problem) = settings.validate().into_iter().next() {
                return Err(ValidationError::new("settings", problem.to_string()));
            }
            let digest = crate::policy::settings_digest(&settings);
            out.insert(
                "settings".into(),
                serde_json::to_value(&settings)
                    .map_err(|err| ValidationError::new("settings", err.to_string()))?,
            );
            out.insert("digest".into(), digest.into());
        }
        CommandKind::FirmwareUpdate => {
            out.insert("uri".into(), firmware_uri(object.get("uri"))?.into());
        }
        _ => {}
    }
    Ok(Value::Object(out))
}

/// Domain separation for command signatures.
const SIGNING_TAG: &[u8] = b"ward-command-v1\0";
/// Domain separation for the signature over a batch of commands' Merkle root.
const BATCH_TAG: &[u8] = b"ward-command-batch-v1\0";
/// Most hashes a batch proof may carry (a batch of up to 2³² commands).
const MAX_PROOF_HASHES: usize = 32;

/// The fields of a command the server's command key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandFields<'a> {
    pub id: &'a str,
    pub device_id: &'a str,
    pub kind: &'a str,
    /// The parameters, signed as the exact text sent.
    pub params_json: &'a str,
    pub not_after_ms: i64,
}

impl<'a> CommandFields<'a> {
    /// The fields in the order they are signed.
    pub fn new(
        id: &'a str,
        device_id: &'a str,
        kind: &'a str,
        params_json: &'a str,
        not_after_ms: i64,
    ) -> Self {
        Self {
            id,
            device_id,
            kind,
            params_json,
            not_after_ms,
        }
    }

    /// The bytes signed: a tag, then the command id, device id, kind and parameter text each
    /// prefixed with its length (u32, big-endian), then not-after (i64, big-endian). Length
    /// prefixes make the encoding unambiguous.
    pub fn signing_payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            SIGNING_TAG.len() + 40 + self.id.len() + self.device_id.len() + self.params_json.len(),
        );
        out.extend_from_slice(SIGNING_TAG);
        for field in [self.id, self.device_id, self.kind, self.params_json] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out.extend_from_slice(&self.not_after_ms.to_be_bytes());
        out
    }

    /// The command's leaf in a batch's Merkle tree (RFC 6962 leaf hash of its signing payload).
    fn leaf(&self) -> merkle::Hash {
        merkle::leaf_hash(&self.signing_payload())
    }
}

/// Signs one command with the server's command key.
pub fn sign_command(key: &ed25519_dalek::SigningKey, command: &CommandFields<'_>) -> Vec<u8> {
    use ed25519_dalek::Signer;
    key.sign(&command.signing_payload()).to_bytes().to_vec()
}

/// The bytes signed for a batch: a tag, the number of commands (u32, big-endian) and the root.
fn batch_message(size: u32, root: &merkle::Hash) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_TAG.len() + 4 + root.len());
    out.extend_from_slice(BATCH_TAG);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(root);
    out
}

/// Where a command sits in a signed batch: its position, the batch's size and the sibling hashes
/// from its leaf up to the root (an RFC 6962 inclusion proof).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchProof {
    pub index: u32,
    pub size: u32,
    pub path: Vec<merkle::Hash>,
}

impl BatchProof {
    /// Wire form: index and size (u32, big-endian), then the hashes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.path.len());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        for hash in &self.path {
            out.extend_from_slice(hash);
        }
        out
    }

    /// Reads the wire form; `None` for anything that is not exactly one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let hashes = bytes.len().checked_sub(8)?;
        if !hashes.is_multiple_of(32) || hashes / 32 > MAX_PROOF_HASHES {
            return None;
        }
        let index = u32::from_be_bytes(bytes[..4].try_into().ok()?);
        let size = u32::from_be_bytes(bytes[4..8].try_into().ok()?);
        let path = bytes[8..]
            .chunks_exact(32)
            .map(|hash| hash.try_into().ok())
            .collect::<Option<Vec<merkle::Hash>>>()?;
        Some(Self { index, size, path })
    }
}

/// Signs many commands with one signature: the signature covers the Merkle root of their signing
/// payloads, and each command carries its [`BatchProof`] (wire form) to lead from its own fields
/// to that root. A containment signs its fan-out this way: one signature per batch instead of
/// one per command, on the server and on every device that gets more than one of them.
pub fn sign_batch(
    key: &ed25519_dalek::SigningKey,
    commands: &[CommandFields<'_>],
) -> (Vec<u8>, Vec<Vec<u8>>) {
    use ed25519_dalek::Signer;
    let leaves: Vec<merkle::Hash> = commands.iter().map(CommandFields::leaf).collect();
    let (root, paths) = merkle::root_and_proofs(&leaves);
    let size = leaves.len() as u32;
    let signature = key.sign(&batch_message(size, &root)).to_bytes().to_vec();
    let proofs = paths
        .into_iter()
        .enumerate()
        .map(|(index, path)| {
            BatchProof {
                index: index as u32,
                size,
                path,
            }
            .to_bytes()
        })
        .collect();
    (signature, proofs)
}

/// One batch signature that verified: every input of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VerifiedBatch {
    key: [u8; 32],
    size: u32,
    root: merkle::Hash,
    signature: [u8; 64],
}

/// How many verified batches are remembered.
const REMEMBERED_BATCHES: usize = 64;

/// Batch signatures that have verified, so the commands of one batch cost one signature check.
/// Only successes are kept, each with every byte that went into its check (key, size, root,
/// signature); a check is a pure function of those, so a remembered one gives the same answer.
/// An agent keeps one; the fleet simulator shares one among its virtual devices (see its docs).
#[derive(Debug, Default)]
pub struct VerifiedBatches {
    seen: std::sync::Mutex<std::collections::VecDeque<VerifiedBatch>>,
}

impl VerifiedBatches {
    fn check(
        &self,
        key: &ed25519_dalek::VerifyingKey,
        size: u32,
        root: merkle::Hash,
        signature: &ed25519_dalek::Signature,
    ) -> bool {
        let entry = VerifiedBatch {
            key: key.to_bytes(),
            size,
            root,
            signature: signature.to_bytes(),
        };
        let lock = || self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if lock().contains(&entry) {
            return true;
        }
        if key.verify_strict(&batch_message(size, &root), signature).is_err() {
            return false;
        }
        let mut seen = lock();
        if seen.len() == REMEMBERED_BATCHES {
            seen.pop_front();
        }
        seen.push_back(entry);
        true
    }
}

/// Why an agent refuses a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandRefusal {
    BadSignature,
    Expired,
    OtherDevice,
    UnknownKind(String),
    BadParams(String),
}

impl std::fmt::Display for CommandRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandRefusal::BadSignature => {
                f.write_str("the signature does not verify with the server's command key")
            }
            CommandRefusal::Expired => f.write_str("the command has expired (past its not-after time)"),
            CommandRefusal::OtherDevice => f.write_str("the command is addressed to another device"),
            CommandRefusal::UnknownKind(kind) => write!(f, "unknown command kind {kind:?}"),
            CommandRefusal::BadParams(why) => write!(f, "bad parameters: {why}"),
        }
    }
}

/// What the agent checks before acting: signature (alone, or over the batch its proof leads to),
/// addressee, not-after, kind and parameters. Returns the kind and parameters to act on.
pub fn verify_command(
    key: &ed25519_dalek::VerifyingKey,
    own_device_id: &str,
    now_ms: i64,
    command: &CommandFields<'_>,
    signature: &[u8],
    batch_proof: &[u8],
    verified: &VerifiedBatches,
) -> Result<(CommandKind, Value), CommandRefusal> {
    let signature =
        ed25519_dalek::Signature::from_slice(signature).map_err(|_| CommandRefusal::BadSignature)?;
    let authentic = if batch_proof.is_empty() {
        key.verify_strict(&command.signing_payload(), &signature).is_ok()
    } else {
        let proof = BatchProof::from_bytes(batch_proof).ok_or(CommandRefusal::BadSignature)?;
        let root = merkle::root_from_inclusion(
            &command.leaf(),
            u64::from(proof.index),
            u64::from(proof.size),
            &proof.path,
        )
        .ok_or(CommandRefusal::BadSignature)?;
        verified.check(key, proof.size, root, &signature)
    };
    if !authentic {
        return Err(CommandRefusal::BadSignature);
    }
    let CommandFields {
        device_id,
        kind,
        params_json,
        not_after_ms,
        ..
    } = *command;
    if device_id != own_device_id {
        return Err(CommandRefusal::OtherDevice);
    }
    if now_ms > not_after_ms {
        return Err(CommandRefusal::Expired);
    }
    let kind: CommandKind = kind
        .parse()
        .map_err(|_| CommandRefusal::UnknownKind(kind.to_owned()))?;
    let params: Value =
        serde_json::from_str(params_json).map_err(|e| CommandRefusal::BadParams(e.to_string()))?;
    let params = validate_params(kind, &params).map_err(|e| CommandRefusal::BadParams(e.to_string()))?;
    Ok((kind, params))
}

/// What a wipe erased, signed by the device's key and kept by the server as proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WipeProof {
    pub command_id: String,
    pub device_id: String,
    pub kind: String,
    /// Paths (or devices) erased, in the order erased.
    pub erased: Vec<String>,
    /// Unix milliseconds on the device's clock.
    pub completed_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[7; 32])
    }

    #[test]
    fn kinds_parse_and_classify() {
        for kind in CommandKind::ALL {
            assert_eq!(kind.as_str().parse::<CommandKind>().unwrap(), *kind);
        }
        assert!("format-c".parse::<CommandKind>().is_err());
        assert!(CommandKind::WipeFull.is_destructive());
        assert!(!CommandKind::Unlock.is_destructive());
        assert!(needs_clinician(
            CommandKind::Shutdown,
            DeviceClass::Medical,
            Criticality::Normal
        ));
        assert!(needs_clinician(
            CommandKind::WipeSelective,
            DeviceClass::Workstation,
            Criticality::LifeSustaining
        ));
        assert!(!needs_clinician(
            CommandKind::Quarantine,
            DeviceClass::Medical,
            Criticality::LifeSustaining
        ));
        assert!(!needs_clinician(
            CommandKind::Reboot,
            DeviceClass::Workstation,
            Criticality::High
        ));
        assert!(CommandState::Cancelled.is_final());
        assert_eq!(
            device_state_after(CommandKind::Lock, DeviceState::Active),
            Some(DeviceState::Locked)
        );
        assert_eq!(
            device_state_after(CommandKind::Unlock, DeviceState::Quarantined),
            None
        );
        assert_eq!(
            device_state_after(CommandKind::Release, DeviceState::Quarantined),
            Some(DeviceState::Active)
        );
        assert_eq!(
            device_state_after(CommandKind::WipeFull, DeviceState::Revoked),
            None
        );
        assert_eq!(
            device_state_after(CommandKind::Message, DeviceState::Active),
            None
        );
        assert!(!CommandState::Acknowledged.is_final());
    }

    #[test]
    fn the_kind_table_has_every_kind_once_and_keeps_the_old_rules() {
        use CommandKind::*;
        assert_eq!(KINDS.len(), CommandKind::ALL.len());
        for kind in CommandKind::ALL {
            let rows: Vec<&KindInfo> = KINDS.iter().filter(|row| row.kind == *kind).collect();
            assert_eq!(rows.len(), 1, "{kind}");
            assert_eq!(kind.info(), rows[0]);
            assert_eq!(kind.info().name(), kind.as_str());
            assert!(!kind.label().is_empty(), "{kind}");
            assert!(!kind.info().platforms.is_empty(), "{kind}");
        }
        // The lists each rule was written as before the table.
        let kinds_where = |rule: fn(&KindInfo) -> bool| -> Vec<CommandKind> {
            KINDS.iter().filter(|row| rule(row)).map(|row| row.kind).collect()
        };
        let sorted = |mut kinds: Vec<CommandKind>| {
            kinds.sort();
            kinds
        };
        assert_eq!(
            kinds_where(|row| row.destructive),
            sorted(vec![
                Lock,
                Quarantine,
                WipeSelective,
                WipeFull,
                Shutdown,
                Reboot,
                LostMode,
                FirmwareUpdate
            ])
        );
        assert_eq!(
            kinds_where(|row| row.endangers_patients),
            sorted(vec![Shutdown, Reboot, FirmwareUpdate, WipeSelective, WipeFull])
        );
        assert_eq!(
            kinds_where(|row| row.needs_approval_in_bulk),
            sorted(vec![WipeSelective, WipeFull, Shutdown, Reboot])
        );
        assert_eq!(kinds_where(|row| row.signed_proof), [WipeSelective, WipeFull]);
        assert_eq!(kinds_where(|row| row.lifts), [Unlock, Release]);
        assert_eq!(
            kinds_where(|row| !row.in_containment_plans),
            [Message, CollectDiagnostics]
        );
        for kind in CommandKind::ALL {
            assert_eq!(kind.is_destructive(), kind.info().destructive, "{kind}");
            assert_eq!(
                kind.endangers_patients(),
                kind.info().endangers_patients,
                "{kind}"
            );
            assert_eq!(kind.is_wipe(), kind.info().signed_proof, "{kind}");
        }
        // The parameters validate_params took for each kind.
        let params: Vec<(CommandKind, &[&str])> = KINDS
            .iter()
            .filter(|row| !row.params.is_empty())
            .map(|row| (row.kind, row.params))
            .collect();
        assert_eq!(
            params,
            [
                (Message, &["text"][..]),
                (WipeFull, &["confirm_hostname"]),
                (CollectDiagnostics, &["max_bytes"]),
                (LostMode, &["text"]),
                (ApplySettings, &["settings", "digest"]),
                (FirmwareUpdate, &["uri"]),
            ]
        );
    }

    #[test]
    fn each_platform_does_what_its_executor_does() {
        use CommandKind::*;
        // The Linux agent refuses firmware updates and carries out everything else.
        let agent: Vec<CommandKind> = CommandKind::ALL
            .iter()
            .copied()
            .filter(|kind| kind.supported_on(Platform::Agent))
            .collect();
        let everything_but_firmware: Vec<CommandKind> = CommandKind::ALL
            .iter()
            .copied()
            .filter(|kind| *kind != FirmwareUpdate)
            .collect();
        assert_eq!(agent, everything_but_firmware);
        // LwM2M: object 8 (lock, unlock, wipes), /3/0/4 (reboot), object 5 (firmware); quarantine
        // and release are recorded for the hospital network to enforce.
        let lwm2m: Vec<CommandKind> = CommandKind::ALL
            .iter()
            .copied()
            .filter(|kind| kind.supported_on(Platform::Lwm2m))
            .collect();
        assert_eq!(
            lwm2m,
            [
                Lock,
                Unlock,
                Reboot,
                Quarantine,
                Release,
                WipeSelective,
                WipeFull,
                FirmwareUpdate
            ]
        );
        assert_eq!("lwm2m".parse::<Platform>().unwrap(), Platform::Lwm2m);
        assert!("ios".parse::<Platform>().is_err());
    }

    #[test]
    fn params_are_checked_and_normalised() {
        assert_eq!(
            validate_params(CommandKind::Lock, &Value::Null).unwrap(),
            json!({})
        );
        assert!(validate_params(CommandKind::Lock, &json!({"force": true})).is_err());
        assert!(validate_params(CommandKind::Lock, &json!([1])).is_err());
        assert_eq!(
            validate_params(CommandKind::Message, &json!({"text": "  hello \n"})).unwrap(),
            json!({"text": "hello"})
        );
        for bad in [
            json!({}),
            json!({"text": 5}),
            json!({"text": " "}),
            json!({"text": "a\u{7}b"}),
        ] {
            assert!(validate_params(CommandKind::Message, &bad).is_err(), "{bad}");
        }
        assert!(validate_params(CommandKind::Message, &json!({"text": "x".repeat(501)})).is_err());
        assert_eq!(
            validate_params(CommandKind::LostMode, &json!({})).unwrap()["text"],
            DEFAULT_LOST_TEXT
        );
        assert!(validate_params(CommandKind::WipeFull, &json!({})).is_err());
        assert_eq!(
            validate_params(CommandKind::CollectDiagnostics, &json!({})).unwrap(),
            json!({"max_bytes": DEFAULT_DIAGNOSTICS_BYTES})
        );
        assert!(validate_params(CommandKind::CollectDiagnostics, &json!({"max_bytes": 10})).is_err());
        assert!(validate_params(CommandKind::CollectDiagnostics, &json!({"max_bytes": -1})).is_err());
        for good in ["https://fw.example.org/pump-2.5.0.bin", "coap://10.0.0.1:5683/fw"] {
            assert_eq!(
                validate_params(CommandKind::FirmwareUpdate, &json!({"uri": good})).unwrap()["uri"],
                good
            );
        }
        for bad in [
            json!({}),
            json!({"uri": 5}),
            json!({"uri": "ftp://fw.example.org/x"}),
            json!({"uri": "fw.example.org/x"}),
            json!({"uri": "https:///x"}),
            json!({"uri": "https://fw.example.org/a b"}),
            json!({"uri": "https://fw.example.org/\u{7}"}),
            json!({"uri": format!("https://{}", "a".repeat(250))}),
            json!({"uri": "https://fw.example.org/x", "force": true}),
        ] {
            assert!(
                validate_params(CommandKind::FirmwareUpdate, &bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn signatures_bind_every_field() {
        let key = key();
        let public = key.verifying_key();
        let batches = VerifiedBatches::default();
        let sig = sign_command(&key, &CommandFields::new("c1", "d1", "lock", "{}", 1000));
        assert_eq!(
            verify_command(
                &public,
                "d1",
                999,
                &CommandFields::new("c1", "d1", "lock", "{}", 1000),
                &sig,
                &[],
                &batches
            )
            .unwrap()
            .0,
            CommandKind::Lock
        );
        let refused = |id: &str, dev: &str, kind: &str, params: &str, na: i64, sig: &[u8], now: i64| {
            verify_command(
                &public,
                "d1",
                now,
                &CommandFields::new(id, dev, kind, params, na),
                sig,
                &[],
                &batches,
            )
            .unwrap_err()
        };
        assert_eq!(
            refused("c2", "d1", "lock", "{}", 1000, &sig, 0),
            CommandRefusal::BadSignature
        );
        assert_eq!(
            refused("c1", "d1", "wipe-full", "{}", 1000, &sig, 0),
            CommandRefusal::BadSignature
        );
        assert_eq!(
            refused("c1", "d1", "lock", "{ }", 1000, &sig, 0),
            CommandRefusal::BadSignature
        );
        assert_eq!(
            refused("c1", "d1", "lock", "{}", 2000, &sig, 0),
            CommandRefusal::BadSignature
        );
        assert_eq!(
            refused("c1", "d1", "lock", "{}", 1000, &sig[..10], 0),
            CommandRefusal::BadSignature
        );
        assert_eq!(
            refused("c1", "d1", "lock", "{}", 1000, &sig, 1001),
            CommandRefusal::Expired
        );
        let other = sign_command(&key, &CommandFields::new("c1", "d2", "lock", "{}", 1000));
        assert_eq!(
            refused("c1", "d2", "lock", "{}", 1000, &other, 0),
            CommandRefusal::OtherDevice
        );
        let forged = sign_command(
            &ed25519_dalek::SigningKey::from_bytes(&[8; 32]),
            &CommandFields::new("c1", "d1", "lock", "{}", 1000),
        );
        assert_eq!(
            refused("c1", "d1", "lock", "{}", 1000, &forged, 0),
            CommandRefusal::BadSignature
        );
        let unknown = sign_command(&key, &CommandFields::new("c1", "d1", "format", "{}", 1000));
        assert!(matches!(
            refused("c1", "d1", "format", "{}", 1000, &unknown, 0),
            CommandRefusal::UnknownKind(_)
        ));
        let bad = sign_command(
            &key,
            &CommandFields::new("c1", "d1", "message", "{\"text\":1}", 1000),
        );
        assert!(matches!(
            refused("c1", "d1", "message", "{\"text\":1}", 1000, &bad, 0),
            CommandRefusal::BadParams(_)
        ));
        // Length prefixes: moving bytes between fields changes the payload.
        assert_ne!(
            CommandFields::new("ab", "c", "k", "{}", 0).signing_payload(),
            CommandFields::new("a", "bc", "k", "{}", 0).signing_payload()
        );
    }

    /// Command and device ids, the batch's signature, each command's proof.
    type Batch = (Vec<(String, String)>, Vec<u8>, Vec<Vec<u8>>);

    /// A batch of `n` lock commands for devices d0, d1, … signed with `key`.
    fn batch(key: &ed25519_dalek::SigningKey, n: usize) -> Batch {
        let names: Vec<(String, String)> = (0..n).map(|i| (format!("c{i}"), format!("d{i}"))).collect();
        let all: Vec<CommandFields<'_>> = names
            .iter()
            .map(|(id, device)| CommandFields::new(id, device, "lock", "{}", 1000))
            .collect();
        let (signature, proofs) = sign_batch(key, &all);
        (names, signature, proofs)
    }

    #[test]
    fn every_command_of_a_batch_verifies_with_its_own_proof_only() {
        let key = key();
        let public = key.verifying_key();
        for n in [1, 2, 3, 7, 64] {
            let (names, signature, proofs) = batch(&key, n);
            let batches = VerifiedBatches::default();
            for (i, (id, device)) in names.iter().enumerate() {
                let command = CommandFields::new(id, device, "lock", "{}", 1000);
                let check = |proof: &[u8], batches: &VerifiedBatches| {
                    verify_command(&public, device, 0, &command, &signature, proof, batches)
                };
                assert_eq!(
                    check(&proofs[i], &batches).unwrap().0,
                    CommandKind::Lock,
                    "n={n} i={i}"
                );
                // Checked again, from what was remembered.
                assert!(check(&proofs[i], &batches).is_ok());
                if n > 1 {
                    let other = &proofs[(i + 1) % n];
                    assert_eq!(check(other, &batches).unwrap_err(), CommandRefusal::BadSignature);
                }
                // The proof alone does not make a command: changed fields lead to another root.
                let changed = CommandFields::new(id, device, "wipe-full", "{}", 1000);
                assert_eq!(
                    verify_command(&public, device, 0, &changed, &signature, &proofs[i], &batches)
                        .unwrap_err(),
                    CommandRefusal::BadSignature
                );
            }
        }
    }

    #[test]
    fn forged_or_malformed_batch_proofs_are_refused() {
        let key = key();
        let public = key.verifying_key();
        let batches = VerifiedBatches::default();
        let (_, signature, proofs) = batch(&key, 5);
        let command = CommandFields::new("c2", "d2", "lock", "{}", 1000);
        let refused = |signature: &[u8], proof: &[u8]| {
            verify_command(&public, "d2", 0, &command, signature, proof, &batches).unwrap_err()
        };
        let good = proofs[2].clone();
        // Truncated, one byte more, a hash flipped, another index or size, no hashes.
        let mut flipped = good.clone();
        flipped[9] ^= 1;
        let mut moved = good.clone();
        moved[3] = 3;
        let mut resized = good.clone();
        resized[7] = 6;
        let mut longer = good.clone();
        longer.push(0);
        for bad in [
            &good[..good.len() - 1],
            &longer[..],
            &flipped[..],
            &moved[..],
            &resized[..],
            &good[..8],
            &[1, 2, 3],
        ] {
            assert_eq!(refused(&signature, bad), CommandRefusal::BadSignature, "{bad:?}");
        }
        // Over 32 hashes.
        let mut huge = good[..8].to_vec();
        huge.extend(std::iter::repeat_n(0u8, 33 * 32));
        assert_eq!(refused(&signature, &huge), CommandRefusal::BadSignature);
        // The batch's signature made by another key; a single command's signature used as a batch's.
        let (_, forged, forged_proofs) = batch(&ed25519_dalek::SigningKey::from_bytes(&[8; 32]), 5);
        assert_eq!(refused(&forged, &forged_proofs[2]), CommandRefusal::BadSignature);
        let single = sign_command(&key, &command);
        assert_eq!(refused(&single, &good), CommandRefusal::BadSignature);
        // And the batch's signature is no signature of the command alone.
        assert_eq!(refused(&signature, &[]), CommandRefusal::BadSignature);
        assert!(verify_command(&public, "d2", 0, &command, &signature, &good, &batches).is_ok());
    }

    #[test]
    fn batch_proofs_round_trip_and_refuse_odd_lengths() {
        let proof = BatchProof {
            index: 5,
            size: 9,
            path: vec![[1; 32], [2; 32]],
        };
        assert_eq!(BatchProof::from_bytes(&proof.to_bytes()), Some(proof));
        for len in [0, 7, 9, 39, 41] {
            assert_eq!(BatchProof::from_bytes(&vec![0; len]), None, "{len}");
        }
    }
}
