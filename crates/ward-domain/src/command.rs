//! Remote actions ("commands"): what can be asked of a device, the parameters each kind takes, the
//! states a command moves through, the bytes the server's command key signs, the clinical-safety
//! rule, and the signed completion record a wipe returns.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ValidationError;
use crate::device::{Criticality, DeviceClass, DeviceState, string_enum};

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

impl CommandKind {
    /// Actions that take the device (or its data) away from its user. They need the write
    /// permission on devices, and are what the safety rules below are about.
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            CommandKind::Lock
                | CommandKind::Quarantine
                | CommandKind::WipeSelective
                | CommandKind::WipeFull
                | CommandKind::Shutdown
                | CommandKind::Reboot
                | CommandKind::LostMode
                | CommandKind::FirmwareUpdate
        )
    }

    /// Powers the device off, restarts it (a firmware update does) or destroys its data: never on
    /// a medical or life-sustaining device without a named clinician's confirmation.
    pub fn endangers_patients(self) -> bool {
        matches!(
            self,
            CommandKind::Shutdown
                | CommandKind::Reboot
                | CommandKind::FirmwareUpdate
                | CommandKind::WipeSelective
                | CommandKind::WipeFull
        )
    }

    /// Whether the agent reports a signed completion record.
    pub fn is_wipe(self) -> bool {
        matches!(self, CommandKind::WipeSelective | CommandKind::WipeFull)
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
    let allowed: &[&str] = match kind {
        CommandKind::Message => &["text"],
        CommandKind::LostMode => &["text"],
        CommandKind::WipeFull => &["confirm_hostname"],
        CommandKind::CollectDiagnostics => &["max_bytes"],
        CommandKind::ApplySettings => &["settings", "digest"],
        CommandKind::FirmwareUpdate => &["uri"],
        _ => &[],
    };
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

/// The bytes the server's command key signs: a tag, then the command id, device id, kind and
/// parameter text each prefixed with its length (u32, big-endian), then not-after (i64, big-endian).
/// Length prefixes make the encoding unambiguous; the parameters are signed as the exact text sent.
pub fn signing_payload(
    id: &str,
    device_id: &str,
    kind: &str,
    params_json: &str,
    not_after_ms: i64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNING_TAG.len() + 40 + id.len() + device_id.len() + params_json.len());
    out.extend_from_slice(SIGNING_TAG);
    for field in [id, device_id, kind, params_json] {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(&not_after_ms.to_be_bytes());
    out
}

/// Signs a command with the server's command key.
pub fn sign_command(
    key: &ed25519_dalek::SigningKey,
    id: &str,
    device_id: &str,
    kind: &str,
    params_json: &str,
    not_after_ms: i64,
) -> Vec<u8> {
    use ed25519_dalek::Signer;
    key.sign(&signing_payload(id, device_id, kind, params_json, not_after_ms))
        .to_bytes()
        .to_vec()
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

/// What the agent checks before acting: signature, addressee, not-after, kind and parameters.
/// Returns the kind and parameters to act on.
#[allow(clippy::too_many_arguments)]
pub fn verify_command(
    key: &ed25519_dalek::VerifyingKey,
    own_device_id: &str,
    now_ms: i64,
    id: &str,
    device_id: &str,
    kind: &str,
    params_json: &str,
    not_after_ms: i64,
    signature: &[u8],
) -> Result<(CommandKind, Value), CommandRefusal> {
    let signature =
        ed25519_dalek::Signature::from_slice(signature).map_err(|_| CommandRefusal::BadSignature)?;
    key.verify_strict(
        &signing_payload(id, device_id, kind, params_json, not_after_ms),
        &signature,
    )
    .map_err(|_| CommandRefusal::BadSignature)?;
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
        let sig = sign_command(&key, "c1", "d1", "lock", "{}", 1000);
        assert_eq!(
            verify_command(&public, "d1", 999, "c1", "d1", "lock", "{}", 1000, &sig)
                .unwrap()
                .0,
            CommandKind::Lock
        );
        let refused = |id: &str, dev: &str, kind: &str, params: &str, na: i64, sig: &[u8], now: i64| {
            verify_command(&public, "d1", now, id, dev, kind, params, na, sig).unwrap_err()
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
        let other = sign_command(&key, "c1", "d2", "lock", "{}", 1000);
        assert_eq!(
            refused("c1", "d2", "lock", "{}", 1000, &other, 0),
            CommandRefusal::OtherDevice
        );
        let forged = sign_command(
            &ed25519_dalek::SigningKey::from_bytes(&[8; 32]),
            "c1",
            "d1",
            "lock",
            "{}",
            1000,
        );
        assert_eq!(
            refused("c1", "d1", "lock", "{}", 1000, &forged, 0),
            CommandRefusal::BadSignature
        );
        let unknown = sign_command(&key, "c1", "d1", "format", "{}", 1000);
        assert!(matches!(
            refused("c1", "d1", "format", "{}", 1000, &unknown, 0),
            CommandRefusal::UnknownKind(_)
        ));
        let bad = sign_command(&key, "c1", "d1", "message", "{\"text\":1}", 1000);
        assert!(matches!(
            refused("c1", "d1", "message", "{\"text\":1}", 1000, &bad, 0),
            CommandRefusal::BadParams(_)
        ));
        // Length prefixes: moving bytes between fields changes the payload.
        assert_ne!(
            signing_payload("ab", "c", "k", "{}", 0),
            signing_payload("a", "bc", "k", "{}", 0)
        );
    }
}
