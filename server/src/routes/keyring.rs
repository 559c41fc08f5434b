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
use crate::storage::{KeyringUpdate, StoredAccessKey, StoredSecret};
use ductape::access;
use ductape::crypto::keyring::{binding_id, Binding, Generation, Keyring};
use ductape::crypto::wrap::WrappedTo;
use ductape::crypto::{sha256_hex, AccessGrants, SealedSecret};
use ductape::wire::{
    AddGrantsBody, AddWrapsBody, AddWrapsResponse, ErrorBody, GrantTo, Grantee, NewGenerationBody,
    PendingSecret, PendingWraps, PendingWrapsBody, Permission, RegisterBindingBody, ResealBody,
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
            return Err(invalid(
                "field 'binding' must name an app and/or environments (sorted, distinct)",
            ));
        }
        let generation = body.generation;
        let change = Box::new(move |stored: Option<Keyring>, _: &[StoredAccessKey]| {
            let mut ring = format2(stored)?;
            let current = ring.current();
            if current.generation != generation {
                return Err(ApiError::new(
                    ErrorCode::KeyringChanged,
                    format!(
                        "the workspace is at key generation {}, not {generation}",
                        current.generation
                    ),
                ));
            }
            if ring.in_transition() {
                return Err(rotation_under_way());
            }
            if current.binding(&b.id).is_some() {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("binding {} is registered already", b.id),
                ));
            }
            check_wraps(&b, &current.bindings)?;
            if b.legacy.is_some() {
                return Err(invalid(
                    "field 'binding.legacy' is only made by the upgrade from format 1",
                ));
            }
            let mut b = b;
            b.pending = true;
            ring.generations
                .last_mut()
                .expect("checked")
                .bindings
                .push(b);
            ring.check().map_err(|e| invalid(e.message().to_owned()))?;
            Ok(ring.into())
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
        None => Some(st.storage.count_sealed(&caller.workspace.id).await?),
        Some(_) => None,
    };
    let page = scan(&st, &caller.workspace.id, body.after, |s| lacks(binding, s)).await?;
    Ok(Json(page.answer(total)))
}

/// Whether `binding` may read `s` but its sealed value is not wrapped to it.
fn lacks(binding: &Binding, s: &StoredSecret) -> bool {
    binding.reads(&s.scope, &s.envs)
        && SealedSecret::parse(&s.ciphertext)
            .is_some_and(|sealed| !sealed.recipients().any(|r| r == binding.id))
}

/// One page of a scan over the workspace's secrets, in key order.
struct Page {
    found: Vec<StoredSecret>,
    scanned: u64,
    /// Where the next page starts; `None` when this one reached the end.
    next_after: Option<String>,
}

impl Page {
    fn answer(self, total: Option<u64>) -> PendingWraps {
        PendingWraps {
            secrets: self
                .found
                .into_iter()
                .map(|s| PendingSecret {
                    key: s.key,
                    ciphertext: s.ciphertext,
                    scope: s.scope,
                    envs: s.envs,
                })
                .collect(),
            scanned: self.scanned,
            next_after: self.next_after,
            total,
        }
    }
}

/// The stored values `wanted` picks (current secrets, their earlier versions and the
/// trash, see `Storage::list_sealed`), from `after` on: rounds of 500 secret keys until the
/// end, a round that found any, or [`SCAN_ROWS`] rows looked at. A value stored in several
/// rows (a version kept unchanged in history) is listed once: one replacement covers all.
async fn scan(
    st: &crate::state::AppState,
    workspace: &str,
    mut after: Option<String>,
    wanted: impl Fn(&StoredSecret) -> bool,
) -> Result<Page, ApiError> {
    let mut found: Vec<StoredSecret> = Vec::new();
    let mut scanned = 0u64;
    loop {
        let (rows, next) = st
            .storage
            .list_sealed(workspace, after.clone(), 500)
            .await?;
        for s in rows {
            scanned += 1;
            let listed = found
                .iter()
                .any(|f| f.key == s.key && f.ciphertext == s.ciphertext);
            if !listed && wanted(&s) {
                found.push(s);
            }
        }
        after = next;
        if after.is_none() || !found.is_empty() || scanned as usize >= SCAN_ROWS {
            break;
        }
    }
    Ok(Page {
        found,
        scanned,
        next_after: after,
    })
}

