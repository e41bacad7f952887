//! The policy engine: keeps the current policies and groups compiled in memory, evaluates devices
//! when their facts change and every device when policies change, stores what changed, pushes the
//! merged settings to devices as signed `apply-settings` commands, remediates devices that stay
//! non-compliant past a policy's grace period, and posts HMAC-signed webhooks on compliance
//! changes.
//!
//! One evaluation runs at a time (`Engine::turn`): an apply and the background evaluation of new
//! facts never interleave their writes, so the cache and the database agree.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use ward_domain::audit::{AuditRecord, Outcome};
use ward_domain::command::CommandKind;
use ward_domain::device::{Criticality, DeviceState};
use ward_domain::policy::{
    CheckStatus, Policy, RemediationAction, SettingConflict, Settings, settings_digest,
};
use ward_proto::{ComplianceBrief, ComplianceChangeView, DeviceView, SettingConflictView};
use ward_store::{
    Audit, ComplianceKey, ComplianceRecord, DeviceRecord, PolicyVersionRecord, RemediationRecord, StoreResult,
};

use crate::devices::device_view;
pub use crate::policy_engine::{Engine, LoadedPolicy, Work, annotate_groups, compile_groups, compile_record};
use crate::policy_engine::{Results, Snapshot, brief_of, evaluate_subject};
use crate::state::AppState;

/// How long remediation and settings commands wait for an offline device.
const COMMAND_TTL_MS: i64 = 7 * 24 * 3_600_000;
/// Most devices loaded one by one for an evaluation; more and the whole list is read.
const MAX_SINGLE_LOADS: usize = 256;

/// The selector subject of a device (view with groups, without compliance).
fn subject_of(
    state: &AppState,
    snapshot: &Snapshot,
    device: &DeviceRecord,
    now_ms: i64,
) -> (DeviceView, Value) {
    let mut view = device_view(device, now_ms, state.config.heartbeat_ms);
    annotate_groups(snapshot, &mut view);
    let subject = serde_json::to_value(&view).unwrap_or(Value::Null);
    (view, subject)
}

/// Whether commands may be queued for a device in this state.
fn takes_commands(device: &DeviceRecord) -> bool {
    !matches!(
        device.state,
        DeviceState::Revoked | DeviceState::Retired | DeviceState::Wiped
    )
}

/// What an evaluation found (and, unless it was a dry run, stored).
#[derive(Debug, Default)]
pub struct EvalOutcome {
    pub changes: Vec<ComplianceChangeView>,
    pub conflicts: Vec<SettingConflictView>,
    /// Devices in scope of each policy, by name.
    pub in_scope: BTreeMap<String, u64>,
    pub settings_commands: usize,
}

/// (setting, the values policies ask for, the value that applies): devices with the same conflict
/// are counted together.
type ConflictKey = (String, Vec<(String, String)>, String);

/// A compliance transition, for webhooks.
#[derive(Debug, Clone)]
struct Transition {
    device: DeviceRecord,
    before: ComplianceBrief,
    after: ComplianceBrief,
}

