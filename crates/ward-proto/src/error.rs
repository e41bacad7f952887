//! Stable error codes. Scripts and runbooks match on these strings; never rename one, only add.
//! Each is documented in `docs/errors.md`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No credentials, or they are not valid (401).
    Unauthenticated,
    /// Wrong username or password (401). Deliberately does not say which.
    InvalidCredentials,
    /// The account has TOTP enrolled: send `totp_code` or `recovery_code` (401).
    MfaRequired,
    /// The TOTP or recovery code is wrong or was already used (401).
    MfaInvalid,
    /// The session ended after idle time or its absolute lifetime (401).
    SessionExpired,
    /// The API token is unknown, revoked or expired (401).
    TokenInvalid,
    /// Too many failed logins for this account or address; wait and retry (429).
    LoginThrottled,
    /// The role does not allow this (403).
    Forbidden,
    /// The account's site scope does not cover this site (403).
    ForbiddenSite,
    /// A read-only token was used for a change (403).
    TokenScope,
    /// The account is disabled (403).
    AccountDisabled,
    /// Nothing with that name (404).
    NotFound,
    /// The change collides with existing state (409).
    Conflict,
    /// A field is invalid; the message names it and why (422).
    InvalidInput,
    /// The body is not valid JSON for this endpoint (400).
    MalformedJson,
    /// The body is larger than the server accepts (413).
    PayloadTooLarge,
    /// The server could not reach its database or could not write the audit log, so nothing changed (503).
    Unavailable,
    /// Something went wrong on the server; the request id finds it in the logs (500).
    Internal,
    /// The action would power off or wipe a medical or life-sustaining device: a named clinician
    /// must confirm it (`clinician` in the request), and the confirmation is recorded (409).
    ClinicianConfirmationRequired,
    /// The device cannot take commands: it is revoked or retired, or its enrollment does not
    /// allow this action (409).
    DeviceUnavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::MfaRequired => "mfa_required",
            ErrorCode::MfaInvalid => "mfa_invalid",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::LoginThrottled => "login_throttled",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::ForbiddenSite => "forbidden_site",
            ErrorCode::TokenScope => "token_scope",
            ErrorCode::AccountDisabled => "account_disabled",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::ClinicianConfirmationRequired => "clinician_confirmation_required",
            ErrorCode::DeviceUnavailable => "device_unavailable",
        }
    }

    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthenticated
            | ErrorCode::InvalidCredentials
            | ErrorCode::MfaRequired
            | ErrorCode::MfaInvalid
            | ErrorCode::SessionExpired
            | ErrorCode::TokenInvalid => 401,
            ErrorCode::LoginThrottled => 429,
            ErrorCode::Forbidden
            | ErrorCode::ForbiddenSite
            | ErrorCode::TokenScope
            | ErrorCode::AccountDisabled => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict | ErrorCode::ClinicianConfirmationRequired | ErrorCode::DeviceUnavailable => {
                409
            }
            ErrorCode::InvalidInput => 422,
            ErrorCode::MalformedJson => 400,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// Every error response: `{"error": {"code": ..., "message": ..., "request_id": ...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in [
            ErrorCode::MfaRequired,
            ErrorCode::ForbiddenSite,
            ErrorCode::PayloadTooLarge,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
    }
}
