//! `/v1/keyring/...`: format 2's bindings. An admin's client registers a new binding's
//! public key, then wraps to it the data key of every secret the binding may read (the
//! grant scan: resumable, since the server lists what is still missing), then marks it
//! ready; only then can access keys be issued for it. The server handles public keys and
//! wraps only: it can check who a wrap is for, never open one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::audit_trail;
use crate::auth::Caller;
use crate::auth::Shared;
use crate::body::{typed, JsonObject, PathParam};
use crate::error::ApiError;
use crate::routes::access_keys::fresh_keyring;
use crate::storage::StoredSecret;
use ductape::access;
use ductape::crypto::keyring::{Binding, Keyring};
use ductape::crypto::{sha256_hex, SealedSecret};
use ductape::wire::{
    AddWrapsBody, AddWrapsResponse, ErrorBody, PendingSecret, PendingWraps, PendingWrapsBody,
    Permission, RegisterBindingBody,
};
use ductape::ErrorCode;

/// Rows one scan request looks at, at most (bounds the work of one request).
const SCAN_ROWS: usize = 5_000;

fn invalid(msg: impl Into<String>) -> ApiError {
    ductape::Error::invalid_field(msg).into()
}

fn format2(ring: Option<Keyring>) -> Result<Keyring, ApiError> {
    ring.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "this workspace is in format 1 (one workspace key): it has no bindings",
        )
    })
}

/// The binding `id` of the current generation, if the caller may administer it: admin
/// permission, and the binding no wider than the caller's own (404 otherwise).
fn administered<'a>(caller: &Caller, ring: &'a Keyring, id: &str) -> Result<&'a Binding, ApiError> {
    caller.require(Permission::Admin)?;
    ring.current()
        .binding(id)
        .filter(|b| access::key_within(b.app.as_deref(), &b.envs, caller.binding()))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no binding with that id"))
}

/// Register a binding (admin; no wider than the caller's own binding). 409 if it exists.
#[utoipa::path(post, path = "/v1/keyring/bindings", tag = "keyring", request_body = RegisterBindingBody,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn register(
    State(st): State<Shared>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Keyring>), ApiError> {
    let body: RegisterBindingBody = typed(body)?;
    let b = body.binding;
    let mut event = audit_trail::event(&caller, "keyring.binding", &b.id, None, None);
    event.detail = Some(format!(
        "app={} envs={}",
        b.app.as_deref().unwrap_or("*"),
        if b.envs.is_empty() {
            "*".to_owned()
        } else {
            b.envs.join(",")
        }
    ));
    let outcome = async {
        caller.require(Permission::Admin)?;
        if !access::key_within(b.app.as_deref(), &b.envs, caller.binding()) {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "a bound key can only register bindings within its own app and environments",
            ));
        }
        if let Some(app) = &b.app {
            ductape::validate::check_tags("app", vec![app.clone()])?;
        }
        let envs = ductape::validate::check_tags("envs", b.envs.clone())?;
        if envs != b.envs || b.is_unbound() {
            return Err(invalid("field 'binding' must name an app and/or environments (sorted, distinct)"));
        }
        let generation = body.generation;
        let change = Box::new(move |stored: Option<Keyring>| {
            let mut ring = format2(stored)?;
            let current = ring.current();
            if current.generation != generation {
                return Err(ApiError::new(
                    ErrorCode::KeyringChanged,
                    format!("the workspace is at key generation {}, not {generation}", current.generation),
                ));
            }
            if current.binding(&b.id).is_some() {
                return Err(ApiError::new(ErrorCode::Conflict, format!("binding {} is registered already", b.id)));
            }
            // Its private key must be wrapped to exactly the wider bindings (so they can grant it).
            let wider: Vec<&str> = current
                .bindings
                .iter()
                .filter(|w| b.within(w))
                .map(|w| w.id.as_str())
                .collect();
            let wrapped: Vec<&str> = b.wraps.keys().map(String::as_str).collect();
            let mut want = wider.clone();
            want.sort_unstable();
            if want != wrapped
                || b.wraps.values().any(|w| ductape::crypto::wrap::WrappedTo::from_raw_b64(w).is_none())
            {
                return Err(invalid(format!(
                    "field 'binding.wraps' must wrap its private key to exactly the wider bindings: {}",
                    want.join(",")
                )));
            }
            let mut b = b;
            b.pending = true;
            ring.generations.last_mut().expect("checked").bindings.push(b);
            ring.check().map_err(|e| invalid(e.message().to_owned()))?;
            Ok(ring)
        });
        st.storage
            .update_keyring(&caller.workspace.id, change, event.clone())
            .await
    }
    .await;
    audit_trail::record_refusal(&st, event, &outcome).await;
    Ok((StatusCode::CREATED, Json(outcome?)))
}

