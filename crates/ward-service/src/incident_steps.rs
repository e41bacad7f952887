//! An incident's steps: declare → preview → approve → contain → status → lift → close → report.
//! Every step is audited with its actor and time; containment fans out as signed commands stored
//! in the same transaction as the incident's change.

use crate::fan_out;
use crate::incidents::{
    CONTAIN_TTL_MS, Planned, batch_commands, contain_batch, incident_view, lift_actions, lift_batch,
    load_plan, plan_incident, preview, status,
};
use serde_json::json;
use std::collections::BTreeMap;
use ward_core::caller::Caller;
use ward_core::commands::{build, sign};
use ward_core::error::{ServiceError, ServiceResult};
use ward_core::state::AppState;
use ward_domain::access::{Permission, Role};
use ward_domain::audit::Outcome;
use ward_domain::command::CommandState;
use ward_domain::device::DeviceState;
use ward_domain::incident::{IncidentState, Severity, Situation, validate_title};
use ward_domain::selector::Selector;
use ward_proto::{
    ClinicianConfirmation, CloseIncidentRequest, DeclareIncidentRequest, ErrorCode, IncidentActionRequest,
    IncidentPreview, IncidentStatus, IncidentView,
};
use ward_store::{Audit, IncidentRecord, StoreError};

fn parse_time(text: Option<&str>, field: &str, now: i64) -> ServiceResult<i64> {
    match text {
        None => Ok(now),
        Some(text) => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|_| {
                ServiceError::invalid(format!(
                    "{field}: must be an RFC 3339 time like 2026-11-28T09:30:00Z"
                ))
            }),
    }
}

fn bounded(text: &str, field: &str, max: usize) -> ServiceResult<String> {
    if text.chars().count() > max {
        return Err(ServiceError::invalid(format!(
            "{field}: at most {max} characters"
        )));
    }
    Ok(text.chars().filter(|c| !c.is_control() || *c == '\n').collect())
}

fn clinician_json(clinician: &ClinicianConfirmation) -> ServiceResult<String> {
    let clean = |field: &str, text: &str| -> ServiceResult<String> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 200 || text.chars().any(char::is_control) {
            return Err(ServiceError::invalid(format!(
                "clinician.{field}: must be 1 to 200 characters without control characters"
            )));
        }
        Ok(text.to_owned())
    };
    let clean = ClinicianConfirmation {
        name: clean("name", &clinician.name)?,
        reason: clean("reason", &clinician.reason)?,
    };
    Ok(serde_json::to_string(&clean).unwrap_or_default())
}

fn target(id: &str) -> String {
    format!("incident:{id}")
}

/// An incident, with the caller's permission checked (refusals audited).
pub async fn load(
    state: &AppState,
    caller: &Caller,
    id: &str,
    permission: Permission,
    action: &str,
) -> ServiceResult<IncidentRecord> {
    state.authorize(caller, permission, action, &target(id)).await?;
    state
        .store
        .incident(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("incident {id:?}")))
}

fn conflict(err: StoreError) -> ServiceError {
    match err {
        StoreError::Conflict(why) => ServiceError::new(ErrorCode::Conflict, why),
        other => other.into(),
    }
}

