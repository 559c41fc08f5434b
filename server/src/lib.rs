//! # Ductape Secrets server
//!
//! Stores and returns ciphertext only: values are sealed and opened by clients. Storage
//! sits behind [`storage::Storage`]; this crate ships the SQLite backend.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ductape_server::{storage::sqlite::SqliteStorage, AppState};
//! let storage = SqliteStorage::open(std::path::Path::new("ductape.sqlite"))?;
//! let state = Arc::new(AppState::new(Arc::new(storage)));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8200").await?;
//! ductape_server::serve(listener, state, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod body;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod state;
pub mod storage;

pub use state::AppState;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use ductape::crypto::{hash_secret, AccessKey};
use ductape::ids::random_bytes;
use error::ApiError;

/// The whole application: routes, body limit, metrics, panic guard, request logs.
pub fn app(state: Arc<AppState>) -> Router {
    routes::router(state.clone())
        .layer(axum::middleware::from_fn_with_state(state, metrics::track))
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        // A bug must never answer with a stack trace or drop the connection: one JSON 500.
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal("handler panicked"))
        }))
        // Logs method, path and status; never headers or bodies.
        .layer(TraceLayer::new_for_http())
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves HTTPS (TLS 1.2/1.3 via rustls) with the PEM certificate chain and private key at
/// the given paths, until `shutdown` resolves; then finishes in-flight requests (10 s at most).
pub async fn serve_tls(
    listener: std::net::TcpListener,
    state: Arc<AppState>,
    cert_pem: &std::path::Path,
    key_pem: &std::path::Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert_pem, key_pem).await?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(app(state).into_make_service())
        .await
}

/// Keeps the audit trail to `retention`: prunes older events now and then every hour.
pub fn spawn_audit_pruner(state: Arc<AppState>, retention: std::time::Duration) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            let cutoff =
                ductape::ids::now_millis() - retention.as_millis().min(i64::MAX as u128) as i64;
            match state.storage.prune_audit(cutoff).await {
                Ok(n) if n > 0 => tracing::info!(pruned = n, "audit events past retention deleted"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e.message, "audit pruning failed; will retry"),
            }
        }
    });
}

/// For a server without a workspace: makes a new one-time setup token, stores its hash and
/// returns it (to print once). `None` when the server is already set up.
pub async fn issue_setup_token(state: &AppState) -> Result<Option<String>, ApiError> {
    if state.workspace().await?.is_some() {
        return Ok(None);
    }
    let token = format!("dtps_{}", hex::encode(random_bytes::<24>()));
    state.storage.set_setup_token(&hash_secret(&token)).await?;
    Ok(Some(token))
}

/// `--dev`: sets the server up in process and returns the admin access key.
pub async fn dev_bootstrap(state: &AppState) -> Result<AccessKey, ApiError> {
    let token = issue_setup_token(state)
        .await?
        .ok_or_else(|| ApiError::internal("dev server already set up"))?;
    let (key, body) = ductape::bootstrap::setup_body(&token, "dev");
    let obj = body.as_object().cloned().unwrap_or_default();
    routes::access_keys::apply_setup(state, &obj).await?;
    Ok(key)
}