/// The first secret `wanted` picks in one full pass, if any.
async fn first_of_all(
    st: &crate::state::AppState,
    workspace: &str,
    wanted: impl Fn(&StoredSecret) -> bool,
) -> Result<Option<StoredSecret>, ApiError> {
    let mut after = None;
    loop {
        let page = scan(st, workspace, after, &wanted).await?;
        if let Some(s) = page.found.into_iter().next() {
            return Ok(Some(s));
        }
        match page.next_after {
            Some(a) => after = Some(a),
            None => return Ok(None),
        }
    }
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
    let generation = ring.current().generation;
    let items = body
        .wraps
        .into_iter()
        .map(|w| (w.key, w.of, w.wrap))
        .collect();
    let mut event = audit_trail::event(&caller, "keyring.grant", &binding.id, None, None);
    event.detail = Some(format!("binding={}", binding.id));
    let answer = replace_unchanged(
        &st,
        &caller,
        ("wraps", "wrap"),
        items,
        // Only values of the current generation are wrapped to its bindings.
        |s| SealedSecret::parse(&s.ciphertext).is_some_and(|v| v.generation == generation),
        |i, s, wrap| {
            if !lacks(binding, s) {
                return Err(invalid(format!(
                    "wraps[{i}]: binding {} may not read secret '{}' or holds a wrap of it already",
                    binding.id, s.key
                )));
            }
            // One wrap (no ',': that would append several), to this binding, and the value
            // with it appended still a well-formed sealed value.
            let new = format!("{},{wrap}", s.ciphertext);
            let ok = !wrap.contains(',')
                && SealedSecret::parse(&new)
                    .is_some_and(|n| n.wraps.last().is_some_and(|(b, _)| *b == binding.id));
            if !ok {
                return Err(invalid(format!(
                    "wraps[{i}]: field 'wrap' must be '{}:<wrapped data key>' made by a Ductape client",
                    binding.id
                )));
            }
            Ok(new)
        },
        event,
    )
    .await?;
    Ok(Json(answer))
}

/// Replaces stored values compare-and-swap, for a batch of `(key, of, text)`: the value of
/// secret `key` that still hashes (SHA-256 hex) to `of`, wherever it is stored, when every
/// row holding it is `eligible`, becomes what `replace` makes of it and `text` (checked on
/// each such row; an error refuses the whole batch); the others are counted stale, as are
/// those changed between the read and the write.
async fn replace_unchanged(
    st: &crate::state::AppState,
    caller: &Caller,
    (field, item): (&str, &str),
    items: Vec<(String, String, String)>,
    eligible: impl Fn(&StoredSecret) -> bool,
    replace: impl Fn(usize, &StoredSecret, &str) -> Result<String, ApiError>,
    mut event: crate::storage::AuditEvent,
) -> Result<AddWrapsResponse, ApiError> {
    if items.len() > PendingWraps::MAX_SECRETS {
        return Err(invalid(format!(
            "field '{field}' holds at most {} items",
            PendingWraps::MAX_SECRETS
        )));
    }
    let keys: Vec<String> = items.iter().map(|(k, _, _)| k.clone()).collect();
    let rows = st.storage.sealed_rows(&caller.workspace.id, &keys).await?;
    let mut changes = Vec::new();
    let mut stale = 0;
    for (i, (key, of, text)) in items.iter().enumerate() {
        // Every row holding the value (current, earlier versions, trash) must qualify: one
        // replacement changes them all.
        let holding: Vec<&StoredSecret> = rows
            .iter()
            .filter(|s| s.key == *key && sha256_hex(&s.ciphertext) == *of)
            .collect();
        if holding.is_empty() || !holding.iter().all(|s| eligible(s)) {
            stale += 1;
            continue;
        }
        let mut new = None;
        for s in &holding {
            new = Some(replace(i, s, text)?);
        }
        if let (Some(new), Some(s)) = (new, holding.first()) {
            changes.push((s.key.clone(), s.ciphertext.clone(), new));
        }
    }
    let detail = event.detail.take().unwrap_or_default();
    event.detail = Some(
        format!("{detail} {item}s={}", changes.len())
            .trim()
            .to_owned(),
    );
    let replaced = st
        .storage
        .replace_ciphertexts(&caller.workspace.id, changes, event)
        .await?;
    let added = replaced.iter().filter(|r| **r).count() as u64;
    Ok(AddWrapsResponse {
        added,
        stale: stale + replaced.len() as u64 - added,
    })
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
    if let Some(s) = first_of_all(&st, &caller.workspace.id, |s| lacks(&binding, s)).await? {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "secret '{}' is not wrapped to binding {} yet: finish the grant scan first",
                s.key, binding.id
            ),
        ));
    }
    let event = audit_trail::event(&caller, "keyring.ready", &binding.id, None, None);
    let id2 = binding.id.clone();
    let ring = st
        .storage
        .update_keyring(
            &caller.workspace.id,
            Box::new(move |stored, _: &[StoredAccessKey]| {
                let mut ring = format2(stored)?;
                if let Some(b) = ring
                    .generations
                    .last_mut()
                    .and_then(|g| g.bindings.iter_mut().find(|b| b.id == id2))
                {
                    b.pending = false;
                }
                Ok(ring.into())
            }),
            event,
        )
        .await?;
    Ok(Json(ring))
}