/// Declare an incident over the devices a selector matches.
pub async fn declare(
    state: &AppState,
    caller: &Caller,
    request: DeclareIncidentRequest,
) -> ServiceResult<IncidentView> {
    let now = state.now_ms();
    let title = validate_title(&request.title)?;
    let severity: Severity = request.severity.as_deref().unwrap_or("high").parse()?;
    let situation: Situation = request.situation.as_deref().unwrap_or("breach").parse()?;
    let description = bounded(&request.description, "description", 10_000)?;
    let discovered_ms = parse_time(request.discovered_at.as_deref(), "discovered_at", now)?;
    let aware_ms = parse_time(request.aware_at.as_deref(), "aware_at", now)?;
    if aware_ms < discovered_ms {
        return Err(ServiceError::invalid("aware_at: cannot be before discovered_at"));
    }
    let scope = request.scope.trim().to_owned();
    if scope.is_empty() {
        return Err(ServiceError::invalid(
            "scope: an incident needs a selector (there is no \"every device\" by omission)",
        ));
    }
    Selector::parse(&scope).map_err(|err| ServiceError::invalid(format!("scope: {err}")))?;
    let plan_name = request.plan.clone().unwrap_or_else(|| "default".into());
    let (_, plan_text) = load_plan(state, &plan_name)?;
    let id = uuid::Uuid::new_v4().to_string();
    state
        .authorize(
            caller,
            Permission::ManageDevices,
            "incident.declare",
            &target(&id),
        )
        .await?;
    let incident = IncidentRecord {
        id: id.clone(),
        title,
        severity,
        description,
        situation,
        discovered_ms,
        aware_ms,
        scope,
        plan_name,
        plan: plan_text,
        state: IncidentState::Declared,
        declared_by: caller.actor(),
        declared_by_user: caller.user.id.clone(),
        approved_by: None,
        approved_ms: None,
        clinician: None,
        contain_ms: None,
        lifted_ms: None,
        closed_ms: None,
        report: None,
        created_ms: now,
    };
    let planned = plan_incident(state, caller, &incident).await?;
    if planned.devices.is_empty() {
        return Err(ServiceError::invalid(format!(
            "scope: matches no device that can be contained ({} excluded)",
            planned.excluded.len()
        )));
    }
    let record = caller.record(
        "incident.declare",
        &target(&id),
        Outcome::Success,
        json!({ "title": incident.title, "severity": severity, "situation": situation, "scope": incident.scope,
                "plan": incident.plan_name, "devices": planned.devices.len(),
                "discovered_at": ward_core::views::rfc3339(discovered_ms), "aware_at": ward_core::views::rfc3339(aware_ms) }),
    );
    state
        .store
        .create_incident(&incident, state.audit(record))
        .await?;
    Ok(incident_view(&incident))
}

/// Incidents, newest first.
pub async fn list(state: &AppState, caller: &Caller) -> ServiceResult<Vec<IncidentView>> {
    state
        .authorize(caller, Permission::ViewDevices, "incident.list", "incidents")
        .await?;
    Ok(state
        .store
        .list_incidents()
        .await?
        .iter()
        .map(incident_view)
        .collect())
}

/// One incident.
pub async fn show(state: &AppState, caller: &Caller, id: String) -> ServiceResult<IncidentView> {
    let incident = load(state, caller, &id, Permission::ViewDevices, "incident.view").await?;
    Ok(incident_view(&incident))
}

/// What containment would do: clinical impact first, then devices, offline, excluded, approvals.
pub async fn show_preview(state: &AppState, caller: &Caller, id: String) -> ServiceResult<IncidentPreview> {
    let incident = load(state, caller, &id, Permission::ViewDevices, "incident.preview").await?;
    let planned = plan_incident(state, caller, &incident).await?;
    Ok(preview(&incident, &planned))
}

/// The second approver (security or admin, never the declarer); may add a clinician's confirmation.
pub async fn approve(
    state: &AppState,
    caller: &Caller,
    id: String,
    request: IncidentActionRequest,
) -> ServiceResult<IncidentView> {
    let mut incident = load(state, caller, &id, Permission::ManageDevices, "incident.approve").await?;
    if !matches!(caller.user.role, Role::Security | Role::Admin) {
        let reason = format!(
            "the {} role may not approve containment (security or admin)",
            caller.user.role
        );
        return Err(state
            .deny(
                caller,
                ErrorCode::Forbidden,
                "incident.approve",
                &target(&id),
                &reason,
            )
            .await);
    }
    if caller.user.id == incident.declared_by_user {
        let reason = "the declarer may not approve their own incident: a second person must";
        return Err(state
            .deny(
                caller,
                ErrorCode::Forbidden,
                "incident.approve",
                &target(&id),
                reason,
            )
            .await);
    }
    if incident.state != IncidentState::Declared {
        return Err(ServiceError::new(
            ErrorCode::Conflict,
            format!(
                "incident {id} is {}: only a declared incident is approved",
                incident.state
            ),
        ));
    }
    if let Some(clinician) = &request.clinician {
        incident.clinician = Some(clinician_json(clinician)?);
    }
    incident.state = IncidentState::Approved;
    incident.approved_by = Some(caller.actor());
    incident.approved_ms = Some(state.now_ms());
    let record = caller.record(
        "incident.approve",
        &target(&id),
        Outcome::Success,
        json!({ "clinician": request.clinician }),
    );
    state
        .store
        .update_incident(&incident, IncidentState::Declared, &[], state.audit(record))
        .await
        .map_err(conflict)?;
    Ok(incident_view(&incident))
}

