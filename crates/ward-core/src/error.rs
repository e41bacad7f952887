//! The one error type of the service: every failure carries one stable [`ErrorCode`] (what a user
//! can search for in docs/errors.md) and a message. Unexpected failures are logged in full here
//! and reported without detail.

use ward_domain::ValidationError;
use ward_proto::ErrorCode;
use ward_store::StoreError;

/// An error a service operation returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, format!("{} not found", what.into()))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    /// An unexpected failure: logged in full, reported to the client without detail.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(detail = %detail, "internal error");
        Self::new(
            ErrorCode::Internal,
            "internal error; see the server log for this request id",
        )
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => ServiceError::not_found(what),
            StoreError::Conflict(what) => ServiceError::new(ErrorCode::Conflict, what),
            StoreError::Unavailable(detail) => {
                tracing::error!(detail = %detail, "storage unavailable");
                ServiceError::new(
                    ErrorCode::Unavailable,
                    "the database or the audit log could not be written; nothing was changed",
                )
            }
            StoreError::Corrupt(detail) => ServiceError::internal(format!("corrupt stored data: {detail}")),
        }
    }
}

impl From<ValidationError> for ServiceError {
    fn from(err: ValidationError) -> Self {
        ServiceError::invalid(err.to_string())
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ServiceError {}

/// A service operation's result.
pub type ServiceResult<T> = Result<T, ServiceError>;
