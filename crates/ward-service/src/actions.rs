//! Remote actions for one device or for the devices a selector matches, and reading and cancelling
//! them. A command is checked (kind, parameters, the device's state and platform, clinical
//! safety), signed, stored with its audit entry, and only then handed to the device's live
//! connection; offline devices get their queue when they connect.

use serde_json::{Value, json};
use ward_core::caller::Caller;
use ward_core::commands::{build, sign};
use ward_core::devices::{load, select_records};
use ward_core::error::{ServiceError, ServiceResult};
use ward_core::state::AppState;
use ward_core::views::rfc3339;
use ward_domain::access::Permission;
use ward_domain::audit::{AuditRecord, Outcome};
use ward_domain::command::{CommandKind, CommandState, needs_clinician, validate_params};
use ward_domain::device::parse_duration_ms;
use ward_proto::{
    BulkCommandRequest, BulkCommandResponse, ClinicianConfirmation, CommandDetail, CommandQuery, CommandView,
    CreateCommandRequest, DeviceQuery, ErrorCode,
};
use ward_store::{Audit, CommandFilter, CommandRecord, DeviceRecord, StoreError};

/// How long a command waits for an offline device unless the request says otherwise.
const DEFAULT_EXPIRES: &str = "7d";
/// Longest clinician name or reason kept.
const MAX_CLINICIAN_CHARS: usize = 200;

/// The wire view of a stored command.
pub fn command_view(command: &CommandRecord) -> CommandView {
    CommandView {
        id: command.id.clone(),
        device_id: command.device_id.clone(),
        kind: command.kind.to_string(),
        params: serde_json::from_str(&command.params).unwrap_or(Value::Null),
        state: command.state.to_string(),
        batch_id: command.batch_id.clone(),
        created_by: command.created_by.clone(),
        created_at: rfc3339(command.created_ms),
        sent_at: command.sent_ms.map(rfc3339),
        acknowledged_at: command.acked_ms.map(rfc3339),
        finished_at: command.finished_ms.map(rfc3339),
        expires_at: rfc3339(command.not_after_ms),
        detail: command.detail.clone(),
        has_proof: command.proof.is_some(),
    }
}

/// What every creation checks before anything is stored.
struct Checked {
    kind: CommandKind,
    params_json: String,
    not_after_ms: i64,
    clinician: Option<ClinicianConfirmation>,
}

fn check_request(
    state: &AppState,
    kind: &str,
    params: &Value,
    expires: Option<&str>,
    clinician: Option<&ClinicianConfirmation>,
) -> ServiceResult<Checked> {
    let kind: CommandKind = kind.parse()?;
    if kind == CommandKind::ApplySettings {
        return Err(ServiceError::invalid(
            "kind: apply-settings is sent by the policy engine; change a policy instead",
        ));
    }
    let params = validate_params(kind, params)?;
    let expires_ms = parse_duration_ms(expires.unwrap_or(DEFAULT_EXPIRES))?;
    let clinician = match clinician {
        None => None,
        Some(c) => {
            let clean = |field: &str, text: &str| -> ServiceResult<String> {
                let text = text.trim();
                if text.is_empty()
                    || text.chars().count() > MAX_CLINICIAN_CHARS
                    || text.chars().any(char::is_control)
                {
                    return Err(ServiceError::invalid(format!(
                        "clinician.{field}: must be 1 to {MAX_CLINICIAN_CHARS} characters without control characters"
                    )));
                }
                Ok(text.to_owned())
            };
            Some(ClinicianConfirmation {
                name: clean("name", &c.name)?,
                reason: clean("reason", &c.reason)?,
            })
        }
    };
    Ok(Checked {
        kind,
        params_json: params.to_string(),
        not_after_ms: state.now_ms() + expires_ms,
        clinician,
    })
}

/// The audit record of one queued command.
fn created_record(
    caller: &Caller,
    command: &CommandRecord,
    device: &DeviceRecord,
    checked: &Checked,
) -> AuditRecord {
    caller.record(
        "command.create",
        &format!("device:{}", device.id),
        Outcome::Success,
        json!({ "command": command.id, "kind": command.kind, "params": serde_json::from_str::<Value>(&command.params).unwrap_or(Value::Null),
                "not_after": rfc3339(command.not_after_ms), "batch": command.batch_id,
                "hostname": device.hostname, "class": device.class, "criticality": device.criticality,
                "clinician": checked.clinician }),
    )
}

