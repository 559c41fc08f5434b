//! Health, OpenAPI, metrics, and the JSON answers for unknown routes.

use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use utoipa::OpenApi;

use crate::auth::Shared;
use crate::error::ApiError;
use axum::extract::State;
use ductape::wire::Health;
use ductape::ErrorCode;

/// Liveness and whether the server is set up.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
pub async fn healthz(State(st): State<Shared>) -> Result<Json<Health>, ApiError> {
    Ok(Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        initialized: st.workspace().await?.is_some(),
    }))
}

pub async fn openapi() -> impl IntoResponse {
    Json(super::ApiDoc::openapi())
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
