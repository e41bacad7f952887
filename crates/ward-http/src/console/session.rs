//! The console's session: the API's session cookie checked on every page (a page without a valid
//! session goes to `/login`), CSRF tokens on every form, and rendering pages and error pages.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use sha2::{Digest, Sha256};
use ward_core::state::AppState;
use ward_domain::access::{Permission, Role};
use ward_proto::{ErrorCode, SESSION_COOKIE};

use crate::caller::Caller;
use crate::error::ApiError;

/// A logged-in console user: the API's caller plus the CSRF token of this session.
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
}

/// The CSRF token for a session cookie value.
fn csrf_token(state: &AppState, cookie: &str) -> String {
    let mut key = Sha256::new();
    key.update(b"ward-console-csrf\0");
    key.update(state.keys.audit_key.to_bytes());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key.finalize());
    hex::encode(&ring::hmac::sign(&key, cookie.as_bytes()).as_ref()[..20])
}

impl Session {
    /// Whether `token` (from a form) is this session's CSRF token, compared in constant time.
    pub fn csrf_ok(&self, token: &str) -> bool {
        let (a, b) = (self.csrf.as_bytes(), token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    pub fn role(&self) -> Role {
        self.caller.user.role
    }

    pub fn may(&self, permission: Permission) -> bool {
        self.caller.user.role.allows(permission)
    }
}

/// Why a page could not be served to this request.
pub enum Refused {
    /// Not logged in (or the session ended): to the login page.
    Login,
    /// The one-time password must be changed first.
    ChangePassword,
    Error(ApiError),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Login => Redirect::to("/login").into_response(),
            Refused::ChangePassword => Redirect::to("/password").into_response(),
            Refused::Error(err) => error_page(err),
        }
    }
}

impl From<ApiError> for Refused {
    fn from(err: ApiError) -> Self {
        Refused::Error(err)
    }
}

impl From<ward_service::ServiceError> for Refused {
    fn from(err: ward_service::ServiceError) -> Self {
        Refused::Error(err.into())
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
            return Err(Refused::Login);
        };
        // Console pages authenticate by the cookie only (a bearer header is the API's business).
        parts.headers.remove(header::AUTHORIZATION);
        match Caller::from_request_parts(parts, state).await {
            Ok(caller) => Ok(Session {
                caller,
                csrf: csrf_token(state, &cookie),
            }),
            Err(err) => match err.code {
                ErrorCode::Unauthenticated | ErrorCode::SessionExpired => Err(Refused::Login),
                ErrorCode::Forbidden if err.message.contains("one-time password") => {
                    Err(Refused::ChangePassword)
                }
                _ => Err(Refused::Error(err)),
            },
        }
    }
}

/// The page every error is shown on.
#[derive(askama::Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    code: String,
    message: String,
}

/// An error as a page: the status the API would give and its message (escaped).
pub fn error_page(err: ApiError) -> Response {
    let status = StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let page = ErrorPage {
        status: status.as_u16(),
        code: err.code.as_str().to_owned(),
        message: err.message,
    };
    (status, render(&page)).into_response()
}

/// Renders a template; a template failure is an internal error page (never a panic).
pub fn render<T: askama::Template>(template: &T) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "rendering a console page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