/// Evaluates `devices` against `snapshot`. With `commit`, stores changed results, queues settings
/// commands and posts webhooks; without, only reports.
async fn evaluate_devices(
    state: &AppState,
    snapshot: &Snapshot,
    devices: &[DeviceRecord],
    commit: bool,
) -> StoreResult<EvalOutcome> {
    let engine = &state.policy;
    let now = state.now_ms();
    let mut outcome = EvalOutcome::default();
    for loaded in &snapshot.policies {
        outcome.in_scope.insert(loaded.policy.name().to_owned(), 0);
    }
    let mut upserts = Vec::new();
    let mut removals = Vec::new();
    let mut new_results: Vec<(String, Results)> = Vec::new();
    let mut settings_out: Vec<(DeviceRecord, Settings, String)> = Vec::new();
    let mut transitions = Vec::new();
    let mut conflicts: BTreeMap<ConflictKey, u64> = BTreeMap::new();
    {
        let cache = engine.cache();
        for device in devices {
            let (_, subject) = subject_of(state, snapshot, device, now);
            let previous = cache.results.get(&device.id);
            let evaluated = evaluate_subject(snapshot, &device.id, &subject, previous, now);
            for &index in &evaluated.in_scope {
                *outcome
                    .in_scope
                    .entry(snapshot.policies[index].policy.name().to_owned())
                    .or_default() += 1;
            }
            for conflict in &evaluated.conflicts {
                *conflicts
                    .entry((
                        conflict.setting.clone(),
                        conflict.values.clone(),
                        conflict.applied.clone(),
                    ))
                    .or_default() += 1;
            }
            let empty = Results::new();
            let old = previous.unwrap_or(&empty);
            for (key, record) in &evaluated.results {
                if old.get(key) != Some(record) {
                    upserts.push(record.clone());
                }
            }
            for key in old.keys().filter(|k| !evaluated.results.contains_key(*k)) {
                removals.push(ComplianceKey {
                    device_id: device.id.clone(),
                    policy: key.0.clone(),
                    check_id: key.1.clone(),
                });
            }
            let before = brief_of(old);
            let after = brief_of(&evaluated.results);
            if before.status != after.status {
                outcome.changes.push(ComplianceChangeView {
                    device_id: device.id.clone(),
                    hostname: device.hostname.clone(),
                    site: device.site.to_string(),
                    before: before.status.clone(),
                    after: after.status.clone(),
                });
            }
            if before != after {
                transitions.push(Transition {
                    device: device.clone(),
                    before,
                    after,
                });
            }
            let digest = settings_digest(&evaluated.settings);
            let sent = cache.settings_sent.get(&device.id);
            let wanted = evaluated.has_settings || sent.is_some();
            if wanted && sent != Some(&digest) && takes_commands(device) {
                settings_out.push((device.clone(), evaluated.settings.clone(), digest));
            }
            new_results.push((device.id.clone(), evaluated.results));
        }
    }
    outcome.conflicts = conflicts
        .into_iter()
        .map(|((setting, values, applied), devices)| SettingConflictView {
            setting,
            values,
            applied,
            devices,
        })
        .collect();
    outcome.settings_commands = settings_out.len();
    if !commit {
        return Ok(outcome);
    }
    state.store.record_compliance(&upserts, &removals).await?;
    {
        let mut cache = engine.cache();
        for (device_id, results) in new_results {
            if results.is_empty() {
                cache.results.remove(&device_id);
            } else {
                cache.results.insert(device_id, results);
            }
        }
    }
    if !settings_out.is_empty() {
        queue_settings(state, &settings_out).await?;
    }
    if !transitions.is_empty() {
        crate::webhooks::compliance_changed(
            state,
            transitions.iter().map(|t| {
                json!({
                    "event": "compliance.changed",
                    "device_id": t.device.id,
                    "hostname": t.device.hostname,
                    "site": t.device.site.to_string(),
                    "class": t.device.class.as_str(),
                    "before": t.before,
                    "after": t.after,
                    "time": crate::views::rfc3339(now),
                })
            }),
        );
    }
    Ok(outcome)
}

/// Signs, stores and pushes one apply-settings command per device, in chunks.
async fn queue_settings(state: &AppState, out: &[(DeviceRecord, Settings, String)]) -> StoreResult<()> {
    let now = state.now_ms();
    for chunk in out.chunks(500) {
        let mut digests = Vec::with_capacity(chunk.len());
        let mut commands = Vec::with_capacity(chunk.len());
        for (device, settings, digest) in chunk {
            let params = json!({ "settings": settings, "digest": digest });
            let params = match ward_domain::command::validate_params(CommandKind::ApplySettings, &params) {
                Ok(params) => params,
                Err(err) => {
                    tracing::error!(device = %device.id, error = %err, "merged settings do not validate; not sent");
                    continue;
                }
            };
            commands.push(crate::commands::build(
                state,
                &device.id,
                CommandKind::ApplySettings,
                &params.to_string(),
                now + COMMAND_TTL_MS,
                "policy-engine",
                None,
            ));
            digests.push((device.id.clone(), digest.clone()));
        }
        if commands.is_empty() {
            continue;
        }
        crate::commands::sign(state, &mut commands);
        let record = AuditRecord::new(
            "policy-engine",
            "policy.settings",
            "devices",
            Outcome::Success,
            json!({
                "devices": digests.iter().map(|(d, digest)| json!({"device": d, "digest": digest})).collect::<Vec<_>>(),
                "commands": commands.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            }),
        );
        state
            .store
            .record_device_settings(&digests, &commands, Audit::one(now, record))
            .await?;
        {
            let mut cache = state.policy.cache();
            for (device, digest) in &digests {
                cache.settings_sent.insert(device.clone(), digest.clone());
            }
        }
        for command in &commands {
            state.channels.push(command);
        }
    }
    Ok(())
}

