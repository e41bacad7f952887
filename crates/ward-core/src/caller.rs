//! Who is calling: a session cookie or an API token, checked on every request (expiry, idle
//! logoff, revocation, disabled accounts, read-only tokens, break-glass alerts). The HTTP layer
//! reads the credential from the request and asks [`authenticate`].

use serde_json::json;
use ward_domain::access::Permission;
use ward_domain::audit::{AuditRecord, Outcome};
use ward_domain::site::SiteSlug;
use ward_proto::{ErrorCode, TOKEN_PREFIX};
use ward_store::{TokenScope, UserRecord};

use crate::auth::sha256_hex;
use crate::error::{ServiceError, ServiceResult};
use crate::state::AppState;

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Session { token_hash: String },
    Token { id: String, scope: TokenScope },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserRecord,
    pub via: Via,
    pub source: Option<String>,
}

impl Caller {
    /// The audit actor: the user, and the token when one was used.
    pub fn actor(&self) -> String {
        match &self.via {
            Via::Session { .. } => format!("user:{}", self.user.username),
            Via::Token { id, .. } => format!("user:{} token:{id}", self.user.username),
        }
    }

    /// An audit record by this caller.
    pub fn record(
        &self,
        action: &str,
        target: &str,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> AuditRecord {
        AuditRecord::new(self.actor(), action, target, outcome, details).with_source(self.source.clone())
    }
}

/// Paths an account that must change its password may still use: the API's (relative to its
/// prefix, which the nested router strips) and the console's password and logout pages.
const PASSWORD_CHANGE_PATHS: [&str; 5] = [
    "/auth/password",
    "/auth/whoami",
    "/auth/logout",
    "/password",
    "/logout",
];

/// Splits `ward_<32 hex id>_<secret>`.
pub fn parse_token(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty() && secret.len() <= 128)
        .then_some((id, secret))
}

/// The credential a request carries.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// `Authorization: Bearer ward_<id>_<secret>`.
    Bearer(&'a str),
    /// The console's session cookie.
    Session(&'a str),
}

/// What the request asks for, as far as authentication cares.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// GET or HEAD: allowed to read-only tokens.
    pub read_only: bool,
    /// `GET`, `POST`, … (for the break-glass alert).
    pub method: &'a str,
    /// The path relative to the server (for refusals and the break-glass alert).
    pub path: &'a str,
    /// The request's source address.
    pub source: Option<String>,
    /// A change whose `Origin` header names another site (refused for the session cookie).
    pub cross_origin: bool,
}

/// Checks a credential and returns the caller: expiry, idle logoff, revocation, disabled
/// accounts, read-only tokens, a one-time password still to change; a break-glass account's use
/// is recorded as an alert. Refusals that matter to an auditor are recorded.
pub async fn authenticate(
    state: &AppState,
    credential: Credential<'_>,
    request: Request<'_>,
) -> Result<Caller, ServiceError> {
    let now = state.now_ms();
    let caller = match credential {
        Credential::Bearer(bearer) => from_token(state, bearer, request.source.clone(), now).await?,
        Credential::Session(cookie) => {
            let caller = from_session(state, cookie, request.source.clone(), now).await?;
            if request.cross_origin {
                return Err(ServiceError::forbidden("cross-origin request refused"));
            }
            caller
        }
    };
    if caller.user.disabled {
        return Err(ServiceError::new(
            ErrorCode::AccountDisabled,
            "this account is disabled",
        ));
    }
    if let Via::Token {
        scope: TokenScope::Read,
        ..
    } = caller.via
        && !request.read_only
    {
        return Err(state
            .deny(
                &caller,
                ErrorCode::TokenScope,
                "auth.token_scope",
                request.path,
                "this token is read-only",
            )
            .await);
    }
    if caller.user.break_glass {
        let record = caller.record(
            "alert.break_glass_use",
            &format!("user:{}", caller.user.username),
            Outcome::Alert,
            json!({ "method": request.method, "path": request.path }),
        );
        state.store.append(state.audit(record)).await?;
    }
    if caller.user.must_change_password
        && !PASSWORD_CHANGE_PATHS.contains(&request.path.trim_start_matches(ward_proto::API_PREFIX))
    {
        return Err(ServiceError::forbidden(
            "change this account's one-time password first (ward users password, or POST /api/v1/auth/password)",
        ));
    }
    Ok(caller)
}

