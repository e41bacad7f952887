//! Incidents on the server: loading containment plans (YAML), the preview (clinical impact first),
//! fanning out containment and lifting as commands, progress and time-to-contain, and the breach
//! report.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use ward_domain::command::{CommandKind, CommandState};
use ward_domain::device::{Criticality, DeviceState};
use ward_domain::incident::{
    ContainmentPlan, DevicePlan, Latencies, Withheld, approval_reasons, clinical_loss, deadlines, latencies,
    plan_device,
};
use ward_proto::{
    ClinicalImpactView, ClinicianConfirmation, DeadlinesView, DeviceQuery, DeviceView, ExcludedDeviceView,
    IncidentPreview, IncidentStatus, IncidentView, LatenciesView, LossView, PlannedDeviceView, ProgressView,
    WardImpactView, WithheldView,
};
use ward_store::{CommandFilter, CommandRecord, DeviceRecord, IncidentRecord};

use ward_core::caller::Caller;
use ward_core::devices::select_records;
use ward_core::error::{ServiceError, ServiceResult};
use ward_core::state::AppState;
use ward_core::views::rfc3339;

/// The plan shipped with Ward.
pub const DEFAULT_PLAN: &str = include_str!("../plans/default.yaml");
/// Largest plan file read.
const MAX_PLAN_BYTES: u64 = 256 * 1024;

/// Parses and validates plan text.
pub fn parse_plan(text: &str) -> Result<ContainmentPlan, String> {
    let plan: ContainmentPlan = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
    plan.validate().map_err(|e| e.to_string())?;
    Ok(plan)
}

/// Loads plan `name`: `<data dir>/plans/<name>.yaml` if it exists, else the shipped default.
/// Returns the plan and its exact text (kept with the incident).
pub fn load_plan(state: &AppState, name: &str) -> ServiceResult<(ContainmentPlan, String)> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(ServiceError::invalid(
            "plan: a plan name is 1 to 64 of a-z, 0-9 and -",
        ));
    }
    let path = state.config.data_dir.join("plans").join(format!("{name}.yaml"));
    let text = match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > MAX_PLAN_BYTES => {
            return Err(ServiceError::invalid(format!(
                "plan: {} is larger than 256 KiB",
                path.display()
            )));
        }
        Ok(_) => std::fs::read_to_string(&path)
            .map_err(|e| ServiceError::invalid(format!("plan: reading {}: {e}", path.display())))?,
        Err(_) if name == "default" => DEFAULT_PLAN.to_owned(),
        Err(_) => return Err(ServiceError::invalid(format!("plan: no plan named {name:?}"))),
    };
    let plan = parse_plan(&text).map_err(|why| ServiceError::invalid(format!("plan {name}: {why}")))?;
    Ok((plan, text))
}

fn clinician_of(incident: &IncidentRecord) -> Option<ClinicianConfirmation> {
    incident
        .clinician
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
}

/// The wire view of an incident.
pub fn incident_view(incident: &IncidentRecord) -> IncidentView {
    let d = deadlines(incident.aware_ms);
    IncidentView {
        id: incident.id.clone(),
        title: incident.title.clone(),
        severity: incident.severity.to_string(),
        description: incident.description.clone(),
        situation: incident.situation.to_string(),
        discovered_at: rfc3339(incident.discovered_ms),
        aware_at: rfc3339(incident.aware_ms),
        scope: incident.scope.clone(),
        plan: incident.plan_name.clone(),
        state: incident.state.to_string(),
        declared_by: incident.declared_by.clone(),
        approved_by: incident.approved_by.clone(),
        approved_at: incident.approved_ms.map(rfc3339),
        clinician: clinician_of(incident),
        contained_at: incident.contain_ms.map(rfc3339),
        lifted_at: incident.lifted_ms.map(rfc3339),
        closed_at: incident.closed_ms.map(rfc3339),
        created_at: rfc3339(incident.created_ms),
        deadlines: DeadlinesView {
            gdpr: rfc3339(d.gdpr_ms),
            nis2_early_warning: rfc3339(d.nis2_early_warning_ms),
            hipaa: rfc3339(incident.discovered_ms + (d.hipaa_ms - incident.aware_ms)),
        },
    }
}

