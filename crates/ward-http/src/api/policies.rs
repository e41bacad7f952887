//! `/policies`, `/compliance`, `/groups` and `/devices/{id}/compliance`: policies as code (apply
//! with dry run, every version kept, diffs), compliance results and summaries, dynamic groups.

use crate::api::extract::{ApiJson, ApiQuery};
use crate::caller::Caller;
use crate::error::ApiResult;
use axum::extract::{Path, State};
use ward_core::state::AppState;
use ward_proto::{
    ApplyPoliciesRequest, ApplyPoliciesResponse, ComplianceSummary, DeviceComplianceView, DeviceQuery,
    GroupView, PolicyDiffQuery, PolicyDiffView, PolicyView, PutGroupRequest,
};
use ward_service::policy_admin;

/// Validate, preview and apply policy files.
#[utoipa::path(post, path = "/policies/apply", tag = "policies", request_body = ApplyPoliciesRequest,
    responses((status = 200, body = ApplyPoliciesResponse), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn apply(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<ApplyPoliciesRequest>,
) -> ApiResult<axum::Json<ApplyPoliciesResponse>> {
    Ok(axum::Json(policy_admin::apply(&state, &caller, request).await?))
}

/// Current policies with the number of devices (visible to the caller) in scope of each.
#[utoipa::path(get, path = "/policies", tag = "policies", responses((status = 200, body = Vec<PolicyView>)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<PolicyView>>> {
    Ok(axum::Json(policy_admin::list(&state, &caller).await?))
}

/// The newest version of one policy (also when it was removed).
#[utoipa::path(get, path = "/policies/{name}", tag = "policies", params(("name" = String, Path)),
    responses((status = 200, body = PolicyView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<PolicyView>> {
    Ok(axum::Json(policy_admin::show(&state, &caller, name).await?))
}

/// Every version of one policy, oldest first.
#[utoipa::path(get, path = "/policies/{name}/history", tag = "policies", params(("name" = String, Path)),
    responses((status = 200, body = Vec<PolicyView>), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Vec<PolicyView>>> {
    Ok(axum::Json(policy_admin::history(&state, &caller, name).await?))
}

/// A unified diff between two versions' YAML.
#[utoipa::path(get, path = "/policies/{name}/diff", tag = "policies", params(("name" = String, Path), PolicyDiffQuery),
    responses((status = 200, body = PolicyDiffView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn diff(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<PolicyDiffQuery>,
) -> ApiResult<axum::Json<PolicyDiffView>> {
    Ok(axum::Json(
        policy_admin::diff(&state, &caller, name, query).await?,
    ))
}

/// One device's check results and effective settings.
#[utoipa::path(get, path = "/devices/{id}/compliance", tag = "policies", params(("id" = String, Path)),
    responses((status = 200, body = DeviceComplianceView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn device_compliance(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<DeviceComplianceView>> {
    Ok(axum::Json(
        policy_admin::device_compliance(&state, &caller, id).await?,
    ))
}

/// Compliance per site and class over the devices the caller can see.
#[utoipa::path(get, path = "/compliance/summary", tag = "policies", params(DeviceQuery),
    responses((status = 200, body = ComplianceSummary)))]
pub async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DeviceQuery>,
) -> ApiResult<axum::Json<ComplianceSummary>> {
    Ok(axum::Json(policy_admin::summary(&state, &caller, query).await?))
}

/// Dynamic groups with their current size (devices the caller can see).
#[utoipa::path(get, path = "/groups", tag = "policies", responses((status = 200, body = Vec<GroupView>)))]
pub async fn list_groups(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<GroupView>>> {
    Ok(axum::Json(policy_admin::list_groups(&state, &caller).await?))
}

/// Creates or replaces a group. Its selector may not use `groups` or `compliance`.
#[utoipa::path(put, path = "/groups/{name}", tag = "policies", params(("name" = String, Path)), request_body = PutGroupRequest,
    responses((status = 200, body = GroupView), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn put_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<PutGroupRequest>,
) -> ApiResult<axum::Json<GroupView>> {
    Ok(axum::Json(
        policy_admin::put_group(&state, &caller, name, request).await?,
    ))
}

/// Deletes a group.
#[utoipa::path(delete, path = "/groups/{name}", tag = "policies", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn delete_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    policy_admin::delete_group(&state, &caller, name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
