//! Shared server state.

use std::sync::Arc;
use tokio::sync::RwLock;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::storage::{Storage, Workspace};

pub struct AppState {
    pub storage: Arc<dyn Storage>,
    pub metrics: Metrics,
    /// The workspace never changes once set up, so it is read from storage once.
    workspace: RwLock<Option<Workspace>>,
}

impl AppState {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        AppState {
            storage,
            metrics: Metrics::default(),
            workspace: RwLock::new(None),
        }
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
