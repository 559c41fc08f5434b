//! Shared server state.

use std::sync::Arc;
use tokio::sync::RwLock;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::storage::{Storage, StoredAccessKey, Workspace};

/// How long an authenticated access key is trusted from memory: a key deleted through
/// another server sharing the database is refused here within this time (one deleted
/// through this server, at once).
pub const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Requests per second allowed to one access key (GCRA: bursts up to the same number).
pub type RateLimiter = governor::DefaultKeyedRateLimiter<String>;

pub struct AppState {
    pub storage: Arc<dyn Storage>,
    pub metrics: Arc<Metrics>,
    /// Off unless the server was started with a rate limit.
    pub rate_limit: Option<RateLimiter>,
    /// Connection and request bounds (the body deadline is applied by the body extractor).
    pub limits: crate::listen::Limits,
    /// How many versions of a secret are kept, and how long deleted secrets stay in the trash.
    pub retention: crate::storage::Retention,
    /// The change feed of `GET /v1/events`.
    pub feed: crate::feed::Feed,
    /// A `--dev` server (in memory, a new workspace and key at each start): refusals say so.
    pub dev: bool,
    /// Whether `/` serves the web console (`ductape server --no-console` turns it off).
    pub console: bool,
    /// The workspace, read from storage once: only its format changes after setup (by the
    /// upgrade, which refreshes it here; routes read the keyring itself fresh).
    workspace: RwLock<Option<Workspace>>,
    /// Access keys by id, for [`KEY_CACHE_TTL`] (a key's row changes only in its grants,
    /// which `/v1/session` reads fresh; otherwise it is only deleted). Holds the secret's
    /// hash, never the secret.
    keys: moka::sync::Cache<String, Arc<StoredAccessKey>>,
}

impl AppState {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        AppState {
            storage,
            metrics: Arc::default(),
            rate_limit: None,
            limits: crate::listen::Limits::default(),
            retention: crate::storage::Retention::default(),
            feed: crate::feed::Feed::default(),
            dev: false,
            console: true,
            workspace: RwLock::new(None),
            keys: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
        }
    }

    /// The access key with this id, from memory when looked up in the last second.
    /// Unknown ids are not remembered (they cost a lookup each, as before).
    pub async fn access_key(&self, id: &str) -> Result<Option<Arc<StoredAccessKey>>, ApiError> {
        if let Some(k) = self.keys.get(id) {
            return Ok(Some(k));
        }
        let found = self.storage.access_key(id).await?.map(Arc::new);
        if let Some(k) = &found {
            self.keys.insert(id.to_owned(), k.clone());
        }
        Ok(found)
    }

    /// Stops trusting a deleted key at once on this server.
    pub fn forget_access_key(&self, id: &str) {
        self.keys.invalidate(id);
    }

    /// Limits each access key to `per_second` requests per second (bursts of as many).
    pub fn with_rate_limit(mut self, per_second: std::num::NonZeroU32) -> Self {
        self.rate_limit = Some(governor::RateLimiter::keyed(governor::Quota::per_second(
            per_second,
        )));
        self
    }

    /// Keeps history and trash as `retention` says.
    pub fn with_retention(mut self, retention: crate::storage::Retention) -> Self {
        self.retention = retention;
        self
    }

    /// A `--dev` server: an unknown key is most likely one printed by an earlier start.
    pub fn dev(mut self) -> Self {
        self.dev = true;
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

    /// Reads the workspace from storage again (after the upgrade changed its format).
    pub async fn refresh_workspace(&self) -> Result<(), ApiError> {
        let found = self.storage.workspace().await?;
        *self.workspace.write().await = found;
        Ok(())
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
