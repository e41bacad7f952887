//! The command lifecycle, shared by every device platform: building and signing commands (always
//! stored before they are pushed), recording what devices report (sent, acknowledged, finished;
//! verifying a wipe's signed completion record) through one group-committing writer, and expiring
//! commands nobody picked up. A platform turns a stored command into its own protocol and reports
//! the outcome here.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use ward_domain::audit::{AuditRecord, Outcome};
use ward_domain::command::{CommandFields, CommandKind, CommandState, WipeProof, sign_batch};
use ward_store::{CommandEvent, CommandFinish, CommandRecord};

use crate::state::AppState;

/// Longest detail text kept from an agent.
const MAX_DETAIL_CHARS: usize = 2000;
/// Largest wipe completion record kept.
const MAX_PROOF_BYTES: usize = 64 * 1024;
/// Largest diagnostics bundle kept (the agent bounds it; this is the server's own limit).
pub const MAX_OUTPUT_BYTES: usize = 3 * 1024 * 1024 + 64 * 1024;

/// A command id: a version 7 UUID (the time first, then 74 random bits). A containment's
/// thousands of commands then land side by side in the id index instead of on thousands of its
/// pages (see BENCHMARKS.md); the ids need to be unique, not secret (commands are signed).
fn time_ordered_id(now_ms: i64) -> String {
    let ms = u64::try_from(now_ms).unwrap_or(0);
    let time = uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000);
    uuid::Uuid::new_v7(time).to_string()
}

/// A queued command for `device_id`, not signed yet: [`sign`] it (with the others created at the
/// same time) before it is stored.
pub fn build(
    state: &AppState,
    device_id: &str,
    kind: CommandKind,
    params_json: &str,
    not_after_ms: i64,
    created_by: &str,
    batch_id: Option<&str>,
) -> CommandRecord {
    CommandRecord {
        seq: 0,
        id: time_ordered_id(state.now_ms()),
        device_id: device_id.to_owned(),
        kind,
        params: params_json.to_owned(),
        not_after_ms,
        signature: String::new(),
        state: CommandState::Queued,
        batch_id: batch_id.map(str::to_owned),
        created_by: created_by.to_owned(),
        created_ms: state.now_ms(),
        sent_ms: None,
        acked_ms: None,
        finished_ms: None,
        detail: String::new(),
        proof: None,
        proof_signature: None,
        output: None,
    }
}

/// Commands signed with one signature share it: at most this many (a proof of 6 hashes each).
pub const SIGNED_TOGETHER: usize = 64;

/// Signs commands in groups of [`SIGNED_TOGETHER`], one signature per group over its Merkle root;
/// each command keeps the group's signature followed by its own proof of inclusion. A fan-out
/// costs one signature per group on the server, and one check per group on a device.
pub fn sign(state: &AppState, commands: &mut [CommandRecord]) {
    for group in commands.chunks_mut(SIGNED_TOGETHER) {
        let all: Vec<CommandFields<'_>> = group.iter().map(fields).collect();
        let (signature, proofs) = sign_batch(&state.keys.command_key, &all);
        let signed: Vec<String> = proofs
            .into_iter()
            .map(|proof| hex::encode([signature.as_slice(), &proof].concat()))
            .collect();
        for (command, signed) in group.iter_mut().zip(signed) {
            command.signature = signed;
        }
    }
}

/// What the command key signs of a stored command.
fn fields(command: &CommandRecord) -> CommandFields<'_> {
    CommandFields {
        id: &command.id,
        device_id: &command.device_id,
        kind: command.kind.as_str(),
        params_json: &command.params,
        not_after_ms: command.not_after_ms,
    }
}

/// Records that a command reached its device (queued → sent; other states are left alone).
pub async fn record_sent(state: &AppState, command: &CommandRecord) {
    if command.state == CommandState::Queued {
        event(
            state,
            CommandEvent::Sent {
                id: command.id.clone(),
                time_ms: state.now_ms(),
            },
        )
        .await;
    }
}

/// Records that the device accepted a command.
pub async fn record_acknowledged(state: &AppState, device_id: &str, command_id: &str) {
    event(
        state,
        CommandEvent::Acknowledged {
            id: command_id.to_owned(),
            device_id: device_id.to_owned(),
            time_ms: state.now_ms(),
        },
    )
    .await;
}

/// How a command ended, as the device (or the gateway speaking for it) reports it.
#[derive(Debug, Default)]
pub struct Report {
    pub succeeded: bool,
    /// Shown to admins; cleaned and bounded here.
    pub detail: String,
    /// A verified wipe completion record and its hex signature.
    pub proof: Option<(String, String)>,
    /// A diagnostics bundle (JSON text).
    pub output: Option<String>,
}

