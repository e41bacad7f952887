//! The web console: server-rendered HTML (askama templates compiled into the binary, escaping
//! every value by default), plain forms, no script at all, CSS and nothing else from `/static`.
//!
//! Every page calls the same handler functions as the REST API, with the same `Caller`, so the
//! console can never do (or see) more than the API allows: authorization, site scopes and audit
//! records are the API's. What the console adds:
//! - **sessions**: the API's session cookie (HttpOnly, SameSite=Strict, Secure), idle logoff and
//!   maximum session length; a page without a valid session redirects to `/login`;
//! - **CSRF tokens** on every form that changes something: an HMAC of the session cookie under a key
//!   derived from the server's audit key, checked in constant time (beside SameSite=Strict and the
//!   Origin check every cookie-authenticated request already gets);
//! - **headers**: a Content-Security-Policy without any script source, `frame-ancestors 'none'`,
//!   `nosniff`, `same-origin` referrers (with `no-referrer`, browsers send `Origin: null` on form posts, which the Origin check refuses) and `no-store` on every console response.

mod pages;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use sha2::{Digest, Sha256};
use ward_domain::access::{Permission, Role};
use ward_proto::{ErrorCode, SESSION_COOKIE};

use crate::caller::Caller;
use crate::error::ApiError;
use ward_service::state::AppState;

/// The console's Content-Security-Policy: no script of any kind, styles and images only from the
/// server itself (inline SVG charts are markup, not script), no framing, forms only to itself.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("../../assets/console.css");

/// The console's routes (merged at the root beside `/api/v1`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/password", get(pages::password_form).post(pages::password))
        .route("/devices", get(pages::devices))
        .route("/devices/{id}", get(pages::device))
        .route("/devices/{id}/confirm", get(pages::confirm_action))
        .route("/devices/{id}/commands", post(pages::device_command))
        .route("/incidents", get(pages::incidents).post(pages::declare))
        .route("/incidents/{id}", get(pages::incident))
        .route("/incidents/{id}/{step}", post(pages::incident_step))
        .route("/incidents/{id}/report", get(pages::incident_report))
        .route("/policies", get(pages::policies))
        .route("/policies/{name}", get(pages::policy))
        .route("/audit", get(pages::audit))
        .route("/admin", get(pages::admin))
        .route("/admin/enroll-tokens", post(pages::create_enroll_token))
        .route("/admin/tokens/{id}/revoke", post(pages::revoke_token))
        .route("/admin/sites", post(pages::create_site))
        .route("/static/console.css", get(css))
        .layer(middleware::from_fn(headers))
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

/// Security headers on every console response.
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

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

/// An error as a page: the status the API would give and its message (escaped).
pub fn error_page(err: ApiError) -> Response {
    let status = StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let page = pages::ErrorPage {
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