/// Every device in scope and what the plan gives it.
pub struct Planned {
    pub plan: ContainmentPlan,
    pub devices: Vec<(DeviceRecord, DeviceView, DevicePlan)>,
    pub excluded: Vec<ExcludedDeviceView>,
}

/// Moves the actions the device's platform cannot carry out from its plan to what is withheld,
/// with the reason: the preview shows them and containment does not send them.
fn withhold_unsupported(planned: &mut DevicePlan, device: &DeviceRecord) {
    for action in std::mem::take(&mut planned.actions) {
        match ward_core::platforms::unsupported(action, device) {
            None => planned.actions.push(action),
            Some(reason) => planned.withheld.push(Withheld { action, reason }),
        }
    }
}

/// Applies the incident's plan to the devices its scope matches (within the caller's sites).
pub async fn plan_incident(
    state: &AppState,
    caller: &Caller,
    incident: &IncidentRecord,
) -> ServiceResult<Planned> {
    let plan = crate::incidents::parse_plan(&incident.plan)
        .map_err(|why| ServiceError::invalid(format!("plan: the stored plan no longer parses: {why}")))?;
    let query = DeviceQuery {
        filter: Some(incident.scope.clone()),
        include_retired: false,
    };
    let confirmed = incident.clinician.is_some();
    let mut devices = Vec::new();
    let mut excluded = Vec::new();
    for (device, view) in select_records(state, caller, &query).await? {
        if !device.state.may_connect() {
            excluded.push(ExcludedDeviceView {
                id: device.id.clone(),
                hostname: device.hostname.clone(),
                reason: format!("{}: takes no commands", device.state),
            });
            continue;
        }
        let mut planned = plan_device(
            &plan,
            device.class,
            device.criticality,
            incident.situation,
            confirmed,
        );
        withhold_unsupported(&mut planned, &device);
        if planned.actions.is_empty() && planned.withheld.is_empty() {
            excluded.push(ExcludedDeviceView {
                id: device.id.clone(),
                hostname: device.hostname.clone(),
                reason: "no rule of the plan matches it".into(),
            });
            continue;
        }
        devices.push((device, view, planned));
    }
    Ok(Planned {
        plan,
        devices,
        excluded,
    })
}