/// Evaluates the given devices (or all) now and stores what changed.
pub async fn evaluate_now(state: &AppState, work: &Work) -> StoreResult<EvalOutcome> {
    let _turn = state.policy.turn.lock().await;
    let snapshot = state.policy.snapshot();
    if snapshot.policies.is_empty() {
        // Nothing to evaluate: only devices that still carry results (a policy was removed) or
        // settings need a visit, to clear them.
        let work = {
            let cache = state.policy.cache();
            let stale = |id: &String| cache.results.contains_key(id) || cache.settings_sent.contains_key(id);
            match work {
                Work::Devices(ids) => Work::Devices(ids.iter().filter(|id| stale(id)).cloned().collect()),
                Work::All if cache.results.is_empty() && cache.settings_sent.is_empty() => {
                    Work::Devices(Vec::new())
                }
                Work::All => Work::All,
            }
        };
        if matches!(&work, Work::Devices(ids) if ids.is_empty()) {
            return Ok(EvalOutcome::default());
        }
        let devices = load_devices(state, &work).await?;
        return evaluate_devices(state, &snapshot, &devices, true).await;
    }
    let devices = load_devices(state, work).await?;
    evaluate_devices(state, &snapshot, &devices, true).await
}

async fn load_devices(state: &AppState, work: &Work) -> StoreResult<Vec<DeviceRecord>> {
    match work {
        Work::Devices(ids) if ids.len() <= MAX_SINGLE_LOADS => {
            let mut devices = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(device) = state.store.device(id).await? {
                    devices.push(device);
                }
            }
            Ok(devices)
        }
        _ => state.store.list_devices(false).await,
    }
}

/// The background evaluator: merges queued work, evaluates, and every remediation interval looks
/// for devices past their grace period.
pub async fn run(state: AppState, mut queue: mpsc::Receiver<Work>) {
    let mut tick = tokio::time::interval(Duration::from_millis(
        state.config.policy.remediation_interval_ms.max(1000) as u64,
    ));
    tick.tick().await;
    loop {
        tokio::select! {
            work = queue.recv() => {
                let Some(work) = work else { return };
                let mut all = matches!(work, Work::All);
                let mut ids: Vec<String> = match work { Work::Devices(ids) => ids, Work::All => Vec::new() };
                while let Ok(more) = queue.try_recv() {
                    match more {
                        Work::All => all = true,
                        Work::Devices(more) => ids.extend(more),
                    }
                }
                ids.sort();
                ids.dedup();
                let work = if all { Work::All } else { Work::Devices(ids) };
                if let Err(err) = evaluate_now(&state, &work).await {
                    tracing::warn!(error = %err, "policy evaluation failed");
                }
            }
            _ = tick.tick() => {
                if let Err(err) = remediate_now(&state).await {
                    tracing::warn!(error = %err, "policy remediation failed");
                }
            }
        }
    }
}

/// Asks the background evaluator to look at these devices (facts changed). Never waits.
pub fn devices_changed(state: &AppState, ids: Vec<String>) {
    if state.policy_work.try_send(Work::Devices(ids)).is_err() {
        // Behind: evaluate everything once it catches up rather than lose the change.
        let _ = state.policy_work.try_send(Work::All);
    }
}

