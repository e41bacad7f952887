//! `/devices/{id}/commands` and `/commands`: remote actions. A command is checked (kind,
//! parameters, device state, clinical safety), signed, stored with its audit entry, and only then
//! pushed to the device if it is connected; offline devices get their queue when they connect.

use crate::api::extract::{ApiJson, ApiQuery};
use crate::caller::Caller;
use crate::error::ApiResult;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ward_core::state::AppState;
use ward_proto::{
    BulkCommandRequest, BulkCommandResponse, CommandDetail, CommandQuery, CommandView, CreateCommandRequest,
};
use ward_service::actions;

/// Queue one action for one device.
#[utoipa::path(post, path = "/devices/{id}/commands", tag = "commands", params(("id" = String, Path)),
    request_body = CreateCommandRequest,
    responses((status = 201, body = CommandView), (status = 404, body = ward_proto::ErrorBody),
              (status = 409, body = ward_proto::ErrorBody), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CreateCommandRequest>,
) -> ApiResult<(StatusCode, axum::Json<CommandView>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(actions::create(&state, &caller, id, request).await?),
    ))
}

/// Queue one action for every device a selector matches (within the caller's sites). With
/// `dry_run`, only counts what would happen.
#[utoipa::path(post, path = "/commands", tag = "commands", request_body = BulkCommandRequest,
    responses((status = 200, body = BulkCommandResponse), (status = 409, body = ward_proto::ErrorBody),
              (status = 422, body = ward_proto::ErrorBody)))]
pub async fn bulk(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<BulkCommandRequest>,
) -> ApiResult<axum::Json<BulkCommandResponse>> {
    Ok(axum::Json(actions::bulk(&state, &caller, request).await?))
}

/// List commands, newest first.
#[utoipa::path(get, path = "/commands", tag = "commands", params(CommandQuery),
    responses((status = 200, body = Vec<CommandView>), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<CommandQuery>,
) -> ApiResult<axum::Json<Vec<CommandView>>> {
    Ok(axum::Json(actions::list(&state, &caller, query).await?))
}

/// A command with its wipe proof and diagnostics output (the view is audited: a bundle can hold
/// sensitive details of the device).
#[utoipa::path(get, path = "/commands/{id}", tag = "commands", params(("id" = String, Path)),
    responses((status = 200, body = CommandDetail), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CommandDetail>> {
    Ok(axum::Json(actions::show(&state, &caller, id).await?))
}

/// Cancel a command that has not been delivered yet.
#[utoipa::path(post, path = "/commands/{id}/cancel", tag = "commands", params(("id" = String, Path)),
    responses((status = 200, body = CommandView), (status = 404, body = ward_proto::ErrorBody),
              (status = 409, body = ward_proto::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CommandView>> {
    Ok(axum::Json(actions::cancel(&state, &caller, id).await?))
}