/// Records a command's result with its `command.result` audit entry, the same for every channel
/// a device is managed through.
pub async fn record_finished(
    state: &AppState,
    device_id: &str,
    command_id: &str,
    kind: CommandKind,
    outcome: Report,
) {
    let detail = clean_detail(&outcome.detail);
    let state_name = if outcome.succeeded {
        CommandState::Succeeded
    } else {
        CommandState::Failed
    };
    let (proof, proof_signature) = match outcome.proof {
        Some((proof, signature)) => (Some(proof), Some(signature)),
        None => (None, None),
    };
    let record = AuditRecord::new(
        format!("device:{device_id}"),
        "command.result",
        format!("command:{command_id}"),
        if outcome.succeeded {
            Outcome::Success
        } else {
            Outcome::Failure
        },
        json!({ "device": device_id, "kind": kind, "state": state_name, "detail": detail,
                "proof": proof.is_some() }),
    );
    let finish = CommandFinish {
        state: state_name,
        detail,
        proof,
        proof_signature,
        output: outcome.output,
        device_state: None,
    };
    event(
        state,
        CommandEvent::Finished {
            id: command_id.to_owned(),
            device_id: device_id.to_owned(),
            kind,
            finish,
            audit: state.audit(record),
        },
    )
    .await;
}

/// Hands an event to the writer (waiting when it is behind: back-pressure on the agents).
async fn event(state: &AppState, event: CommandEvent) {
    if state.command_events.send(event).await.is_err() {
        tracing::warn!("the command event writer has stopped");
    }
}

/// Most events written in one transaction.
const MAX_EVENTS: usize = 1024;

/// Group commit for what devices report: one task stores whatever has queued up in a single
/// transaction (a containment fan-out brings thousands of acknowledgements within milliseconds,
/// and a transaction each would make SQLite's single writer the bottleneck). A batch that fails is
/// retried event by event, so one bad event cannot lose the others. While a containment is storing
/// and pushing its commands (`fan_out` held shared) the writer waits and lets events queue up:
/// their times are taken when they arrive, and each of the fan-out's commits would otherwise wait
/// for one of these.
pub async fn event_writer(
    store: std::sync::Arc<dyn ward_store::Store>,
    mut events: mpsc::Receiver<CommandEvent>,
    fan_out: std::sync::Arc<tokio::sync::RwLock<()>>,
) {
    while let Some(first) = events.recv().await {
        let _quiet = fan_out.write().await;
        let mut batch = vec![first];
        while batch.len() < MAX_EVENTS {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        if let Err(err) = store.record_command_events(&batch).await {
            tracing::warn!(error = %err, events = batch.len(), "storing command events failed; retrying one by one");
            for event in batch {
                if let Err(err) = store.record_command_events(std::slice::from_ref(&event)).await {
                    tracing::warn!(error = %err, "a command event was not stored (the device will report it again)");
                }
            }
        }
    }
}

/// Control characters out, length bounded: the detail is shown in the console and the CLI.
pub fn clean_detail(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(MAX_DETAIL_CHARS)
        .collect()
}

/// Checks a wipe's completion record: it names this command and device, and the signature
/// verifies with `device_key`, the public key (P-256 point) of the certificate the device is
/// connected with.
pub fn verify_proof(
    device_key: &[u8],
    command_id: &str,
    device_id: &str,
    proof_json: &str,
    signature: &[u8],
) -> Result<WipeProof, String> {
    if proof_json.len() > MAX_PROOF_BYTES {
        return Err("the completion record is too large".into());
    }
    let proof: WipeProof =
        serde_json::from_str(proof_json).map_err(|e| format!("the completion record does not parse: {e}"))?;
    if proof.command_id != command_id || proof.device_id != device_id {
        return Err("the completion record names another command or device".into());
    }
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, device_key);
    key.verify(proof_json.as_bytes(), signature)
        .map_err(|_| "the completion record's signature does not verify with the device's key".to_owned())?;
    Ok(proof)
}

/// How often queued commands are checked for expiry.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(30);

/// Expires queued or sent commands past their not-after, with an audit entry each.
pub async fn expire_now(state: &AppState) -> usize {
    let record = |command: &CommandRecord| {
        AuditRecord::new(
            "system",
            "command.expire",
            format!("command:{}", command.id),
            Outcome::Failure,
            json!({ "device": command.device_id, "kind": command.kind, "state": command.state }),
        )
    };
    let mut total = 0;
    loop {
        match state.store.expire_commands(state.now_ms(), &record).await {
            Ok(expired) if expired.is_empty() => return total,
            Ok(expired) => total += expired.len(),
            Err(err) => {
                tracing::warn!(error = %err, "expiring commands failed");
                return total;
            }
        }
    }
}

/// Runs [`expire_now`] forever.
pub async fn expirer(state: AppState) {
    loop {
        tokio::time::sleep(EXPIRY_INTERVAL).await;
        let expired = expire_now(&state).await;
        if expired > 0 {
            tracing::info!(expired, "commands expired before their devices acknowledged them");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::time_ordered_id;

    #[test]
    fn command_ids_are_unique_version_7_and_ordered_by_time() {
        let t = 1_764_000_000_123;
        let same_ms: std::collections::HashSet<String> = (0..1000).map(|_| time_ordered_id(t)).collect();
        assert_eq!(same_ms.len(), 1000, "unique within one millisecond");
        let id = uuid::Uuid::parse_str(&time_ordered_id(t)).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert!(
            time_ordered_id(t) < time_ordered_id(t + 1),
            "later ids sort after earlier ones"
        );
        // A clock before 1970 (a broken one) still gives a valid id.
        assert!(uuid::Uuid::parse_str(&time_ordered_id(-5)).is_ok());
    }
}
