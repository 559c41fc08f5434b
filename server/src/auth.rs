//! Who is calling: the `Authorization: Bearer <id>.<secret>` access key, checked against
//! its stored hash in constant time, and what it may do.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use std::sync::Arc;

use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{StoredAccessKey, Workspace};
use ductape::crypto::{hash_secret, hashes_equal, split_bearer};
use ductape::wire::Permission;
use ductape::ErrorCode;

/// An authenticated caller.
#[derive(Clone)]
pub struct Caller {
    /// Shared with the access-key cache (a key's row never changes).
    pub key: Arc<StoredAccessKey>,
    pub workspace: Workspace,
}

impl Caller {
    /// What the caller's key is bound to (open when unbound).
    pub fn binding(&self) -> ductape::access::Binding<'_> {
        bound_context(&self.key)
    }

    /// An owned copy of the binding, for checks that run inside a storage transaction.
    pub fn owned_binding(&self) -> OwnedBinding {
        OwnedBinding {
            app: self.key.app.clone(),
            envs: self.key.envs.clone(),
        }
    }

    /// The access key's id and name, as history records who made a version.
    pub fn who(&self) -> (&str, &str) {
        (&self.key.id, &self.key.name)
    }

    /// 403 unless the key holds `p` (or admin).
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if p.granted_by(&self.key.permissions) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "access key '{}' ({}) does not have the '{}' permission",
                    self.key.name,
                    self.key.id,
                    p.as_str()
                ),
            ))
        }
    }
}

fn unauthenticated(msg: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, msg)
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            unauthenticated(
                "missing access key: send 'Authorization: Bearer <access key id>.<secret>'",
            )
        })?;
        let text = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                unauthenticated(
                    "malformed Authorization header: expected 'Bearer <access key id>.<secret>'",
                )
            })?;
        let (id, secret) =
            split_bearer(text.trim()).ok_or_else(|| unauthenticated("invalid access key"))?;
        // Hash even when the id is unknown, so timing does not tell which ids exist.
        let presented = hash_secret(secret);
        let key = state.access_key(id).await?;
        let key =
            match key {
                Some(k) if hashes_equal(&k.secret_hash, &presented) => k,
                _ if state.dev => return Err(unauthenticated(
                    "invalid access key: this is a --dev server, which makes a new workspace and \
                     admin key at each start (keys from an earlier start are gone): use the \
                     DUCTAPE_ACCESS_KEY it printed this time",
                )),
                _ => return Err(unauthenticated("invalid access key")),
            };
        if let Some(limiter) = &state.rate_limit {
            if let Err(not_until) = limiter.check_key(&key.id) {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                let mut e = ApiError::new(
                    ErrorCode::RateLimited,
                    "too many requests for this access key: slow down",
                );
                e.retry_after_secs = Some(wait.as_secs() + 1);
                return Err(e);
            }
        }
        let workspace = state
            .workspace()
            .await?
            .filter(|w| w.id == key.workspace_id)
            .ok_or_else(|| unauthenticated("invalid access key"))?;
        Ok(Caller { key, workspace })
    }
}

/// A key's binding, owned (see [`Caller::owned_binding`]).
#[derive(Clone, Debug)]
pub struct OwnedBinding {
    pub app: Option<String>,
    pub envs: Vec<String>,
}

impl OwnedBinding {
    pub fn get(&self) -> ductape::access::Binding<'_> {
        ductape::access::Context {
            app: self.app.as_deref(),
            envs: &self.envs,
        }
    }
}

/// The bound app and environments of the caller's key, as an access context.
pub fn bound_context(key: &StoredAccessKey) -> ductape::access::Context<'_> {
    ductape::access::Context {
        app: key.app.as_deref(),
        envs: &key.envs,
    }
}

/// The state every handler shares.
pub type Shared = Arc<AppState>;
