//! `/v1/access-keys`, `/v1/session`, `/v1/workspace` and `/v1/setup`.

use axum::http::StatusCode;
use axum::Json;
use serde_json::{Map, Value};

use crate::audit_trail;
use crate::auth::{Caller, Shared};
use crate::body::{JsonObject, PathParam};
use crate::error::ApiError;
use crate::storage::{no_such_access_key, AuditEvent, StoredAccessKey, Workspace};
use axum::extract::State;
use ductape::access;
use ductape::crypto::keyring::{self, binding_id};
use ductape::crypto::{hash_secret, AccessGrants, KeyId, Keyring, WrappedKey};
use ductape::ids::now_millis;
use ductape::validate;
use ductape::wire::{
    AccessKeyInfo, CreateAccessKeyBody, DeletedResponse, ErrorBody, Permission, SessionResponse,
    SetupBody, WorkspaceInfo,
};
use ductape::ErrorCode;

const KEY_FIELDS: &[&str] = &[
    "id",
    "secret",
    "wrapped_key",
    "name",
    "permissions",
    "app",
    "envs",
];

fn invalid(msg: impl Into<String>) -> ApiError {
    ductape::Error::invalid_field(msg).into()
}

/// Whether `id` has the form of an access key's id: 16 lowercase hex characters.
fn is_access_key_id(id: &str) -> bool {
    id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a new key's `wrapped_key` must hold, by workspace format.
enum Wrapping<'a> {
    /// Format 1: the workspace key with this id, wrapped (`dwk1`).
    WorkspaceKey(&'a str),
    /// Format 2: the key's public key and a grant of its binding's key in the current
    /// generation of this keyring (`dg2`).
    Grants(&'a Keyring),
}

/// Reads a new access key made by a client: its id, its secret (kept only as a hash) and
/// what it unwraps with (see [`Wrapping`]).
fn parse_new_key(
    obj: &Map<String, Value>,
    workspace_id: &str,
    wrapping: Wrapping<'_>,
) -> Result<StoredAccessKey, ApiError> {
    validate::reject_unknown_fields(obj, KEY_FIELDS)?;
    let id = validate::required_string(obj, "id")?;
    if !is_access_key_id(id) {
        return Err(invalid("field 'id' must be 16 lowercase hex characters"));
    }
    let secret = validate::required_string(obj, "secret")?;
    if secret.len() != 43
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "field 'secret' must be 32 bytes in unpadded base64url",
        ));
    }
    let wrapped_key = validate::required_string(obj, "wrapped_key")?;
    let name = validate::required_string(obj, "name")?;
    if name.trim().is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(invalid(
            "field 'name' must be 1 to 128 printable characters",
        ));
    }
    let permissions = validate::permissions(obj)?;
    let app = validate::optional_tag(obj, "app")?;
    let envs = validate::optional_tags(obj, "envs")?;
    let wrapped_key = match wrapping {
        Wrapping::WorkspaceKey(key_id) => {
            let wrapped = WrappedKey::parse(wrapped_key).ok_or_else(|| {
                invalid("field 'wrapped_key' must be a workspace key wrapped by a Ductape client")
            })?;
            if wrapped.key_id().as_str() != key_id {
                return Err(invalid("field 'wrapped_key' wraps another workspace key"));
            }
            wrapped.to_string()
        }
        Wrapping::Grants(ring) => check_grants(wrapped_key, ring, app.as_deref(), &envs)?,
    };
    Ok(StoredAccessKey {
        id: id.to_owned(),
        workspace_id: workspace_id.to_owned(),
        name: name.to_owned(),
        secret_hash: hash_secret(secret),
        wrapped_key,
        permissions,
        app,
        envs,
        created_ms: now_millis(),
    })
}

