//! The client's one error type, and how an HTTP error answer becomes one.

use ward_proto::{ErrorBody, ErrorCode};

/// Shorthand for results of client calls.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached: refused, timed out, or TLS failed (including a CA that
    /// does not match the pin).
    #[error("cannot reach the server: {0}")]
    Connect(String),
    /// The server answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The stable error code (see `docs/errors.md`).
        code: ErrorCode,
        /// The server's explanation.
        message: String,
        /// Finds the request in the server's logs.
        request_id: Option<String>,
    },
    /// The server answered with something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    /// The caller's input cannot be sent: a bad server URL, fingerprint, CA file or path segment.
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    /// The process exit code for this error, per the CLI conventions: 3 when the server cannot be
    /// reached or the credentials are refused, 2 for unusable input, otherwise 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Connect(_) => 3,
            ClientError::Api { status: 401, .. } => 3,
            ClientError::Api { .. } | ClientError::Decode(_) => 1,
            ClientError::Invalid(_) => 2,
        }
    }

    /// The stable error code when the server sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Turns an error answer into [`ClientError::Api`]. A body that is not a Ward error (from a proxy,
/// say) still yields an `Api` error, with the code the status implies, so callers can rely on
/// `status` and `code` either way.
pub(crate) fn api_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => ClientError::Api {
            status,
            code: error.code,
            message: error.message,
            request_id: error.request_id,
        },
        Err(_) => ClientError::Api {
            status,
            code: code_for_status(status),
            message: format!("the server answered HTTP {status} without a Ward error body"),
            request_id: None,
        },
    }
}

fn code_for_status(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::MalformedJson,
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        422 => ErrorCode::InvalidInput,
        429 => ErrorCode::LoginThrottled,
        503 => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ward_error_body_is_parsed() {
        let body = br#"{"error":{"code":"mfa_required","message":"totp code required","request_id":"r-1"}}"#;
        match api_error(401, body) {
            ClientError::Api {
                status,
                code,
                message,
                request_id,
            } => {
                assert_eq!(status, 401);
                assert_eq!(code, ErrorCode::MfaRequired);
                assert_eq!(message, "totp code required");
                assert_eq!(request_id.as_deref(), Some("r-1"));
            }
            other => panic!("not an api error: {other:?}"),
        }
    }

    #[test]
    fn foreign_error_body_falls_back_to_status() {
        let error = api_error(503, b"<html>bad gateway</html>");
        assert_eq!(error.code(), Some(ErrorCode::Unavailable));
        assert_eq!(error.exit_code(), 1);
        let error = api_error(
            404,
            br#"{"error":{"code":"no_such_code","message":"x","request_id":null}}"#,
        );
        assert_eq!(error.code(), Some(ErrorCode::NotFound));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(ClientError::Connect("refused".into()).exit_code(), 3);
        assert_eq!(api_error(401, b"").exit_code(), 3);
        assert_eq!(api_error(403, b"").exit_code(), 1);
        assert_eq!(api_error(500, b"").exit_code(), 1);
        assert_eq!(ClientError::Decode("x".into()).exit_code(), 1);
        assert_eq!(ClientError::Invalid("x".into()).exit_code(), 2);
    }
}
