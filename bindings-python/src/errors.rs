//! Core errors become instances of the exception classes in `ductape/errors.py`, keeping
//! the HTTP status, the machine code and the server's `Retry-After`. Written once here.

use ductape::{Error, ErrorCode};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The Python class for an error: by code first, then by status.
fn class_name(e: &Error) -> &'static str {
    match e.code() {
        ErrorCode::Unauthenticated => "AuthenticationError",
        ErrorCode::PermissionDenied => "PermissionDeniedError",
        ErrorCode::SecretNotFound | ErrorCode::NotFound => "NotFoundError",
        ErrorCode::SecretExists
        | ErrorCode::VersionConflict
        | ErrorCode::Conflict
        | ErrorCode::KeyringChanged => "ConflictError",
        ErrorCode::SecretRevoked => "SecretRevokedError",
        ErrorCode::SecretExpired => "SecretExpiredError",
        ErrorCode::InvalidField => "ValidationError",
        ErrorCode::PayloadTooLarge => "PayloadTooLargeError",
        ErrorCode::MalformedBody
        | ErrorCode::InvalidQuery
        | ErrorCode::RequestTimeout
        | ErrorCode::UriTooLong
        | ErrorCode::HeadersTooLarge
        | ErrorCode::UnsupportedMediaType
        | ErrorCode::MethodNotAllowed => "BadRequestError",
        ErrorCode::RateLimited => "RateLimitError",
        ErrorCode::Internal | ErrorCode::Unavailable => "ServerError",
        ErrorCode::Connection => "DuctapeConnectionError",
        ErrorCode::Timeout => "DuctapeTimeoutError",
        ErrorCode::Integrity => "IntegrityError",
        ErrorCode::NotInitialized => "NotInitializedError",
        ErrorCode::Config => "ConfigurationError",
        ErrorCode::Protocol | ErrorCode::UpgradeRequired => "ProtocolError",
    }
}

/// Converts a core error to the matching Python exception.
pub fn to_py(e: Error) -> PyErr {
    Python::attach(|py| match build(py, &e) {
        Ok(err) => err,
        Err(import_failed) => PyRuntimeError::new_err(format!("{} ({import_failed})", e.message())),
    })
}

fn build(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let module = py.import("ductape.errors")?;
    let cls = module.getattr(class_name(e))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("status", e.status())?;
    kwargs.set_item("code", e.code_str())?;
    kwargs.set_item("retry_after", e.retry_after().map(|d| d.as_secs_f64()))?;
    if !e.failures().is_empty() {
        let each = e
            .failures()
            .iter()
            .map(|f| build(py, f).map(|err| err.into_value(py)))
            .collect::<PyResult<Vec<_>>>()?;
        kwargs.set_item("failures", each)?;
    }
    let instance = cls.call((e.message(),), Some(&kwargs))?;
    Ok(PyErr::from_value(instance))
}

/// `Result<T, ductape::Error>` → `PyResult<T>`.
pub trait IntoPyResult<T> {
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
