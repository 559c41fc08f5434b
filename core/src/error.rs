//! The one error type of the core, with stable machine codes.
//!
//! Every error carries an [`ErrorCode`]; errors that came from (or mirror) an HTTP answer
//! carry its status too. The server maps codes to HTTP statuses with [`ErrorCode::status`],
//! and the Python and Node bindings map them to their exception classes, each in one place.
//! No message ever contains a secret value or an access key.

use std::fmt;
use std::time::Duration;

/// Stable machine-readable error codes, shared by the server's JSON errors and the clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 400: the body is not valid JSON (or not a JSON object).
    MalformedBody,
    /// 400: the query string has a parameter the route does not take, or cannot be read.
    InvalidQuery,
    /// 408: the request (headers or body) did not arrive in time.
    RequestTimeout,
    /// 414: the request's path and query are too long.
    UriTooLong,
    /// 431: the request's headers are too large.
    HeadersTooLarge,
    /// 401: no access key, or an unknown or wrong one.
    Unauthenticated,
    /// 403: the access key lacks a permission, or the secret is out of its app/environment.
    PermissionDenied,
    /// 404: no secret with that key.
    SecretNotFound,
    /// 404: no such route or object (other than secrets).
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: a secret with that key already exists.
    SecretExists,
    /// 409: the secret changed since the version the caller expected.
    VersionConflict,
    /// 409: the server is already set up (or already has that object).
    Conflict,
    /// 409: the workspace's keyring changed (a binding was added or a rotation began) since
    /// the client sealed the value: refresh the session and seal again.
    KeyringChanged,
    /// 410: the secret has been revoked.
    SecretRevoked,
    /// 410: the secret has expired.
    SecretExpired,
    /// 413: the body or the value is over the size limit.
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 426: the workspace uses a data format this client (or request) predates.
    UpgradeRequired,
    /// 422: a field is invalid.
    InvalidField,
    /// 429: rate limited.
    RateLimited,
    /// 500: a real server fault.
    Internal,
    /// 503: the server is not ready (for example not set up yet).
    Unavailable,
    /// Client side: the server could not be reached.
    Connection,
    /// Client side: the request timed out.
    Timeout,
    /// Client side: a ciphertext failed authentication (tampered, moved, or the wrong key).
    Integrity,
    /// Client side: `init()` has not been called (or failed).
    NotInitialized,
    /// Client side: bad configuration (missing access key, malformed URL or access key).
    Config,
    /// Client side: the server answered something this client cannot understand.
    Protocol,
}

impl ErrorCode {
    /// All codes, for exhaustive tests and documentation.
    pub const ALL: [ErrorCode; 29] = [
        ErrorCode::MethodNotAllowed,
        ErrorCode::MalformedBody,
        ErrorCode::InvalidQuery,
        ErrorCode::RequestTimeout,
        ErrorCode::UriTooLong,
        ErrorCode::HeadersTooLarge,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::SecretNotFound,
        ErrorCode::NotFound,
        ErrorCode::SecretExists,
        ErrorCode::VersionConflict,
        ErrorCode::Conflict,
        ErrorCode::KeyringChanged,
        ErrorCode::SecretRevoked,
        ErrorCode::SecretExpired,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::UpgradeRequired,
        ErrorCode::InvalidField,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::Connection,
        ErrorCode::Timeout,
        ErrorCode::Integrity,
        ErrorCode::NotInitialized,
        ErrorCode::Config,
        ErrorCode::Protocol,
    ];

