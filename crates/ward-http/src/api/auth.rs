//! `/auth/*`: logins (session and CLI token), logout, whoami, password change, TOTP enrolment.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde_json::json;
use ward_domain::access::validate_password;
use ward_domain::audit::{AuditRecord, Outcome};
use ward_domain::site::validate_name;
use ward_proto::{
    ChangePasswordRequest, CreatedToken, ErrorCode, LoginRequest, LoginResponse, SESSION_COOKIE,
    TOKEN_PREFIX, TotpConfirmRequest, TotpEnrolment, WhoAmI,
};
use ward_store::{ApiTokenRecord, Audit, SessionRecord, TokenScope, UserRecord};

use crate::api::extract::ApiJson;
use ward_service::auth::{
    dummy_hash, hash_password, normalise_code, otpauth_url, random_secret, recovery_codes, sha256_hex,
    totp_check, totp_secret, verify_password,
};
use ward_service::caller::Via;
use ward_service::views::{token_view, user_view};

use crate::caller::{Caller, source_of};
use crate::error::{ApiError, ApiResult};
use ward_service::state::AppState;

/// The request's source address, without authenticating.
pub struct Source(pub Option<String>);

impl axum::extract::FromRequestParts<AppState> for Source {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Source(source_of(parts)))
    }
}

/// A user whose credentials checked out, with the records the login must write.
struct Authenticated {
    user: UserRecord,
    /// Set when a TOTP step or recovery code was consumed: must be stored.
    changed: bool,
    method: &'static str,
}

fn login_record(
    username: &str,
    source: &Option<String>,
    outcome: Outcome,
    details: serde_json::Value,
) -> AuditRecord {
    AuditRecord::new(
        format!("user:{username}"),
        "auth.login",
        format!("user:{username}"),
        outcome,
        details,
    )
    .with_source(source.clone())
}

/// Checks username, password and second factor, with throttling; every refusal is audited.
async fn authenticate(
    state: &AppState,
    request: &LoginRequest,
    source: &Option<String>,
) -> ApiResult<Authenticated> {
    let now = state.now_ms();
    let username = request.username.trim();
    let address = source.as_deref().and_then(|s| s.parse().ok());
    let refuse =
        |outcome: Outcome, reason: &str| login_record(username, source, outcome, json!({ "reason": reason }));

    if state.throttle.blocked(&state.config.auth, username, address, now) {
        state
            .store
            .append(state.audit(refuse(Outcome::Denied, "throttled")))
            .await?;
        return Err(ApiError::new(
            ErrorCode::LoginThrottled,
            "too many failed logins for this account or address; try again later",
        ));
    }
    let user = if username.len() <= 64 {
        state.store.user_by_name(username).await?
    } else {
        None
    };
    // Verify against a dummy hash for unknown users so timing does not reveal which names exist.
    let password_ok = match &user {
        Some(user) => verify_password(&request.password, &user.password_hash),
        None => {
            verify_password(&request.password, dummy_hash());
            false
        }
    };
    let reason = if user.is_none() {
        "unknown user"
    } else {
        "wrong password"
    };
    let Some(mut user) = user.filter(|_| password_ok) else {
        state.throttle.fail(username, address, now);
        state
            .store
            .append(state.audit(refuse(Outcome::Failure, reason)))
            .await?;
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "wrong username or password",
        ));
    };
    if user.disabled {
        state
            .store
            .append(state.audit(refuse(Outcome::Denied, "account disabled")))
            .await?;
        return Err(ApiError::new(
            ErrorCode::AccountDisabled,
            "this account is disabled",
        ));
    }
    if !user.totp_enabled {
        state.throttle.succeed(username);
        return Ok(Authenticated {
            user,
            changed: false,
            method: "password",
        });
    }
    let secret = user.totp_secret.clone().unwrap_or_default();
    if let Some(code) = request.totp_code.as_deref() {
        if let Some(step) = totp_check(&secret, code, now, user.totp_last_step) {
            user.totp_last_step = step;
            state.throttle.succeed(username);
            return Ok(Authenticated {
                user,
                changed: true,
                method: "password+totp",
            });
        }
    } else if let Some(code) = request.recovery_code.as_deref() {
        let hashed = sha256_hex(normalise_code(code).as_bytes());
        if let Some(position) = user.recovery_codes.iter().position(|c| *c == hashed) {
            user.recovery_codes.remove(position);
            state.throttle.succeed(username);
            return Ok(Authenticated {
                user,
                changed: true,
                method: "password+recovery_code",
            });
        }
    } else {
        state
            .store
            .append(state.audit(refuse(Outcome::Failure, "second factor required")))
            .await?;
        return Err(ApiError::new(
            ErrorCode::MfaRequired,
            "this account needs a TOTP code or a recovery code",
        ));
    }
    state.throttle.fail(username, address, now);
    state
        .store
        .append(state.audit(refuse(Outcome::Failure, "wrong or reused second factor")))
        .await?;
    Err(ApiError::new(
        ErrorCode::MfaInvalid,
        "the TOTP or recovery code is wrong or was already used",
    ))
}