fn rotation_under_way() -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        "a key rotation (or the upgrade from format 1) is under way: finish it first (`ductape workspace rotate-key` resumes it)",
    )
}

/// A binding's private key must be wrapped to exactly the bindings of `among` wider than it
/// (so they can grant it), each wrap well formed.
fn check_wraps(b: &Binding, among: &[Binding]) -> Result<(), ApiError> {
    let mut want: Vec<&str> = among
        .iter()
        .filter(|w| w.id != b.id && b.within(w))
        .map(|w| w.id.as_str())
        .collect();
    want.sort_unstable();
    let wrapped: Vec<&str> = b.wraps.keys().map(String::as_str).collect();
    if want != wrapped
        || b.wraps
            .values()
            .any(|w| WrappedTo::from_raw_b64(w).is_none())
    {
        return Err(invalid(format!(
            "binding {}: its private key must be wrapped to exactly the wider bindings: {}",
            b.id,
            want.join(",")
        )));
    }
    Ok(())
}

/// Rotation and upgrade read and reseal every value: only an unbound admin key can.
fn require_unbound_admin(caller: &Caller) -> Result<(), ApiError> {
    caller.require(Permission::Admin)?;
    if caller.key.app.is_some() || !caller.key.envs.is_empty() {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "rotating or upgrading the workspace keys reseals every secret: it takes an unbound admin key",
        ));
    }
    Ok(())
}

/// The access keys (within the caller's binding) as grants see them.
#[utoipa::path(get, path = "/v1/keyring/grantees", tag = "keyring",
    responses((status = 200, body = Vec<Grantee>), (status = 403, body = ErrorBody)), security(("access_key" = [])))]
pub async fn grantees(
    State(st): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<Grantee>>, ApiError> {
    caller.require(Permission::Admin)?;
    let keys = st.storage.list_access_keys(&caller.workspace.id).await?;
    Ok(Json(
        keys.iter()
            .filter(|k| access::key_within(k.app.as_deref(), &k.envs, caller.binding()))
            .map(|k| {
                let grants = AccessGrants::parse(&k.wrapped_key);
                Grantee {
                    id: k.id.clone(),
                    app: k.app.clone(),
                    envs: k.envs.clone(),
                    public_key: grants.as_ref().map(|g| g.public_key.clone()),
                    generations: grants
                        .map(|g| g.grants.iter().map(|(n, _, _)| *n).collect())
                        .unwrap_or_default(),
                }
            })
            .collect(),
    ))
}

/// `key`'s grants with `given` (one grant of `generation`, of the key's own binding) added.
/// A format-1 key's grants can be made only by itself: nobody else knows its public key.
fn merged_grants(
    key: &StoredAccessKey,
    given: &str,
    generation: u32,
    caller_id: &str,
) -> Result<String, ApiError> {
    let g = AccessGrants::parse(given).ok_or_else(|| {
        invalid(format!(
            "access key {}: field 'grants' must be a grant made by a Ductape client ('dg2')",
            key.id
        ))
    })?;
    let want = binding_id(key.app.as_deref(), &key.envs);
    let [(n, b, wrap)] = g.grants.as_slice() else {
        return Err(invalid(format!(
            "access key {}: give exactly one grant",
            key.id
        )));
    };
    if *n != generation || *b != want {
        return Err(ApiError::new(
            ErrorCode::KeyringChanged,
            format!(
                "access key {}: the grant must be of its binding {want} in key generation {generation}",
                key.id
            ),
        ));
    }
    match AccessGrants::parse(&key.wrapped_key) {
        Some(mut stored) => {
            if stored.public_key != g.public_key {
                return Err(invalid(format!(
                    "access key {}: the grant is made to another public key",
                    key.id
                )));
            }
            stored.grants.retain(|(old, _, _)| *old != generation);
            stored.grants.push((*n, b.clone(), wrap.clone()));
            Ok(stored.to_string())
        }
        None if key.id == caller_id => Ok(g.to_string()),
        None => Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "access key {} predates format 2: it converts itself on its first use by a current client",
                key.id
            ),
        )),
    }
}

