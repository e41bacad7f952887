//! `/incidents`: declare → preview → approve → contain → status/events → lift → close → report.
//! Every step is audited with its actor and time; containment fans out as signed commands stored
//! in the same transaction as the incident's change.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
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

use crate::api::extract::{ApiJson, ApiQuery};
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use ward_service::commands::{build, sign};
use ward_service::incidents::{
    CONTAIN_TTL_MS, batch_commands, contain_batch, incident_view, lift_actions, lift_batch, load_plan,
    plan_incident, preview, report, report_markdown, status,
};
use ward_service::state::AppState;

fn parse_time(text: Option<&str>, field: &str, now: i64) -> ApiResult<i64> {
    match text {
        None => Ok(now),
        Some(text) => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|_| {
                ApiError::invalid(format!(
                    "{field}: must be an RFC 3339 time like 2026-11-28T09:30:00Z"
                ))
            }),
    }
}

fn bounded(text: &str, field: &str, max: usize) -> ApiResult<String> {
    if text.chars().count() > max {
        return Err(ApiError::invalid(format!("{field}: at most {max} characters")));
    }
    Ok(text.chars().filter(|c| !c.is_control() || *c == '\n').collect())
}

fn clinician_json(clinician: &ClinicianConfirmation) -> ApiResult<String> {
    let clean = |field: &str, text: &str| -> ApiResult<String> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 200 || text.chars().any(char::is_control) {
            return Err(ApiError::invalid(format!(
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

async fn load(
    state: &AppState,
    caller: &Caller,
    id: &str,
    permission: Permission,
    action: &str,
) -> ApiResult<IncidentRecord> {
    state.authorize(caller, permission, action, &target(id)).await?;
    state
        .store
        .incident(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("incident {id:?}")))
}

/// Commands stored and pushed together in a containment's fan-out: the first chunk small, so
/// the first devices are reached soon, the others larger, so fewer commits are paid for (each
/// chunk's entries in the indexes by device land on most of those indexes' pages, which every
/// commit then writes to the log again).
const FIRST_CHUNK: usize = 200;
const CONTAIN_CHUNK: usize = 2000;

fn conflict(err: StoreError) -> ApiError {
    match err {
        StoreError::Conflict(why) => ApiError::new(ErrorCode::Conflict, why),
        other => other.into(),
    }
}

/// Declare an incident over the devices a selector matches.
#[utoipa::path(post, path = "/incidents", tag = "incidents", request_body = DeclareIncidentRequest,
    responses((status = 201, body = IncidentView), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn declare(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<DeclareIncidentRequest>,
) -> ApiResult<(StatusCode, axum::Json<IncidentView>)> {
    let now = state.now_ms();
    let title = validate_title(&request.title)?;
    let severity: Severity = request.severity.as_deref().unwrap_or("high").parse()?;
    let situation: Situation = request.situation.as_deref().unwrap_or("breach").parse()?;
    let description = bounded(&request.description, "description", 10_000)?;
    let discovered_ms = parse_time(request.discovered_at.as_deref(), "discovered_at", now)?;
    let aware_ms = parse_time(request.aware_at.as_deref(), "aware_at", now)?;
    if aware_ms < discovered_ms {
        return Err(ApiError::invalid("aware_at: cannot be before discovered_at"));
    }
    let scope = request.scope.trim().to_owned();
    if scope.is_empty() {
        return Err(ApiError::invalid(
            "scope: an incident needs a selector (there is no \"every device\" by omission)",
        ));
    }
    Selector::parse(&scope).map_err(|err| ApiError::invalid(format!("scope: {err}")))?;
    let plan_name = request.plan.clone().unwrap_or_else(|| "default".into());
    let (_, plan_text) = load_plan(&state, &plan_name)?;
    let id = uuid::Uuid::new_v4().to_string();
    state
        .authorize(
            &caller,
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
    let planned = plan_incident(&state, &caller, &incident).await?;
    if planned.devices.is_empty() {
        return Err(ApiError::invalid(format!(
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
                "discovered_at": ward_service::views::rfc3339(discovered_ms), "aware_at": ward_service::views::rfc3339(aware_ms) }),
    );
    state
        .store
        .create_incident(&incident, state.audit(record))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(incident_view(&incident))))
}

/// Incidents, newest first.
#[utoipa::path(get, path = "/incidents", tag = "incidents", responses((status = 200, body = Vec<IncidentView>)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<IncidentView>>> {
    state
        .authorize(&caller, Permission::ViewDevices, "incident.list", "incidents")
        .await?;
    Ok(axum::Json(
        state
            .store
            .list_incidents()
            .await?
            .iter()
            .map(incident_view)
            .collect(),
    ))
}

/// One incident.
#[utoipa::path(get, path = "/incidents/{id}", tag = "incidents", params(("id" = String, Path)),
    responses((status = 200, body = IncidentView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<IncidentView>> {
    let incident = load(&state, &caller, &id, Permission::ViewDevices, "incident.view").await?;
    Ok(axum::Json(incident_view(&incident)))
}

/// What containment would do: clinical impact first, then devices, offline, excluded, approvals.
#[utoipa::path(get, path = "/incidents/{id}/preview", tag = "incidents", params(("id" = String, Path)),
    responses((status = 200, body = IncidentPreview), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn show_preview(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<IncidentPreview>> {
    let incident = load(&state, &caller, &id, Permission::ViewDevices, "incident.preview").await?;
    let planned = plan_incident(&state, &caller, &incident).await?;
    Ok(axum::Json(preview(&incident, &planned)))
}

/// The second approver (security or admin, never the declarer); may add a clinician's confirmation.
#[utoipa::path(post, path = "/incidents/{id}/approve", tag = "incidents", params(("id" = String, Path)),
    request_body = IncidentActionRequest,
    responses((status = 200, body = IncidentView), (status = 403, body = ward_proto::ErrorBody), (status = 409, body = ward_proto::ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<IncidentActionRequest>,
) -> ApiResult<axum::Json<IncidentView>> {
    let mut incident = load(
        &state,
        &caller,
        &id,
        Permission::ManageDevices,
        "incident.approve",
    )
    .await?;
    if !matches!(caller.user.role, Role::Security | Role::Admin) {
        let reason = format!(
            "the {} role may not approve containment (security or admin)",
            caller.user.role
        );
        return Err(state
            .deny(
                &caller,
                ErrorCode::Forbidden,
                "incident.approve",
                &target(&id),
                &reason,
            )
            .await
            .into());
    }
    if caller.user.id == incident.declared_by_user {
        let reason = "the declarer may not approve their own incident: a second person must";
        return Err(state
            .deny(
                &caller,
                ErrorCode::Forbidden,
                "incident.approve",
                &target(&id),
                reason,
            )
            .await
            .into());
    }
    if incident.state != IncidentState::Declared {
        return Err(ApiError::new(
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
    Ok(axum::Json(incident_view(&incident)))
}

/// Contain: every device in scope gets its plan's actions as signed commands, at once.
#[utoipa::path(post, path = "/incidents/{id}/contain", tag = "incidents", params(("id" = String, Path)),
    request_body = IncidentActionRequest,
    responses((status = 200, body = IncidentStatus), (status = 409, body = ward_proto::ErrorBody)))]
pub async fn contain(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<IncidentActionRequest>,
) -> ApiResult<axum::Json<IncidentStatus>> {
    let mut incident = load(
        &state,
        &caller,
        &id,
        Permission::ManageDevices,
        "incident.contain",
    )
    .await?;
    let expected = incident.state;
    let resuming = expected == IncidentState::Containing;
    if !matches!(
        expected,
        IncidentState::Declared | IncidentState::Approved | IncidentState::Containing
    ) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("incident {id} is {expected}: containment is over"),
        ));
    }
    if !resuming && let Some(clinician) = &request.clinician {
        incident.clinician = Some(clinician_json(clinician)?);
    }
    let started = std::time::Instant::now();
    let planned = plan_incident(&state, &caller, &incident).await?;
    let planned_at = started.elapsed();
    let shown = preview(&incident, &planned);
    if !resuming && shown.needs_second_approval && expected != IncidentState::Approved {
        let reason = format!(
            "a second approver (security or admin, not the declarer) must approve first: {}",
            shown.approval_reasons.join("; ")
        );
        return Err(state
            .deny(
                &caller,
                ErrorCode::Conflict,
                "incident.contain",
                &target(&id),
                &reason,
            )
            .await
            .into());
    }
    let batch = contain_batch(&id);
    // Resuming (a fan-out interrupted by a crash, or asked again): only what is not queued yet.
    let existing: std::collections::HashSet<(String, ward_domain::command::CommandKind)> = if resuming {
        batch_commands(&state, &batch)
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
                &state,
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
        sign(&state, &mut commands);
        (commands, records)
    };
    // The fan-out is stored and pushed in chunks, each chunk's commands and audit entries in one
    // transaction and pushed as soon as it commits; the first chunk's transaction also moves the
    // incident to containing, so a second `contain` cannot start another fan-out. While it runs
    // the acknowledgements it sets off wait to be written (`fan_out`): their times are taken as
    // they arrive, and the chunks' commits would otherwise queue behind them on the database's
    // single writer (measured: that doubled the p99 at 10 000 devices). If the server stops
    // midway, `contain` on the containing incident queues whatever is missing (as it does for
    // devices that entered the scope since), without duplicating.
    let fanning = state.fan_out.clone();
    let _fanning = fanning.read().await;
    let first_len = if resuming { 0 } else { pairs.len().min(FIRST_CHUNK) };
    let (first, rest) = pairs.split_at(first_len);
    let mut queued = 0usize;
    let started_fan_out = std::time::Instant::now();
    if !resuming {
        let (commands, mut records) = sign_in_parallel(first, &sign_chunk);
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
    // Where the fan-out's time went, for the log line below.
    let (mut signing, mut storing) = (Duration::ZERO, Duration::ZERO);
    for chunk in rest.chunks(CONTAIN_CHUNK) {
        let started = std::time::Instant::now();
        let (commands, records) = sign_in_parallel(chunk, &sign_chunk);
        let audit = Audit {
            time_ms: state.now_ms(),
            records,
        };
        signing += started.elapsed();
        let started = std::time::Instant::now();
        // Stored, then pushed, by one future: on the fan-out's runtime a chunk that gets stored is
        // pushed even if this request goes away meanwhile (a resumed containment queues only what
        // is missing; it does not push again what is already stored).
        let chunk_state = state.clone();
        let stored = async move {
            chunk_state.store.create_commands(&commands, audit).await?;
            for command in &commands {
                chunk_state.channels.push(command);
            }
            Ok::<usize, ApiError>(commands.len())
        };
        queued += match fan_out_runtime() {
            Some(runtime) => runtime.spawn(stored).await.map_err(|failed| {
                ApiError::internal(format!("storing a chunk of the fan-out: {failed}"))
            })??,
            None => stored.await?,
        };
        storing += started.elapsed();
    }
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
    let offline: u64 = planned
        .devices
        .iter()
        .filter(|(_, view, _)| !view.online)
        .map(|(_, _, plan)| plan.actions.len() as u64)
        .sum();
    Ok(axum::Json(IncidentStatus {
        incident_id: incident.id.clone(),
        state: incident.state.to_string(),
        contain: ward_proto::ProgressView {
            commands: commands_total as u64,
            outstanding: queued as u64,
            offline,
            ..Default::default()
        },
        time_to_contain: ward_proto::LatenciesView::default(),
        lift: ward_proto::ProgressView::default(),
    }))
}

/// The runtime a containment's chunks after the first are stored on: each chunk's transaction is
/// a dozen round trips to the database's thread, and on the server's runtime every one of them
/// waited behind the thousands of agent sessions the chunks before it had woken (measured at
/// 10 000 devices: time to contain about 10% lower on a runtime of its own, BENCHMARKS.md).
/// `None` if it could not be started (then chunks are stored on the server's runtime, as before).
fn fan_out_runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<Option<tokio::runtime::Runtime>> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("ward-fan-out")
                .enable_all()
                .build()
                .inspect_err(|err| tracing::warn!(error = %err, "no runtime of its own for the fan-out"))
                .ok()
        })
        .as_ref()
}

/// Signs a slice of (device, action) pairs into commands and their audit records.
type SignFn<'a, T, C, R> = dyn Fn(&[T]) -> (Vec<C>, Vec<R>) + Sync + 'a;

/// Signs a fan-out's commands (and builds their audit records) on every core, in order: at a
/// thousand devices signing is a third of the time before the first command leaves.
fn sign_in_parallel<T: Sync, C: Send, R: Send>(items: &[T], sign: &SignFn<'_, T, C, R>) -> (Vec<C>, Vec<R>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 || items.len() < 256 {
        return sign(items);
    }
    let part = items.len().div_ceil(cores);
    let parts: Vec<(Vec<C>, Vec<R>)> = std::thread::scope(|scope| {
        let mut chunks = items.chunks(part);
        let first = chunks.next().unwrap_or(&[]);
        let others: Vec<_> = chunks.map(|chunk| scope.spawn(move || sign(chunk))).collect();
        let mut parts = vec![sign(first)];
        // A signing thread that panicked is a bug; panicking here too keeps it visible.
        parts.extend(others.into_iter().map(|handle| match handle.join() {
            Ok(part) => part,
            Err(panic) => std::panic::resume_unwind(panic),
        }));
        parts
    });
    let (mut commands, mut records) = (Vec::with_capacity(items.len()), Vec::with_capacity(items.len()));
    for (c, r) in parts {
        commands.extend(c);
        records.extend(r);
    }
    (commands, records)
}

/// Progress and time-to-contain.
#[utoipa::path(get, path = "/incidents/{id}/status", tag = "incidents", params(("id" = String, Path)),
    responses((status = 200, body = IncidentStatus), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn show_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<IncidentStatus>> {
    let incident = load(&state, &caller, &id, Permission::ViewDevices, "incident.status").await?;
    Ok(axum::Json(status(&state, &incident).await?))
}

/// Live progress as server-sent events: a `progress` event (an `IncidentStatus`) every half second
/// until nothing is outstanding, then a final one.
#[utoipa::path(get, path = "/incidents/{id}/events", tag = "incidents", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream", body = IncidentStatus)))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    load(&state, &caller, &id, Permission::ViewDevices, "incident.status").await?;
    let stream = futures_util::stream::unfold((state, id, false), |(state, id, done)| async move {
        if done {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let incident = state.store.incident(&id).await.ok().flatten()?;
        let current = status(&state, &incident).await.ok()?;
        let finished =
            current.contain.commands > 0 && current.contain.outstanding == 0 && current.lift.outstanding == 0;
        let event = Event::default()
            .event("progress")
            .json_data(&current)
            .unwrap_or_else(|_| Event::default().event("error"));
        Some((Ok::<_, Infallible>(event), (state, id, finished)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// Lift containment (all devices, or the ones named): release and unlock per the plan.
#[utoipa::path(post, path = "/incidents/{id}/lift", tag = "incidents", params(("id" = String, Path)),
    request_body = IncidentActionRequest,
    responses((status = 200, body = IncidentStatus), (status = 409, body = ward_proto::ErrorBody)))]
pub async fn lift(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<IncidentActionRequest>,
) -> ApiResult<axum::Json<IncidentStatus>> {
    let mut incident = load(&state, &caller, &id, Permission::ManageDevices, "incident.lift").await?;
    if incident.state != IncidentState::Containing {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "incident {id} is {}: only containment under way can be lifted",
                incident.state
            ),
        ));
    }
    let plan = ward_service::incidents::parse_plan(&incident.plan)
        .map_err(|why| ApiError::invalid(format!("plan: {why}")))?;
    let contained = batch_commands(&state, &contain_batch(&id)).await?;
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
            return Err(ApiError::invalid(format!(
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
                &state,
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
    sign(&state, &mut commands);
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
    Ok(axum::Json(status(&state, &incident).await?))
}

/// Close the incident with what the breach report needs; optionally revoke every device in scope.
#[utoipa::path(post, path = "/incidents/{id}/close", tag = "incidents", params(("id" = String, Path)),
    request_body = CloseIncidentRequest,
    responses((status = 200, body = IncidentView), (status = 409, body = ward_proto::ErrorBody), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn close(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CloseIncidentRequest>,
) -> ApiResult<axum::Json<IncidentView>> {
    let mut incident = load(&state, &caller, &id, Permission::ManageDevices, "incident.close").await?;
    if incident.state == IncidentState::Closed {
        return Err(ApiError::new(
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
            return Err(ApiError::invalid(format!("{field}: the breach report needs it")));
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
        let planned = plan_incident(&state, &caller, &incident).await?;
        for (device, _, _) in &planned.devices {
            if !ward_service::incidents::revocable(device) {
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
    Ok(axum::Json(incident_view(&incident)))
}

/// `?format=json` (default) or `markdown`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    #[serde(default)]
    pub format: Option<String>,
}

/// The breach report (a draft until the incident is closed). Viewing it is audited.
#[utoipa::path(get, path = "/incidents/{id}/report", tag = "incidents", params(("id" = String, Path), ReportQuery),
    responses((status = 200, body = Object), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn show_report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> ApiResult<Response> {
    let incident = load(&state, &caller, &id, Permission::ViewDevices, "incident.report").await?;
    let format = query.format.unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "markdown") {
        return Err(ApiError::invalid("format: json or markdown"));
    }
    let record = caller.record(
        "incident.report",
        &target(&id),
        Outcome::Success,
        json!({ "format": format }),
    );
    state.store.append(state.audit(record)).await?;
    let report = report(&state, &incident).await?;
    Ok(match format.as_str() {
        "markdown" => (
            [(axum::http::header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            report_markdown(&report),
        )
            .into_response(),
        _ => axum::Json(report).into_response(),
    })
}
