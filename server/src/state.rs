//! Shared server state.

use std::sync::Arc;
use tokio::sync::RwLock;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::storage::{Storage, Workspace};

/// Requests per second allowed to one access key (GCRA: bursts up to the same number).
pub type RateLimiter = governor::DefaultKeyedRateLimiter<String>;

pub struct AppState {
    pub storage: Arc<dyn Storage>,
    pub metrics: Metrics,
    /// Off unless the server was started with a rate limit.
    pub rate_limit: Option<RateLimiter>,
    /// Connection and request bounds (the body deadline is applied by the body extractor).
    pub limits: crate::listen::Limits,
    /// The workspace never changes once set up, so it is read from storage once.
    workspace: RwLock<Option<Workspace>>,
}

impl AppState {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        AppState {
            storage,
            metrics: Metrics::default(),
            rate_limit: None,
            limits: crate::listen::Limits::default(),
            workspace: RwLock::new(None),
        }
    }

    /// Limits each access key to `per_second` requests per second (bursts of as many).
    pub fn with_rate_limit(mut self, per_second: std::num::NonZeroU32) -> Self {
        self.rate_limit = Some(governor::RateLimiter::keyed(governor::Quota::per_second(
            per_second,
        )));
        self
    }

    /// Uses these connection and request bounds.
    pub fn with_limits(mut self, limits: crate::listen::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether the server is known to be set up, without asking the database.
    pub async fn workspace_if_known(&self) -> bool {
        self.workspace.read().await.is_some()
    }

    pub async fn workspace(&self) -> Result<Option<Workspace>, ApiError> {
        if let Some(w) = self.workspace.read().await.as_ref() {
            return Ok(Some(w.clone()));
        }
        let found = self.storage.workspace().await?;
        if let Some(w) = &found {
            *self.workspace.write().await = Some(w.clone());
        }
        Ok(found)
    }
}