/// The records a successful login writes: the login, and an alert for a break-glass account.
fn success_records(
    auth: &Authenticated,
    source: &Option<String>,
    extra: serde_json::Value,
) -> Vec<AuditRecord> {
    let mut details = json!({ "method": auth.method });
    if let (Some(details), Some(extra)) = (details.as_object_mut(), extra.as_object()) {
        details.extend(extra.clone());
    }
    let mut records = vec![login_record(
        &auth.user.username,
        source,
        Outcome::Success,
        details,
    )];
    if auth.user.break_glass {
        records.push(login_record(
            &auth.user.username,
            source,
            Outcome::Alert,
            json!({ "alert": "break-glass account logged in" }),
        ));
        records[1].action = "alert.break_glass_login".into();
    }
    records
}

/// Stores a consumed TOTP step or recovery code before the login is granted.
async fn store_factor_use(state: &AppState, auth: &Authenticated, source: &Option<String>) -> ApiResult<()> {
    if auth.changed {
        let record = login_record(
            &auth.user.username,
            source,
            Outcome::Success,
            json!({ "second_factor": auth.method }),
        );
        let mut record = record;
        record.action = "auth.second_factor".into();
        state.store.update_user(&auth.user, state.audit(record)).await?;
    }
    Ok(())
}

/// Log in to the console: sets an HttpOnly, SameSite=Strict, Secure session cookie.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ward_proto::ErrorBody), (status = 429, body = ward_proto::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    Source(source): Source,
    ApiJson(request): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let (cookie_value, user) = open_session(&state, &request, &source).await?;
    let body = LoginResponse {
        user: user_view(&user),
        idle_timeout_seconds: (state.config.auth.idle_timeout_ms / 1000) as u64,
    };
    Ok((
        [(header::SET_COOKIE, session_cookie(&cookie_value))],
        axum::Json(body),
    )
        .into_response())
}

/// Checks the credentials and creates a session (audited); returns the cookie value to set and
/// the user. Shared by the API's and the console's login.
pub(crate) async fn open_session(
    state: &AppState,
    request: &LoginRequest,
    source: &Option<String>,
) -> ApiResult<(String, UserRecord)> {
    let auth = authenticate(state, request, source).await?;
    store_factor_use(state, &auth, source).await?;
    let now = state.now_ms();
    let cookie_value = random_secret(state.entropy.as_ref(), 32);
    let session = SessionRecord {
        token_hash: sha256_hex(cookie_value.as_bytes()),
        user_id: auth.user.id.clone(),
        created_ms: now,
        last_seen_ms: now,
        expires_ms: now + state.config.auth.session_max_ms,
        source: source.clone(),
    };
    let records = success_records(&auth, source, json!({ "via": "session" }));
    state
        .store
        .create_session(
            &session,
            Audit {
                time_ms: now,
                records,
            },
        )
        .await?;
    Ok((cookie_value, auth.user))
}

/// The `Set-Cookie` value of a session: HttpOnly, SameSite=Strict, Secure, whole site.
pub(crate) fn session_cookie(value: &str) -> String {
    Cookie::build((SESSION_COOKIE, value.to_owned()))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path("/")
        .build()
        .to_string()
}

/// Log in from the CLI or a script: returns a new API token (shown once).
#[utoipa::path(post, path = "/auth/cli-login", tag = "auth", request_body = LoginRequest,
    responses((status = 201, body = CreatedToken), (status = 401, body = ward_proto::ErrorBody)))]
pub async fn cli_login(
    State(state): State<AppState>,
    Source(source): Source,
    ApiJson(request): ApiJson<LoginRequest>,
) -> ApiResult<(StatusCode, axum::Json<CreatedToken>)> {
    let days = request.expires_in_days.unwrap_or(30);
    if !(1..=365).contains(&days) {
        return Err(ApiError::invalid("expires_in_days: must be between 1 and 365"));
    }
    let name = validate_name("token_name", request.token_name.as_deref().unwrap_or("cli"))?;
    let auth = authenticate(&state, &request, &source).await?;
    store_factor_use(&state, &auth, &source).await?;
    let (record, secret) = new_token(&state, &auth.user, name, TokenScope::Write, days);
    let mut records = success_records(&auth, &source, json!({ "via": "cli", "token": record.id }));
    records.push(
        AuditRecord::new(
            format!("user:{}", auth.user.username),
            "token.create",
            format!("token:{}", record.id),
            Outcome::Success,
            json!({ "name": record.name, "scope": "write", "expires_in_days": days }),
        )
        .with_source(source),
    );
    state
        .store
        .create_token(
            &record,
            Audit {
                time_ms: state.now_ms(),
                records,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken {
            token: token_view(&record, &auth.user.username),
            secret,
        }),
    ))
}