/// Contain: every device in scope gets its plan's actions as signed commands, at once.
pub async fn contain(
    state: &AppState,
    caller: &Caller,
    id: String,
    request: IncidentActionRequest,
) -> ServiceResult<IncidentStatus> {
    let mut incident = load(state, caller, &id, Permission::ManageDevices, "incident.contain").await?;
    let expected = incident.state;
    let resuming = expected == IncidentState::Containing;
    refuse_unless_containable(&incident)?;
    if !resuming && let Some(clinician) = &request.clinician {
        incident.clinician = Some(clinician_json(clinician)?);
    }
    let started = std::time::Instant::now();
    let planned = plan_incident(state, caller, &incident).await?;
    let planned_at = started.elapsed();
    let shown = preview(&incident, &planned);
    if !resuming && shown.needs_second_approval && expected != IncidentState::Approved {
        let reason = format!(
            "a second approver (security or admin, not the declarer) must approve first: {}",
            shown.approval_reasons.join("; ")
        );
        return Err(state
            .deny(
                caller,
                ErrorCode::Conflict,
                "incident.contain",
                &target(&id),
                &reason,
            )
            .await);
    }
    let batch = contain_batch(&id);
    // Resuming (a fan-out interrupted by a crash, or asked again): only what is not queued yet.
    let existing: std::collections::HashSet<(String, ward_domain::command::CommandKind)> = if resuming {
        batch_commands(state, &batch)
            .await?
            .into_iter()
            .map(|c| (c.device_id, c.kind))
            .collect()
    } else {
        Default::default()
    };
    let go = if resuming {
        incident.contain_ms.unwrap_or_else(|| state.now_ms())
    } else {
        state.now_ms()
    };
    let actor = caller.actor();
    let pairs: Vec<(&ward_store::DeviceRecord, ward_domain::command::CommandKind)> = planned
        .devices
        .iter()
        .flat_map(|(device, _, plan)| plan.actions.iter().map(move |kind| (device, *kind)))
        .filter(|(device, kind)| !existing.contains(&(device.id.clone(), *kind)))
        .collect();
    let sign_chunk = |chunk: &[(&ward_store::DeviceRecord, ward_domain::command::CommandKind)]| {
        let mut commands = Vec::with_capacity(chunk.len());
        let mut records = Vec::with_capacity(chunk.len());
        for (device, kind) in chunk {
            let command = build(
                state,
                &device.id,
                *kind,
                "{}",
                go + CONTAIN_TTL_MS,
                &actor,
                Some(&batch),
            );
            records.push(caller.record(
                "command.create",
                &format!("device:{}", device.id),
                Outcome::Success,
                json!({ "command": command.id, "kind": kind, "incident": id, "hostname": device.hostname,
                        "class": device.class, "criticality": device.criticality }),
            ));
            commands.push(command);
        }
        sign(state, &mut commands);
        (commands, records)
    };
    // The fan-out is stored and pushed in chunks, each chunk's commands and audit entries in one
    // transaction and pushed as soon as it commits; the first chunk's transaction also moves the
    // incident to containing, so a second `contain` cannot start another fan-out. While it runs
    // the acknowledgements it sets off wait to be written (`fan_out`): their times are taken as
    // they arrive, and the chunks' commits would otherwise queue behind them on the database's
    // single writer, delaying every device not reached yet. If the server stops midway, `contain`
    // on the containing incident queues whatever is missing (as it does for devices that entered
    // the scope since), without duplicating.
    let fanning = state.fan_out.clone();
    let _fanning = fanning.read().await;
    let first_len = if resuming {
        0
    } else {
        pairs.len().min(fan_out::FIRST_CHUNK)
    };
    let (first, rest) = pairs.split_at(first_len);
    let mut queued = 0usize;
    let started_fan_out = std::time::Instant::now();
    if !resuming {
        let (commands, mut records) = fan_out::sign_in_parallel(first, &sign_chunk);
        records.insert(
            0,
            caller.record(
                "incident.contain",
                &target(&id),
                Outcome::Success,
                json!({ "devices": planned.devices.len(), "actions": shown.actions, "withheld": shown.needs_clinician,
                        "commands": pairs.len(),
                        "clinician": incident.clinician.as_deref().and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok()) }),
            ),
        );
        incident.state = IncidentState::Containing;
        incident.contain_ms = Some(go);
        let audit = Audit { time_ms: go, records };
        state
            .store
            .update_incident(&incident, expected, &commands, audit)
            .await
            .map_err(conflict)?;
        // Push first: every millisecond here is time-to-contain.
        for command in &commands {
            state.channels.push(command);
        }
        queued += commands.len();
        tracing::info!(
            incident = %id,
            commands = commands.len(),
            ms = started_fan_out.elapsed().as_millis() as u64,
            "containment: first commands sent"
        );
    } else {
        let record = caller.record(
            "incident.contain_resumed",
            &target(&id),
            Outcome::Success,
            json!({ "missing_commands": pairs.len() }),
        );
        state.store.append(state.audit(record)).await?;
    }
    let (later, signing, storing) = fan_out::store_and_push(state, rest, &sign_chunk).await?;
    queued += later;
    drop(_fanning);
    tracing::info!(
        incident = %id,
        devices = planned.devices.len(),
        commands = queued,
        plan_ms = planned_at.as_millis() as u64,
        fan_out_ms = started_fan_out.elapsed().as_millis() as u64,
        signing_ms = signing.as_millis() as u64,
        storing_ms = storing.as_millis() as u64,
        "containment: all commands sent"
    );
    let commands_total = if resuming { existing.len() + queued } else { queued };
    Ok(started_status(&incident, &planned, commands_total, queued))
}