/// Format 2: a new key's grants must be of the binding its app and envs name, registered
/// and ready: of the current generation, and of no generation that lacks it.
fn check_grants(
    text: &str,
    ring: &Keyring,
    app: Option<&str>,
    envs: &[String],
) -> Result<String, ApiError> {
    if text.starts_with("dwk1.") {
        return Err(ApiError::new(
            ErrorCode::UpgradeRequired,
            format!("this workspace uses format 2 (keys hold grants of their binding's key): upgrade your Ductape client to {} or later", crate::MIN_CLIENT),
        ));
    }
    let grants = AccessGrants::parse(text).ok_or_else(|| {
        invalid("field 'wrapped_key' must be a key's grants made by a Ductape client ('dg2')")
    })?;
    let current = ring.current();
    let want = binding_id(app, envs);
    let binding = current.binding(&want).ok_or_else(|| {
        ApiError::new(
            ErrorCode::KeyringChanged,
            format!("binding {want} (this key's app and envs) is not registered in key generation {}: register it first (Ductape clients do)", current.generation),
        )
    })?;
    if binding.pending {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("binding {want} is still being granted the secrets it may read: finish that first (creating a key for it again resumes it)"),
        ));
    }
    // One grant per generation that has the binding (during a rotation, the old one too,
    // so the key reads values not resealed yet), the current one among them.
    let fits = grants.grants.iter().all(|(g, b, _)| {
        *b == want
            && ring
                .generation(*g)
                .and_then(|gen| gen.binding(&want))
                .is_some_and(|b| !b.pending)
    });
    let has_current = grants
        .grants
        .iter()
        .any(|(g, _, _)| *g == current.generation);
    if fits && has_current {
        Ok(grants.to_string())
    } else {
        Err(ApiError::new(
            ErrorCode::KeyringChanged,
            format!(
                "field 'wrapped_key' must grant binding {want} of key generation {} (and of older generations holding it, only)",
                current.generation
            ),
        ))
    }
}

/// Register a new access key (admin). The client made it and wrapped the workspace key.
/// A bound key can only issue keys no wider than itself: the same or fewer permissions,
/// bound to its app and within its environments.
#[utoipa::path(post, path = "/v1/access-keys", tag = "access-keys", request_body = CreateAccessKeyBody,
    responses((status = 201, body = AccessKeyInfo), (status = 403, body = ErrorBody)), security(("access_key" = [])))]
pub async fn create(
    State(st): State<Shared>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<AccessKeyInfo>), ApiError> {
    let mut event = audit_trail::event(&caller, "access_key.create", "", None, None);
    let outcome = async {
        caller.require(Permission::Admin)?;
        // Format 2 checks the grant against the keyring as stored now (it changes).
        let ring = fresh_keyring(&st).await?;
        let wrapping = match &ring {
            Some(ring) => Wrapping::Grants(ring),
            None => Wrapping::WorkspaceKey(&caller.workspace.key_id),
        };
        let key = parse_new_key(&body, &caller.workspace.id, wrapping)?;
        event.secret_key = key.id.clone();
        if let Some(p) = key
            .permissions
            .iter()
            .find(|p| !p.granted_by(&caller.key.permissions))
        {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "a key cannot issue a key with more permissions than its own ('{}')",
                    p.as_str()
                ),
            ));
        }
        if !access::key_within(key.app.as_deref(), &key.envs, caller.binding()) {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "a bound key can only issue keys bound to its app and within its environments",
            ));
        }
        event.detail = Some(describe_key(&key));
        st.storage
            .create_access_key(key.clone(), event.clone())
            .await?;
        Ok(key)
    }
    .await;
    audit_trail::record_refusal(&st, event, &outcome).await;
    let key = outcome?;
    tracing::info!(id = %key.id, name = %key.name, by = %caller.key.id, "access key created");
    Ok((StatusCode::CREATED, Json(key.info())))
}

/// What an access-key event records about the key: its permissions and binding.
fn describe_key(k: &StoredAccessKey) -> String {
    let perms: Vec<&str> = k.permissions.iter().map(|p| p.as_str()).collect();
    format!(
        "permissions={} app={} envs={}",
        perms.join(","),
        k.app.as_deref().unwrap_or("*"),
        if k.envs.is_empty() {
            "*".to_owned()
        } else {
            k.envs.join(",")
        }
    )
}