/// Queue one action for one device.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    id: String,
    request: CreateCommandRequest,
) -> ServiceResult<CommandView> {
    let checked = check_request(
        state,
        &request.kind,
        &request.params,
        request.expires.as_deref(),
        request.clinician.as_ref(),
    )?;
    let device = load(state, caller, &id, Permission::ManageDevices, "command.create").await?;
    let target = format!("device:{id}");
    let unavailable = if device.state.may_connect() {
        ward_core::platforms::unsupported(checked.kind, &device)
    } else {
        Some(format!(
            "device {id} is {}: it can take no commands",
            device.state
        ))
    };
    if let Some(reason) = unavailable {
        return Err(state
            .deny(
                caller,
                ErrorCode::DeviceUnavailable,
                "command.create",
                &target,
                &reason,
            )
            .await);
    }
    if checked.kind == CommandKind::WipeFull {
        if !device.allow_full_wipe {
            let reason = "this device's enrollment does not allow a full wipe (use wipe-selective)";
            return Err(state
                .deny(
                    caller,
                    ErrorCode::DeviceUnavailable,
                    "command.create",
                    &target,
                    reason,
                )
                .await);
        }
        let typed = request
            .params
            .get("confirm_hostname")
            .and_then(Value::as_str)
            .unwrap_or("");
        if typed != device.hostname {
            return Err(ServiceError::invalid(
                "confirm_hostname: does not match the device's hostname; type it exactly to confirm a full wipe",
            ));
        }
    }
    if needs_clinician(checked.kind, device.class, device.criticality) && checked.clinician.is_none() {
        let reason = format!(
            "{} on a {} {} device needs a named clinician's confirmation",
            checked.kind, device.criticality, device.class
        );
        return Err(state
            .deny(
                caller,
                ErrorCode::ClinicianConfirmationRequired,
                "command.create",
                &target,
                &reason,
            )
            .await);
    }
    let mut command = build(
        state,
        &id,
        checked.kind,
        &checked.params_json,
        checked.not_after_ms,
        &caller.actor(),
        None,
    );
    sign(state, std::slice::from_mut(&mut command));
    let record = created_record(caller, &command, &device, &checked);
    state
        .store
        .create_commands(std::slice::from_ref(&command), state.audit(record))
        .await?;
    state.channels.push(&command);
    Ok(command_view(&command))
}

/// Most devices one bulk action may address.
const MAX_BULK: usize = 50_000;

/// Queue one action for every device a selector matches (within the caller's sites). With
/// `dry_run`, only counts what would happen.
pub async fn bulk(
    state: &AppState,
    caller: &Caller,
    request: BulkCommandRequest,
) -> ServiceResult<BulkCommandResponse> {
    let checked = check_request(
        state,
        &request.kind,
        &request.params,
        request.expires.as_deref(),
        request.clinician.as_ref(),
    )?;
    if request.filter.trim().is_empty() {
        return Err(ServiceError::invalid(
            "filter: a bulk action needs a selector (there is no \"every device\" by omission)",
        ));
    }
    if checked.kind == CommandKind::WipeFull {
        return Err(ServiceError::invalid(
            "kind: a full wipe is one device at a time (it needs the device's hostname typed as confirmation)",
        ));
    }
    state
        .authorize(caller, Permission::ManageDevices, "command.bulk", "devices")
        .await?;
    let query = DeviceQuery {
        filter: Some(request.filter.clone()),
        include_retired: false,
    };
    let (matched, unsupported): (Vec<_>, Vec<_>) = select_records(state, caller, &query)
        .await?
        .into_iter()
        .filter(|(device, _)| device.state.may_connect())
        .partition(|(device, _)| ward_core::platforms::supports(checked.kind, device));
    if matched.len() > MAX_BULK {
        return Err(ServiceError::invalid(format!(
            "filter: matches {} devices; one bulk action may address at most {MAX_BULK}",
            matched.len()
        )));
    }
    let needs = matched
        .iter()
        .filter(|(d, _)| needs_clinician(checked.kind, d.class, d.criticality))
        .count() as u32;
    let offline = matched.iter().filter(|(_, view)| !view.online).count() as u32;
    let mut response = BulkCommandResponse {
        batch_id: None,
        matched: matched.len() as u32,
        needs_clinician: needs,
        offline,
        unsupported: unsupported.len() as u32,
        command_ids: Vec::new(),
        dry_run: request.dry_run,
    };
    if request.dry_run || matched.is_empty() {
        return Ok(response);
    }
    if needs > 0 && checked.clinician.is_none() {
        let reason = format!(
            "{needs} of the {} matched devices are medical or life-sustaining and {} would power them off or wipe them: \
             a named clinician must confirm, or narrow the filter",
            matched.len(),
            checked.kind
        );
        return Err(state
            .deny(
                caller,
                ErrorCode::ClinicianConfirmationRequired,
                "command.bulk",
                "devices",
                &reason,
            )
            .await);
    }
    let batch_id = uuid::Uuid::new_v4().to_string();
    let actor = caller.actor();
    let mut commands = Vec::with_capacity(matched.len());
    let mut records = Vec::with_capacity(matched.len() + 1);
    records.push(caller.record(
        "command.bulk",
        "devices",
        Outcome::Success,
        json!({ "batch": batch_id, "filter": request.filter, "kind": checked.kind, "devices": matched.len(),
                "needs_clinician": needs, "clinician": checked.clinician }),
    ));
    for (device, _) in &matched {
        let command = build(
            state,
            &device.id,
            checked.kind,
            &checked.params_json,
            checked.not_after_ms,
            &actor,
            Some(&batch_id),
        );
        records.push(created_record(caller, &command, device, &checked));
        commands.push(command);
    }
    sign(state, &mut commands);
    let audit = Audit {
        time_ms: state.now_ms(),
        records,
    };
    state.store.create_commands(&commands, audit).await?;
    for command in &commands {
        state.channels.push(command);
    }
    response.batch_id = Some(batch_id);
    response.command_ids = commands.into_iter().map(|c| c.id).collect();
    Ok(response)
}

