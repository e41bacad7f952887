//! Admin accounts: roles, site scopes, password resets, disabling.

use serde_json::json;
use ward_core::auth::{generate_password, hash_password};
use ward_core::caller::Caller;
use ward_core::error::{ServiceError, ServiceResult};
use ward_core::state::AppState;
use ward_core::views::user_view;
use ward_domain::access::{Permission, Role, SiteScope, validate_password, validate_username};
use ward_domain::audit::Outcome;
use ward_domain::site::{SiteSlug, validate_name};
use ward_proto::{CreateUserRequest, CreatedUser, ErrorCode, GeneratedPassword, UpdateUserRequest, UserView};
use ward_store::UserRecord;

/// Parses site slugs and checks each exists.
async fn parse_sites(state: &AppState, sites: &[String]) -> ServiceResult<SiteScope> {
    let mut slugs = Vec::with_capacity(sites.len());
    for site in sites {
        let slug = SiteSlug::parse(site)?;
        if state.store.site(&slug).await?.is_none() {
            return Err(ServiceError::invalid(format!(
                "sites: site {slug} does not exist"
            )));
        }
        slugs.push(slug);
    }
    Ok(SiteScope::new(slugs))
}

/// Refuses (and audits) granting or touching a scope wider than the caller's own.
async fn check_scope(
    state: &AppState,
    caller: &Caller,
    scope: &SiteScope,
    action: &str,
    target: &str,
) -> ServiceResult<()> {
    if caller.user.sites.covers_scope(scope) {
        return Ok(());
    }
    Err(state
        .deny(
            caller,
            ErrorCode::ForbiddenSite,
            action,
            target,
            "that account's sites are outside this account's sites",
        )
        .await)
}

async fn load(state: &AppState, username: &str) -> ServiceResult<UserRecord> {
    state
        .store
        .user_by_name(username)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("user {username:?}")))
}

/// List accounts.
pub async fn list(state: &AppState, caller: &Caller) -> ServiceResult<Vec<UserView>> {
    state
        .authorize(caller, Permission::ViewUsers, "user.list", "users")
        .await?;
    let users = state.store.list_users().await?;
    Ok(users.iter().map(user_view).collect())
}

/// Create an account. Without a password the server generates a one-time one.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    request: CreateUserRequest,
) -> ServiceResult<CreatedUser> {
    let username = validate_username(&request.username)?;
    let target = format!("user:{username}");
    state
        .authorize(caller, Permission::ManageUsers, "user.create", &target)
        .await?;
    let role: Role = request.role.parse()?;
    let display_name = validate_name(
        "display_name",
        request.display_name.as_deref().unwrap_or(&username),
    )?;
    let sites = parse_sites(state, &request.sites).await?;
    check_scope(state, caller, &sites, "user.create", &target).await?;
    let (password, generated) = match request.password {
        Some(password) => {
            validate_password(&password)?;
            (password, None)
        }
        None => {
            let password = generate_password(state.entropy.as_ref());
            (password.clone(), Some(password))
        }
    };
    let user = UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        username,
        display_name,
        role,
        sites,
        password_hash: hash_password(&password).map_err(ServiceError::internal)?,
        must_change_password: generated.is_some(),
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: 0,
        recovery_codes: Vec::new(),
        break_glass: request.break_glass,
        disabled: false,
        created_ms: state.now_ms(),
    };
    let view = user_view(&user);
    let record = caller.record(
        "user.create",
        &target,
        Outcome::Success,
        json!({ "role": view.role, "sites": view.sites, "break_glass": user.break_glass }),
    );
    state.store.create_user(&user, state.audit(record)).await?;
    Ok(CreatedUser {
        user: view,
        initial_password: generated,
    })
}

/// Show an account (your own, or any with the right to view accounts).
pub async fn show(state: &AppState, caller: &Caller, username: String) -> ServiceResult<UserView> {
    if username != caller.user.username {
        state
            .authorize(
                caller,
                Permission::ViewUsers,
                "user.show",
                &format!("user:{username}"),
            )
            .await?;
    }
    Ok(user_view(&load(state, &username).await?))
}

/// Change an account's role, sites, display name or disabled flag.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    username: String,
    request: UpdateUserRequest,
) -> ServiceResult<UserView> {
    let target = format!("user:{username}");
    state
        .authorize(caller, Permission::ManageUsers, "user.update", &target)
        .await?;
    let mut user = load(state, &username).await?;
    check_scope(state, caller, &user.sites, "user.update", &target).await?;
    let mut changed = serde_json::Map::new();
    if let Some(name) = &request.display_name {
        user.display_name = validate_name("display_name", name)?;
        changed.insert("display_name".into(), json!(user.display_name));
    }
    if let Some(role) = &request.role {
        user.role = role.parse()?;
        changed.insert("role".into(), json!(role));
    }
    if let Some(sites) = &request.sites {
        user.sites = parse_sites(state, sites).await?;
        check_scope(state, caller, &user.sites, "user.update", &target).await?;
        changed.insert("sites".into(), json!(sites));
    }
    if let Some(disabled) = request.disabled {
        if disabled && user.id == caller.user.id {
            return Err(ServiceError::invalid(
                "disabled: you cannot disable your own account",
            ));
        }
        user.disabled = disabled;
        changed.insert("disabled".into(), json!(disabled));
    }
    if changed.is_empty() {
        return Err(ServiceError::invalid(
            "give at least one of display_name, role, sites, disabled",
        ));
    }
    let record = caller.record(
        "user.update",
        &target,
        Outcome::Success,
        serde_json::Value::Object(changed),
    );
    state.store.update_user(&user, state.audit(record)).await?;
    Ok(user_view(&user))
}

/// Give an account a new one-time password (it must be changed at next login).
pub async fn reset_password(
    state: &AppState,
    caller: &Caller,
    username: String,
) -> ServiceResult<GeneratedPassword> {
    let target = format!("user:{username}");
    state
        .authorize(caller, Permission::ManageUsers, "user.reset_password", &target)
        .await?;
    let mut user = load(state, &username).await?;
    check_scope(state, caller, &user.sites, "user.reset_password", &target).await?;
    let password = generate_password(state.entropy.as_ref());
    user.password_hash = hash_password(&password).map_err(ServiceError::internal)?;
    user.must_change_password = true;
    let record = caller.record("user.reset_password", &target, Outcome::Success, json!({}));
    state.store.update_user(&user, state.audit(record)).await?;
    Ok(GeneratedPassword { password })
}