    /// The machine code as it appears on the wire (`"secret_exists"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedBody => "malformed_body",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::SecretNotFound => "secret_not_found",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::SecretExists => "secret_exists",
            ErrorCode::VersionConflict => "version_conflict",
            ErrorCode::Conflict => "conflict",
            ErrorCode::KeyringChanged => "keyring_changed",
            ErrorCode::SecretRevoked => "secret_revoked",
            ErrorCode::SecretExpired => "secret_expired",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::UpgradeRequired => "upgrade_required",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Connection => "connection_error",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Integrity => "integrity_error",
            ErrorCode::NotInitialized => "not_initialized",
            ErrorCode::Config => "config_error",
            ErrorCode::Protocol => "protocol_error",
        }
    }

    /// Parses a wire code; unknown codes (from a newer server) become `None`.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The HTTP status a server answers with for this code; `None` for client-side codes.
    pub fn status(self) -> Option<u16> {
        Some(match self {
            ErrorCode::MalformedBody | ErrorCode::InvalidQuery => 400,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::UriTooLong => 414,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::SecretNotFound | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::SecretExists
            | ErrorCode::VersionConflict
            | ErrorCode::Conflict
            | ErrorCode::KeyringChanged => 409,
            ErrorCode::SecretRevoked | ErrorCode::SecretExpired => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::UpgradeRequired => 426,
            ErrorCode::InvalidField => 422,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::Connection
            | ErrorCode::Timeout
            | ErrorCode::Integrity
            | ErrorCode::NotInitialized
            | ErrorCode::Config
            | ErrorCode::Protocol => return None,
        })
    }

    /// The code a server status implies when the body carries no code we know.
    pub fn from_status(status: u16) -> ErrorCode {
        match status {
            400 => ErrorCode::MalformedBody,
            401 => ErrorCode::Unauthenticated,
            403 => ErrorCode::PermissionDenied,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            408 => ErrorCode::RequestTimeout,
            414 => ErrorCode::UriTooLong,
            431 => ErrorCode::HeadersTooLarge,
            409 => ErrorCode::Conflict,
            410 => ErrorCode::SecretRevoked,
            413 => ErrorCode::PayloadTooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            426 => ErrorCode::UpgradeRequired,
            422 => ErrorCode::InvalidField,
            429 => ErrorCode::RateLimited,
            503 => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from the client core or, relayed, from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    /// The HTTP status: the server's, or the status the same check has on the server
    /// (client-side validation mirrors the server's 422).
    status: Option<u16>,
    /// The machine code as the server sent it (kept even when this client does not know it).
    wire_code: Option<String>,
    message: String,
    retry_after: Option<Duration>,
    /// For an error that stands for several (a resolution with many failed references):
    /// each one. Empty otherwise.
    failures: Vec<Error>,
}

impl Error {
    /// A new error whose status is the code's own.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            status: code.status(),
            wire_code: None,
            message: message.into(),
            retry_after: None,
            failures: Vec::new(),
        }
    }

    /// One error for several failures: itself when there is one; otherwise the first one's
    /// code and status, every message (joined by "; "), and each failure in [`Error::failures`].
    pub fn from_failures(mut failures: Vec<Error>) -> Error {
        if failures.len() <= 1 {
            return failures
                .pop()
                .unwrap_or_else(|| Error::new(ErrorCode::Internal, "no failure"));
        }
        let mut e = failures[0].clone();
        e.message = failures
            .iter()
            .map(|f| f.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        e.failures = failures;
        e
    }

    /// The individual failures of an error that stands for several.
    pub fn failures(&self) -> &[Error] {
        &self.failures
    }

    /// An error as a server answered it.
    pub fn from_server(
        status: u16,
        wire_code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    ) -> Self {
        let code = wire_code
            .as_deref()
            .and_then(ErrorCode::parse)
            .unwrap_or_else(|| ErrorCode::from_status(status));
        Error {
            code,
            status: Some(status),
            wire_code,
            message,
            retry_after,
            failures: Vec::new(),
        }
    }

    /// Shorthand for a 422 on one field.
    pub fn invalid_field(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::InvalidField, message)
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The machine code string (`"secret_exists"`), as the server sent it when it did.
    pub fn code_str(&self) -> &str {
        self.wire_code.as_deref().unwrap_or(self.code.as_str())
    }

    /// The HTTP status, when the error came from (or mirrors) an HTTP answer.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// How long the server asked us to wait (429 `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether a retry can help: connection errors, timeouts, 5xx and 429.
    pub fn is_retryable(&self) -> bool {
        matches!(self.code, ErrorCode::Connection | ErrorCode::Timeout)
            || matches!(self.status, Some(s) if s == 429 || s >= 500)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<crate::wire::ErrorDetail> for Error {
    /// One refused item of a batch answer.
    fn from(e: crate::wire::ErrorDetail) -> Self {
        Error::from_server(e.status, Some(e.code), e.message, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_wire_strings() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("from_a_newer_server"), None);
    }

    #[test]
    fn server_errors_keep_unknown_codes_and_fall_back_on_status() {
        let e = Error::from_server(409, Some("brand_new".into()), "x".into(), None);
        assert_eq!(e.code(), ErrorCode::Conflict);
        assert_eq!(e.code_str(), "brand_new");
        assert_eq!(e.status(), Some(409));
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        assert!(Error::new(ErrorCode::Connection, "x").is_retryable());
        assert!(Error::from_server(503, None, "x".into(), None).is_retryable());
        assert!(Error::from_server(429, None, "x".into(), None).is_retryable());
        assert!(!Error::from_server(409, None, "x".into(), None).is_retryable());
        assert!(!Error::new(ErrorCode::Integrity, "x").is_retryable());
    }
}
