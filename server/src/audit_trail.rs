//! What goes into the audit trail: an event per value read and per change (allowed or
//! refused), recording the access key's binding, and the caller's claim beside it when the
//! two differ, never only the claim. Storage writes a change's event in the change's own
//! transaction; refusals are appended on their own.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::AuditEvent;
use ductape::ids::now_millis;
use ductape::ErrorCode;

/// An event by `caller` about `target` (a secret key, or an access-key id), for the app and
/// environment the caller claimed (reads of a batch), as allowed; refusals change that.
pub fn event(
    caller: &Caller,
    action: &str,
    target: &str,
    claimed_app: Option<&str>,
    claimed_env: Option<&str>,
) -> AuditEvent {
    let key = &caller.key;
    let (app, claimed_app) = match (key.app.as_deref(), claimed_app) {
        (Some(bound), claim) => (Some(bound), claim.filter(|c| *c != bound)),
        (None, claim) => (claim, None),
    };
    let (env, claimed_env) = if key.envs.is_empty() {
        (claimed_env.map(str::to_owned), None)
    } else {
        match claimed_env {
            Some(c) if key.envs.iter().any(|e| e == c) => (Some(c.to_owned()), None),
            claim => (Some(key.envs.join(",")), claim.map(str::to_owned)),
        }
    };
    AuditEvent {
        at_ms: now_millis(),
        workspace_id: caller.workspace.id.clone(),
        access_key_id: key.id.clone(),
        secret_key: target.to_owned(),
        action: action.to_owned(),
        app: app.map(str::to_owned),
        env,
        claimed_app: claimed_app.map(str::to_owned),
        claimed_env,
        allowed: true,
        reason: None,
        detail: None,
        keys: Vec::new(),
    }
}

/// Whether an error is a refusal worth recording: an authorization or state conflict, not
/// a malformed request (those never got as far as a decision) nor a server fault.
pub fn is_refusal(e: &ApiError) -> bool {
    matches!(
        e.code,
        ErrorCode::PermissionDenied
            | ErrorCode::SecretNotFound
            | ErrorCode::NotFound
            | ErrorCode::SecretExists
            | ErrorCode::VersionConflict
            | ErrorCode::Conflict
    )
}

/// Records `outcome` if it is a refusal (a success was recorded with the change itself).
/// A failure to record is logged, never turned into another answer: the refusal stands.
pub async fn record_refusal<T>(
    st: &AppState,
    mut event: AuditEvent,
    outcome: &Result<T, ApiError>,
) {
    let Err(e) = outcome else { return };
    if !is_refusal(e) {
        return;
    }
    event.allowed = false;
    event.reason = Some(e.message.clone());
    if let Err(failed) = st.storage.append_audit(vec![event]).await {
        tracing::warn!(error = %failed.message, "could not record a refused change in the audit trail");
    }
}
