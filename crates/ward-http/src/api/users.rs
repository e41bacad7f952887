//! `/users`: admin accounts.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;
use ward_domain::access::{Permission, Role, SiteScope, validate_password, validate_username};
use ward_domain::audit::Outcome;
use ward_domain::site::{SiteSlug, validate_name};
use ward_proto::{CreateUserRequest, CreatedUser, ErrorCode, GeneratedPassword, UpdateUserRequest, UserView};
use ward_store::UserRecord;

use crate::api::extract::ApiJson;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use ward_service::auth::{generate_password, hash_password};
use ward_service::state::AppState;
use ward_service::views::user_view;

/// Parses site slugs and checks each exists.
async fn parse_sites(state: &AppState, sites: &[String]) -> ApiResult<SiteScope> {
    let mut slugs = Vec::with_capacity(sites.len());
    for site in sites {
        let slug = SiteSlug::parse(site)?;
        if state.store.site(&slug).await?.is_none() {
            return Err(ApiError::invalid(format!("sites: site {slug} does not exist")));
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
) -> ApiResult<()> {
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
        .await
        .into())
}

async fn load(state: &AppState, username: &str) -> ApiResult<UserRecord> {
    state
        .store
        .user_by_name(username)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {username:?}")))
}

/// List accounts.
#[utoipa::path(get, path = "/users", tag = "users", responses((status = 200, body = Vec<UserView>)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<Vec<UserView>>> {
    state
        .authorize(&caller, Permission::ViewUsers, "user.list", "users")
        .await?;
    let users = state.store.list_users().await?;
    Ok(axum::Json(users.iter().map(user_view).collect()))
}

/// Create an account. Without a password the server generates a one-time one.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUserRequest,
    responses((status = 201, body = CreatedUser), (status = 409, body = ward_proto::ErrorBody), (status = 422, body = ward_proto::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, axum::Json<CreatedUser>)> {
    let username = validate_username(&request.username)?;
    let target = format!("user:{username}");
    state
        .authorize(&caller, Permission::ManageUsers, "user.create", &target)
        .await?;
    let role: Role = request.role.parse()?;
    let display_name = validate_name(
        "display_name",
        request.display_name.as_deref().unwrap_or(&username),
    )?;
    let sites = parse_sites(&state, &request.sites).await?;
    check_scope(&state, &caller, &sites, "user.create", &target).await?;
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
        password_hash: hash_password(&password).map_err(ApiError::internal)?,
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
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedUser {
            user: view,
            initial_password: generated,
        }),
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
    if username != caller.user.username {
        state
            .authorize(
                &caller,
                Permission::ViewUsers,
                "user.show",
                &format!("user:{username}"),
            )
            .await?;
    }
    Ok(axum::Json(user_view(&load(&state, &username).await?)))
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
    let target = format!("user:{username}");
    state
        .authorize(&caller, Permission::ManageUsers, "user.update", &target)
        .await?;
    let mut user = load(&state, &username).await?;
    check_scope(&state, &caller, &user.sites, "user.update", &target).await?;
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
        user.sites = parse_sites(&state, sites).await?;
        check_scope(&state, &caller, &user.sites, "user.update", &target).await?;
        changed.insert("sites".into(), json!(sites));
    }
    if let Some(disabled) = request.disabled {
        if disabled && user.id == caller.user.id {
            return Err(ApiError::invalid("disabled: you cannot disable your own account"));
        }
        user.disabled = disabled;
        changed.insert("disabled".into(), json!(disabled));
    }
    if changed.is_empty() {
        return Err(ApiError::invalid(
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
    Ok(axum::Json(user_view(&user)))
}

/// Give an account a new one-time password (it must be changed at next login).
#[utoipa::path(post, path = "/users/{username}/reset-password", tag = "users", params(("username" = String, Path)),
    responses((status = 200, body = GeneratedPassword)))]
pub async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> ApiResult<axum::Json<GeneratedPassword>> {
    let target = format!("user:{username}");
    state
        .authorize(&caller, Permission::ManageUsers, "user.reset_password", &target)
        .await?;
    let mut user = load(&state, &username).await?;
    check_scope(&state, &caller, &user.sites, "user.reset_password", &target).await?;
    let password = generate_password(state.entropy.as_ref());
    user.password_hash = hash_password(&password).map_err(ApiError::internal)?;
    user.must_change_password = true;
    let record = caller.record("user.reset_password", &target, Outcome::Success, json!({}));
    state.store.update_user(&user, state.audit(record)).await?;
    Ok(axum::Json(GeneratedPassword { password }))
}
