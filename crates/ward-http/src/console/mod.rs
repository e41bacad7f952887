//! The web console: server-rendered HTML (askama templates compiled into the binary, escaping
//! every value by default), plain forms, no script at all, CSS and nothing else from `/static`.
//!
//! Every page calls the same service operations as the REST API, with the session's caller, so
//! the console can never do (or see) more than the API allows: authorization, site scopes and
//! audit records are the service's. What the console adds:
//! - **sessions**: the API's session cookie (HttpOnly, SameSite=Strict, Secure), idle logoff and
//!   maximum session length; a page without a valid session redirects to `/login`;
//! - **CSRF tokens** on every form that changes something: an HMAC of the session cookie under a key
//!   derived from the server's audit key, checked in constant time (beside SameSite=Strict and the
//!   Origin check every cookie-authenticated request already gets);
//! - **headers**: a Content-Security-Policy without any script source, `frame-ancestors 'none'`,
//!   `nosniff`, `same-origin` referrers (with `no-referrer`, browsers send `Origin: null` on form
//!   posts, which the Origin check refuses) and `no-store` on every console response.

mod pages;
mod session;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use ward_core::state::AppState;

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
