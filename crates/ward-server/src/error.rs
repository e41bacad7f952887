//! API errors: every failure maps to one stable [`ErrorCode`] and HTTP status, in one place.
//! A 5xx says little to the client; the detail is logged with the request id.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ward_domain::ValidationError;
use ward_proto::{ErrorBody, ErrorCode, ErrorDetail};
use ward_store::StoreError;

/// An error an API handler returns.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
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

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(what) => ApiError::new(ErrorCode::Conflict, what),
            StoreError::Unavailable(detail) => {
                tracing::error!(detail = %detail, "storage unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the database or the audit log could not be written; nothing was changed",
                )
            }
            StoreError::Corrupt(detail) => ApiError::internal(format!("corrupt stored data: {detail}")),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        ApiError::invalid(err.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the request body is larger than 64 KiB",
            ),
            _ => ApiError::new(ErrorCode::MalformedJson, rejection.body_text()),
        }
    }
}

/// Marker the request-id middleware uses to put the id into error bodies.
#[derive(Debug, Clone)]
pub struct ErrorMarker(pub ErrorCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                request_id: None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        response
            .extensions_mut()
            .insert(ErrorMarker(self.code, self.message));
        response
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