async fn from_token(
    state: &AppState,
    bearer: &str,
    source: Option<String>,
    now: i64,
) -> Result<Caller, ServiceError> {
    let reject = |reason: &str, token: &str| {
        let record = AuditRecord::new(
            "anonymous",
            "auth.token",
            token,
            Outcome::Failure,
            json!({ "reason": reason }),
        )
        .with_source(source.clone());
        (
            record,
            ServiceError::new(ErrorCode::TokenInvalid, format!("the API token is {reason}")),
        )
    };
    let (record, error) = match parse_token(bearer) {
        None => reject("malformed", "token:?"),
        Some((id, secret)) => match state.store.token(id).await? {
            None => reject("unknown", &format!("token:{id}")),
            Some(token) if token.secret_hash != sha256_hex(secret.as_bytes()) => {
                reject("unknown", &format!("token:{id}"))
            }
            Some(token) if token.revoked_ms.is_some() => reject("revoked", &format!("token:{id}")),
            Some(token) if now >= token.expires_ms => reject("expired", &format!("token:{id}")),
            Some(token) => {
                let Some(user) = state.store.user_by_id(&token.user_id).await? else {
                    return Err(ServiceError::internal(format!("token {id} has no owner")));
                };
                state.store.touch_token(&token.id, now).await?;
                return Ok(Caller {
                    user,
                    via: Via::Token {
                        id: token.id,
                        scope: token.scope,
                    },
                    source,
                });
            }
        },
    };
    state.store.append(state.audit(record)).await?;
    Err(error)
}

async fn from_session(
    state: &AppState,
    cookie: &str,
    source: Option<String>,
    now: i64,
) -> Result<Caller, ServiceError> {
    let token_hash = sha256_hex(cookie.as_bytes());
    let Some(session) = state.store.session(&token_hash).await? else {
        return Err(ServiceError::new(
            ErrorCode::Unauthenticated,
            "no such session; log in again",
        ));
    };
    let Some(user) = state.store.user_by_id(&session.user_id).await? else {
        return Err(ServiceError::internal("session without a user"));
    };
    let idle = now - session.last_seen_ms >= state.config.auth.idle_timeout_ms;
    if idle || now >= session.expires_ms {
        let reason = if idle {
            "idle timeout"
        } else {
            "maximum session length"
        };
        let record = AuditRecord::new(
            format!("user:{}", user.username),
            "auth.session_expired",
            format!("user:{}", user.username),
            Outcome::Success,
            json!({ "reason": reason }),
        )
        .with_source(source);
        state
            .store
            .delete_session(&token_hash, state.audit(record))
            .await?;
        return Err(ServiceError::new(
            ErrorCode::SessionExpired,
            format!("the session ended ({reason}); log in again"),
        ));
    }
    state.store.touch_session(&token_hash, now).await?;
    Ok(Caller {
        user,
        via: Via::Session { token_hash },
        source,
    })
}

/// Authorization, tied to the audit log: a refusal is recorded before it is returned.
impl AppState {
    /// Records a refusal and returns the error to send.
    pub async fn deny(
        &self,
        caller: &Caller,
        code: ErrorCode,
        action: &str,
        target: &str,
        reason: &str,
    ) -> ServiceError {
        let record = caller.record(
            action,
            target,
            Outcome::Denied,
            serde_json::json!({ "reason": reason, "role": caller.user.role.as_str() }),
        );
        if let Err(err) = self.store.append(self.audit(record)).await {
            return err.into();
        }
        ServiceError::new(code, reason)
    }

    /// Requires the caller's role to allow `permission`; refusals are audited.
    pub async fn authorize(
        &self,
        caller: &Caller,
        permission: Permission,
        action: &str,
        target: &str,
    ) -> ServiceResult<()> {
        if caller.user.role.allows(permission) {
            return Ok(());
        }
        let reason = format!("the {} role may not do {action}", caller.user.role);
        Err(self
            .deny(caller, ErrorCode::Forbidden, action, target, &reason)
            .await)
    }

    /// Requires the caller's site scope to cover `site`; refusals are audited.
    pub async fn authorize_site(
        &self,
        caller: &Caller,
        site: &SiteSlug,
        action: &str,
        target: &str,
    ) -> ServiceResult<()> {
        if caller.user.sites.covers(site) {
            return Ok(());
        }
        let reason = format!("site {site} is outside this account's sites");
        Err(self
            .deny(caller, ErrorCode::ForbiddenSite, action, target, &reason)
            .await)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_token;

    #[test]
    fn tokens_parse_strictly() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(parse_token(&format!("ward_{id}_secret")), Some((id, "secret")));
        for bad in [
            "",
            "ward_",
            "ward_x_y",
            &format!("ward_{id}_"),
            &format!("wrd_{id}_s"),
            "ward_' OR 1=1 --_x",
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
    }
}
