//! The console's pages. Each handler gathers what it shows through the service with the
//! session's caller (the same authorization and audit as the API), then renders a template.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use ward_domain::access::Permission;
use ward_domain::command::{CommandKind, KINDS, needs_clinician};
use ward_proto::{
    AuditEntryView, AuditQuery, ChangePasswordRequest, ClinicianConfirmation, CloseIncidentRequest,
    CommandQuery, CommandView, CreateCommandRequest, DeclareIncidentRequest, DeviceComplianceView,
    DeviceDetail, DeviceQuery, DeviceView, EnrollTokenView, ErrorCode, IncidentActionRequest,
    IncidentPreview, IncidentStatus, IncidentView, LoginRequest, PolicyDiffQuery, PolicyDiffView, PolicyView,
    SiteView, TokenView, UserView, VerifyReportView,
};
use ward_store::DeviceRecord;

use super::session::{Refused, Session, render};
use crate::api;
use crate::api::auth::Source;
use crate::error::ApiError;
use ward_core::devices;
use ward_core::state::AppState;
use ward_service::incident_steps::{self, ReportFormat};
use ward_service::{actions, audit, enrollment, policy_admin, sessions, sites, tokens, users};

type Page = Result<Response, Refused>;

/// Devices per page in the device list.
const PAGE_SIZE: usize = 50;

/// What every page's header needs.
pub struct Nav {
    pub username: String,
    pub role: String,
    pub csrf: String,
    pub active: &'static str,
    pub can_manage: bool,
    pub can_audit: bool,
    pub can_admin: bool,
}

impl Nav {
    fn new(session: &Session, active: &'static str) -> Nav {
        Nav {
            username: session.caller.user.username.clone(),
            role: session.role().to_string(),
            csrf: session.csrf.clone(),
            active,
            can_manage: session.may(Permission::ManageDevices),
            can_audit: session.may(Permission::ViewAudit),
            can_admin: session.may(Permission::ViewUsers)
                || session.may(Permission::ManageEnrollment)
                || session.may(Permission::ManageSites),
        }
    }
}

fn csrf_refused() -> Refused {
    Refused::Error(ApiError::new(
        ErrorCode::Forbidden,
        "the form's security token is missing or stale; reload the page and try again",
    ))
}

fn check_csrf(session: &Session, token: &str) -> Result<(), Refused> {
    if session.csrf_ok(token) {
        Ok(())
    } else {
        Err(csrf_refused())
    }
}

// ---------------------------------------------------------------------------------------------
// Errors, login, logout, password

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: String,
    username: String,
    ask_code: bool,
}

