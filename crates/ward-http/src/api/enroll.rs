//! `/enroll-tokens` (admins) and `/enroll` (devices): how a device gets its identity.

use crate::api::auth::Source;
use crate::api::extract::ApiJson;
use crate::caller::Caller;
use crate::error::ApiResult;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ward_core::state::AppState;
use ward_proto::{
    CreateEnrollTokenRequest, CreatedEnrollToken, EnrollRequest, EnrollResponse, EnrollTokenView,
};
use ward_service::enrollment;

/// Create an enrollment token for one site and device class; the secret is shown once.
#[utoipa::path(post, path = "/enroll-tokens", tag = "enrollment", request_body = CreateEnrollTokenRequest,
    responses((status = 201, body = CreatedEnrollToken), (status = 403, body = ward_proto::ErrorBody), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateEnrollTokenRequest>,
) -> ApiResult<(StatusCode, axum::Json<CreatedEnrollToken>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(enrollment::create_token(&state, &caller, request).await?),
    ))
}

/// List enrollment tokens for the sites this account covers.
#[utoipa::path(get, path = "/enroll-tokens", tag = "enrollment", responses((status = 200, body = Vec<EnrollTokenView>)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<EnrollTokenView>>> {
    Ok(axum::Json(enrollment::list_tokens(&state, &caller).await?))
}

/// Revoke an enrollment token; devices already enrolled keep their identity.
#[utoipa::path(delete, path = "/enroll-tokens/{id}", tag = "enrollment", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    enrollment::revoke_token(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A device enrolls: the token authenticates, the CSR's key becomes the device's identity.
#[utoipa::path(post, path = "/enroll", tag = "enrollment", request_body = EnrollRequest,
    responses((status = 201, body = EnrollResponse), (status = 401, body = ward_proto::ErrorBody), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn enroll(
    State(state): State<AppState>,
    Source(source): Source,
    ApiJson(request): ApiJson<EnrollRequest>,
) -> ApiResult<(StatusCode, axum::Json<EnrollResponse>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(enrollment::enroll(&state, request, source).await?),
    ))
}
