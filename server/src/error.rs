//! The server's error type and its one mapping to HTTP: status from the code, body in the
//! one JSON shape of DESIGN.md §3.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ductape::wire::{ErrorBody, ErrorDetail};
use ductape::ErrorCode;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// A real fault. The detail goes to the log; the caller gets a generic message.
    pub fn internal(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        tracing::error!(%detail, "internal error");
        ApiError::new(ErrorCode::Internal, "internal server error")
    }

    /// The storage cannot serve now (a lost database, a full or failing disk): 503 with
    /// `Retry-After`, so clients retry. `why` goes to the log; `message` to the caller.
    pub fn unavailable(message: impl Into<String>, why: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %why, "storage unavailable");
        ApiError {
            retry_after_secs: Some(2),
            ..ApiError::new(ErrorCode::Unavailable, message)
        }
    }

    pub fn not_found(key: &str) -> Self {
        ApiError::new(
            ErrorCode::SecretNotFound,
            format!("Secret '{key}' not found"),
        )
    }

    /// The error as the JSON detail of DESIGN.md §3 (also an item of a batch answer).
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            status: self.status().as_u16(),
            code: self.code.as_str().to_owned(),
            message: self.message.clone(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code
            .status()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<ductape::Error> for ApiError {
    fn from(e: ductape::Error) -> Self {
        // Client-side codes never reach the server's answers: they would be server faults.
        if e.code().status().is_none() {
            return ApiError::internal(e.message().to_owned());
        }
        ApiError::new(e.code(), e.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: self.detail(),
        };
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