/// Whether the caller's sites cover every command's device (an unscoped account sees all).
async fn visible(
    state: &AppState,
    caller: &Caller,
    commands: Vec<CommandRecord>,
) -> ServiceResult<Vec<CommandRecord>> {
    if caller.user.sites.is_unrestricted() {
        return Ok(commands);
    }
    let sites = ward_core::devices::records_by_id(state).await?;
    Ok(commands
        .into_iter()
        .filter(|c| {
            sites
                .get(&c.device_id)
                .is_some_and(|d| caller.user.sites.covers(&d.site))
        })
        .collect())
}

/// List commands, newest first.
pub async fn list(state: &AppState, caller: &Caller, query: CommandQuery) -> ServiceResult<Vec<CommandView>> {
    state
        .authorize(caller, Permission::ViewDevices, "command.list", "commands")
        .await?;
    let filter = CommandFilter {
        device_id: query.device.filter(|d| !d.is_empty()),
        state: match query.state.as_deref().filter(|s| !s.is_empty()) {
            Some(text) => Some(text.parse::<CommandState>()?),
            None => None,
        },
        batch_id: query.batch.filter(|b| !b.is_empty()),
        limit: Some(query.limit.unwrap_or(100).clamp(1, 10_000)),
    };
    let commands = state.store.list_commands(&filter).await?;
    Ok(visible(state, caller, commands)
        .await?
        .iter()
        .map(command_view)
        .collect())
}

async fn load_command(
    state: &AppState,
    caller: &Caller,
    id: &str,
    permission: Permission,
    action: &str,
) -> ServiceResult<CommandRecord> {
    let target = format!("command:{id}");
    state.authorize(caller, permission, action, &target).await?;
    let command = state
        .store
        .command(id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("command {id:?}")))?;
    if let Some(device) = state.store.device(&command.device_id).await? {
        state
            .authorize_site(caller, &device.site, action, &target)
            .await?;
    }
    Ok(command)
}

/// A command with its wipe proof and diagnostics output (the view is audited: a bundle can hold
/// sensitive details of the device).
pub async fn show(state: &AppState, caller: &Caller, id: String) -> ServiceResult<CommandDetail> {
    let command = load_command(state, caller, &id, Permission::ViewDevices, "command.view").await?;
    let record = caller.record(
        "command.view",
        &format!("command:{id}"),
        Outcome::Success,
        json!({}),
    );
    state.store.append(state.audit(record)).await?;
    let parse = |text: &Option<String>| text.as_deref().and_then(|t| serde_json::from_str(t).ok());
    Ok(CommandDetail {
        command: command_view(&command),
        proof: parse(&command.proof),
        proof_signature: command.proof_signature.clone(),
        output: parse(&command.output),
    })
}

/// Cancel a command that has not been delivered yet.
pub async fn cancel(state: &AppState, caller: &Caller, id: String) -> ServiceResult<CommandView> {
    let command = load_command(state, caller, &id, Permission::ManageDevices, "command.cancel").await?;
    let record = caller.record(
        "command.cancel",
        &format!("command:{id}"),
        Outcome::Success,
        json!({ "device": command.device_id, "kind": command.kind }),
    );
    match state.store.cancel_command(&id, state.audit(record)).await {
        Ok(cancelled) => Ok(command_view(&cancelled)),
        Err(StoreError::Conflict(why)) => Err(ServiceError::new(ErrorCode::Conflict, why)),
        Err(other) => Err(other.into()),
    }
}
