//! API tokens for the CLI and scripts.

use crate::sessions::new_token;
use serde_json::json;
use std::collections::HashMap;
use ward_core::caller::Caller;
use ward_core::error::{ServiceError, ServiceResult};
use ward_core::state::AppState;
use ward_core::views::token_view;
use ward_domain::access::Permission;
use ward_domain::audit::Outcome;
use ward_domain::site::validate_name;
use ward_proto::{CreateTokenRequest, CreatedToken, TokenView};
use ward_store::TokenScope;

/// The caller's tokens, or everyone's when `all` (which needs the right to manage accounts).
pub async fn list(state: &AppState, caller: &Caller, all: bool) -> ServiceResult<Vec<TokenView>> {
    let tokens = if all {
        state
            .authorize(caller, Permission::ManageUsers, "token.list_all", "tokens")
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
    Ok(tokens.iter().map(|t| token_view(t, &owner(&t.user_id))).collect())
}

/// Create a token for yourself; the secret is shown once.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    request: CreateTokenRequest,
) -> ServiceResult<CreatedToken> {
    state
        .authorize(caller, Permission::ManageOwnCredentials, "token.create", "tokens")
        .await?;
    let name = validate_name("name", &request.name)?;
    let scope = match request.scope.as_deref() {
        None => TokenScope::Read,
        Some(text) => {
            TokenScope::parse(text).ok_or_else(|| ServiceError::invalid("scope: must be read or write"))?
        }
    };
    let days = request.expires_in_days.unwrap_or(90);
    if !(1..=365).contains(&days) {
        return Err(ServiceError::invalid(
            "expires_in_days: must be between 1 and 365",
        ));
    }
    let (record, secret) = new_token(state, &caller.user, name, scope, days);
    let audit = caller.record(
        "token.create",
        &format!("token:{}", record.id),
        Outcome::Success,
        json!({ "name": record.name, "scope": scope.as_str(), "expires_in_days": days }),
    );
    state.store.create_token(&record, state.audit(audit)).await?;
    Ok(CreatedToken {
        token: token_view(&record, &caller.user.username),
        secret,
    })
}

/// Revoke a token (your own, or any with the right to manage accounts). Takes effect at once.
pub async fn revoke(state: &AppState, caller: &Caller, id: String) -> ServiceResult<()> {
    let target = format!("token:{id}");
    let token = state
        .store
        .token(&id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("token {id:?}")))?;
    if token.user_id != caller.user.id {
        state
            .authorize(caller, Permission::ManageUsers, "token.revoke", &target)
            .await?;
    }
    let record = caller.record(
        "token.revoke",
        &target,
        Outcome::Success,
        json!({ "name": token.name }),
    );
    state.store.revoke_token(&id, state.audit(record)).await?;
    Ok(())
}