/// Containment starts from a declared or approved incident, or resumes a containing one.
fn refuse_unless_containable(incident: &IncidentRecord) -> ServiceResult<()> {
    match incident.state {
        IncidentState::Declared | IncidentState::Approved | IncidentState::Containing => Ok(()),
        other => Err(ServiceError::new(
            ErrorCode::Conflict,
            format!("incident {} is {other}: containment is over", incident.id),
        )),
    }
}

/// The status a containment answers with as soon as its commands are queued: every command
/// outstanding, and how many wait for offline devices.
fn started_status(
    incident: &IncidentRecord,
    planned: &Planned,
    commands: usize,
    queued: usize,
) -> IncidentStatus {
    let offline: u64 = planned
        .devices
        .iter()
        .filter(|(_, view, _)| !view.online)
        .map(|(_, _, plan)| plan.actions.len() as u64)
        .sum();
    IncidentStatus {
        incident_id: incident.id.clone(),
        state: incident.state.to_string(),
        contain: ward_proto::ProgressView {
            commands: commands as u64,
            outstanding: queued as u64,
            offline,
            ..Default::default()
        },
        time_to_contain: ward_proto::LatenciesView::default(),
        lift: ward_proto::ProgressView::default(),
    }
}

/// An incident's progress for a stream of updates (the caller was checked when the stream began
/// with [`load`]): its status, and whether nothing is outstanding any more.
pub async fn progress(state: &AppState, id: &str) -> ServiceResult<(IncidentStatus, bool)> {
    let incident = state
        .store
        .incident(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("incident {id:?}")))?;
    let current = status(state, &incident).await?;
    let finished =
        current.contain.commands > 0 && current.contain.outstanding == 0 && current.lift.outstanding == 0;
    Ok((current, finished))
}

/// Progress and time-to-contain.
pub async fn show_status(state: &AppState, caller: &Caller, id: String) -> ServiceResult<IncidentStatus> {
    let incident = load(state, caller, &id, Permission::ViewDevices, "incident.status").await?;
    status(state, &incident).await
}

/// Lift containment (all devices, or the ones named): release and unlock per the plan.
pub async fn lift(
    state: &AppState,
    caller: &Caller,
    id: String,
    request: IncidentActionRequest,
) -> ServiceResult<IncidentStatus> {
    let mut incident = load(state, caller, &id, Permission::ManageDevices, "incident.lift").await?;
    if incident.state != IncidentState::Containing {
        return Err(ServiceError::new(
            ErrorCode::Conflict,
            format!(
                "incident {id} is {}: only containment under way can be lifted",
                incident.state
            ),
        ));
    }
    let plan = crate::incidents::parse_plan(&incident.plan)
        .map_err(|why| ServiceError::invalid(format!("plan: {why}")))?;
    let contained = batch_commands(state, &contain_batch(&id)).await?;
    let mut by_device: BTreeMap<String, Vec<&ward_store::CommandRecord>> = BTreeMap::new();
    for command in &contained {
        if matches!(
            command.state,
            CommandState::Succeeded | CommandState::Acknowledged
        ) {
            by_device
                .entry(command.device_id.clone())
                .or_default()
                .push(command);
        }
    }
    if let Some(only) = &request.devices {
        if let Some(unknown) = only.iter().find(|d| !by_device.contains_key(*d)) {
            return Err(ServiceError::invalid(format!(
                "devices: {unknown} was not contained by this incident"
            )));
        }
        by_device.retain(|device, _| only.contains(device));
    }
    let now = state.now_ms();
    let batch = lift_batch(&id);
    let actor = caller.actor();
    let mut commands = Vec::new();
    let mut records = vec![caller.record(
        "incident.lift",
        &target(&id),
        Outcome::Success,
        json!({ "devices": by_device.len(), "selective": request.devices.is_some() }),
    )];
    for (device, done) in &by_device {
        for kind in lift_actions(&plan, done) {
            let command = build(
                state,
                device,
                kind,
                "{}",
                now + CONTAIN_TTL_MS,
                &actor,
                Some(&batch),
            );
            records.push(caller.record(
                "command.create",
                &format!("device:{device}"),
                Outcome::Success,
                json!({ "command": command.id, "kind": kind, "incident": id }),
            ));
            commands.push(command);
        }
    }
    sign(state, &mut commands);
    if request.devices.is_none() {
        incident.state = IncidentState::Lifted;
        incident.lifted_ms = Some(now);
    }
    state
        .store
        .update_incident(
            &incident,
            IncidentState::Containing,
            &commands,
            Audit {
                time_ms: now,
                records,
            },
        )
        .await
        .map_err(conflict)?;
    for command in &commands {
        state.channels.push(command);
    }
    status(state, &incident).await
}

