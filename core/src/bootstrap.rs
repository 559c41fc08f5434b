//! The first setup of a server, made on the client side: a new workspace key and a first
//! admin access key, with the workspace key wrapped for it. Used by `ductape init` (over
//! HTTP) and by `ductape server --dev` (in process), so both build the same request.

use serde_json::{json, Value};

use crate::crypto::{AccessKey, WorkspaceKey, WrappedKey};
use crate::ids::new_object_id;

/// Returns the new admin access key (to show once) and the `POST /v1/setup` body.
/// The workspace key itself is dropped (and zeroized) here: only its wrapped copy leaves.
pub fn setup_body(setup_token: &str, workspace_name: &str) -> (AccessKey, Value) {
    let wk = WorkspaceKey::generate();
    let ak = AccessKey::generate();
    let workspace_id = format!("ws_{}", new_object_id());
    let wrapped = WrappedKey::wrap(&wk, ak.unwrap_bytes(), &workspace_id, ak.id());
    let body = json!({
        "setup_token": setup_token,
        "workspace_id": workspace_id,
        "workspace_name": workspace_name,
        "key_id": wk.id().as_str(),
        "access_key": {
            "id": ak.id(),
            "secret": ak.secret(),
            "wrapped_key": wrapped.to_string(),
            "name": "admin",
            "permissions": ["admin"],
        }
    });
    (ak, body)
}
