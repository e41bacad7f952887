//! `ward device lock|unlock|... ID` (or `--filter SELECTOR` for many devices) and
//! `ward commands list|show|cancel`: queue remote actions and follow them until the devices
//! acknowledge them.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use ward_client::Client;
use ward_domain::command::CommandKind;
use ward_proto::{
    BulkCommandRequest, ClinicianConfirmation, CommandDetail, CommandQuery, CommandView, CreateCommandRequest,
};

use crate::connect::connect;
use crate::error::{CliError, Result};
use crate::files::write_private_json;
use crate::global::GlobalArgs;
use crate::output::{Output, done, print_json};
use crate::prompt::confirm;
use crate::text::{neutralise, or_dash};

/// Who the action is for and how to follow it (shared by every action).
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Device id (or use --filter for every matching device)
    #[arg(
        value_name = "ID",
        required_unless_present = "filter",
        conflicts_with = "filter"
    )]
    pub id: Option<String>,
    /// Act on every device this selector matches (within your sites); shows the count and asks first
    #[arg(long, value_name = "SELECTOR")]
    pub filter: Option<String>,
    /// Do not ask for confirmation (required when not on a terminal)
    #[arg(long)]
    pub yes: bool,
    /// How long the command waits for an offline device: 30m, 24h, 7d (default 7d)
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// Name of the clinician confirming an action on a medical or life-sustaining device
    #[arg(long, value_name = "NAME", requires = "clinical_reason")]
    pub clinician: Option<String>,
    /// Why the clinician says it is safe for the patient now
    #[arg(long, value_name = "TEXT", requires = "clinician")]
    pub clinical_reason: Option<String>,
    /// Return once queued instead of waiting for the devices to acknowledge
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for acknowledgements (offline devices get the command when they reconnect)
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub wait: u64,
}

const ACTION_EXAMPLES: &str = "\
Examples:
  ward device lock 6f1c...                      lock one device, wait for it to acknowledge
  ward device quarantine --filter 'site within \"st-marys\" and facts.os.version_id < \"22.04\"'
  ward device shutdown 6f1c... --clinician 'Dr A. Byrne (ICU consultant)' --clinical-reason 'patient moved to bed 4'

Every action is signed by the server, audited, and delivered when the device is next connected.
LwM2M devices have no network isolation of their own: quarantine and release are recorded for the
hospital network to enforce.
`reboot`, `shutdown`, `wipe` and `firmware-update` on a medical or life-sustaining device need
--clinician and --clinical-reason: they power it off, restart it or destroy its data.";