pub async fn login_form() -> Response {
    render(&LoginPage {
        error: String::new(),
        username: String::new(),
        ask_code: false,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    code: String,
}

pub async fn login(
    State(state): State<AppState>,
    Source(source): Source,
    form: axum::Form<LoginForm>,
) -> Response {
    let code = form.code.trim();
    let (totp_code, recovery_code) = match code {
        "" => (None, None),
        c if c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()) => (Some(c.to_owned()), None),
        c => (None, Some(c.to_owned())),
    };
    let request = LoginRequest {
        username: form.username.clone(),
        password: form.password.clone(),
        totp_code,
        recovery_code,
        token_name: None,
        expires_in_days: None,
    };
    match ward_service::sessions::open_session(&state, &request, &source).await {
        Ok((cookie, user)) => {
            let to = if user.must_change_password {
                "/password"
            } else {
                "/"
            };
            (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, api::auth::session_cookie(&cookie)),
                    (header::LOCATION, to.to_owned()),
                ],
            )
                .into_response()
        }
        Err(err) => {
            let ask_code = matches!(err.code, ErrorCode::MfaRequired | ErrorCode::MfaInvalid);
            let status = StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let page = LoginPage {
                error: err.message,
                username: form.username.chars().take(64).collect(),
                ask_code,
            };
            (status, render(&page)).into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(State(state): State<AppState>, session: Session, form: axum::Form<CsrfForm>) -> Page {
    check_csrf(&session, &form.csrf)?;
    sessions::logout(&state, &session.caller).await?;
    let mut redirect = Redirect::to("/login").into_response();
    if let Ok(cookie) = header::HeaderValue::from_str(&api::auth::expired_cookie()) {
        redirect.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(redirect)
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    nav: Nav,
    error: String,
    must: bool,
}

pub async fn password_form(session: Session) -> Page {
    Ok(render(&PasswordPage {
        must: session.caller.user.must_change_password,
        nav: Nav::new(&session, "password"),
        error: String::new(),
    }))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: String,
    current_password: String,
    new_password: String,
    repeat_password: String,
}

pub async fn password(
    State(state): State<AppState>,
    session: Session,
    form: axum::Form<PasswordForm>,
) -> Page {
    check_csrf(&session, &form.csrf)?;
    let form = form.0;
    let error = if form.new_password != form.repeat_password {
        "the two new passwords differ".to_owned()
    } else {
        let request = ChangePasswordRequest {
            current_password: form.current_password,
            new_password: form.new_password,
        };
        match sessions::change_password(&state, &session.caller, request).await {
            Ok(_) => return Ok(Redirect::to("/").into_response()),
            Err(err) => err.message,
        }
    };
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        render(&PasswordPage {
            must: session.caller.user.must_change_password,
            nav: Nav::new(&session, "password"),
            error,
        }),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// Dashboard

/// One bar of a chart: label, count, width in percent of the largest.
pub struct Bar {
    pub label: String,
    pub count: u64,
    pub width: u64,
    pub y: u64,
}

fn bars(counts: BTreeMap<String, u64>) -> Vec<Bar> {
    let max = counts.values().copied().max().unwrap_or(1).max(1);
    counts
        .into_iter()
        .enumerate()
        .map(|(i, (label, count))| Bar {
            label,
            count,
            width: count * 100 / max,
            y: i as u64 * 24,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    nav: Nav,
    total: usize,
    online: usize,
    compliance_percent: String,
    by_state: Vec<Bar>,
    by_class: Vec<Bar>,
    by_site: Vec<Bar>,
    open_incidents: Vec<IncidentView>,
    risky: Vec<(DeviceView, u64)>,
    recent: Vec<AuditEntryView>,
}

/// A device's risk for the dashboard: failing checks weigh most, then patient data, criticality,
/// being unreachable and a containment state.
fn risk(view: &DeviceView) -> u64 {
    let mut score = view.compliance.failing.len() as u64 * 10;
    if view.phi {
        score += 5;
    }
    if view.criticality == "life-sustaining" {
        score += 3;
    }
    if !view.online {
        score += 2;
    }
    if matches!(view.state.as_str(), "quarantined" | "lost") {
        score += 4;
    }
    score
}

pub async fn dashboard(State(state): State<AppState>, session: Session) -> Page {
    let devices =
        ward_core::devices::select_records(&state, &session.caller, &DeviceQuery::default()).await?;
    let views: Vec<DeviceView> = devices.into_iter().map(|(_, v)| v).collect();
    let mut by_state = BTreeMap::new();
    let mut by_class = BTreeMap::new();
    let mut by_site = BTreeMap::new();
    let (mut compliant, mut assessed) = (0u64, 0u64);
    for view in &views {
        *by_state.entry(view.state.clone()).or_insert(0) += 1;
        *by_class.entry(view.class.clone()).or_insert(0) += 1;
        *by_site.entry(view.site.clone()).or_insert(0) += 1;
        if view.compliance.status != "not_applicable" {
            assessed += 1;
            compliant += u64::from(view.compliance.status == "compliant");
        }
    }
    let mut risky: Vec<(DeviceView, u64)> = views
        .iter()
        .map(|v| (v.clone(), risk(v)))
        .filter(|(_, score)| *score > 0)
        .collect();
    risky.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.hostname.cmp(&b.0.hostname)));
    risky.truncate(10);
    let open_incidents = if session.may(Permission::ViewDevices) {
        incident_steps::list(&state, &session.caller)
            .await?
            .into_iter()
            .filter(|i| i.state != "closed")
            .collect()
    } else {
        Vec::new()
    };
    let recent = if session.may(Permission::ViewAudit) {
        let size = state
            .store
            .recorded_size()
            .await
            .map_err(ApiError::from)?
            .unwrap_or(0);
        let query = AuditQuery {
            after: Some(size.saturating_sub(10)),
            limit: Some(10),
            ..Default::default()
        };
        let mut entries = audit::list(&state, &session.caller, query).await?.entries;
        entries.reverse();
        entries
    } else {
        Vec::new()
    };
    Ok(render(&DashboardPage {
        nav: Nav::new(&session, "dashboard"),
        total: views.len(),
        online: views.iter().filter(|v| v.online).count(),
        compliance_percent: if assessed == 0 {
            "-".into()
        } else {
            format!("{:.1} %", compliant as f64 * 100.0 / assessed as f64)
        },
        by_state: bars(by_state),
        by_class: bars(by_class),
        by_site: bars(by_site),
        open_incidents,
        risky,
        recent,
    }))
}

// ---------------------------------------------------------------------------------------------
// Devices

#[derive(Deserialize, Default)]
pub struct DevicesParams {
    #[serde(default)]
    filter: String,
    #[serde(default)]
    page: usize,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    desc: bool,
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    nav: Nav,
    filter: String,
    error: String,
    devices: Vec<DeviceView>,
    total: usize,
    page: usize,
    pages: usize,
    sort: String,
    desc: bool,
}

pub async fn devices(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<DevicesParams>,
) -> Page {
    let filter = params.filter.trim().to_owned();
    let query = DeviceQuery {
        filter: (!filter.is_empty()).then(|| filter.clone()),
        include_retired: false,
    };
    let (mut devices, error) = match ward_core::devices::select_records(&state, &session.caller, &query).await
    {
        Ok(devices) => (
            devices.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
            String::new(),
        ),
        Err(err) if err.code == ErrorCode::InvalidInput => (Vec::new(), err.message),
        Err(err) => return Err(err.into()),
    };
    let key = |v: &DeviceView| -> String {
        match params.sort.as_str() {
            "site" => v.site.clone(),
            "class" => v.class.clone(),
            "state" => v.state.clone(),
            "compliance" => v.compliance.status.clone(),
            "last_seen" => v.last_seen_at.clone().unwrap_or_default(),
            _ => v.hostname.to_lowercase(),
        }
    };
    devices.sort_by_cached_key(|v| (key(v), v.hostname.to_lowercase()));
    if params.desc {
        devices.reverse();
    }
    let total = devices.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = params.page.min(pages - 1);
    let shown = devices
        .into_iter()
        .skip(page * PAGE_SIZE)
        .take(PAGE_SIZE)
        .collect();
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((
        status,
        render(&DevicesPage {
            nav: Nav::new(&session, "devices"),
            filter,
            error,
            devices: shown,
            total,
            page,
            pages,
            sort: if params.sort.is_empty() {
                "hostname".into()
            } else {
                params.sort
            },
            desc: params.desc,
        }),
    )
        .into_response())
}

/// The actions offered on a device page, with their labels.
/// The actions the console offers for a device: the command-kind table's, for what the device's
/// platform can carry out (a full wipe only where its enrollment allows one; policy settings are
/// the policy engine's to send).
fn device_actions(device: &DeviceRecord) -> Vec<(&'static str, &'static str)> {
    let platform = ward_core::platforms::platform_of(device);
    KINDS
        .iter()
        .filter(|info| info.kind.supported_on(platform))
        .filter(|info| info.kind != CommandKind::ApplySettings)
        .filter(|info| info.kind != CommandKind::WipeFull || device.allow_full_wipe)
        .map(|info| (info.kind.as_str(), info.label))
        .collect()
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage {
    nav: Nav,
    detail: DeviceDetail,
    facts: String,
    history: Vec<(String, String)>,
    compliance: Option<DeviceComplianceView>,
    commands: Vec<CommandView>,
    actions: Vec<(&'static str, &'static str)>,
    message: String,
}

#[derive(Deserialize, Default)]
pub struct MessageParams {
    #[serde(default)]
    msg: String,
}

pub async fn device(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(params): Query<MessageParams>,
) -> Page {
    let detail = devices::show(&state, &session.caller, id.clone()).await?;
    let facts = serde_json::to_string_pretty(&detail.device.facts).unwrap_or_default();
    let history = detail
        .history
        .iter()
        .take(20)
        .map(|h| (h.time.clone(), h.change.to_string()))
        .collect();
    let compliance = policy_admin::device_compliance(&state, &session.caller, id.clone())
        .await
        .ok();
    let commands = actions::list(
        &state,
        &session.caller,
        CommandQuery {
            device: Some(id.clone()),
            limit: Some(20),
            ..Default::default()
        },
    )
    .await?;
    // The detail above was authorized and audited; the record says what the device can take.
    let record = state.store.device(&id).await.map_err(ApiError::from)?;
    let actions = match record {
        Some(record) if session.may(Permission::ManageDevices) => device_actions(&record),
        _ => Vec::new(),
    };
    Ok(render(&DevicePage {
        nav: Nav::new(&session, "devices"),
        detail,
        facts,
        history,
        compliance,
        commands,
        actions,
        message: params.msg.chars().take(200).collect(),
    }))
}

#[derive(Deserialize)]
pub struct ConfirmParams {
    kind: String,
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    nav: Nav,
    device: DeviceView,
    kind: String,
    label: String,
    needs_text: bool,
    needs_hostname: bool,
    needs_uri: bool,
    needs_clinician: bool,
    error: String,
}

async fn confirm_page(state: &AppState, session: &Session, id: &str, kind: &str, error: String) -> Page {
    let record = ward_core::devices::load(
        state,
        &session.caller,
        id,
        Permission::ManageDevices,
        "device.command",
    )
    .await?;
    let Some((_, label)) = device_actions(&record).into_iter().find(|(k, _)| *k == kind) else {
        return Err(ApiError::invalid(format!("{kind:?} is not an action this device can take")).into());
    };
    let parsed: CommandKind = kind.parse().map_err(ApiError::from)?;
    let device = ward_core::devices::device_view(&record, state.now_ms(), state.config.heartbeat_ms);
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((
        status,
        render(&ConfirmPage {
            nav: Nav::new(session, "devices"),
            kind: kind.to_owned(),
            label: (*label).to_owned(),
            needs_text: matches!(parsed, CommandKind::Message | CommandKind::LostMode),
            needs_hostname: parsed == CommandKind::WipeFull,
            needs_uri: parsed == CommandKind::FirmwareUpdate,
            needs_clinician: needs_clinician(parsed, record.class, record.criticality),
            device,
            error,
        }),
    )
        .into_response())
}

/// The confirm step before any action.
pub async fn confirm_action(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(params): Query<ConfirmParams>,
) -> Page {
    confirm_page(&state, &session, &id, &params.kind, String::new()).await
}

#[derive(Deserialize)]
pub struct CommandForm {
    csrf: String,
    kind: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    confirm_hostname: String,
    #[serde(default)]
    uri: String,
    #[serde(default)]
    clinician_name: String,
    #[serde(default)]
    clinician_reason: String,
}

pub async fn device_command(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    form: axum::Form<CommandForm>,
) -> Page {
    check_csrf(&session, &form.csrf)?;
    let form = form.0;
    let mut params = serde_json::Map::new();
    if !form.text.trim().is_empty() {
        params.insert("text".into(), Value::String(form.text.clone()));
    }
    if !form.confirm_hostname.trim().is_empty() {
        params.insert(
            "confirm_hostname".into(),
            Value::String(form.confirm_hostname.trim().to_owned()),
        );
    }
    if !form.uri.trim().is_empty() {
        params.insert("uri".into(), Value::String(form.uri.trim().to_owned()));
    }
    let clinician = (!form.clinician_name.trim().is_empty() || !form.clinician_reason.trim().is_empty())
        .then(|| ClinicianConfirmation {
            name: form.clinician_name.clone(),
            reason: form.clinician_reason.clone(),
        });
    let request = CreateCommandRequest {
        kind: form.kind.clone(),
        params: Value::Object(params),
        expires: None,
        clinician,
    };
    match actions::create(&state, &session.caller, id.clone(), request).await {
        Ok(command) => {
            let message = format!("{} queued ({})", command.kind, command.state);
            let target = format!("/devices/{}?msg={}", urlencode(&id), urlencode(&message));
            Ok(Redirect::to(&target).into_response())
        }
        Err(err)
            if matches!(
                err.code,
                ErrorCode::InvalidInput | ErrorCode::ClinicianConfirmationRequired
            ) =>
        {
            confirm_page(&state, &session, &id, &form.kind, err.message).await
        }
        Err(err) => Err(err.into()),
    }
}

/// Percent-encodes a query or path value.
fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Incidents

#[derive(Template)]
#[template(path = "incidents.html")]
struct IncidentsPage {
    nav: Nav,
    incidents: Vec<IncidentView>,
    error: String,
    form: DeclareForm,
}

#[derive(Deserialize, Default, Clone)]
pub struct DeclareForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    situation: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    description: String,
}

pub async fn incidents(State(state): State<AppState>, session: Session) -> Page {
    incidents_page(&state, &session, String::new(), DeclareForm::default()).await
}

async fn incidents_page(state: &AppState, session: &Session, error: String, form: DeclareForm) -> Page {
    let incidents = incident_steps::list(state, &session.caller).await?;
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((
        status,
        render(&IncidentsPage {
            nav: Nav::new(session, "incidents"),
            incidents,
            error,
            form,
        }),
    )
        .into_response())
}

pub async fn declare(State(state): State<AppState>, session: Session, form: axum::Form<DeclareForm>) -> Page {
    check_csrf(&session, &form.csrf)?;
    let form = form.0;
    let option = |text: &str| (!text.trim().is_empty()).then(|| text.trim().to_owned());
    let request = DeclareIncidentRequest {
        title: form.title.clone(),
        severity: option(&form.severity),
        description: form.description.clone(),
        situation: option(&form.situation),
        discovered_at: None,
        aware_at: None,
        scope: form.scope.clone(),
        plan: None,
    };
    match incident_steps::declare(&state, &session.caller, request).await {
        Ok(incident) => Ok(Redirect::to(&format!("/incidents/{}", urlencode(&incident.id))).into_response()),
        Err(err) if err.code == ErrorCode::InvalidInput => {
            incidents_page(&state, &session, err.message, form).await
        }
        Err(err) => Err(err.into()),
    }
}

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    nav: Nav,
    incident: IncidentView,
    preview: Option<IncidentPreview>,
    status: IncidentStatus,
    refresh: bool,
    message: String,
}

pub async fn incident(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(params): Query<MessageParams>,
) -> Page {
    let incident = incident_steps::show(&state, &session.caller, id.clone()).await?;
    let preview = if matches!(incident.state.as_str(), "declared" | "approved") {
        Some(incident_steps::show_preview(&state, &session.caller, id.clone()).await?)
    } else {
        None
    };
    let status = incident_steps::show_status(&state, &session.caller, id.clone()).await?;
    let refresh = (incident.state == "containing" && status.contain.outstanding > status.contain.offline)
        || (incident.state == "lifted" && status.lift.outstanding > status.lift.offline);
    Ok(render(&IncidentPage {
        nav: Nav::new(&session, "incidents"),
        incident,
        preview,
        status,
        refresh,
        message: params.msg.chars().take(300).collect(),
    }))
}

#[derive(Deserialize, Default)]
pub struct StepForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    clinician_name: String,
    #[serde(default)]
    clinician_reason: String,
    #[serde(default)]
    nature: String,
    #[serde(default)]
    contact_point: String,
    #[serde(default)]
    likely_consequences: String,
    #[serde(default)]
    data_subjects: String,
    #[serde(default)]
    records: String,
    #[serde(default)]
    measures: String,
}

pub async fn incident_step(
    State(state): State<AppState>,
    session: Session,
    Path((id, step)): Path<(String, String)>,
    form: axum::Form<StepForm>,
) -> Page {
    check_csrf(&session, &form.csrf)?;
    let clinician = (!form.clinician_name.trim().is_empty()).then(|| ClinicianConfirmation {
        name: form.clinician_name.clone(),
        reason: form.clinician_reason.clone(),
    });
    let action = IncidentActionRequest {
        clinician,
        devices: None,
    };
    let (s, c, p) = (&state, &session.caller, id.clone());
    let result: Result<String, ApiError> = match step.as_str() {
        "approve" => incident_steps::approve(s, c, p, action)
            .await
            .map(|_| "approved".into())
            .map_err(ApiError::from),
        "contain" => incident_steps::contain(s, c, p, action)
            .await
            .map(|j| format!("containment started: {} commands", j.contain.commands))
            .map_err(ApiError::from),
        "lift" => incident_steps::lift(s, c, p, action)
            .await
            .map(|j| format!("lifting: {} commands", j.lift.commands))
            .map_err(ApiError::from),
        "close" => {
            let number = |text: &str, field: &str| -> Result<u64, ApiError> {
                if text.trim().is_empty() {
                    return Ok(0);
                }
                text.trim()
                    .parse()
                    .map_err(|_| ApiError::invalid(format!("{field}: a whole number")))
            };
            match (
                number(&form.data_subjects, "data_subjects"),
                number(&form.records, "records"),
            ) {
                (Ok(data_subjects), Ok(records)) => {
                    let request = CloseIncidentRequest {
                        nature: form.nature.clone(),
                        contact_point: form.contact_point.clone(),
                        likely_consequences: form.likely_consequences.clone(),
                        measures: form.measures.clone(),
                        data_subjects,
                        records,
                        ..Default::default()
                    };
                    incident_steps::close(s, c, p, request)
                        .await
                        .map(|_| "closed".into())
                        .map_err(ApiError::from)
                }
                (Err(err), _) | (_, Err(err)) => Err(err),
            }
        }
        _ => return Err(ApiError::not_found(format!("incident step {step:?}")).into()),
    };
    match result {
        Ok(message) => Ok(Redirect::to(&format!(
            "/incidents/{}?msg={}",
            urlencode(&id),
            urlencode(&message)
        ))
        .into_response()),
        Err(err) if err.code.http_status() < 500 && err.code != ErrorCode::NotFound => {
            Ok(Redirect::to(&format!(
                "/incidents/{}?msg={}",
                urlencode(&id),
                urlencode(&format!("refused: {}", err.message))
            ))
            .into_response())
        }
        Err(err) => Err(err.into()),
    }
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage {
    nav: Nav,
    id: String,
    markdown: String,
}

pub async fn incident_report(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Page {
    let report = incident_steps::report(&state, &session.caller, &id, ReportFormat::Markdown).await?;
    Ok(render(&ReportPage {
        nav: Nav::new(&session, "incidents"),
        id,
        markdown: ward_service::incidents::report_markdown(&report),
    }))
}

// ---------------------------------------------------------------------------------------------
// Policies

#[derive(Template)]
#[template(path = "policies.html")]
struct PoliciesPage {
    nav: Nav,
    policies: Vec<PolicyView>,
}

pub async fn policies(State(state): State<AppState>, session: Session) -> Page {
    let policies = policy_admin::list(&state, &session.caller).await?;
    Ok(render(&PoliciesPage {
        nav: Nav::new(&session, "policies"),
        policies,
    }))
}

#[derive(Deserialize, Default)]
pub struct DiffParams {
    from: Option<i64>,
    to: Option<i64>,
}

#[derive(Template)]
#[template(path = "policy.html")]
struct PolicyPage {
    nav: Nav,
    policy: PolicyView,
    history: Vec<PolicyView>,
    diff: Option<PolicyDiffView>,
}

pub async fn policy(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Query(params): Query<DiffParams>,
) -> Page {
    let policy = policy_admin::show(&state, &session.caller, name.clone()).await?;
    let history = policy_admin::history(&state, &session.caller, name.clone()).await?;
    let diff = match (params.from, params.to) {
        (Some(from), Some(to)) => Some(
            policy_admin::diff(
                &state,
                &session.caller,
                name.clone(),
                PolicyDiffQuery { from, to },
            )
            .await?,
        ),
        _ => None,
    };
    Ok(render(&PolicyPage {
        nav: Nav::new(&session, "policies"),
        policy,
        history,
        diff,
    }))
}

// ---------------------------------------------------------------------------------------------
// Audit and administration

#[derive(Deserialize, Default)]
pub struct AuditParams {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    verify: bool,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPageView {
    nav: Nav,
    latest: bool,
    entries: Vec<AuditEntryView>,
    actor: String,
    action: String,
    target: String,
    next_after: Option<u64>,
    verify: Option<VerifyReportView>,
}

pub async fn audit(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<AuditParams>,
) -> Page {
    let option = |text: &str| (!text.trim().is_empty()).then(|| text.trim().to_owned());
    let unfiltered =
        params.actor.trim().is_empty() && params.action.trim().is_empty() && params.target.trim().is_empty();
    // Unfiltered and without a position: the newest 100 entries, newest first.
    let latest = unfiltered && params.after.is_none();
    let after = if latest {
        let size = state
            .store
            .recorded_size()
            .await
            .map_err(ApiError::from)?
            .unwrap_or(0);
        Some(size.saturating_sub(100))
    } else {
        params.after
    };
    let query = AuditQuery {
        after,
        limit: Some(100),
        actor: option(&params.actor),
        action: option(&params.action),
        target: option(&params.target),
    };
    let page = audit::list(&state, &session.caller, query).await?;
    let verify = if params.verify {
        Some(audit::verify(&state, &session.caller).await?)
    } else {
        None
    };
    let mut entries = page.entries;
    if latest {
        entries.reverse();
    }
    Ok(render(&AuditPageView {
        nav: Nav::new(&session, "audit"),
        latest,
        entries,
        actor: params.actor,
        action: params.action,
        target: params.target,
        next_after: page.next_after,
        verify,
    }))
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    nav: Nav,
    users: Vec<UserView>,
    tokens: Vec<TokenView>,
    enroll_tokens: Vec<EnrollTokenView>,
    sites: Vec<SiteView>,
    can_enroll: bool,
    can_sites: bool,
    can_users: bool,
    message: String,
}

pub async fn admin(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<MessageParams>,
) -> Page {
    let can_users = session.may(Permission::ViewUsers);
    let can_enroll = session.may(Permission::ManageEnrollment);
    let can_sites = session.may(Permission::ManageSites);
    if !(can_users || can_enroll || can_sites) {
        return Err(
            ApiError::forbidden(format!("the {} role has no administration pages", session.role())).into(),
        );
    }
    let users = if can_users {
        users::list(&state, &session.caller).await?
    } else {
        Vec::new()
    };
    let tokens = tokens::list(&state, &session.caller, session.may(Permission::ManageUsers)).await?;
    let enroll_tokens = if can_enroll {
        enrollment::list_tokens(&state, &session.caller).await?
    } else {
        Vec::new()
    };
    let sites = sites::list(&state, &session.caller).await?;
    Ok(render(&AdminPage {
        nav: Nav::new(&session, "admin"),
        users,
        tokens,
        enroll_tokens,
        sites,
        can_enroll,
        can_sites,
        can_users,
        message: params.msg.chars().take(300).collect(),
    }))
}

#[derive(Deserialize)]
pub struct EnrollTokenForm {
    csrf: String,
    site: String,
    class: String,
    #[serde(default)]
    criticality: String,
    #[serde(default)]
    phi: Option<String>,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    uses: String,
}

#[derive(Template)]
#[template(path = "enroll_token.html")]
struct EnrollTokenPage {
    nav: Nav,
    token: EnrollTokenView,
    secret: String,
    server: String,
    fingerprint: String,
}

fn back_to_admin(message: &str) -> Response {
    Redirect::to(&format!("/admin?msg={}", urlencode(message))).into_response()
}

/// Creates an enrollment token; its secret is shown on the answer page only.
pub async fn create_enroll_token(
    State(state): State<AppState>,
    session: Session,
    headers: axum::http::HeaderMap,
    form: axum::Form<EnrollTokenForm>,
) -> Page {
    check_csrf(&session, &form.csrf)?;
    let form = form.0;
    let option = |text: &str| (!text.trim().is_empty()).then(|| text.trim().to_owned());
    let uses = match option(&form.uses).map(|u| u.parse::<u32>()) {
        None => None,
        Some(Ok(uses)) => Some(uses),
        Some(Err(_)) => return Ok(back_to_admin("refused: uses must be a whole number")),
    };
    let request = ward_proto::CreateEnrollTokenRequest {
        site: form.site.trim().to_owned(),
        class: form.class.trim().to_owned(),
        criticality: option(&form.criticality),
        phi: form.phi.is_some(),
        expires: option(&form.expires),
        uses,
        allow_full_wipe: false,
    };
    match enrollment::create_token(&state, &session.caller, request).await {
        Ok(created) => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("WARD-HOST:8443")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(*c))
                .collect::<String>();
            Ok(render(&EnrollTokenPage {
                nav: Nav::new(&session, "admin"),
                token: created.token.clone(),
                secret: created.secret.clone(),
                server: format!("https://{host}"),
                fingerprint: state.keys.ca_fingerprint.clone(),
            }))
        }
        Err(err) if err.code.http_status() < 500 => Ok(back_to_admin(&format!("refused: {}", err.message))),
        Err(err) => Err(err.into()),
    }
}

/// Revokes an API token.
pub async fn revoke_token(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    form: axum::Form<CsrfForm>,
) -> Page {
    check_csrf(&session, &form.csrf)?;
    match tokens::revoke(&state, &session.caller, id).await {
        Ok(_) => Ok(back_to_admin("token revoked")),
        Err(err) if err.code.http_status() < 500 => Ok(back_to_admin(&format!("refused: {}", err.message))),
        Err(err) => Err(err.into()),
    }
}

#[derive(Deserialize)]
pub struct SiteForm {
    csrf: String,
    slug: String,
    name: String,
}

/// Creates a hospital or ward.
pub async fn create_site(
    State(state): State<AppState>,
    session: Session,
    form: axum::Form<SiteForm>,
) -> Page {
    check_csrf(&session, &form.csrf)?;
    let request = ward_proto::CreateSiteRequest {
        slug: form.slug.trim().to_owned(),
        name: form.name.trim().to_owned(),
    };
    match sites::create(&state, &session.caller, request).await {
        Ok(site) => Ok(back_to_admin(&format!("created site {}", site.slug))),
        Err(err) if err.code.http_status() < 500 => Ok(back_to_admin(&format!("refused: {}", err.message))),
        Err(err) => Err(err.into()),
    }
}
