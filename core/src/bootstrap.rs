//! The first setup of a server, made on the client side: a format-2 keyring (its first
//! generation, with the unbound binding's key pair) and a first admin access key, granted
//! the unbound binding's private key. Used by `ductape init` (over
//! HTTP) and by `ductape server --dev` (in process), so both build the same request.

use serde_json::{json, Value};

use crate::crypto::{AccessGrants, AccessKey, KeyId, Keyring};
use crate::ids::new_object_id;

/// Returns the new admin access key (to show once) and the `POST /v1/setup` body.
/// The unbound binding's private key is dropped (and zeroized) here: only its grant leaves.
pub fn setup_body(setup_token: &str, workspace_name: &str) -> (AccessKey, Value) {
    let (ring, unbound) = Keyring::first();
    let ak = AccessKey::generate();
    let workspace_id = format!("ws_{}", new_object_id());
    let current = ring.current();
    let mut grants = AccessGrants::new(&ak.recipient().public());
    grants
        .grant(
            &workspace_id,
            ak.id(),
            current.generation,
            &current.bindings[0].id,
            &unbound,
        )
        .expect("a fresh binding key wraps to a derived public key");
    let body = json!({
        "setup_token": setup_token,
        "workspace_id": workspace_id,
        "workspace_name": workspace_name,
        "key_id": KeyId::generate().as_str(),
        "keyring": ring,
        "access_key": {
            "id": ak.id(),
            "secret": ak.secret(),
            "wrapped_key": grants.to_string(),
            "name": "admin",
            "permissions": ["admin"],
        }
    });
    (ak, body)
}
