//! The agent's side of remote actions: verify → journal → acknowledge → execute → journal → report.
//!
//! Exactly-once: a command is journaled as accepted (fsync'd) before the acknowledgement goes out,
//! and as finished before its result does. A redelivered command that finished is answered from
//! the journal. One that was accepted but never finished (the agent was killed mid-action) runs
//! again when it is redelivered; that is safe because every executor *sets* a state — sessions
//! locked, a table loaded, a directory emptied, a sandbox record per command id — so running it a
//! second time ends where the first run would have. Reboot, power-off and the full wipe's power-off
//! are journaled as finished before the program starts, so a device never reboots in a loop.

use std::path::PathBuf;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};
use ward_domain::command::{
    CommandFields, CommandKind, CommandRefusal, VerifiedBatches, WipeProof, verify_command,
};
use ward_proto::agent::{Command, CommandUpdate};

use crate::actions::{self, Mode, Plan};
use crate::config::AgentConfig;
use crate::identity::{Enrollment, StateDir};
use crate::journal::{Entry, Journal};

/// A verified, journaled command waiting to run.
#[derive(Debug, Clone)]
pub struct Job {
    id: String,
    kind: CommandKind,
    params: Value,
}

impl Job {
    pub fn kind(&self) -> CommandKind {
        self.kind
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// What to do with a delivered command.
#[derive(Debug)]
pub enum Accepted {
    /// Send these updates; nothing runs (refused, or finished before and answered from the journal).
    Answer(Vec<CommandUpdate>),
    /// Send the acknowledgement, then run the job.
    Run(Job, CommandUpdate),
}

/// Runs commands for one enrolled device.
pub struct Runner {
    state: StateDir,
    enrollment: Enrollment,
    key: Option<VerifyingKey>,
    config: AgentConfig,
    mode: Mode,
    hostname: String,
    journal: Journal,
    /// Batch signatures already checked (shared by the simulator's virtual devices).
    batches: Arc<VerifiedBatches>,
    /// Where `/etc/resolv.conf` is read from (the facts root).
    root: PathBuf,
}

fn update(id: &str, status: &str, detail: impl Into<String>) -> CommandUpdate {
    CommandUpdate {
        command_id: id.to_owned(),
        status: status.to_owned(),
        detail: detail.into(),
        ..Default::default()
    }
}

/// The server's command key as pinned at enrollment.
fn parse_key(hex_key: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// The result a journal entry records, as sent to the server.
fn from_journal(entry: &Entry) -> Option<CommandUpdate> {
    match entry {
        Entry::Finished {
            id,
            status,
            detail,
            proof_json,
            proof_signature,
            output,
            ..
        } => Some(CommandUpdate {
            command_id: id.clone(),
            status: status.clone(),
            detail: detail.clone(),
            proof_json: proof_json.clone(),
            proof_signature: hex::decode(proof_signature).unwrap_or_default(),
            output: output.clone(),
        }),
        Entry::Accepted { .. } => None,
    }
}

impl Runner {
    /// Opens the journal in the state directory and makes sure the data key exists.
    pub fn new(
        state: StateDir,
        enrollment: Enrollment,
        config: AgentConfig,
        mode: Mode,
        hostname: String,
        root: PathBuf,
        batches: Arc<VerifiedBatches>,
    ) -> Result<Runner, String> {
        let journal_path = state.0.join("commands.journal");
        let journal = Journal::open(&journal_path)
            .map_err(|err| format!("opening {}: {err}", journal_path.display()))?;
        let data_key = state.0.join("data.key");
        actions::ensure_data_key(&data_key)
            .map_err(|err| format!("creating {}: {err}", data_key.display()))?;
        Ok(Runner {
            key: parse_key(&enrollment.command_key),
            state,
            enrollment,
            config,
            mode,
            hostname,
            journal,
            batches,
            root,
        })
    }

    /// Checks a delivered command and journals it (see the module docs for the order of checks).
    pub fn accept(&self, command: &Command, now_ms: i64) -> Accepted {
        let refuse = |why: String| Accepted::Answer(vec![update(&command.id, "refused", why)]);
        let Some(key) = &self.key else {
            return refuse("this agent has no command key pinned: enroll it again".into());
        };
        // Signature and addressee first; expiry only after the journal (a finished command that
        // is redelivered late is answered, not refused).
        let fields = CommandFields::new(
            &command.id,
            &command.device_id,
            &command.kind,
            &command.params_json,
            command.not_after_ms,
        );
        let verified = verify_command(
            key,
            &self.enrollment.device_id,
            command.not_after_ms,
            &fields,
            &command.signature,
            &command.batch_proof,
            &self.batches,
        );
        let (kind, params) = match verified {
            Ok(verified) => verified,
            Err(refusal) => return refuse(refusal.to_string()),
        };
        let job = Job {
            id: command.id.clone(),
            kind,
            params,
        };
        let ack = update(&command.id, "acknowledged", "");
        if let Some(known) = self.journal.get(&command.id) {
            return match known.finished.as_ref().and_then(from_journal) {
                Some(result) => Accepted::Answer(vec![result]),
                // Accepted before, never finished: the agent stopped mid-action. Run it again.
                None => Accepted::Run(job, ack),
            };
        }
        if now_ms > command.not_after_ms {
            return refuse(CommandRefusal::Expired.to_string());
        }
        let entry = Entry::Accepted {
            id: command.id.clone(),
            kind: kind.as_str().to_owned(),
            not_after_ms: command.not_after_ms,
            time_ms: now_ms,
        };
        if let Err(err) = self.journal.append(entry, now_ms) {
            return Accepted::Answer(vec![update(
                &command.id,
                "failed",
                format!("not run: the journal cannot be written ({err})"),
            )]);
        }
        Accepted::Run(job, ack)
    }

    /// Journals a result and returns it as an update.
    fn finish(&self, id: &str, result: Result<Done, String>, now_ms: i64) -> CommandUpdate {
        let entry = match result {
            Ok(done) => Entry::Finished {
                id: id.to_owned(),
                status: "succeeded".into(),
                detail: done.detail,
                proof_json: done.proof_json,
                proof_signature: hex::encode(done.proof_signature),
                output: done.output,
                time_ms: now_ms,
            },
            Err(reason) => Entry::Finished {
                id: id.to_owned(),
                status: "failed".into(),
                detail: reason,
                proof_json: String::new(),
                proof_signature: String::new(),
                output: String::new(),
                time_ms: now_ms,
            },
        };
        if let Err(err) = self.journal.append(entry.clone(), now_ms) {
            eprintln!("ward-agent: journaling the result of {id} failed: {err}");
        }
        from_journal(&entry).unwrap_or_else(|| update(id, "failed", "internal error"))
    }

    /// Runs an accepted job and journals its result before returning it.
    pub fn execute(&self, job: Job, now_ms: i64) -> CommandUpdate {
        let tools = &self.config.tools;
        let text = |default: &str| {
            job.params
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_owned()
        };
        let plan = match job.kind {
            CommandKind::Lock => actions::lock(tools),
            CommandKind::Unlock => actions::unlock(tools),
            CommandKind::Message => actions::message(tools, &text("")),
            CommandKind::LostMode => actions::lost_mode(tools, &text("")),
            CommandKind::Reboot => actions::power(tools, "reboot"),
            CommandKind::Shutdown => actions::power(tools, "poweroff"),
            CommandKind::Quarantine => match self.quarantine_plan() {
                Ok(plan) => plan,
                Err(why) => return self.finish(&job.id, Err(why), now_ms),
            },
            CommandKind::Release => actions::release(tools),
            CommandKind::WipeSelective => {
                actions::wipe_selective(&self.config, &self.state.0.join("data.key"))
            }
            CommandKind::WipeFull => {
                if let Err(why) = self.full_wipe_allowed(&job.params) {
                    return self.finish(&job.id, Err(why), now_ms);
                }
                actions::wipe_full(&self.config)
            }
            CommandKind::CollectDiagnostics => {
                let result = self.diagnostics(&job, now_ms);
                return self.finish(&job.id, result, now_ms);
            }
            CommandKind::ApplySettings => {
                let result =
                    crate::settings::apply(&self.mode, tools, &self.state.0, &job.id, &job.params, now_ms)
                        .map(|summary| Done {
                            detail: summary,
                            ..Done::default()
                        });
                return self.finish(&job.id, result, now_ms);
            }
            CommandKind::FirmwareUpdate => {
                let refusal = Err("firmware updates are not supported by the Linux agent".to_owned());
                return self.finish(&job.id, refusal, now_ms);
            }
        };
        let result = self.carry_out(&job, &plan, now_ms);
        // Quarantine state lives beside the journal so a restart re-applies it.
        if result.is_ok() {
            match job.kind {
                CommandKind::Quarantine => {
                    if let Some(step) = plan.steps.first() {
                        let _ =
                            std::fs::write(self.quarantine_state(), step.stdin.clone().unwrap_or_default());
                    }
                }
                CommandKind::Release => {
                    let _ = std::fs::remove_file(self.quarantine_state());
                }
                _ => {}
            }
        }
        let last = plan.last.is_some();
        let update = self.finish(&job.id, result, now_ms);
        if last && update.status == "succeeded" {
            // Journaled as finished first: if this process does not survive, it is not redone.
            if let Err(why) = actions::perform_last(&self.mode, &plan) {
                return self.finish(&job.id, Err(why), now_ms);
            }
        }
        update
    }

    /// Performs a plan and, for wipes, signs the completion record.
    fn carry_out(&self, job: &Job, plan: &Plan, now_ms: i64) -> Result<Done, String> {
        let kind = job.kind.as_str();
        if job.kind.is_wipe() {
            // Sign what is about to be erased before erasing (the proof names the paths; the
            // device key it is signed with is not among them).
            let erased: Vec<String> = if job.kind == CommandKind::WipeFull {
                self.config
                    .full_wipe_devices
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect()
            } else {
                plan.erase.iter().map(|p| p.display().to_string()).collect()
            };
            let proof = WipeProof {
                command_id: job.id.clone(),
                device_id: self.enrollment.device_id.clone(),
                kind: kind.to_owned(),
                erased,
                completed_ms: now_ms,
            };
            let proof_json = serde_json::to_string(&proof).map_err(|e| e.to_string())?;
            let signature = self.sign(proof_json.as_bytes())?;
            actions::perform(&self.mode, &job.id, kind, &job.params, plan)?;
            return Ok(Done {
                detail: plan.summary.clone(),
                proof_json,
                proof_signature: signature,
                output: String::new(),
            });
        }
        actions::perform(&self.mode, &job.id, kind, &job.params, plan)?;
        Ok(Done {
            detail: plan.summary.clone(),
            ..Done::default()
        })
    }

    /// ECDSA P-256 over `bytes` with the device's private key (the key its certificate holds).
    fn sign(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let pem =
            std::fs::read_to_string(self.state.key()).map_err(|e| format!("reading the device key: {e}"))?;
        let der = rcgen::KeyPair::from_pem(&pem)
            .map_err(|e| format!("the device key: {e}"))?
            .serialize_der();
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &der,
            &rng,
        )
        .map_err(|e| format!("the device key: {e}"))?;
        key.sign(&rng, bytes)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| format!("signing: {e}"))
    }

    fn full_wipe_allowed(&self, params: &Value) -> Result<(), String> {
        if !self.enrollment.allow_full_wipe {
            return Err("refused: this device's enrollment does not allow a full wipe".into());
        }
        if !self.config.allow_full_wipe {
            return Err("refused: the agent settings do not allow a full wipe (allow_full_wipe)".into());
        }
        let typed = params
            .get("confirm_hostname")
            .and_then(Value::as_str)
            .unwrap_or("");
        if typed != self.hostname {
            return Err(format!(
                "refused: confirm_hostname {typed:?} is not this device's hostname"
            ));
        }
        Ok(())
    }

    fn quarantine_state(&self) -> PathBuf {
        self.state.0.join("quarantine.json")
    }

    fn quarantine_plan(&self) -> Result<Plan, String> {
        let servers = actions::server_addresses(&self.enrollment)?;
        let ports = [self.enrollment.server_port, self.enrollment.agent_port];
        let resolvers = self.config.resolvers(&self.root);
        let ruleset = actions::quarantine_ruleset(&servers, &ports, &resolvers);
        Ok(actions::quarantine(&self.config.tools, &ruleset))
    }

    /// A bounded JSON bundle: agent version, settings, recent journal, quarantine state and (on a
    /// real device) the agent's system log.
    fn diagnostics(&self, job: &Job, _now_ms: i64) -> Result<Done, String> {
        let max = job
            .params
            .get("max_bytes")
            .and_then(Value::as_u64)
            .unwrap_or(ward_domain::command::DEFAULT_DIAGNOSTICS_BYTES) as usize;
        let step = actions::Step::new(
            &self.config.tools.journalctl,
            &["-u", "ward-agent", "-n", "200", "--no-pager"],
        );
        let plan = Plan {
            steps: vec![step.clone()],
            summary: "diagnostics collected".into(),
            ..Plan::default()
        };
        let log = match &self.mode {
            Mode::Real => actions::run_step(&step, max).unwrap_or_else(|why| format!("(no log: {why})")),
            Mode::Sandbox(_) => {
                actions::perform(&self.mode, &job.id, job.kind.as_str(), &job.params, &plan)?;
                "(sandbox: log not read)".into()
            }
        };
        let mut bundle = json!({
            "agent_version": env!("CARGO_PKG_VERSION"),
            "device_id": self.enrollment.device_id,
            "hostname": self.hostname,
            "settings": self.config,
            "quarantined": self.quarantine_state().exists(),
            "journal": self.journal.tail(50),
            "log": "",
        });
        let base = bundle.to_string().len();
        let room = max.saturating_sub(base + 16);
        let mut cut = room.min(log.len());
        while !log.is_char_boundary(cut) {
            cut -= 1;
        }
        bundle["log"] = Value::String(log[..cut].to_owned());
        let mut output = bundle.to_string();
        if output.len() > max {
            // The rest alone is over the limit: keep the identifying fields only.
            output = json!({
                "agent_version": env!("CARGO_PKG_VERSION"),
                "device_id": self.enrollment.device_id,
                "truncated": true,
            })
            .to_string();
        }
        Ok(Done {
            detail: format!("diagnostics bundle of {} bytes", output.len()),
            output,
            ..Done::default()
        })
    }

    /// Re-applies a quarantine recorded in the state directory (at agent start).
    pub fn restore(&self) -> Result<Option<String>, String> {
        let Ok(ruleset) = std::fs::read_to_string(self.quarantine_state()) else {
            return Ok(None);
        };
        let plan = actions::quarantine(&self.config.tools, &ruleset);
        actions::perform(
            &self.mode,
            "restore-quarantine",
            "quarantine",
            &Value::Null,
            &plan,
        )?;
        Ok(Some("quarantine re-applied at start".into()))
    }

    /// The offline self-lock: once `offline_lock_hours` have passed since `last_contact_ms`, lock
    /// (and quarantine, if configured) once for this offline period. Journaled under
    /// `self-lock-<last contact>` so restarts do not repeat it.
    pub fn check_offline(&self, now_ms: i64, last_contact_ms: i64) -> Option<String> {
        let hours = crate::settings::applied(&self.state.0)
            .and_then(|applied| applied.settings.offline_lock_hours)
            .or(self.config.offline_lock_hours)?;
        if now_ms - last_contact_ms < i64::from(hours) * 3_600_000 {
            return None;
        }
        let id = format!("self-lock-{last_contact_ms}");
        if self.journal.get(&id).is_some() {
            return None;
        }
        let kind = if self.config.offline_quarantine {
            "lock+quarantine"
        } else {
            "lock"
        };
        let _ = self.journal.append(
            Entry::Accepted {
                id: id.clone(),
                kind: kind.into(),
                not_after_ms: i64::MAX,
                time_ms: now_ms,
            },
            now_ms,
        );
        let mut plan = actions::lock(&self.config.tools);
        if self.config.offline_quarantine {
            match self.quarantine_plan() {
                Ok(quarantine) => {
                    plan.steps.extend(quarantine.steps.iter().cloned());
                    if let Some(step) = quarantine.steps.first() {
                        let _ =
                            std::fs::write(self.quarantine_state(), step.stdin.clone().unwrap_or_default());
                    }
                }
                Err(why) => eprintln!("ward-agent: offline quarantine not possible: {why}"),
            }
        }
        plan.summary = format!("offline for {hours} hours or more: {kind} by the agent itself");
        let params = json!({ "offline_since_ms": last_contact_ms });
        let result = actions::perform(&self.mode, &id, kind, &params, &plan).map(|_| Done {
            detail: plan.summary.clone(),
            ..Done::default()
        });
        let update = self.finish(&id, result, now_ms);
        Some(format!("{} ({})", plan.summary, update.status))
    }
}

/// A successful action's report.
#[derive(Debug, Default)]
struct Done {
    detail: String,
    proof_json: String,
    proof_signature: Vec<u8>,
    output: String,
}
