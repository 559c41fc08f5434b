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
//! ductape_server::serve(listener, state, Default::default(), std::future::pending()).await?;
//! # Ok(()) }
//! ```

/// The first client release that reads and writes format 2, named in 426 answers. Changes
/// only with the wire format, not with every release.
pub const MIN_CLIENT: &str = "0.1.0";

pub mod audit_trail;
pub mod auth;
pub mod body;
pub mod conditional;
pub mod console;
pub mod error;
pub mod feed;
pub mod listen;
pub mod metrics;
pub mod protocol_errors;
pub mod retrying;
pub mod routes;
pub mod self_wake;
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

/// The whole application: routes, body limits, metrics, panic guard, request spans.
pub fn app(state: Arc<AppState>) -> Router {
    routes::router(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(body::refuse_oversized))
        // A bug must never answer with a stack trace or drop the connection: one JSON 500.
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal("handler panicked"))
        }))
        // Per-request spans at DEBUG, with the method and the path only: never the query
        // string (a value pasted there must not reach a log), headers or bodies.
        .layer(TraceLayer::new_for_http().make_span_with(
            |req: &axum::http::Request<axum::body::Body>| {
                tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
            },
        ))
}

/// Serves until `shutdown` resolves, then finishes in-flight requests (10 s at most).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    limits: listen::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listen::serve(listener, None, app(state), limits, shutdown).await
}

/// Serves HTTPS (TLS 1.2/1.3 via rustls) with the PEM certificate chain and private key at
/// the given paths, until `shutdown` resolves; then finishes in-flight requests (10 s at most).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    limits: listen::Limits,
    cert_pem: &std::path::Path,
    key_pem: &std::path::Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = listen::tls_acceptor(cert_pem, key_pem)?;
    listen::serve(listener, Some(tls), app(state), limits, shutdown).await
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

/// Empties the trash of secrets deleted longer ago than the retention allows, and the
/// change feed of rows older than [`feed::KEEP`]: now and then every hour (undelete refuses
/// expired ones before that already).
pub fn spawn_trash_purger(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            let cutoff = state.retention.trash_cutoff(ductape::ids::now_millis());
            match state.storage.purge_trash(cutoff).await {
                Ok(n) if n > 0 => tracing::info!(
                    purged = n,
                    "deleted secrets past the trash retention removed"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e.message, "emptying the trash failed; will retry")
                }
            }
        }
    });
}

/// Whether a server without a workspace issued a setup token.
#[derive(Debug)]
pub enum SetupToken {
    /// The server is set up already.
    NotNeeded,
    /// A new one-time token: print it once.
    Issued(String),
    /// A token issued earlier (by this server's last run, or by another server starting on
    /// the same database) is still pending and still valid; `replace` issues a new one.
    Pending,
}

/// For a server without a workspace: makes a new one-time setup token and stores its hash,
/// unless one is pending (then only the server that issued it printed it, so that of two
/// servers started together on one database, the token printed is the one that works).
pub async fn issue_setup_token(state: &AppState, replace: bool) -> Result<SetupToken, ApiError> {
    if state.workspace().await?.is_some() {
        return Ok(SetupToken::NotNeeded);
    }
    let token = format!("dtps_{}", hex::encode(random_bytes::<24>()));
    if state
        .storage
        .offer_setup_token(&hash_secret(&token), replace)
        .await?
    {
        Ok(SetupToken::Issued(token))
    } else {
        Ok(SetupToken::Pending)
    }
}

/// `--dev`: sets the server up in process and returns the admin access key.
pub async fn dev_bootstrap(state: &AppState) -> Result<AccessKey, ApiError> {
    let SetupToken::Issued(token) = issue_setup_token(state, true).await? else {
        return Err(ApiError::internal("dev server already set up"));
    };
    let (key, body) = ductape::bootstrap::setup_body(&token, "dev");
    let obj = body.as_object().cloned().unwrap_or_default();
    routes::access_keys::apply_setup(state, &obj).await?;
    Ok(key)
}
