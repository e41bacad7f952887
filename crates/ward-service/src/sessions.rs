//! Logins (console session or CLI token), logout, whoami, password change and TOTP enrolment.

use serde_json::json;
use ward_core::auth::{
    dummy_hash, hash_password, normalise_code, otpauth_url, random_secret, recovery_codes, sha256_hex,
    totp_check, totp_secret, verify_password,
};
use ward_core::caller::Caller;
use ward_core::caller::Via;
use ward_core::error::{ServiceError, ServiceResult};
use ward_core::state::AppState;
use ward_core::views::{token_view, user_view};
use ward_domain::access::validate_password;
use ward_domain::audit::{AuditRecord, Outcome};
use ward_domain::site::validate_name;
use ward_proto::{
    ChangePasswordRequest, CreatedToken, ErrorCode, LoginRequest, TOKEN_PREFIX, TotpConfirmRequest,
    TotpEnrolment, WhoAmI,
};
use ward_store::{ApiTokenRecord, Audit, SessionRecord, TokenScope, UserRecord};

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
) -> ServiceResult<Authenticated> {
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
        return Err(ServiceError::new(
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
        return Err(ServiceError::new(
            ErrorCode::InvalidCredentials,
            "wrong username or password",
        ));
    };
    if user.disabled {
        state
            .store
            .append(state.audit(refuse(Outcome::Denied, "account disabled")))
            .await?;
        return Err(ServiceError::new(
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
        return Err(ServiceError::new(
            ErrorCode::MfaRequired,
            "this account needs a TOTP code or a recovery code",
        ));
    }
    state.throttle.fail(username, address, now);
    state
        .store
        .append(state.audit(refuse(Outcome::Failure, "wrong or reused second factor")))
        .await?;
    Err(ServiceError::new(
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
async fn store_factor_use(
    state: &AppState,
    auth: &Authenticated,
    source: &Option<String>,
) -> ServiceResult<()> {
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

/// Checks the credentials and creates a session (audited); returns the cookie value to set and
/// the user. Shared by the API's and the console's login.
pub async fn open_session(
    state: &AppState,
    request: &LoginRequest,
    source: &Option<String>,
) -> ServiceResult<(String, UserRecord)> {
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

/// Checks the credentials and issues a new API token for the CLI or a script (shown once).
pub async fn cli_login(
    state: &AppState,
    request: &LoginRequest,
    source: &Option<String>,
) -> ServiceResult<CreatedToken> {
    let days = request.expires_in_days.unwrap_or(30);
    if !(1..=365).contains(&days) {
        return Err(ServiceError::invalid(
            "expires_in_days: must be between 1 and 365",
        ));
    }
    let name = validate_name("token_name", request.token_name.as_deref().unwrap_or("cli"))?;
    let auth = authenticate(state, request, source).await?;
    store_factor_use(state, &auth, source).await?;
    let (record, secret) = new_token(state, &auth.user, name, TokenScope::Write, days);
    let mut records = success_records(&auth, source, json!({ "via": "cli", "token": record.id }));
    records.push(
        AuditRecord::new(
            format!("user:{}", auth.user.username),
            "token.create",
            format!("token:{}", record.id),
            Outcome::Success,
            json!({ "name": record.name, "scope": "write", "expires_in_days": days }),
        )
        .with_source(source.clone()),
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
    Ok(CreatedToken {
        token: token_view(&record, &auth.user.username),
        secret,
    })
}

/// Ends the caller's session, or revokes the token used for this request.
pub async fn logout(state: &AppState, caller: &Caller) -> ServiceResult<()> {
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
    Ok(())
}

/// Who the caller is, and how they authenticated.
pub fn whoami(caller: &Caller) -> WhoAmI {
    let (via, token_id, scope) = match &caller.via {
        Via::Session { .. } => ("session", None, "write"),
        Via::Token { id, scope } => ("token", Some(id.clone()), scope.as_str()),
    };
    WhoAmI {
        user: user_view(&caller.user),
        via: via.into(),
        token_id,
        scope: scope.into(),
    }
}

/// Change your own password.
pub async fn change_password(
    state: &AppState,
    caller: &Caller,
    request: ChangePasswordRequest,
) -> ServiceResult<()> {
    let target = format!("user:{}", caller.user.username);
    if !verify_password(&request.current_password, &caller.user.password_hash) {
        let record = caller.record(
            "auth.password_change",
            &target,
            Outcome::Failure,
            json!({ "reason": "wrong current password" }),
        );
        state.store.append(state.audit(record)).await?;
        return Err(ServiceError::new(
            ErrorCode::InvalidCredentials,
            "the current password is wrong",
        ));
    }
    validate_password(&request.new_password)?;
    if request.new_password == request.current_password {
        return Err(ServiceError::invalid(
            "new_password: must differ from the current password",
        ));
    }
    let mut user = caller.user.clone();
    user.password_hash = hash_password(&request.new_password).map_err(ServiceError::internal)?;
    user.must_change_password = false;
    let record = caller.record("auth.password_change", &target, Outcome::Success, json!({}));
    state.store.update_user(&user, state.audit(record)).await?;
    Ok(())
}

/// Start TOTP enrolment: returns the secret and recovery codes (once). Logins need a code after
/// `POST /auth/totp/confirm`.
pub async fn totp_enrol(state: &AppState, caller: &Caller) -> ServiceResult<TotpEnrolment> {
    if caller.user.totp_enabled {
        return Err(ServiceError::new(
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
    Ok(TotpEnrolment {
        secret: ward_core::auth::base32(&secret),
        otpauth_url: otpauth_url(&user.username, &secret),
        recovery_codes: plain,
    })
}

/// Confirm TOTP enrolment with a current code; from then on logins need a code.
pub async fn totp_confirm(
    state: &AppState,
    caller: &Caller,
    request: TotpConfirmRequest,
) -> ServiceResult<()> {
    let target = format!("user:{}", caller.user.username);
    let Some(secret) = caller
        .user
        .totp_secret
        .clone()
        .filter(|_| !caller.user.totp_enabled)
    else {
        return Err(ServiceError::new(
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
        return Err(ServiceError::new(
            ErrorCode::MfaInvalid,
            "the code is wrong or was already used",
        ));
    };
    let mut user = caller.user.clone();
    user.totp_enabled = true;
    user.totp_last_step = step;
    let record = caller.record("auth.totp_confirm", &target, Outcome::Success, json!({}));
    state.store.update_user(&user, state.audit(record)).await?;
    Ok(())
}