/// Whether `binding` covers `k` (a bound key sees and deletes only such keys).
fn within(binding: access::Binding<'_>, k: &StoredAccessKey) -> bool {
    access::key_within(k.app.as_deref(), &k.envs, binding)
}

/// List access keys (admin). Never their secrets. A bound key sees the keys within its
/// binding.
#[utoipa::path(get, path = "/v1/access-keys", tag = "access-keys",
    responses((status = 200, body = Vec<AccessKeyInfo>)), security(("access_key" = [])))]
pub async fn list(
    State(st): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<AccessKeyInfo>>, ApiError> {
    caller.require(Permission::Admin)?;
    let keys = st.storage.list_access_keys(&caller.workspace.id).await?;
    Ok(Json(
        keys.iter()
            .filter(|k| within(caller.binding(), k))
            .map(StoredAccessKey::info)
            .collect(),
    ))
}

/// Delete an access key and its wrapped workspace key (admin). The last admin key cannot
/// be deleted: without it nobody could issue keys again. A bound key can delete only keys
/// within its binding (others do not exist for it).
#[utoipa::path(delete, path = "/v1/access-keys/{id}", tag = "access-keys", params(("id" = String, Path)),
    responses((status = 200, body = DeletedResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn delete(
    State(st): State<Shared>,
    caller: Caller,
    PathParam(id): PathParam,
) -> Result<Json<DeletedResponse>, ApiError> {
    // Only a well-formed id is recorded (the path is the caller's text).
    let well_formed = is_access_key_id(&id);
    let target = if well_formed { id.as_str() } else { "" };
    let event = audit_trail::event(&caller, "access_key.delete", target, None, None);
    let outcome = async {
        caller.require(Permission::Admin)?;
        if !well_formed {
            return Err(no_such_access_key());
        }
        let binding = caller.owned_binding();
        st.storage
            .delete_access_key(
                &caller.workspace.id,
                &id,
                Box::new(move |k| {
                    if within(binding.get(), k) {
                        Ok(())
                    } else {
                        Err(no_such_access_key())
                    }
                }),
                event.clone(),
            )
            .await
    }
    .await;
    audit_trail::record_refusal(&st, event, &outcome).await;
    outcome?;
    st.forget_access_key(&id);
    tracing::info!(id = %id, by = %caller.key.id, "access key deleted");
    Ok(Json(DeletedResponse {
        deleted: true,
        key: id,
    }))
}

/// Who the caller is, and its wrapped copy of the workspace key (what `init()` reads).
#[utoipa::path(get, path = "/v1/session", tag = "workspace",
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorBody)), security(("access_key" = [])))]
pub async fn session(
    State(st): State<Shared>,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> Result<Json<SessionResponse>, ApiError> {
    let keyring = fresh_keyring(&st).await?;
    if keyring.is_some() {
        let format = headers
            .get(keyring::FORMAT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1);
        if format < keyring::FORMAT {
            // A client that predates format 2 would seal values every key could open.
            return Err(ApiError::new(
                ErrorCode::UpgradeRequired,
                format!("this workspace uses data format 2 and this client predates it: upgrade your Ductape client (pip/npm/cargo) to {} or later", crate::MIN_CLIENT),
            ));
        }
    }
    // Grants change (rotation, upgrade): read them as stored now, not as cached.
    let wrapped_key = st
        .storage
        .access_key(&caller.key.id)
        .await?
        .map(|k| k.wrapped_key)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "this access key was deleted"))?;
    Ok(Json(SessionResponse {
        workspace: caller.workspace.info(),
        access_key: caller.key.info(),
        wrapped_key,
        keyring,
    }))
}

/// The keyring as stored now (the cached workspace's copy only says which format it is).
pub(crate) async fn fresh_keyring(
    st: &crate::state::AppState,
) -> Result<Option<Keyring>, ApiError> {
    let Some(ws) = st.storage.workspace().await? else {
        return Ok(None);
    };
    crate::storage::stored_keyring(ws.keyring)
}