/// Remote actions, as subcommands of `ward device`.
#[derive(Debug, Clone, Subcommand)]
pub enum ActionCommand {
    /// Lock the device's sessions
    #[command(after_help = ACTION_EXAMPLES)]
    Lock(Target),
    /// Unlock the device's sessions
    Unlock(Target),
    /// Show a message to the device's user (Linux agent only)
    Message {
        #[command(flatten)]
        target: Target,
        /// The text (up to 500 characters)
        #[arg(long)]
        text: String,
    },
    /// Reboot the device
    Reboot(Target),
    /// Power the device off (Linux agent only)
    Shutdown(Target),
    /// Cut the device off the network except for Ward, DNS and loopback (the channel stays up)
    #[command(after_help = ACTION_EXAMPLES)]
    Quarantine(Target),
    /// Lift a quarantine
    Release(Target),
    /// Wipe the managed data (selective); with --full, the whole device where its enrollment allows
    Wipe {
        #[command(flatten)]
        target: Target,
        /// Erase the whole device (one device at a time; needs --confirm-hostname)
        #[arg(long, requires = "confirm_hostname")]
        full: bool,
        /// The device's hostname, typed out, to confirm a full wipe
        #[arg(long, value_name = "HOSTNAME")]
        confirm_hostname: Option<String>,
    },
    /// Lock, show a message and report where the device is (Linux agent only)
    LostMode {
        #[command(flatten)]
        target: Target,
        /// The text shown (default: a please-return notice)
        #[arg(long)]
        text: Option<String>,
    },
    /// Install firmware from a URI (LwM2M devices only, object /5); restarts the device
    FirmwareUpdate {
        #[command(flatten)]
        target: Target,
        /// Where the device fetches the package: http, https, coap or coaps (at most 255 characters)
        #[arg(long, value_name = "URI")]
        uri: String,
    },
    /// Collect a bounded diagnostics bundle from the device (Linux agent only)
    Diagnostics {
        #[command(flatten)]
        target: Target,
        /// Largest bundle in bytes (1024 to 3145728; default 1048576)
        #[arg(long, value_name = "BYTES")]
        max_bytes: Option<u64>,
        /// Write the bundle to this file (created 0600) once the device has sent it
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

impl ActionCommand {
    /// The kind, its parameters, the target, and where a diagnostics bundle goes.
    fn parts(self) -> (CommandKind, Value, Target, Option<PathBuf>) {
        match self {
            ActionCommand::Lock(t) => (CommandKind::Lock, json!({}), t, None),
            ActionCommand::Unlock(t) => (CommandKind::Unlock, json!({}), t, None),
            ActionCommand::Message { target, text } => {
                (CommandKind::Message, json!({ "text": text }), target, None)
            }
            ActionCommand::Reboot(t) => (CommandKind::Reboot, json!({}), t, None),
            ActionCommand::Shutdown(t) => (CommandKind::Shutdown, json!({}), t, None),
            ActionCommand::Quarantine(t) => (CommandKind::Quarantine, json!({}), t, None),
            ActionCommand::Release(t) => (CommandKind::Release, json!({}), t, None),
            ActionCommand::Wipe {
                target,
                full,
                confirm_hostname,
            } => {
                if full {
                    (
                        CommandKind::WipeFull,
                        json!({ "confirm_hostname": confirm_hostname }),
                        target,
                        None,
                    )
                } else {
                    (CommandKind::WipeSelective, json!({}), target, None)
                }
            }
            ActionCommand::LostMode { target, text } => {
                let params = text.map_or_else(|| json!({}), |text| json!({ "text": text }));
                (CommandKind::LostMode, params, target, None)
            }
            ActionCommand::FirmwareUpdate { target, uri } => {
                (CommandKind::FirmwareUpdate, json!({ "uri": uri }), target, None)
            }
            ActionCommand::Diagnostics {
                target,
                max_bytes,
                output,
            } => {
                let params = max_bytes.map_or_else(|| json!({}), |n| json!({ "max_bytes": n }));
                (CommandKind::CollectDiagnostics, params, target, output)
            }
        }
    }
}

fn clinician(target: &Target) -> Option<ClinicianConfirmation> {
    match (&target.clinician, &target.clinical_reason) {
        (Some(name), Some(reason)) => Some(ClinicianConfirmation {
            name: name.clone(),
            reason: reason.clone(),
        }),
        _ => None,
    }
}

pub(crate) async fn action(global: &GlobalArgs, command: ActionCommand, out: &Output) -> Result {
    let (kind, params, target, output) = command.parts();
    let client = connect(global)?;
    match target.id.clone() {
        Some(id) => single(&client, kind, params, &target, &id, output, out).await,
        None => bulk(&client, kind, params, &target, out).await,
    }
}

async fn single(
    client: &Client,
    kind: CommandKind,
    params: Value,
    target: &Target,
    id: &str,
    output: Option<PathBuf>,
    out: &Output,
) -> Result {
    // Destructive kinds ask even for one device (the domain's table says which they are).
    if kind.is_destructive() {
        confirm(&format!("{kind} device {id}"), target.yes)?;
    }
    let command = client
        .create_command(
            id,
            &CreateCommandRequest {
                kind: kind.as_str().to_owned(),
                params,
                expires: target.expires.clone(),
                clinician: clinician(target),
            },
        )
        .await?;
    if !out.json {
        out.line(&neutralise(&format!(
            "queued {kind} for device {id}: command {}",
            command.id
        )));
    }
    let wait_for_result = output.is_some();
    let last = if target.no_wait {
        command
    } else {
        follow_one(
            client,
            command,
            Duration::from_secs(target.wait),
            wait_for_result,
            out,
        )
        .await?
    };
    if let Some(path) = output
        && last.state == "succeeded"
    {
        let detail = client.get_command(&last.id).await?;
        let bundle = detail.output.unwrap_or(Value::Null);
        write_private_json(&path, &bundle).map_err(|error| CliError::local("io", error))?;
        if !out.json {
            out.line(&format!("wrote the diagnostics bundle to {}", path.display()));
        }
    }
    if out.json {
        print_json(out, &last)?;
    }
    outcome(&last)
}

/// Polls one command until it is acknowledged (or over, with `until_final`) or time runs out,
/// printing each new state.
async fn follow_one(
    client: &Client,
    mut command: CommandView,
    wait: Duration,
    until_final: bool,
    out: &Output,
) -> Result<CommandView> {
    let started = Instant::now();
    let mut shown = command.state.clone();
    loop {
        let finished = is_final(&command.state);
        let acknowledged = finished || command.state == "acknowledged";
        if finished || (acknowledged && !until_final) || started.elapsed() >= wait {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        command = client.get_command(&command.id).await?.command;
        if command.state != shown && !out.json {
            out.line(&neutralise(&format!("  {}: {}", command.state, command.detail)));
            shown = command.state.clone();
        }
    }
    if !out.json && !is_final(&command.state) && command.state != "acknowledged" {
        out.line(&format!(
            "still {} after {}s (the device gets it when it connects); follow with `ward commands show {}`",
            command.state,
            wait.as_secs(),
            command.id
        ));
    }
    Ok(command)
}

fn is_final(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "expired" | "cancelled")
}

/// Exit 1 when the device said it failed (or the command could not be delivered in time).
fn outcome(command: &CommandView) -> Result {
    match command.state.as_str() {
        "failed" | "expired" | "cancelled" => Err(CliError::local(
            "action_failed",
            anyhow::anyhow!(
                "{} {}: {}",
                command.kind,
                command.state,
                neutralise(&command.detail)
            ),
        )),
        _ => Ok(()),
    }
}

async fn bulk(client: &Client, kind: CommandKind, params: Value, target: &Target, out: &Output) -> Result {
    let filter = target.filter.clone().unwrap_or_default();
    let mut request = BulkCommandRequest {
        filter,
        kind: kind.as_str().to_owned(),
        params,
        expires: target.expires.clone(),
        clinician: clinician(target),
        dry_run: true,
    };
    let preview = client.bulk_command(&request).await?;
    if preview.matched == 0 {
        let why = if preview.unsupported > 0 {
            format!(
                "no devices match that can {kind} ({} matched but their platform cannot); nothing queued",
                preview.unsupported
            )
        } else {
            "no devices match; nothing queued".to_owned()
        };
        return done(out, &why);
    }
    let mut summary = format!(
        "{kind} {} devices ({} offline: they get it when they reconnect)",
        preview.matched, preview.offline
    );
    if preview.needs_clinician > 0 {
        summary.push_str(&format!(
            "; {} are medical or life-sustaining and need the clinician's confirmation",
            preview.needs_clinician
        ));
    }
    if preview.unsupported > 0 {
        summary.push_str(&format!(
            "; {} more matched but their platform cannot {kind} (left out)",
            preview.unsupported
        ));
    }
    confirm(&summary, target.yes)?;
    request.dry_run = false;
    let queued = client.bulk_command(&request).await?;
    let batch = queued.batch_id.clone().unwrap_or_default();
    if !out.json {
        out.line(&format!(
            "queued {kind} for {} devices: batch {batch}",
            queued.command_ids.len()
        ));
    }
    let commands = if target.no_wait {
        Vec::new()
    } else {
        follow_batch(
            client,
            &batch,
            queued.command_ids.len(),
            Duration::from_secs(target.wait),
            out,
        )
        .await?
    };
    if out.json {
        return print_json(out, &json!({ "queued": queued, "commands": commands }));
    }
    let failed: Vec<&CommandView> = commands.iter().filter(|c| c.state == "failed").collect();
    for command in &failed {
        out.line(&neutralise(&format!(
            "  failed on {}: {}",
            command.device_id, command.detail
        )));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::local(
            "action_failed",
            anyhow::anyhow!("{kind} failed on {} of {} devices", failed.len(), commands.len()),
        ))
    }
}

/// Counts of a batch by how far its commands got.
fn tally(commands: &[CommandView]) -> (usize, usize, usize) {
    let acknowledged = commands
        .iter()
        .filter(|c| matches!(c.state.as_str(), "acknowledged" | "succeeded"))
        .count();
    let failed = commands
        .iter()
        .filter(|c| matches!(c.state.as_str(), "failed" | "expired" | "cancelled"))
        .count();
    (acknowledged, failed, commands.len() - acknowledged - failed)
}

/// Shows progress until every command of the batch is acknowledged or over, or time runs out: a
/// progress line on a terminal, a plain line every few seconds otherwise.
async fn follow_batch(
    client: &Client,
    batch: &str,
    total: usize,
    wait: Duration,
    out: &Output,
) -> Result<Vec<CommandView>> {
    let terminal = std::io::stderr().is_terminal() && !out.json;
    let started = Instant::now();
    let mut last_line = Instant::now();
    loop {
        let commands = client
            .list_commands(&CommandQuery {
                batch: Some(batch.to_owned()),
                limit: Some(total.clamp(1, 10_000) as u32),
                ..Default::default()
            })
            .await?;
        let (acknowledged, failed, pending) = tally(&commands);
        let line = format!("acknowledged {acknowledged}/{total}, failed {failed}, pending {pending}");
        let over = pending == 0 || started.elapsed() >= wait;
        if terminal {
            let width = 30;
            let filled = (acknowledged + failed) * width / total.max(1);
            eprint!("\r[{}{}] {line}", "#".repeat(filled), "-".repeat(width - filled));
            if over {
                eprintln!();
            }
        } else if !out.json && (over || last_line.elapsed() >= Duration::from_secs(5)) {
            out.line(&line);
            last_line = Instant::now();
        }
        if over {
            return Ok(commands);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `ward commands ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum CommandsCommand {
    /// List commands, newest first
    List {
        /// Only this device's commands
        #[arg(long, value_name = "ID")]
        device: Option<String>,
        /// Only commands in this state: queued, sent, acknowledged, succeeded, failed, expired, cancelled
        #[arg(long)]
        state: Option<String>,
        /// Only the commands of one bulk action
        #[arg(long, value_name = "BATCH")]
        batch: Option<String>,
        /// At most this many (default 100)
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Show a command: its states with times, the device's report, a wipe's signed proof
    Show {
        /// Command id
        id: String,
    },
    /// Cancel a command that has not reached its device yet
    Cancel {
        /// Command id
        id: String,
    },
}

const COMMAND_HEADER: [&str; 6] = ["ID", "DEVICE", "KIND", "STATE", "CREATED", "DETAIL"];

fn command_row(c: &CommandView) -> Vec<String> {
    let detail: String = c.detail.chars().take(60).collect();
    vec![
        c.id.clone(),
        c.device_id.clone(),
        c.kind.clone(),
        c.state.clone(),
        c.created_at.clone(),
        detail,
    ]
}

pub(crate) async fn commands(global: &GlobalArgs, command: CommandsCommand, out: &Output) -> Result {
    let client = connect(global)?;
    match command {
        CommandsCommand::List {
            device,
            state,
            batch,
            limit,
        } => {
            let listed = client
                .list_commands(&CommandQuery {
                    device,
                    state,
                    batch,
                    limit,
                })
                .await?;
            if out.json {
                return print_json(out, &listed);
            }
            out.table(&COMMAND_HEADER, listed.iter().map(command_row));
            Ok(())
        }
        CommandsCommand::Show { id } => {
            let detail = client.get_command(&id).await?;
            if out.json {
                return print_json(out, &detail);
            }
            print_command(out, &detail)
        }
        CommandsCommand::Cancel { id } => {
            let cancelled = client.cancel_command(&id).await?;
            if out.json {
                return print_json(out, &cancelled);
            }
            done(out, &format!("command {} cancelled", cancelled.id))
        }
    }
}

fn print_command(out: &Output, detail: &CommandDetail) -> Result {
    let c = &detail.command;
    out.fields(&[
        ("id", c.id.clone()),
        ("device", c.device_id.clone()),
        ("kind", c.kind.clone()),
        ("params", c.params.to_string()),
        ("state", c.state.clone()),
        ("batch", or_dash(c.batch_id.as_deref())),
        ("created", format!("{} by {}", c.created_at, c.created_by)),
        ("sent", or_dash(c.sent_at.as_deref())),
        ("acknowledged", or_dash(c.acknowledged_at.as_deref())),
        ("finished", or_dash(c.finished_at.as_deref())),
        ("expires", c.expires_at.clone()),
        ("detail", c.detail.clone()),
    ]);
    if let Some(proof) = &detail.proof {
        out.line("completion proof (signed by the device, verified by the server):");
        let text = serde_json::to_string_pretty(proof).map_err(|error| CliError::local("io", error))?;
        for line in text.lines() {
            out.line(&neutralise(&format!("  {line}")));
        }
        out.line(&format!(
            "  signature: {}",
            or_dash(detail.proof_signature.as_deref())
        ));
    }
    if detail.output.is_some() {
        out.line("diagnostics bundle: present (`--json` prints it)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// `ward device <verb> ...` without the rest of the command line.
    #[derive(Debug, Parser)]
    struct Device {
        #[command(subcommand)]
        action: ActionCommand,
    }

    /// Every `ward device` action verb with the smallest arguments it takes, and its kind.
    fn every_verb() -> Vec<(String, CommandKind)> {
        let verbs: Vec<String> = Device::command()
            .get_subcommands()
            .map(|sub| sub.get_name().to_owned())
            .filter(|name| name != "help")
            .collect();
        let mut kinds = Vec::new();
        for verb in verbs {
            let extra: &[&str] = match verb.as_str() {
                "message" => &["--text", "hello"],
                "firmware-update" => &["--uri", "coap://fw.local/p.bin"],
                _ => &[],
            };
            let mut args = vec!["device", verb.as_str(), "d-1"];
            args.extend(extra);
            let parsed = Device::try_parse_from(&args).unwrap();
            kinds.push((verb.clone(), parsed.action.parts().0));
            if verb == "wipe" {
                args.extend(["--full", "--confirm-hostname", "tab-1"]);
                kinds.push((
                    verb.clone(),
                    Device::try_parse_from(&args).unwrap().action.parts().0,
                ));
            }
        }
        kinds
    }

    #[test]
    fn every_kind_but_apply_settings_has_a_device_verb() {
        let mut offered: Vec<CommandKind> = every_verb().into_iter().map(|(_, kind)| kind).collect();
        offered.sort();
        let expected: Vec<CommandKind> = CommandKind::ALL
            .iter()
            .copied()
            // Sent by the policy engine, never by hand.
            .filter(|kind| *kind != CommandKind::ApplySettings)
            .collect();
        assert_eq!(offered, expected);
    }

    #[test]
    fn confirmation_is_asked_for_the_same_kinds_as_before_the_domain_table() {
        let asks: Vec<&str> = every_verb()
            .iter()
            .map(|(_, kind)| *kind)
            .filter(|kind| kind.is_destructive())
            .map(CommandKind::as_str)
            .collect();
        assert_eq!(
            asks,
            [
                "lock",
                "reboot",
                "shutdown",
                "quarantine",
                "wipe-selective",
                "wipe-full",
                "lost-mode",
                "firmware-update"
            ]
        );
    }

    #[test]
    fn the_help_says_which_verbs_one_platform_only_can_do() {
        use ward_domain::command::Platform;
        let device = Device::command();
        for (verb, kind) in every_verb() {
            let about = device
                .find_subcommand(&verb)
                .unwrap()
                .get_about()
                .unwrap()
                .to_string();
            let platforms = kind.info().platforms;
            assert_eq!(
                about.contains("(Linux agent only)"),
                platforms == [Platform::Agent],
                "{verb}: {about}"
            );
            assert_eq!(
                about.contains("(LwM2M devices only"),
                platforms == [Platform::Lwm2m],
                "{verb}: {about}"
            );
        }
    }

    #[test]
    fn the_help_names_exactly_the_verbs_that_need_a_clinician() {
        for (verb, kind) in every_verb() {
            assert_eq!(
                ACTION_EXAMPLES.contains(&format!("`{verb}`")),
                kind.endangers_patients(),
                "{verb} ({kind})"
            );
        }
    }
}
