//! `/tokens`: API tokens for the CLI and scripts.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use ward_proto::{CreateTokenRequest, CreatedToken, TokenView};

use crate::api::extract::{ApiJson, ApiQuery};
use crate::caller::Caller;
use crate::error::ApiResult;
use ward_core::state::AppState;
use ward_service::tokens;

/// `GET /tokens` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TokenListQuery {
    /// Every account's tokens (needs the right to manage accounts).
    #[serde(default)]
    pub all: bool,
}

/// List your tokens (or everyone's with `all=true`).
#[utoipa::path(get, path = "/tokens", tag = "tokens", params(TokenListQuery), responses((status = 200, body = Vec<TokenView>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<TokenListQuery>,
) -> ApiResult<axum::Json<Vec<TokenView>>> {
    Ok(axum::Json(tokens::list(&state, &caller, query.all).await?))
}

/// Create a token for yourself; the secret is shown once.
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateTokenRequest>,
) -> ApiResult<(StatusCode, axum::Json<CreatedToken>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(tokens::create(&state, &caller, request).await?),
    ))
}

/// Revoke a token (your own, or any with the right to manage accounts). Takes effect at once.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ward_proto::ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    tokens::revoke(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