/// Whether a key still holds a format-1 wrapped workspace key.
fn is_format1(k: &StoredAccessKey) -> bool {
    AccessGrants::parse(&k.wrapped_key).is_none()
}

/// Drops the upgrade wraps under the old workspace key once no format-1 key is left.
fn retire_legacy(ring: &mut Keyring, keys: &[StoredAccessKey], converted: &[(String, String)]) {
    let left = keys
        .iter()
        .any(|k| is_format1(k) && !converted.iter().any(|(id, _)| *id == k.id));
    if !left {
        for b in ring
            .generations
            .iter_mut()
            .flat_map(|g| g.bindings.iter_mut())
        {
            b.legacy = None;
        }
    }
}

/// Start a rotation (or the upgrade from format 1): the next generation, with a grant of it
/// to every access key with a public key (unbound admin).
#[utoipa::path(post, path = "/v1/keyring/generations", tag = "keyring", request_body = NewGenerationBody,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn start(
    State(st): State<Shared>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Keyring>), ApiError> {
    let body: NewGenerationBody = typed(body)?;
    let number = body.generation.generation;
    let mut event = audit_trail::event(&caller, "keyring.rotate", "", None, None);
    event.detail = Some(format!("generation={number}"));
    let outcome = async {
        require_unbound_admin(&caller)?;
        let caller_id = caller.key.id.clone();
        let change = Box::new(move |stored: Option<Keyring>, keys: &[StoredAccessKey]| {
            let NewGenerationBody { generation, grants, upgrade_key } = body;
            let upgrade = stored.is_none();
            let expected = match &stored {
                // Another client started one: it is resumed, not started again.
                Some(ring) if ring.in_transition() => {
                    return Err(ApiError::new(ErrorCode::KeyringChanged, "a key rotation is under way already"))
                }
                Some(ring) => ring.current().generation + 1,
                None => 1,
            };
            if generation.generation != expected {
                return Err(ApiError::new(
                    ErrorCode::KeyringChanged,
                    format!("the next key generation is {expected}, not {}", generation.generation),
                ));
            }
            check_generation(&generation, upgrade)?;
            let upgrade_key = match (upgrade, upgrade_key) {
                (true, Some(w)) if WrappedTo::from_raw_b64(&w).is_some() => Some(w),
                (false, None) => None,
                _ => {
                    return Err(invalid(
                        "field 'upgrade_key' must hold the old workspace key wrapped to the new unbound binding, for the upgrade from format 1 only",
                    ))
                }
            };
            let mut changed = Vec::new();
            for k in keys {
                let id = binding_id(k.app.as_deref(), &k.envs);
                let Some(b) = generation.binding(&id) else {
                    return Err(ApiError::new(
                        ErrorCode::KeyringChanged,
                        format!("access key {} needs binding {id} in the new generation", k.id),
                    ));
                };
                let given = grants.iter().find(|g| g.id == k.id);
                match given {
                    Some(g) => changed.push((k.id.clone(), merged_grants(k, &g.grants, expected, &caller_id)?)),
                    None if !is_format1(k) => {
                        return Err(ApiError::new(
                            ErrorCode::KeyringChanged,
                            format!("access key {} gets no grant of the new generation (created meanwhile?): refresh and try again", k.id),
                        ))
                    }
                    None if upgrade && b.legacy.is_some() => {}
                    None if upgrade => {
                        return Err(invalid(format!(
                            "binding {id} needs an upgrade wrap for format-1 access key {}",
                            k.id
                        )))
                    }
                    None => {
                        return Err(ApiError::new(
                            ErrorCode::Conflict,
                            format!("access key {} still predates format 2 (it converts itself on its first use by a current client): use it once, or delete it, then rotate", k.id),
                        ))
                    }
                }
            }
            let mut ring = match stored {
                Some(mut ring) => {
                    ring.generations.push(generation);
                    ring
                }
                None => Keyring {
                    format: ductape::crypto::keyring::FORMAT,
                    generations: vec![generation],
                    upgrade_key,
                },
            };
            retire_legacy(&mut ring, keys, &changed);
            ring.check().map_err(|e| invalid(e.message().to_owned()))?;
            Ok(KeyringUpdate {
                keyring: ring,
                grants: changed,
            })
        });
        st.storage
            .update_keyring(&caller.workspace.id, change, event.clone())
            .await
    }
    .await;
    audit_trail::record_refusal(&st, event, &outcome).await;
    let ring = outcome?;
    if ring.upgrade_key.is_some() {
        // The upgrade changed the workspace's format: this server's cached copy follows.
        st.refresh_workspace().await?;
    }
    Ok((StatusCode::CREATED, Json(ring)))
}