/// The preview: clinical impact first, then devices, offline ones, exclusions, approvals.
pub fn preview(incident: &IncidentRecord, planned: &Planned) -> IncidentPreview {
    let mut wards: BTreeMap<String, WardImpactView> = BTreeMap::new();
    let mut losses: BTreeMap<(String, String), (u32, &'static str)> = BTreeMap::new();
    let mut actions: BTreeMap<String, u32> = BTreeMap::new();
    let (mut life, mut high, mut offline, mut needs_clinician) = (0, 0, 0, 0);
    let mut devices = Vec::new();
    for (device, view, plan) in &planned.devices {
        let ward = wards
            .entry(device.site.to_string())
            .or_insert_with(|| WardImpactView {
                site: device.site.to_string(),
                devices: 0,
                life_sustaining: 0,
                high: 0,
            });
        ward.devices += 1;
        match device.criticality {
            Criticality::LifeSustaining => {
                ward.life_sustaining += 1;
                life += 1;
            }
            Criticality::High => {
                ward.high += 1;
                high += 1;
            }
            Criticality::Normal => {}
        }
        if !view.online {
            offline += 1;
        }
        // Withheld for want of a clinician, not because the device's platform cannot do it.
        if plan
            .withheld
            .iter()
            .any(|w| ward_core::platforms::supports(w.action, device))
        {
            needs_clinician += 1;
        }
        for kind in &plan.actions {
            *actions.entry(kind.to_string()).or_default() += 1;
            if device.criticality != Criticality::Normal {
                let entry = losses
                    .entry((device.class.to_string(), kind.to_string()))
                    .or_insert((0, clinical_loss(device.class, *kind)));
                entry.0 += 1;
            }
        }
        devices.push(PlannedDeviceView {
            id: device.id.clone(),
            hostname: device.hostname.clone(),
            site: device.site.to_string(),
            class: device.class.to_string(),
            criticality: device.criticality.to_string(),
            phi: device.phi,
            online: view.online,
            actions: plan.actions.iter().map(ToString::to_string).collect(),
            withheld: plan
                .withheld
                .iter()
                .map(|w| WithheldView {
                    action: w.action.to_string(),
                    reason: w.reason.clone(),
                })
                .collect(),
        });
    }
    // Most critical first, so the person approving reads the patients' side before anything else.
    let rank = |c: &str| match c {
        "life-sustaining" => 0,
        "high" => 1,
        _ => 2,
    };
    devices.sort_by(|a, b| {
        rank(&a.criticality)
            .cmp(&rank(&b.criticality))
            .then(a.site.cmp(&b.site))
    });
    let mut wards: Vec<WardImpactView> = wards.into_values().collect();
    wards.sort_by(|a, b| {
        (b.life_sustaining, b.high)
            .cmp(&(a.life_sustaining, a.high))
            .then(a.site.cmp(&b.site))
    });
    let pairs: Vec<(Criticality, &DevicePlan)> = planned
        .devices
        .iter()
        .map(|(d, _, p)| (d.criticality, p))
        .collect();
    let reasons = approval_reasons(&planned.plan, &pairs);
    IncidentPreview {
        incident_id: incident.id.clone(),
        clinical_impact: ClinicalImpactView {
            life_sustaining: life,
            high,
            wards,
            losses: losses
                .into_iter()
                .map(|((class, action), (devices, loses))| LossView {
                    class,
                    action,
                    devices,
                    loses: loses.to_owned(),
                })
                .collect(),
        },
        devices,
        offline,
        excluded: planned.excluded.clone(),
        actions,
        needs_clinician,
        needs_second_approval: !reasons.is_empty(),
        approval_reasons: reasons,
    }
}

/// The batch ids of an incident's containment and lifting commands.
pub fn contain_batch(incident_id: &str) -> String {
    format!("incident:{incident_id}")
}

pub fn lift_batch(incident_id: &str) -> String {
    format!("incident-lift:{incident_id}")
}

/// How long containment commands stay valid for offline devices.
pub const CONTAIN_TTL_MS: i64 = 30 * 86_400_000;

/// Every command of a batch (all pages).
pub async fn batch_commands(state: &AppState, batch: &str) -> ServiceResult<Vec<CommandRecord>> {
    Ok(state
        .store
        .list_commands(&CommandFilter {
            batch_id: Some(batch.to_owned()),
            limit: Some(1_000_000),
            ..CommandFilter::default()
        })
        .await?)
}

fn progress(commands: &[CommandRecord], online: &HashMap<String, bool>) -> ProgressView {
    let mut view = ProgressView {
        commands: commands.len() as u64,
        ..ProgressView::default()
    };
    for command in commands {
        match command.state {
            CommandState::Acknowledged => view.acknowledged += 1,
            CommandState::Succeeded => {
                view.acknowledged += 1;
                view.succeeded += 1;
            }
            CommandState::Failed | CommandState::Expired | CommandState::Cancelled => {
                if command.acked_ms.is_some() {
                    view.acknowledged += 1;
                }
                view.failed += 1;
            }
            CommandState::Queued | CommandState::Sent => {
                view.outstanding += 1;
                if !online.get(&command.device_id).copied().unwrap_or(false) {
                    view.offline += 1;
                }
            }
        }
    }
    view
}

fn latencies_view(l: Latencies) -> LatenciesView {
    LatenciesView {
        count: l.count as u64,
        p50_ms: l.p50_ms,
        p95_ms: l.p95_ms,
        p99_ms: l.p99_ms,
        max_ms: l.max_ms,
    }
}

/// Progress of containment and lifting, and time-to-contain from "go" to each acknowledgement.
pub async fn status(state: &AppState, incident: &IncidentRecord) -> ServiceResult<IncidentStatus> {
    let contain = batch_commands(state, &contain_batch(&incident.id)).await?;
    let lift = batch_commands(state, &lift_batch(&incident.id)).await?;
    let now = state.now_ms();
    let online: HashMap<String, bool> = state
        .store
        .list_devices(true)
        .await?
        .into_iter()
        .map(|d| {
            let facts = serde_json::from_str(&d.facts).unwrap_or(serde_json::Value::Null);
            let up = ward_core::devices::online(&d, &facts, now, state.config.heartbeat_ms);
            (d.id, up)
        })
        .collect();
    let samples: Vec<i64> = match incident.contain_ms {
        Some(go) => contain
            .iter()
            .filter_map(|c| c.acked_ms)
            .map(|acked| (acked - go).max(0))
            .collect(),
        None => Vec::new(),
    };
    Ok(IncidentStatus {
        incident_id: incident.id.clone(),
        state: incident.state.to_string(),
        contain: progress(&contain, &online),
        time_to_contain: latencies_view(latencies(samples)),
        lift: progress(&lift, &online),
    })
}

/// Encryption of the device's disks as it reported them (`None`: not reported).
fn encrypted(device: &DeviceRecord) -> Option<bool> {
    let facts: Value = serde_json::from_str(&device.facts).ok()?;
    let disks = facts.get("disks")?;
    if let Some(root) = disks
        .get("root_filesystem")
        .and_then(|r| r.get("encrypted"))
        .and_then(Value::as_bool)
    {
        return Some(root);
    }
    let list = disks.get("devices").and_then(Value::as_array)?;
    Some(
        !list.is_empty()
            && list
                .iter()
                .all(|d| d.get("encrypted").and_then(Value::as_bool) == Some(true)),
    )
}

/// The breach report: JSON with the GDPR Art. 33(3) and HIPAA fields, deadlines, devices with
/// their PHI flag, encryption and containment result, the timeline, and an audit extract with its
/// verification and the signed checkpoint that covers it. `draft` until the incident is closed.
pub async fn report(state: &AppState, incident: &IncidentRecord) -> ServiceResult<Value> {
    let details: Value = incident
        .report
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null);
    let contain = batch_commands(state, &contain_batch(&incident.id)).await?;
    let lift = batch_commands(state, &lift_batch(&incident.id)).await?;
    let mut by_device: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for c in contain.iter().chain(&lift) {
        by_device.entry(c.device_id.clone()).or_default().push(json!({
            "command": c.id, "kind": c.kind, "state": c.state, "detail": c.detail,
            "acknowledged_at": c.acked_ms.map(rfc3339), "finished_at": c.finished_ms.map(rfc3339),
            "wipe_proof": c.proof.as_deref().and_then(|p| serde_json::from_str::<Value>(p).ok()),
        }));
    }
    let mut devices = Vec::new();
    let mut phi_devices = 0u64;
    for id in by_device.keys() {
        if let Some(device) = state.store.device(id).await? {
            if device.phi {
                phi_devices += 1;
            }
            devices.push(json!({
                "id": device.id, "hostname": device.hostname, "site": device.site, "class": device.class,
                "criticality": device.criticality, "phi": device.phi, "encrypted": encrypted(&device),
                "state": device.state, "containment": by_device.get(id),
            }));
        }
    }
    // Timeline and audit extract: every entry about this incident.
    let filter = ward_store::AuditFilter {
        target: Some(format!("incident:{}", incident.id)),
        ..ward_store::AuditFilter::default()
    };
    let entries = state.store.entries(0, 10_000, &filter).await?;
    let timeline: Vec<Value> = entries
        .iter()
        .map(|e| json!({ "time": rfc3339(e.time_ms), "actor": e.record.actor, "action": e.record.action, "outcome": e.record.outcome }))
        .collect();
    let verification =
        ward_store::verify_log(state.store.as_ref(), state.keys.audit_key.verifying_key()).await?;
    let last_seq = entries.last().map_or(0, |e| e.seq);
    let checkpoint = state
        .store
        .checkpoints()
        .await?
        .into_iter()
        .find(|c| c.tree_size >= last_seq)
        .map(|c| json!({ "tree_size": c.tree_size, "root": hex::encode(c.root), "head_hash": hex::encode(c.head_hash),
                         "time": rfc3339(c.time_ms), "signature": hex::encode(&c.signature) }));
    let d = deadlines(incident.aware_ms);
    let individuals = details.get("data_subjects").and_then(Value::as_u64).unwrap_or(0);
    let st = status(state, incident).await?;
    Ok(json!({
        "draft": incident.state != ward_domain::incident::IncidentState::Closed,
        "generated_at": rfc3339(state.now_ms()),
        "incident": incident_view(incident),
        "deadlines": {
            "gdpr_72h": rfc3339(d.gdpr_ms),
            "nis2_early_warning_24h": rfc3339(d.nis2_early_warning_ms),
            "hipaa_60_days": rfc3339(incident.discovered_ms + 60 * 86_400_000),
        },
        "gdpr_article_33_3": {
            "nature": details.get("nature"),
            "categories_of_data_subjects": details.get("data_subject_categories"),
            "approximate_number_of_data_subjects": details.get("data_subjects"),
            "categories_of_records": details.get("phi_types"),
            "approximate_number_of_records": details.get("records"),
            "contact_point": details.get("contact_point"),
            "likely_consequences": details.get("likely_consequences"),
            "measures_taken": {
                "containment": format!("{} devices contained by plan {} ({} commands acknowledged of {})",
                    devices.len(), incident.plan_name, st.contain.acknowledged, st.contain.commands),
                "other": details.get("measures"),
            },
        },
        "hipaa": {
            "individuals": individuals,
            "major_breach_500_or_more": individuals >= ward_domain::incident::HIPAA_MAJOR_BREACH,
            "date_of_breach": rfc3339(incident.discovered_ms),
            "date_of_discovery": rfc3339(incident.discovered_ms),
            "phi_types": details.get("phi_types"),
        },
        "devices_with_phi": phi_devices,
        "devices": devices,
        "containment": st,
        "certificates_revoked": details.get("revoke_certificates"),
        "timeline": timeline,
        "audit": {
            "entries": entries.iter().map(ward_core::views::entry_view).collect::<Vec<_>>(),
            "verification": ward_core::views::report_view(&verification),
            "checkpoint": checkpoint,
        },
    }))
}