/// Close the incident with what the breach report needs; optionally revoke every device in scope.
pub async fn close(
    state: &AppState,
    caller: &Caller,
    id: String,
    request: CloseIncidentRequest,
) -> ServiceResult<IncidentView> {
    let mut incident = load(state, caller, &id, Permission::ManageDevices, "incident.close").await?;
    if incident.state == IncidentState::Closed {
        return Err(ServiceError::new(
            ErrorCode::Conflict,
            format!("incident {id} is already closed"),
        ));
    }
    for (field, text) in [
        ("nature", &request.nature),
        ("contact_point", &request.contact_point),
        ("likely_consequences", &request.likely_consequences),
    ] {
        if text.trim().is_empty() {
            return Err(ServiceError::invalid(format!(
                "{field}: the breach report needs it"
            )));
        }
        bounded(text, field, 5000)?;
    }
    let mut details = request.clone();
    details.nature = bounded(&request.nature, "nature", 5000)?;
    details.contact_point = bounded(&request.contact_point, "contact_point", 5000)?;
    details.likely_consequences = bounded(&request.likely_consequences, "likely_consequences", 5000)?;
    details.measures = bounded(&request.measures, "measures", 5000)?;
    let expected = incident.state;
    let now = state.now_ms();
    if request.revoke_certificates {
        let planned = plan_incident(state, caller, &incident).await?;
        for (device, _, _) in &planned.devices {
            if !crate::incidents::revocable(device) {
                continue;
            }
            let record = caller.record(
                "device.revoke",
                &format!("device:{}", device.id),
                Outcome::Success,
                json!({ "incident": id, "hostname": device.hostname }),
            );
            state
                .store
                .set_device_state(&device.id, DeviceState::Revoked, state.audit(record))
                .await?;
            state.channels.disconnect(&device.id);
        }
    }
    incident.state = IncidentState::Closed;
    incident.closed_ms = Some(now);
    incident.report = Some(serde_json::to_string(&details).unwrap_or_default());
    let record = caller.record(
        "incident.close",
        &target(&id),
        Outcome::Success,
        json!({ "data_subjects": request.data_subjects, "records": request.records, "revoke_certificates": request.revoke_certificates }),
    );
    state
        .store
        .update_incident(&incident, expected, &[], state.audit(record))
        .await
        .map_err(conflict)?;
    Ok(incident_view(&incident))
}

/// How a breach report is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Markdown,
}

impl std::str::FromStr for ReportFormat {
    type Err = ServiceError;
    fn from_str(text: &str) -> ServiceResult<Self> {
        match text {
            "json" => Ok(ReportFormat::Json),
            "markdown" => Ok(ReportFormat::Markdown),
            _ => Err(ServiceError::invalid("format: json or markdown")),
        }
    }
}

/// The breach report (a draft until the incident is closed); viewing it is audited with the
/// format asked for.
pub async fn report(
    state: &AppState,
    caller: &Caller,
    id: &str,
    format: ReportFormat,
) -> ServiceResult<serde_json::Value> {
    let incident = load(state, caller, id, Permission::ViewDevices, "incident.report").await?;
    let format_name = match format {
        ReportFormat::Json => "json",
        ReportFormat::Markdown => "markdown",
    };
    let record = caller.record(
        "incident.report",
        &target(id),
        Outcome::Success,
        json!({ "format": format_name }),
    );
    state.store.append(state.audit(record)).await?;
    crate::incidents::report(state, &incident).await
}
