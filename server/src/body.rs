//! The JSON body extractor: 415 unless `application/json`, 413 over the limit, 400 unless
//! a JSON object. Field checks come after, in the handlers, through `ductape::validate`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::{Map, Value};

use crate::error::ApiError;
use ductape::ErrorCode;

/// The largest request body accepted (a 64 KiB value sealed is about 88 KB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the request body must be JSON with 'Content-Type: application/json'",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the request body is over the limit of {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::new(
                    ErrorCode::MalformedBody,
                    "the request body could not be read",
                )
            }
        })?;
        // serde_json's syntax errors give a position, never the input text.
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                ErrorCode::MalformedBody,
                format!(
                    "the request body is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        match value {
            Value::Object(map) => Ok(JsonObject(map)),
            _ => Err(ApiError::new(
                ErrorCode::MalformedBody,
                "the request body must be a JSON object",
            )),
        }
    }
}

/// The one path parameter of a route (a secret key or an access-key id), with a JSON
/// error when it is not valid UTF-8 after percent-decoding.
pub struct PathParam(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(p)| PathParam(p))
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::MalformedBody,
                    "the path parameter is not valid UTF-8",
                )
            })
    }
}
