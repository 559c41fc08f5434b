//! The JSON body extractor: 415 unless `application/json`, 413 over the limit, 400 unless
//! a JSON object. Field checks come after, in the handlers, through `ductape::validate`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::{Map, Value};

use std::sync::Arc;

use crate::error::ApiError;
use crate::state::AppState;
use ductape::ErrorCode;

/// The largest request body accepted (a 64 KiB value sealed is about 88 KB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub struct JsonObject(pub Map<String, Value>);

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the request body is over the limit of {MAX_BODY_BYTES} bytes"),
    )
}

/// Answers 413 at once when `Content-Length` announces more than the limit, before reading
/// any of the body (and so before `Expect: 100-continue` would invite it).
pub async fn refuse_oversized(
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        let mut resp = axum::response::IntoResponse::into_response(too_large());
        // The unread body makes the connection unusable for another request.
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return resp;
    }
    next.run(req).await
}

impl FromRequest<Arc<AppState>> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
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
        // The whole body within the body deadline: a client that announces a body and
        // then trickles (or stops) gets 408 instead of holding the request open.
        let deadline = state.limits.body_timeout;
        let bytes = tokio::time::timeout(deadline, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "the request body did not arrive within {} s",
                        deadline.as_secs()
                    ),
                )
            })?
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
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

/// Several path parameters (`/{key}/versions/{version}`), with the same rejection.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for PathParams<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(p)| PathParams(p))
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::MalformedBody,
                    "the path parameters are not valid UTF-8",
                )
            })
    }
}

/// Reads a JSON object body into a typed request: 422 with serde's account of the first
/// field it objects to (a missing or unknown field, a wrong type).
pub fn typed<T: serde::de::DeserializeOwned>(body: Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(body)).map_err(|e| {
        ductape::Error::invalid_field(format!("the request body does not fit: {e}")).into()
    })
}