/// The report as Markdown, for people.
pub fn report_markdown(report: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(t) => t.replace(['\n', '\r'], " "),
        Value::Null => "—".into(),
        other => other.to_string(),
    };
    let i = &report["incident"];
    let g = &report["gdpr_article_33_3"];
    let h = &report["hipaa"];
    let mut out = String::new();
    if report["draft"] == true {
        out.push_str("> **DRAFT** — the incident is not closed.\n\n");
    }
    out.push_str(&format!("# Breach report: {}\n\n", s(&i["title"])));
    out.push_str(&format!(
        "- Incident: `{}` ({} severity, {})\n- Discovered: {}\n- Aware: {}\n- Scope: `{}`, plan `{}`\n- Declared by {}; approved by {}\n\n",
        s(&i["id"]), s(&i["severity"]), s(&i["state"]), s(&i["discovered_at"]), s(&i["aware_at"]),
        s(&i["scope"]), s(&i["plan"]), s(&i["declared_by"]), s(&i["approved_by"])
    ));
    out.push_str("## Deadlines\n\n");
    let d = &report["deadlines"];
    out.push_str(&format!(
        "| regime | deadline |\n|---|---|\n| GDPR Art. 33 / ICO (72 h) | {} |\n| NIS2 early warning (24 h) | {} |\n| HIPAA (60 days) | {} |\n\n",
        s(&d["gdpr_72h"]), s(&d["nis2_early_warning_24h"]), s(&d["hipaa_60_days"])
    ));
    out.push_str("## GDPR Article 33(3)\n\n");
    for (label, key) in [
        ("Nature of the breach", "nature"),
        ("Categories of data subjects", "categories_of_data_subjects"),
        (
            "Approximate number of data subjects",
            "approximate_number_of_data_subjects",
        ),
        ("Categories of records", "categories_of_records"),
        ("Approximate number of records", "approximate_number_of_records"),
        ("Contact point", "contact_point"),
        ("Likely consequences", "likely_consequences"),
    ] {
        out.push_str(&format!("- **{label}:** {}\n", s(&g[key])));
    }
    out.push_str(&format!(
        "- **Measures taken:** {}; {}\n\n",
        s(&g["measures_taken"]["containment"]),
        s(&g["measures_taken"]["other"])
    ));
    out.push_str(&format!(
        "## HIPAA\n\n- Individuals: {}\n- 500 or more (HHS and media notice): {}\n- PHI types: {}\n\n",
        s(&h["individuals"]),
        s(&h["major_breach_500_or_more"]),
        s(&h["phi_types"])
    ));
    let c = &report["containment"];
    out.push_str(&format!(
        "## Containment\n\n{} commands, {} acknowledged, {} failed, {} outstanding. Time to contain: p50 {} ms, p95 {} ms, p99 {} ms, max {} ms.\n\n",
        s(&c["contain"]["commands"]), s(&c["contain"]["acknowledged"]), s(&c["contain"]["failed"]),
        s(&c["contain"]["outstanding"]), s(&c["time_to_contain"]["p50_ms"]), s(&c["time_to_contain"]["p95_ms"]),
        s(&c["time_to_contain"]["p99_ms"]), s(&c["time_to_contain"]["max_ms"])
    ));
    out.push_str(
        "| device | site | class | criticality | PHI | encrypted | result |\n|---|---|---|---|---|---|---|\n",
    );
    for device in report["devices"].as_array().into_iter().flatten() {
        let result: Vec<String> = device["containment"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{} {}", s(&c["kind"]), s(&c["state"])))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            s(&device["hostname"]).replace('|', "\\|"),
            s(&device["site"]),
            s(&device["class"]),
            s(&device["criticality"]),
            s(&device["phi"]),
            s(&device["encrypted"]),
            result.join(", ")
        ));
    }
    out.push_str("\n## Timeline\n\n");
    for entry in report["timeline"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "- {} — {} by {} ({})\n",
            s(&entry["time"]),
            s(&entry["action"]),
            s(&entry["actor"]).replace('`', "'"),
            s(&entry["outcome"])
        ));
    }
    let a = &report["audit"];
    out.push_str(&format!(
        "\n## Evidence\n\nAudit log verification: {} ({} entries checked, root `{}`). Signed checkpoint covering this extract: tree size {}, signature `{}`.\n",
        if a["verification"]["ok"] == true { "intact" } else { "FAILED" },
        s(&a["verification"]["entries_checked"]),
        s(&a["verification"]["root"]),
        s(&a["checkpoint"]["tree_size"]),
        s(&a["checkpoint"]["signature"])
    ));
    out
}

/// Devices whose state makes them revocable at close.
pub fn revocable(device: &DeviceRecord) -> bool {
    device.state.may_connect() && device.state != DeviceState::Revoked
}

/// The lifting actions for a device's successful containment commands.
pub fn lift_actions(plan: &ContainmentPlan, contained: &[&CommandRecord]) -> Vec<CommandKind> {
    let mut out: Vec<CommandKind> = Vec::new();
    for command in contained {
        if let Some(undo) = plan.lift.get(&command.kind)
            && !out.contains(undo)
        {
            out.push(*undo);
        }
    }
    out
}
