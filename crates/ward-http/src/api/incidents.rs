//! `/incidents`: declare → preview → approve → contain → status/events → lift → close → report.
//! Every step is audited with its actor and time; containment fans out as signed commands stored
//! in the same transaction as the incident's change.

use crate::api::extract::{ApiJson, ApiQuery};
use crate::caller::Caller;
use crate::error::ApiResult;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use ward_core::state::AppState;
use ward_domain::access::Permission;
use ward_proto::{
    CloseIncidentRequest, DeclareIncidentRequest, IncidentActionRequest, IncidentPreview, IncidentStatus,
    IncidentView,
};
use ward_service::incident_steps::{self, ReportFormat};
use ward_service::incidents::report_markdown;

/// Declare an incident over the devices a selector matches.
#[utoipa::path(post, path = "/incidents", tag = "incidents", request_body = DeclareIncidentRequest,
    responses((status = 201, body = IncidentView), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn declare(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<DeclareIncidentRequest>,
) -> ApiResult<(StatusCode, axum::Json<IncidentView>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(incident_steps::declare(&state, &caller, request).await?),
    ))
}

/// Incidents, newest first.
#[utoipa::path(get, path = "/incidents", tag = "incidents", responses((status = 200, body = Vec<IncidentView>)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<IncidentView>>> {
    Ok(axum::Json(incident_steps::list(&state, &caller).await?))
}

/// One incident.
#[utoipa::path(get, path = "/incidents/{id}", tag = "incidents", params(("id" = String, Path)),
    responses((status = 200, body = IncidentView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<IncidentView>> {
    Ok(axum::Json(incident_steps::show(&state, &caller, id).await?))
}

/// What containment would do: clinical impact first, then devices, offline, excluded, approvals.
#[utoipa::path(get, path = "/incidents/{id}/preview", tag = "incidents", params(("id" = String, Path)),
    responses((status = 200, body = IncidentPreview), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn show_preview(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<IncidentPreview>> {
    Ok(axum::Json(
        incident_steps::show_preview(&state, &caller, id).await?,
    ))
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
    Ok(axum::Json(
        incident_steps::approve(&state, &caller, id, request).await?,
    ))
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
    Ok(axum::Json(
        incident_steps::contain(&state, &caller, id, request).await?,
    ))
}

/// Progress and time-to-contain.
#[utoipa::path(get, path = "/incidents/{id}/status", tag = "incidents", params(("id" = String, Path)),
    responses((status = 200, body = IncidentStatus), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn show_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<IncidentStatus>> {
    Ok(axum::Json(
        incident_steps::show_status(&state, &caller, id).await?,
    ))
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
    incident_steps::load(&state, &caller, &id, Permission::ViewDevices, "incident.status").await?;
    let stream = futures_util::stream::unfold((state, id, false), |(state, id, done)| async move {
        if done {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (current, finished) = incident_steps::progress(&state, &id).await.ok()?;
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
    Ok(axum::Json(
        incident_steps::lift(&state, &caller, id, request).await?,
    ))
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
    Ok(axum::Json(
        incident_steps::close(&state, &caller, id, request).await?,
    ))
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
    let format: ReportFormat = query.format.as_deref().unwrap_or("json").parse()?;
    let report = incident_steps::report(&state, &caller, &id, format).await?;
    Ok(match format {
        ReportFormat::Markdown => (
            [(axum::http::header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            report_markdown(&report),
        )
            .into_response(),
        ReportFormat::Json => axum::Json(report).into_response(),
    })
}

/// `?format=json` (default) or `markdown`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    #[serde(default)]
    pub format: Option<String>,
}
