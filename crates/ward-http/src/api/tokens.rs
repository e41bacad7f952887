//! `/tokens`: API tokens for the CLI and scripts.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use ward_domain::access::Permission;
use ward_domain::audit::Outcome;
use ward_domain::site::validate_name;
use ward_proto::{CreateTokenRequest, CreatedToken, TokenView};
use ward_store::TokenScope;

use crate::api::auth::new_token;
use crate::api::extract::{ApiJson, ApiQuery};
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use ward_service::state::AppState;
use ward_service::views::token_view;

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
    let tokens = if query.all {
        state
            .authorize(&caller, Permission::ManageUsers, "token.list_all", "tokens")
            .await?;
        state.store.list_tokens(None).await?
    } else {
        state.store.list_tokens(Some(&caller.user.id)).await?
    };
    let names: HashMap<String, String> = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| (u.id, u.username))
        .collect();
    let owner = |id: &str| names.get(id).cloned().unwrap_or_default();
    Ok(axum::Json(
        tokens.iter().map(|t| token_view(t, &owner(&t.user_id))).collect(),
    ))
}

/// Create a token for yourself; the secret is shown once.
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateTokenRequest>,
) -> ApiResult<(StatusCode, axum::Json<CreatedToken>)> {
    state
        .authorize(
            &caller,
            Permission::ManageOwnCredentials,
            "token.create",
            "tokens",
        )
        .await?;
    let name = validate_name("name", &request.name)?;
    let scope = match request.scope.as_deref() {
        None => TokenScope::Read,
        Some(text) => {
            TokenScope::parse(text).ok_or_else(|| ApiError::invalid("scope: must be read or write"))?
        }
    };
    let days = request.expires_in_days.unwrap_or(90);
    if !(1..=365).contains(&days) {
        return Err(ApiError::invalid("expires_in_days: must be between 1 and 365"));
    }
    let (record, secret) = new_token(&state, &caller.user, name, scope, days);
    let audit = caller.record(
        "token.create",
        &format!("token:{}", record.id),
        Outcome::Success,
        json!({ "name": record.name, "scope": scope.as_str(), "expires_in_days": days }),
    );
    state.store.create_token(&record, state.audit(audit)).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken {
            token: token_view(&record, &caller.user.username),
            secret,
        }),
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
    let target = format!("token:{id}");
    let token = state
        .store
        .token(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("token {id:?}")))?;
    if token.user_id != caller.user.id {
        state
            .authorize(&caller, Permission::ManageUsers, "token.revoke", &target)
            .await?;
    }
    let record = caller.record(
        "token.revoke",
        &target,
        Outcome::Success,
        json!({ "name": token.name }),
    );
    state.store.revoke_token(&id, state.audit(record)).await?;
    Ok(StatusCode::NO_CONTENT)
}
