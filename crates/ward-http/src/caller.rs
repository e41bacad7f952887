//! Who is calling, read from the request: the bearer token or the session cookie, handed to the
//! service's [`ward_core::caller::authenticate`]. Handlers take a [`Caller`] argument.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum_extra::extract::CookieJar;
use ward_core::caller::{Credential, Request, authenticate};
use ward_core::state::AppState;
use ward_proto::{ErrorCode, SESSION_COOKIE};

use crate::error::ApiError;
use crate::serve::ClientAddr;

/// An authenticated caller (the service's, extracted from a request).
#[derive(Debug, Clone)]
pub struct Caller(pub ward_service::Caller);

impl std::ops::Deref for Caller {
    type Target = ward_service::Caller;
    fn deref(&self) -> &ward_service::Caller {
        &self.0
    }
}

/// Source address of a request, for audit records and throttling.
pub fn source_of(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ClientAddr>()
        .map(|addr| addr.0.ip().to_string())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let jar = CookieJar::from_headers(&parts.headers);
        let credential = match (bearer, jar.get(SESSION_COOKIE)) {
            (Some(bearer), _) => Credential::Bearer(bearer),
            (None, Some(cookie)) => Credential::Session(cookie.value()),
            (None, None) => {
                return Err(ApiError::new(
                    ErrorCode::Unauthenticated,
                    "log in first (session cookie or bearer token)",
                ));
            }
        };
        let request = Request {
            read_only: is_read_only(&parts.method),
            method: parts.method.as_str(),
            path: parts.uri.path(),
            source: source_of(parts),
            cross_origin: cross_origin(parts),
        };
        Ok(Caller(authenticate(state, credential, request).await?))
    }
}

fn is_read_only(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// A change whose `Origin` is not this server's own (defence in depth beside SameSite=Strict for
/// cookie-authenticated changes).
fn cross_origin(parts: &Parts) -> bool {
    if is_read_only(&parts.method) {
        return false;
    }
    let Some(origin) = parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        != Some(host)
}