/// The result of validating and comparing a set of policy files with what is stored.
pub struct Plan {
    pub compiled: Vec<(Policy, String)>,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Applies (or, with `dry_run`, previews) a new set of policies: evaluates every device against
/// it and, when applying, stores the versions atomically with `audit`, then the compliance and
/// settings that follow.
pub async fn apply(
    state: &AppState,
    plan: &Plan,
    prune: bool,
    dry_run: bool,
    actor: &str,
    audit_details: Value,
) -> StoreResult<(EvalOutcome, Vec<PolicyVersionRecord>)> {
    let _turn = state.policy.turn.lock().await;
    let now = state.now_ms();
    let current = state.policy.snapshot();
    let history = state.store.policy_versions(None).await?;
    let next_version = |name: &str| {
        history
            .iter()
            .filter(|v| v.name == name)
            .map(|v| v.version)
            .max()
            .unwrap_or(0)
            + 1
    };
    let mut versions = Vec::new();
    let mut policies: Vec<LoadedPolicy> = Vec::new();
    for (policy, source) in &plan.compiled {
        let name = policy.name();
        let existing = current.policies.iter().find(|p| p.policy.name() == name);
        let record = match existing {
            Some(loaded) if plan.unchanged.iter().any(|u| u == name) => loaded.record.clone(),
            _ => {
                let record = PolicyVersionRecord {
                    name: name.to_owned(),
                    version: next_version(name),
                    source: source.clone(),
                    spec: serde_json::to_string(&policy.spec).unwrap_or_default(),
                    removed: false,
                    created_ms: now,
                    created_by: actor.to_owned(),
                };
                versions.push(record.clone());
                record
            }
        };
        policies.push(LoadedPolicy {
            policy: policy.clone(),
            record,
        });
    }
    // Policies not in the files stay unless pruned.
    for loaded in &current.policies {
        let name = loaded.policy.name();
        if plan.compiled.iter().any(|(p, _)| p.name() == name) {
            continue;
        }
        if prune {
            versions.push(PolicyVersionRecord {
                name: name.to_owned(),
                version: next_version(name),
                source: String::new(),
                spec: loaded.record.spec.clone(),
                removed: true,
                created_ms: now,
                created_by: actor.to_owned(),
            });
        } else {
            policies.push(loaded.clone());
        }
    }
    policies.sort_by(|a, b| a.policy.name().cmp(b.policy.name()));
    let snapshot = Snapshot {
        policies,
        groups: current.groups.clone(),
    };
    let devices = state.store.list_devices(false).await?;
    let preview = evaluate_devices(state, &snapshot, &devices, false).await?;
    if dry_run || versions.is_empty() {
        return Ok((preview, versions));
    }
    let record = AuditRecord::new(actor, "policy.apply", "policies", Outcome::Success, audit_details);
    state
        .store
        .apply_policies(&versions, Audit::one(now, record))
        .await?;
    state.policy.set_snapshot(snapshot);
    let snapshot = state.policy.snapshot();
    let outcome = evaluate_devices(state, &snapshot, &devices, true).await?;
    Ok((outcome, versions))
}

/// Replaces the groups in the snapshot (after a group was stored or deleted) and re-evaluates.
pub async fn reload_groups(state: &AppState) -> StoreResult<()> {
    let groups = compile_groups(&state.store.groups().await?);
    {
        let _turn = state.policy.turn.lock().await;
        let current = state.policy.snapshot();
        state.policy.set_snapshot(Snapshot {
            policies: current.policies.clone(),
            groups,
        });
    }
    let _ = state.policy_work.try_send(Work::All);
    Ok(())
}

/// Looks for devices non-compliant with a policy for longer than its grace period and starts its
/// remediation once per lapse: a message, a quarantine or a lock, through the durable command
/// queue, audited as the policy's action. Life-sustaining devices are only notified: isolating or
/// locking them is a clinical decision, not an automatic one. Returns how many were started.
pub async fn remediate_now(state: &AppState) -> StoreResult<usize> {
    let _turn = state.policy.turn.lock().await;
    let now = state.now_ms();
    let snapshot = state.policy.snapshot();
    // (device, policy, failing since, failing checks)
    let mut due: Vec<(String, usize, i64, Vec<String>)> = Vec::new();
    {
        let cache = state.policy.cache();
        for (device_id, results) in &cache.results {
            for (index, loaded) in snapshot.policies.iter().enumerate() {
                let Some(grace) = loaded.policy.grace_seconds else {
                    continue;
                };
                let failing: Vec<&ComplianceRecord> = results
                    .values()
                    .filter(|r| r.policy == loaded.policy.name() && r.status == CheckStatus::Fail)
                    .collect();
                let Some(since) = failing.iter().map(|r| r.since_ms).min() else {
                    continue;
                };
                if now - since < grace as i64 * 1000 {
                    continue;
                }
                let key = (device_id.clone(), loaded.policy.name().to_owned(), since);
                if cache.remediated.contains(&key) {
                    continue;
                }
                due.push((
                    device_id.clone(),
                    index,
                    since,
                    failing.iter().map(|r| r.check_id.clone()).collect(),
                ));
            }
        }
    }
    let mut started = 0;
    for (device_id, index, since, checks) in due {
        let loaded = &snapshot.policies[index];
        let policy = &loaded.policy;
        let Some(spec) = &policy.spec.remediation else {
            continue;
        };
        let Some(device) = state.store.device(&device_id).await? else {
            continue;
        };
        if !takes_commands(&device) {
            continue;
        }
        let mut action = spec.action;
        let mut downgraded = false;
        if device.criticality == Criticality::LifeSustaining && action != RemediationAction::Notify {
            action = RemediationAction::Notify;
            downgraded = true;
        }
        let descriptions: Vec<String> = policy
            .checks
            .iter()
            .filter(|c| checks.contains(&c.id))
            .map(|c| {
                if c.description.is_empty() {
                    c.id.clone()
                } else {
                    c.description.clone()
                }
            })
            .collect();
        let (kind, params) = match action {
            RemediationAction::Notify => {
                let mut text = format!(
                    "This device does not meet the hospital's security policy \"{}\": {}. Please contact IT.",
                    policy.name(),
                    descriptions.join("; ")
                );
                text = text
                    .chars()
                    .take(ward_domain::command::MAX_MESSAGE_CHARS)
                    .collect();
                (CommandKind::Message, json!({ "text": text }))
            }
            RemediationAction::Quarantine => (CommandKind::Quarantine, json!({})),
            RemediationAction::Lock => (CommandKind::Lock, json!({})),
        };
        let params = match ward_domain::command::validate_params(kind, &params) {
            Ok(params) => params,
            Err(err) => {
                tracing::error!(device = %device_id, error = %err, "remediation parameters do not validate");
                continue;
            }
        };
        let actor = format!("policy:{}", policy.name());
        let mut command = crate::commands::build(
            state,
            &device_id,
            kind,
            &params.to_string(),
            now + COMMAND_TTL_MS,
            &actor,
            None,
        );
        crate::commands::sign(state, std::slice::from_mut(&mut command));
        let remediation = RemediationRecord {
            device_id: device_id.clone(),
            policy: policy.name().to_owned(),
            failing_since_ms: since,
            action,
            command_id: Some(command.id.clone()),
            time_ms: now,
        };
        let record = AuditRecord::new(
            &actor,
            "policy.remediate",
            format!("device:{device_id}"),
            Outcome::Success,
            json!({
                "action": action.as_str(),
                "configured_action": spec.action.as_str(),
                "downgraded_life_sustaining": downgraded,
                "command": command.id,
                "kind": kind.as_str(),
                "failing_checks": checks,
                "failing_since": crate::views::rfc3339(since),
                "grace": spec.grace,
                "policy_version": loaded.record.version,
            }),
        );
        let stored = state
            .store
            .record_remediation(
                &remediation,
                std::slice::from_ref(&command),
                Audit::one(now, record),
            )
            .await?;
        state
            .policy
            .cache()
            .remediated
            .insert((device_id.clone(), policy.name().to_owned(), since));
        if stored {
            state.channels.push(&command);
            started += 1;
            crate::webhooks::compliance_changed(
                state,
                std::iter::once(json!({
                    "event": "compliance.remediated",
                    "device_id": device_id,
                    "hostname": device.hostname,
                    "policy": policy.name(),
                    "action": action.as_str(),
                    "command_id": command.id,
                    "failing_checks": checks,
                    "time": crate::views::rfc3339(now),
                })),
            );
        }
    }
    Ok(started)
}

/// Effective settings and conflicts for one device, for its compliance view.
pub fn device_settings(state: &AppState, device: &DeviceRecord) -> (Settings, Vec<SettingConflict>) {
    let snapshot = state.policy.snapshot();
    let (_, subject) = subject_of(state, &snapshot, device, state.now_ms());
    let evaluated = evaluate_subject(&snapshot, &device.id, &subject, None, state.now_ms());
    (evaluated.settings, evaluated.conflicts)
}
