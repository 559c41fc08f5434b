//! Health, OpenAPI, metrics, and the JSON answers for unknown routes.

use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use crate::auth::Shared;
use crate::error::ApiError;
use axum::extract::State;
use ductape::wire::{ErrorBody, Health};
use ductape::ErrorCode;

/// Liveness: the process answers. Never touches the database (a liveness probe that fails
/// with the database would restart healthy servers); see `/readyz`.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
pub async fn healthz(State(st): State<Shared>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        initialized: st.workspace_if_known().await,
    })
}

/// How long readiness waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness: the database answers (within 2 s) and the server can serve requests; 503
/// `unavailable` with `Retry-After` otherwise.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(st): State<Shared>) -> Result<Json<Health>, ApiError> {
    let unready = || {
        let mut e = ApiError::new(
            ErrorCode::Unavailable,
            "not ready: the database does not answer",
        );
        e.retry_after_secs = Some(2);
        e
    };
    let ready = async {
        st.storage.ping().await?;
        st.workspace().await
    };
    match tokio::time::timeout(READY_TIMEOUT, ready).await {
        Ok(Ok(ws)) => Ok(Json(Health {
            status: "ready".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            initialized: ws.is_some(),
        })),
        _ => Err(unready()),
    }
}

pub async fn openapi() -> impl IntoResponse {
    Json(super::openapi::document())
}

pub async fn metrics(State(st): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
}

pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}
