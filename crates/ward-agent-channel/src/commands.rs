//! Commands on the agent channel: a stored, signed command becomes the agent's `Command` message
//! and is pushed on its session; what the agent reports about it (acknowledged, succeeded,
//! failed, refused, a wipe's signed completion record) goes back to the service's one command
//! lifecycle.

use std::borrow::Borrow;
use std::collections::HashMap;

use ward_core::commands::{
    MAX_OUTPUT_BYTES, Report, clean_detail, record_acknowledged, record_finished, record_sent, verify_proof,
};
use ward_core::state::AppState;
use ward_domain::command::{CommandFields, CommandKind, CommandRefusal, VerifiedBatches, verify_command};
use ward_proto::agent::{Command, CommandUpdate, ServerMessage, server_message};
use ward_store::CommandRecord;

use crate::outbound::Outbound;

/// Length of an Ed25519 signature; what follows it in a stored signature is a batch proof.
const SIGNATURE_BYTES: usize = 64;

/// Checks a pushed command as a device does (signature or batch proof, addressee, kind and
/// parameters; not expiry), with the command key `key` it got at enrollment: for the server's
/// in-process benchmark and tests, which play the device.
pub fn verify_pushed(
    key: &ed25519_dalek::VerifyingKey,
    device_id: &str,
    command: &Command,
    batches: &VerifiedBatches,
) -> Result<CommandKind, CommandRefusal> {
    let fields = CommandFields::new(
        &command.id,
        &command.device_id,
        &command.kind,
        &command.params_json,
        command.not_after_ms,
    );
    verify_command(
        key,
        device_id,
        0,
        &fields,
        &command.signature,
        &command.batch_proof,
        batches,
    )
    .map(|(kind, _)| kind)
}

/// The wire form of a stored command.
fn to_message(command: &CommandRecord) -> ServerMessage {
    let signed = hex::decode(&command.signature).unwrap_or_default();
    let (signature, batch_proof) = signed.split_at(signed.len().min(SIGNATURE_BYTES));
    ServerMessage {
        body: Some(server_message::Body::Command(Command {
            id: command.id.clone(),
            device_id: command.device_id.clone(),
            kind: command.kind.as_str().to_owned(),
            params_json: command.params.clone(),
            not_after_ms: command.not_after_ms,
            signature: signature.to_vec(),
            batch_proof: batch_proof.to_vec(),
        })),
    }
}

/// Commands pushed on one connection, by id, with their kind (a report about anything else is
/// not this device's to make).
pub type Pushed = HashMap<String, CommandKind>;

/// Pushes commands on the stream, together and in order, except those this connection already
/// pushed, and records them as sent. `Err` when the stream is gone.
pub(crate) async fn push<C: Borrow<CommandRecord>>(
    state: &AppState,
    commands: &[C],
    outbound: &mut Outbound,
    pushed: &mut Pushed,
) -> Result<(), ()> {
    let fresh: Vec<&CommandRecord> = commands
        .iter()
        .map(Borrow::borrow)
        .filter(|command| pushed.insert(command.id.clone(), command.kind).is_none())
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    outbound
        .send_all(fresh.iter().map(|command| to_message(command)).collect())
        .await?;
    for command in fresh {
        record_sent(state, command).await;
    }
    Ok(())
}

/// Pushes the device's pending commands (queued, sent, acknowledged but unfinished) in queue
/// order, when it connects. `Err` when the stream is gone.
pub(crate) async fn deliver(
    state: &AppState,
    device_id: &str,
    outbound: &mut Outbound,
    pushed: &mut Pushed,
) -> Result<(), ()> {
    let pending = match state.store.pending_commands(device_id).await {
        Ok(pending) => pending,
        Err(err) => {
            tracing::warn!(device = device_id, error = %err, "reading pending commands failed");
            return Ok(());
        }
    };
    push(state, &pending, outbound, pushed).await
}

/// Records an agent's report on a command pushed on this connection. Reports about commands this
/// connection did not push (another device's, unknown ones) change nothing.
pub(crate) async fn record_update(
    state: &AppState,
    device_id: &str,
    device_key: &[u8],
    update: CommandUpdate,
    pushed: &Pushed,
) {
    let Some(kind) = pushed.get(&update.command_id).copied() else {
        tracing::warn!(
            device = device_id,
            command = %clean_detail(&update.command_id),
            "report about a command this device was not sent"
        );
        return;
    };
    if update.status == "acknowledged" {
        record_acknowledged(state, device_id, &update.command_id).await;
        return;
    }
    let mut detail = clean_detail(&update.detail);
    let mut proof = None;
    let mut proof_signature = None;
    let mut succeeded = match update.status.as_str() {
        "succeeded" => true,
        "failed" => false,
        "refused" => {
            detail = format!("refused by the device: {detail}");
            false
        }
        other => {
            detail = format!("unknown status {:?} reported: {detail}", clean_detail(other));
            false
        }
    };
    if succeeded && kind.is_wipe() {
        match verify_proof(
            device_key,
            &update.command_id,
            device_id,
            &update.proof_json,
            &update.proof_signature,
        ) {
            Ok(_) => {
                proof = Some(update.proof_json.clone());
                proof_signature = Some(hex::encode(&update.proof_signature));
            }
            Err(why) => {
                succeeded = false;
                detail = format!("the device reported success but {why}; {detail}");
            }
        }
    }
    let output = (!update.output.is_empty() && update.output.len() <= MAX_OUTPUT_BYTES)
        .then(|| update.output.clone())
        .filter(|text| serde_json::from_str::<serde_json::Value>(text).is_ok());
    let outcome = Report {
        succeeded,
        detail,
        proof: proof.zip(proof_signature),
        output,
    };
    record_finished(state, device_id, &update.command_id, kind, outcome).await;
}