/// A new generation as its maker sent it: the unbound binding and well-formed bindings,
/// none pending, each wrapped to exactly its wider ones; upgrade wraps only in an upgrade.
fn check_generation(g: &Generation, upgrade: bool) -> Result<(), ApiError> {
    if !g.bindings.iter().any(Binding::is_unbound) {
        return Err(invalid("field 'generation' must hold the unbound binding"));
    }
    for (i, b) in g.bindings.iter().enumerate() {
        if g.bindings[..i].iter().any(|o| o.id == b.id) {
            return Err(invalid(format!("binding {} is listed twice", b.id)));
        }
        if b.pending {
            return Err(invalid(format!("binding {} must not be pending", b.id)));
        }
        check_wraps(b, &g.bindings)?;
        let legacy_ok = match &b.legacy {
            None => true,
            Some(l) => upgrade && ductape::crypto::keyring::legacy_well_formed(l),
        };
        if !legacy_ok {
            return Err(invalid(format!(
                "binding {}: field 'legacy' is only made by the upgrade from format 1",
                b.id
            )));
        }
    }
    Ok(())
}

/// Add grants of the current generation to access keys: an admin's to keys within its
/// binding (those created while a rotation started), or any key's to itself (a format-1
/// key converting on its first use by a current client).
#[utoipa::path(post, path = "/v1/keyring/grants", tag = "keyring", request_body = AddGrantsBody,
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn add_grants(
    State(st): State<Shared>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Json<Keyring>, ApiError> {
    let body: AddGrantsBody = typed(body)?;
    let mut event = audit_trail::event(&caller, "keyring.grant", "", None, None);
    event.detail = Some(format!(
        "keys={}",
        body.grants
            .iter()
            .map(|g| g.id.as_str())
            .collect::<Vec<_>>()
            .join(",")
    ));
    let outcome = async {
        let caller_id = caller.key.id.clone();
        let admin = caller.require(Permission::Admin);
        if body.grants.iter().any(|g| g.id != caller_id) {
            admin?;
        }
        if body.grants.is_empty() || body.grants.len() > 1000 {
            return Err(invalid("field 'grants' must hold 1 to 1000 grants"));
        }
        let binding = caller.owned_binding();
        let change = Box::new(move |stored: Option<Keyring>, keys: &[StoredAccessKey]| {
            let mut ring = format2(stored)?;
            let generation = ring.current().generation;
            let mut changed = Vec::new();
            for GrantTo { id, grants } in &body.grants {
                let key = keys
                    .iter()
                    .find(|k| k.id == *id)
                    .filter(|k| {
                        *id == caller_id
                            || access::key_within(k.app.as_deref(), &k.envs, binding.get())
                    })
                    .ok_or_else(crate::storage::no_such_access_key)?;
                changed.push((
                    id.clone(),
                    merged_grants(key, grants, generation, &caller_id)?,
                ));
            }
            retire_legacy(&mut ring, keys, &changed);
            Ok(KeyringUpdate {
                keyring: ring,
                grants: changed,
            })
        });
        st.storage
            .update_keyring(&caller.workspace.id, change, event.clone())
            .await
    }
    .await;
    audit_trail::record_refusal(&st, event, &outcome).await;
    Ok(Json(outcome?))
}

/// Whether a stored value still waits for its reseal under the current generation.
fn not_current(ring: &Keyring, s: &StoredSecret) -> bool {
    SealedSecret::parse(&s.ciphertext).is_none_or(|v| v.generation != ring.current().generation)
}

/// The next secrets not sealed under the current generation, during a rotation or the
/// upgrade (unbound admin).
#[utoipa::path(post, path = "/v1/keyring/reseal/pending", tag = "keyring", request_body = PendingWrapsBody,
    responses((status = 200, body = PendingWraps), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn reseal_pending(
    State(st): State<Shared>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Json<PendingWraps>, ApiError> {
    let body: PendingWrapsBody = typed(body)?;
    require_unbound_admin(&caller)?;
    let ring = in_transition(fresh_keyring(&st).await?)?;
    let total = match body.after {
        None => Some(st.storage.count_sealed(&caller.workspace.id).await?),
        Some(_) => None,
    };
    let page = scan(&st, &caller.workspace.id, body.after, |s| {
        not_current(&ring, s)
    })
    .await?;
    Ok(Json(page.answer(total)))
}

fn in_transition(ring: Option<Keyring>) -> Result<Keyring, ApiError> {
    let ring = format2(ring)?;
    if ring.in_transition() {
        Ok(ring)
    } else {
        Err(ApiError::new(
            ErrorCode::Conflict,
            "no key rotation is under way",
        ))
    }
}

/// Replace values with their reseal under the current generation, each only while the
/// stored value is still the one resealed (unbound admin). Every reseal is checked like
/// any write: sealed for exactly the secret's audience.
#[utoipa::path(post, path = "/v1/keyring/reseal", tag = "keyring", request_body = ResealBody,
    responses((status = 200, body = AddWrapsResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn reseal(
    State(st): State<Shared>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Json<AddWrapsResponse>, ApiError> {
    let body: ResealBody = typed(body)?;
    require_unbound_admin(&caller)?;
    let ring = in_transition(fresh_keyring(&st).await?)?;
    let items = body
        .reseals
        .into_iter()
        .map(|r| (r.key, r.of, r.ciphertext))
        .collect();
    let mut event = audit_trail::event(&caller, "keyring.reseal", "", None, None);
    event.detail = Some(format!("generation={}", ring.current().generation));
    let answer = replace_unchanged(
        &st,
        &caller,
        ("reseals", "value"),
        items,
        |s| not_current(&ring, s),
        |i, s, text| {
            let sealed = SealedSecret::parse(text).ok_or_else(|| {
                invalid(format!(
                    "reseals[{i}]: field 'ciphertext' must be a value sealed by a Ductape client ('dv2')"
                ))
            })?;
            ring.check_audience(&sealed, &s.scope, &s.envs)
                .map_err(|e| ApiError::new(e.code(), format!("reseals[{i}]: {}", e.message())))?;
            Ok(text.to_owned())
        },
        event,
    )
    .await?;
    Ok(Json(answer))
}

/// Finish a rotation (or the upgrade): once every value is sealed under the current
/// generation and every key holds a grant of it, the older generations, their grants and
/// the old workspace key's wrap are dropped (unbound admin).
#[utoipa::path(post, path = "/v1/keyring/finish", tag = "keyring",
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn finish(State(st): State<Shared>, caller: Caller) -> Result<Json<Keyring>, ApiError> {
    require_unbound_admin(&caller)?;
    let ring = in_transition(fresh_keyring(&st).await?)?;
    let generation = ring.current().generation;
    // Since the rotation started, writes seal under the current generation only (checked
    // in their transactions), so one full pass finding none older proves it done.
    if let Some(s) = first_of_all(&st, &caller.workspace.id, |s| not_current(&ring, s)).await? {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("secret '{}' is not sealed under key generation {generation} yet: reseal every value first", s.key),
        ));
    }
    let mut event = audit_trail::event(&caller, "keyring.retire", "", None, None);
    event.detail = Some(format!("generation={generation}"));
    let change = Box::new(move |stored: Option<Keyring>, keys: &[StoredAccessKey]| {
        let mut ring = in_transition(stored)?;
        if ring.current().generation != generation {
            return Err(ApiError::new(
                ErrorCode::KeyringChanged,
                "the keyring changed meanwhile: refresh and try again",
            ));
        }
        let mut changed = Vec::new();
        for k in keys {
            let Some(mut g) = AccessGrants::parse(&k.wrapped_key) else {
                continue; // a format-1 key: its binding's upgrade wrap stays until it converts
            };
            if !g.grants.iter().any(|(n, _, _)| *n == generation) {
                return Err(ApiError::new(
                    ErrorCode::KeyringChanged,
                    format!("access key {} holds no grant of key generation {generation} yet: grant it first", k.id),
                ));
            }
            if g.grants.len() > 1 {
                g.grants.retain(|(n, _, _)| *n == generation);
                changed.push((k.id.clone(), g.to_string()));
            }
        }
        ring.generations.retain(|g| g.generation == generation);
        ring.upgrade_key = None;
        retire_legacy(&mut ring, keys, &[]);
        Ok(KeyringUpdate {
            keyring: ring,
            grants: changed,
        })
    });
    let ring = st
        .storage
        .update_keyring(&caller.workspace.id, change, event)
        .await?;
    Ok(Json(ring))
}