/// The workspace.
#[utoipa::path(get, path = "/v1/workspace", tag = "workspace",
    responses((status = 200, body = WorkspaceInfo)), security(("access_key" = [])))]
pub async fn workspace(caller: Caller) -> Json<WorkspaceInfo> {
    Json(caller.workspace.info())
}

/// First-time setup with the one-time token the server printed: creates the workspace
/// and its first admin access key.
#[utoipa::path(post, path = "/v1/setup", tag = "workspace", request_body = SetupBody,
    responses((status = 201, body = WorkspaceInfo), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn setup(
    State(st): State<Shared>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<WorkspaceInfo>), ApiError> {
    let info = apply_setup(&st, &body).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// The setup itself, shared by the HTTP route and the `--dev` bootstrap.
pub async fn apply_setup(
    st: &crate::state::AppState,
    body: &Map<String, Value>,
) -> Result<WorkspaceInfo, ApiError> {
    // A server set up already says so, whatever the body.
    if st.workspace_if_known().await {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "this server is already set up",
        ));
    }
    validate::reject_unknown_fields(
        body,
        &[
            "setup_token",
            "workspace_id",
            "workspace_name",
            "key_id",
            "access_key",
            "keyring",
        ],
    )?;
    let token = validate::required_string(body, "setup_token")?;
    let ws_id = validate::required_string(body, "workspace_id")?;
    let ok_id = ws_id.strip_prefix("ws_").is_some_and(|h| {
        h.len() == 24
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !ok_id {
        return Err(invalid(
            "field 'workspace_id' must be 'ws_' and 24 lowercase hex characters",
        ));
    }
    let name = validate::required_string(body, "workspace_name")?;
    if name.trim().is_empty() || name.chars().count() > 128 {
        return Err(invalid(
            "field 'workspace_name' must be 1 to 128 characters",
        ));
    }
    let key_id = KeyId::parse(validate::required_string(body, "key_id")?)
        .ok_or_else(|| invalid("field 'key_id' must be 16 lowercase hex characters"))?;
    let ak = body
        .get("access_key")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("field 'access_key' must be an object"))?;
    // Format 2 when the client sends a keyring: a first generation with the unbound binding.
    let keyring = match body.get("keyring") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let ring: Keyring = serde_json::from_value(v.clone())
                .ok()
                .filter(|r: &Keyring| {
                    r.check().is_ok() && r.generations.len() == 1 && r.current().bindings.len() == 1
                })
                .ok_or_else(|| {
                    invalid("field 'keyring' must be a first keyring made by a Ductape client (one generation, the unbound binding)")
                })?;
            Some(ring)
        }
    };
    let wrapping = match &keyring {
        Some(ring) => Wrapping::Grants(ring),
        None => Wrapping::WorkspaceKey(key_id.as_str()),
    };
    let key = parse_new_key(ak, ws_id, wrapping)?;
    if !key.permissions.contains(&Permission::Admin) {
        return Err(invalid(
            "the first access key must have the 'admin' permission",
        ));
    }
    let ws = Workspace {
        id: ws_id.to_owned(),
        name: name.to_owned(),
        key_id: key_id.to_string(),
        created_ms: now_millis(),
        keyring: keyring.as_ref().map(Keyring::to_json),
    };
    let event = AuditEvent {
        at_ms: now_millis(),
        workspace_id: ws.id.clone(),
        access_key_id: key.id.clone(),
        action: "setup".into(),
        allowed: true,
        detail: Some(describe_key(&key)),
        ..AuditEvent::default()
    };
    st.storage
        .setup(&hash_secret(token), ws.clone(), key, event)
        .await?;
    // Cache the new workspace (liveness reports `initialized` without the database).
    st.workspace().await?;
    tracing::info!(workspace = %ws.id, "workspace set up");
    Ok(ws.info())
}