/// The next secrets the binding may read but is not wrapped to (admin, within).
#[utoipa::path(post, path = "/v1/keyring/bindings/{id}/pending", tag = "keyring", params(("id" = String, Path)),
    request_body = PendingWrapsBody, responses((status = 200, body = PendingWraps), (status = 404, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn pending(
    State(st): State<Shared>,
    caller: Caller,
    PathParam(id): PathParam,
    JsonObject(body): JsonObject,
) -> Result<Json<PendingWraps>, ApiError> {
    let body: PendingWrapsBody = typed(body)?;
    let ring = format2(fresh_keyring(&st).await?)?;
    let binding = administered(&caller, &ring, &id)?;
    let total = match body.after {
        None => Some(st.storage.count_secrets(&caller.workspace.id).await?),
        Some(_) => None,
    };
    let mut after = body.after;
    let mut secrets = Vec::new();
    let mut scanned = 0u64;
    loop {
        let rows = st
            .storage
            .list_secrets(&caller.workspace.id, after.clone(), 500)
            .await?;
        let done = rows.len() < 500;
        for s in rows {
            scanned += 1;
            after = Some(s.key.clone());
            if lacks(binding, &s) {
                secrets.push(PendingSecret {
                    key: s.key,
                    ciphertext: s.ciphertext,
                });
            }
        }
        if done {
            after = None;
            break;
        }
        // Each round of 500 rows adds at most 500: stop at the first that found any.
        if !secrets.is_empty() || scanned as usize >= SCAN_ROWS {
            break;
        }
    }
    Ok(Json(PendingWraps {
        secrets,
        scanned,
        next_after: after,
        total,
    }))
}

/// Whether `binding` may read `s` but its sealed value is not wrapped to it.
fn lacks(binding: &Binding, s: &StoredSecret) -> bool {
    binding.reads(&s.scope, &s.envs)
        && SealedSecret::parse(&s.ciphertext)
            .is_some_and(|sealed| !sealed.recipients().any(|r| r == binding.id))
}

/// Add wraps of secrets' data keys to the binding (admin, within). Only to secrets it may
/// read and is not wrapped to, and only while the value is still the one wrapped.
#[utoipa::path(post, path = "/v1/keyring/bindings/{id}/wraps", tag = "keyring", params(("id" = String, Path)),
    request_body = AddWrapsBody, responses((status = 200, body = AddWrapsResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn add_wraps(
    State(st): State<Shared>,
    caller: Caller,
    PathParam(id): PathParam,
    JsonObject(body): JsonObject,
) -> Result<Json<AddWrapsResponse>, ApiError> {
    let body: AddWrapsBody = typed(body)?;
    let ring = format2(fresh_keyring(&st).await?)?;
    let binding = administered(&caller, &ring, &id)?;
    if body.wraps.len() > PendingWraps::MAX_SECRETS {
        return Err(invalid(format!(
            "field 'wraps' holds at most {} wraps",
            PendingWraps::MAX_SECRETS
        )));
    }
    let keys: Vec<String> = body.wraps.iter().map(|w| w.key.clone()).collect();
    let rows = st.storage.get_secrets(&caller.workspace.id, &keys).await?;
    let mut items = Vec::new();
    let mut stale = 0;
    for (i, w) in body.wraps.iter().enumerate() {
        let Some(s) = rows.iter().find(|s| s.key == w.key) else {
            stale += 1;
            continue;
        };
        if sha256_hex(&s.ciphertext) != w.of {
            stale += 1;
            continue;
        }
        if !lacks(binding, s) {
            return Err(invalid(format!(
                "wraps[{i}]: binding {} may not read secret '{}' or holds a wrap of it already",
                binding.id, s.key
            )));
        }
        // One wrap (no ',': that would append several), to this binding, and the value
        // with it appended still a well-formed sealed value.
        let new = format!("{},{}", s.ciphertext, w.wrap);
        let ok = !w.wrap.contains(',')
            && SealedSecret::parse(&new)
                .is_some_and(|n| n.wraps.last().is_some_and(|(b, _)| *b == binding.id));
        if !ok {
            return Err(invalid(format!(
                "wraps[{i}]: field 'wrap' must be '{}:<wrapped data key>' made by a Ductape client",
                binding.id
            )));
        }
        items.push((s.key.clone(), s.ciphertext.clone(), new));
    }
    let mut event = audit_trail::event(&caller, "keyring.grant", &binding.id, None, None);
    event.detail = Some(format!("wraps={}", items.len()));
    let replaced = st
        .storage
        .replace_ciphertexts(&caller.workspace.id, items, event)
        .await?;
    let added = replaced.iter().filter(|r| **r).count() as u64;
    Ok(Json(AddWrapsResponse {
        added,
        stale: stale + replaced.len() as u64 - added,
    }))
}

/// Mark the binding ready once no secret it may read lacks its wrap (admin, within): then
/// access keys can be issued for it.
#[utoipa::path(post, path = "/v1/keyring/bindings/{id}/ready", tag = "keyring", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn ready(
    State(st): State<Shared>,
    caller: Caller,
    PathParam(id): PathParam,
) -> Result<Json<Keyring>, ApiError> {
    let ring = format2(fresh_keyring(&st).await?)?;
    let binding = administered(&caller, &ring, &id)?.clone();
    // Every secret written from now on is sealed for it (the keyring lists it), so one
    // full pass finding none missing proves the grant complete.
    let mut after = None;
    loop {
        let rows = st
            .storage
            .list_secrets(&caller.workspace.id, after, 1000)
            .await?;
        if let Some(s) = rows.iter().find(|s| lacks(&binding, s)) {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "secret '{}' is not wrapped to binding {} yet: finish the grant scan first",
                    s.key, binding.id
                ),
            ));
        }
        match rows.last() {
            Some(last) if rows.len() == 1000 => after = Some(last.key.clone()),
            _ => break,
        }
    }
    let event = audit_trail::event(&caller, "keyring.ready", &binding.id, None, None);
    let id2 = binding.id.clone();
    let ring = st
        .storage
        .update_keyring(
            &caller.workspace.id,
            Box::new(move |stored| {
                let mut ring = format2(stored)?;
                if let Some(b) = ring
                    .generations
                    .last_mut()
                    .and_then(|g| g.bindings.iter_mut().find(|b| b.id == id2))
                {
                    b.pending = false;
                }
                Ok(ring)
            }),
            event,
        )
        .await?;
    Ok(Json(ring))
}
