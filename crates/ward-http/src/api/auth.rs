//! `/auth/*`: logins (session and CLI token), logout, whoami, password change, TOTP enrolment.

use crate::api::extract::ApiJson;
use crate::caller::{Caller, source_of};
use crate::error::ApiResult;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, SameSite};
use ward_core::state::AppState;
use ward_core::views::user_view;
use ward_proto::{
    ChangePasswordRequest, CreatedToken, LoginRequest, LoginResponse, SESSION_COOKIE, TotpConfirmRequest,
    TotpEnrolment, WhoAmI,
};
use ward_service::sessions;

/// The request's source address, without authenticating.
pub struct Source(pub Option<String>);

impl axum::extract::FromRequestParts<AppState> for Source {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Source(source_of(parts)))
    }
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

/// The `Set-Cookie` value that ends a session in the browser.
pub(crate) fn expired_cookie() -> String {
    Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .max_age(time::Duration::ZERO)
        .build()
        .to_string()
}

/// Log in to the console: sets an HttpOnly, SameSite=Strict, Secure session cookie.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ward_proto::ErrorBody), (status = 429, body = ward_proto::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    Source(source): Source,
    ApiJson(request): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let (cookie_value, user) = sessions::open_session(&state, &request, &source).await?;
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

/// Log in from the CLI or a script: returns a new API token (shown once).
#[utoipa::path(post, path = "/auth/cli-login", tag = "auth", request_body = LoginRequest,
    responses((status = 201, body = CreatedToken), (status = 401, body = ward_proto::ErrorBody)))]
pub async fn cli_login(
    State(state): State<AppState>,
    Source(source): Source,
    ApiJson(request): ApiJson<LoginRequest>,
) -> ApiResult<(StatusCode, axum::Json<CreatedToken>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(sessions::cli_login(&state, &request, &source).await?),
    ))
}

/// End this session, or revoke the token used for this request.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    sessions::logout(&state, &caller).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, expired_cookie())]).into_response())
}

/// Who am I?
#[utoipa::path(get, path = "/auth/whoami", tag = "auth", responses((status = 200, body = WhoAmI)))]
pub async fn whoami(caller: Caller) -> axum::Json<WhoAmI> {
    axum::Json(sessions::whoami(&caller))
}

/// Change your own password.
#[utoipa::path(post, path = "/auth/password", tag = "auth", request_body = ChangePasswordRequest, responses((status = 204)))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    sessions::change_password(&state, &caller, request).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start TOTP enrolment: returns the secret and recovery codes (once). Logins need a code after
/// `POST /auth/totp/confirm`.
#[utoipa::path(post, path = "/auth/totp/enrol", tag = "auth", responses((status = 200, body = TotpEnrolment), (status = 409, body = ward_proto::ErrorBody)))]
pub async fn totp_enrol(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<TotpEnrolment>> {
    Ok(axum::Json(sessions::totp_enrol(&state, &caller).await?))
}

/// Confirm TOTP enrolment with a current code; from then on logins need a code.
#[utoipa::path(post, path = "/auth/totp/confirm", tag = "auth", request_body = TotpConfirmRequest, responses((status = 204)))]
pub async fn totp_confirm(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<TotpConfirmRequest>,
) -> ApiResult<StatusCode> {
    sessions::totp_confirm(&state, &caller, request).await?;
    Ok(StatusCode::NO_CONTENT)
}
