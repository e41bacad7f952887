//! HTTP errors: a service error (or a request the router could not parse) becomes one stable
//! [`ErrorCode`] and its HTTP status, in one place. A 5xx says little to the client; the detail
//! was logged with the request id.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ward_domain::ValidationError;
use ward_proto::{ErrorBody, ErrorCode, ErrorDetail};
use ward_service::ServiceError;
use ward_store::StoreError;

/// An error a handler answers with.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError::new(code, message).into()
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ServiceError::not_found(what).into()
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ServiceError::forbidden(message).into()
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ServiceError::invalid(message).into()
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        Self {
            code: err.code,
            message: err.message,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ServiceError::from(err).into()
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        ServiceError::from(err).into()
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