/// Builds a new token record and its secret string.
pub fn new_token(
    state: &AppState,
    user: &UserRecord,
    name: String,
    scope: TokenScope,
    days: u32,
) -> (ApiTokenRecord, String) {
    let now = state.now_ms();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let secret = random_secret(state.entropy.as_ref(), 32);
    let record = ApiTokenRecord {
        id: id.clone(),
        user_id: user.id.clone(),
        name,
        secret_hash: sha256_hex(secret.as_bytes()),
        scope,
        created_ms: now,
        expires_ms: now + i64::from(days) * 86_400_000,
        revoked_ms: None,
        last_used_ms: None,
    };
    (record, format!("{TOKEN_PREFIX}{id}_{secret}"))
}

/// End this session, or revoke the token used for this request.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let record = caller.record(
        "auth.logout",
        &format!("user:{}", caller.user.username),
        Outcome::Success,
        json!({}),
    );
    match &caller.via {
        Via::Session { token_hash } => {
            state
                .store
                .delete_session(token_hash, state.audit(record))
                .await?
        }
        Via::Token { id, .. } => state.store.revoke_token(id, state.audit(record)).await?,
    }
    let expired = Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .max_age(time::Duration::ZERO)
        .build();
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, expired.to_string())],
    )
        .into_response())
}

/// Who am I?
#[utoipa::path(get, path = "/auth/whoami", tag = "auth", responses((status = 200, body = WhoAmI)))]
pub async fn whoami(caller: Caller) -> axum::Json<WhoAmI> {
    let (via, token_id, scope) = match &caller.via {
        Via::Session { .. } => ("session", None, "write"),
        Via::Token { id, scope } => ("token", Some(id.clone()), scope.as_str()),
    };
    axum::Json(WhoAmI {
        user: user_view(&caller.user),
        via: via.into(),
        token_id,
        scope: scope.into(),
    })
}

/// Change your own password.
#[utoipa::path(post, path = "/auth/password", tag = "auth", request_body = ChangePasswordRequest, responses((status = 204)))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    let target = format!("user:{}", caller.user.username);
    if !verify_password(&request.current_password, &caller.user.password_hash) {
        let record = caller.record(
            "auth.password_change",
            &target,
            Outcome::Failure,
            json!({ "reason": "wrong current password" }),
        );
        state.store.append(state.audit(record)).await?;
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "the current password is wrong",
        ));
    }
    validate_password(&request.new_password)?;
    if request.new_password == request.current_password {
        return Err(ApiError::invalid(
            "new_password: must differ from the current password",
        ));
    }
    let mut user = caller.user.clone();
    user.password_hash = hash_password(&request.new_password).map_err(ApiError::internal)?;
    user.must_change_password = false;
    let record = caller.record("auth.password_change", &target, Outcome::Success, json!({}));
    state.store.update_user(&user, state.audit(record)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start TOTP enrolment: returns the secret and recovery codes (once). Logins need a code after
/// `POST /auth/totp/confirm`.
#[utoipa::path(post, path = "/auth/totp/enrol", tag = "auth", responses((status = 200, body = TotpEnrolment), (status = 409, body = ward_proto::ErrorBody)))]
pub async fn totp_enrol(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<TotpEnrolment>> {
    if caller.user.totp_enabled {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "TOTP is already enabled for this account",
        ));
    }
    let secret = totp_secret(state.entropy.as_ref());
    let (plain, hashed) = recovery_codes(state.entropy.as_ref());
    let mut user = caller.user.clone();
    user.totp_secret = Some(secret.clone());
    user.recovery_codes = hashed;
    user.totp_last_step = 0;
    let record = caller.record(
        "auth.totp_enrol",
        &format!("user:{}", user.username),
        Outcome::Success,
        json!({}),
    );
    state.store.update_user(&user, state.audit(record)).await?;
    Ok(axum::Json(TotpEnrolment {
        secret: ward_service::auth::base32(&secret),
        otpauth_url: otpauth_url(&user.username, &secret),
        recovery_codes: plain,
    }))
}

/// Confirm TOTP enrolment with a current code; from then on logins need a code.
#[utoipa::path(post, path = "/auth/totp/confirm", tag = "auth", request_body = TotpConfirmRequest, responses((status = 204)))]
pub async fn totp_confirm(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<TotpConfirmRequest>,
) -> ApiResult<StatusCode> {
    let target = format!("user:{}", caller.user.username);
    let Some(secret) = caller
        .user
        .totp_secret
        .clone()
        .filter(|_| !caller.user.totp_enabled)
    else {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "start enrolment first (POST /api/v1/auth/totp/enrol)",
        ));
    };
    let Some(step) = totp_check(&secret, &request.code, state.now_ms(), caller.user.totp_last_step) else {
        let record = caller.record(
            "auth.totp_confirm",
            &target,
            Outcome::Failure,
            json!({ "reason": "wrong code" }),
        );
        state.store.append(state.audit(record)).await?;
        return Err(ApiError::new(
            ErrorCode::MfaInvalid,
            "the code is wrong or was already used",
        ));
    };
    let mut user = caller.user.clone();
    user.totp_enabled = true;
    user.totp_last_step = step;
    let record = caller.record("auth.totp_confirm", &target, Outcome::Success, json!({}));
    state.store.update_user(&user, state.audit(record)).await?;
    Ok(StatusCode::NO_CONTENT)
}
