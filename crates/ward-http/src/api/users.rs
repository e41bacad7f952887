//! `/users`: admin accounts.

use crate::api::extract::ApiJson;
use crate::caller::Caller;
use crate::error::ApiResult;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ward_core::state::AppState;
use ward_proto::{CreateUserRequest, CreatedUser, GeneratedPassword, UpdateUserRequest, UserView};
use ward_service::users;

/// List accounts.
#[utoipa::path(get, path = "/users", tag = "users", responses((status = 200, body = Vec<UserView>)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<UserView>>> {
    Ok(axum::Json(users::list(&state, &caller).await?))
}

/// Create an account. Without a password the server generates a one-time one.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUserRequest,
    responses((status = 201, body = CreatedUser), (status = 409, body = ward_proto::ErrorBody), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, axum::Json<CreatedUser>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(users::create(&state, &caller, request).await?),
    ))
}

/// Show an account (your own, or any with the right to view accounts).
#[utoipa::path(get, path = "/users/{username}", tag = "users", params(("username" = String, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> ApiResult<axum::Json<UserView>> {
    Ok(axum::Json(users::show(&state, &caller, username).await?))
}

/// Change an account's role, sites, display name or disabled flag.
#[utoipa::path(patch, path = "/users/{username}", tag = "users", params(("username" = String, Path)), request_body = UpdateUserRequest,
    responses((status = 200, body = UserView), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    ApiJson(request): ApiJson<UpdateUserRequest>,
) -> ApiResult<axum::Json<UserView>> {
    Ok(axum::Json(
        users::update(&state, &caller, username, request).await?,
    ))
}

/// Give an account a new one-time password (it must be changed at next login).
#[utoipa::path(post, path = "/users/{username}/reset-password", tag = "users", params(("username" = String, Path)),
    responses((status = 200, body = GeneratedPassword)))]
pub async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> ApiResult<axum::Json<GeneratedPassword>> {
    Ok(axum::Json(
        users::reset_password(&state, &caller, username).await?,
    ))
}
