//! `/v1/secrets`: create, list, get, update, delete, revoke, restore, batch get.
//!
//! Handlers parse, check permission and binding, call storage, and record value reads in the
//! audit trail before the ciphertext leaves, and changes (or their refusals) with the change.
//!
//! A key bound to an app or environments sees the secrets its binding may read; to it, a
//! secret outside them does not exist (404, the not-found message). Its writes must leave
//! a secret inside the binding, before and after (see `ductape::access::check_write_within`).

use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::audit_trail;
use crate::auth::{Caller, OwnedBinding, Shared};
use crate::body::{JsonObject, PathParam};
use crate::conditional;
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{
    AnswerText, AuditEvent, Change, Deletion, ReadAnswers, ReadRule, StoredSecret,
};
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use ductape::access::{self, Context};
use ductape::crypto::keyring::{binding_id, MAX_SEALED_LEN};
use ductape::crypto::SealedSecret;
use ductape::crypto::MAX_ENVELOPE_LEN;
use ductape::ids::{new_object_id, now_millis, now_secs};
use ductape::validate::{self, MetadataInput};
use ductape::wire::{
    BatchCreateBody, BatchCreateItem, BatchCreateResponse, BatchGetBody, BatchGetResponse,
    BatchItem, CreateSecretBody, DeleteQuery, DeletedResponse, ErrorBody, ErrorDetail, ListQuery,
    Permission, SecretPage, SecretRecord, SecretWithCiphertext, UpdateSecretBody,
};
use ductape::{Envelope, ErrorCode, SecretKey};

/// Most keys in one batch get.
pub const MAX_BATCH_KEYS: usize = 1000;

/// Fields a create or an update may carry, besides the metadata fields.
const CREATE_FIELDS: [&str; 2] = ["key", "ciphertext"];
const UPDATE_FIELDS: [&str; 2] = ["ciphertext", "expected_version"];

/// Create a secret (the value arrives sealed by the client).
#[utoipa::path(post, path = "/v1/secrets", tag = "secrets", request_body = CreateSecretBody,
    responses((status = 201, body = SecretRecord), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn create(
    State(st): State<Shared>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<SecretRecord>), ApiError> {
    // The event names the key when there is a valid one (never an invalid name: it may be
    // a value pasted in the wrong place).
    let target = body
        .get("key")
        .and_then(Value::as_str)
        .and_then(|k| SecretKey::parse(k).ok())
        .map(|k| k.to_string())
        .unwrap_or_default();
    let event = audit_trail::event(&caller, "create", &target, None, None);
    let outcome = create_secret(&st, &caller, &body, event.clone()).await;
    audit_trail::record_refusal(&st, event, &outcome).await;
    outcome.map(|r| (StatusCode::CREATED, Json(r)))
}

async fn create_secret(
    st: &AppState,
    caller: &Caller,
    body: &serde_json::Map<String, Value>,
    mut event: AuditEvent,
) -> Result<SecretRecord, ApiError> {
    caller.require(Permission::Write)?;
    let secret = new_secret(caller, body)?;
    check_new(caller, &secret)?;
    event.detail = Some(changed_fields(body));
    match st.storage.create_secret(secret.clone(), event).await {
        Ok(()) => {}
        Err(e) if e.code == ErrorCode::SecretExists && caller.binding().is_bound() => {
            let key = SecretKey::parse(&secret.key)?;
            return Err(hidden_name_taken(st, caller, &[key])
                .await?
                .pop()
                .flatten()
                .unwrap_or(e));
        }
        Err(e) => return Err(e),
    }
    tracing::info!(key = %secret.key, access_key = %caller.key.id, "secret created");
    Ok(secret.record(now_secs()))
}

/// The secret a create body describes, its form checked: fields, name, envelope, metadata.
fn new_secret(
    caller: &Caller,
    body: &serde_json::Map<String, Value>,
) -> Result<StoredSecret, ApiError> {
    refuse_plaintext(body)?;
    validate::reject_unknown_fields(
        body,
        &[&CREATE_FIELDS[..], &validate::METADATA_FIELDS].concat(),
    )?;
    let key = SecretKey::parse(validate::required_string(body, "key")?)?;
    let ciphertext = check_ciphertext(caller, validate::required_string(body, "ciphertext")?)?;
    let meta = MetadataInput::from_object(body)?;
    let now = now_millis();
    let secret = StoredSecret {
        id: new_object_id(),
        workspace_id: caller.workspace.id.clone(),
        key: key.to_string(),
        ciphertext,
        ciphertext_json: Default::default(),
        description: meta.description.apply(None),
        token_type: meta.token_type.apply(None),
        scope: meta.scope.apply_list(Vec::new()),
        envs: meta.envs.apply_list(Vec::new()),
        expires_at: meta.expires_at.apply(None),
        revoked: false,
        version: 1,
        created_ms: now,
        updated_ms: now,
        change: Change::new("create", caller.who(), Some(changed_fields(body))),
    };
    Ok(secret)
}

/// What a well-formed new secret must also be, now and for this caller: not expired at
/// once, and (for a bound key) within the key's binding.
fn check_new(caller: &Caller, secret: &StoredSecret) -> Result<(), ApiError> {
    if secret.expires_at.is_some_and(|t| t <= now_secs()) {
        return Err(ductape::Error::invalid_field(
            "field 'expires_at' is not in the future: the secret would be expired at once",
        )
        .into());
    }
    access::check_write_within(&secret.key, &secret.scope, &secret.envs, caller.binding())?;
    Ok(())
}

/// Create many secrets in one request (bulk import). A malformed item (its form: fields,
/// name, envelope, metadata) refuses the whole request, naming the item. The
/// rest is decided item by item, as a single create would be (expiry, binding, a key already
/// taken: answered `secret_exists` and left as it is, so an import can be re-run; a key
/// repeated in the batch: the repeat refused); the
/// items allowed are written in one transaction.
#[utoipa::path(post, path = "/v1/secrets/batch-create", tag = "secrets", request_body = BatchCreateBody,
    responses((status = 200, body = BatchCreateResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn batch_create(
    State(st): State<Shared>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Json<BatchCreateResponse>, ApiError> {
    caller.require(Permission::Write)?;
    validate::reject_unknown_fields(&body, &["secrets"])?;
    let items = body
        .get("secrets")
        .and_then(Value::as_array)
        .filter(|a| (1..=BatchCreateBody::MAX_SECRETS).contains(&a.len()))
        .ok_or_else(|| {
            ductape::Error::invalid_field(format!(
                "field 'secrets' must be an array of 1 to {} secrets to create",
                BatchCreateBody::MAX_SECRETS
            ))
        })?;
    // Each item: its key, its event, and the checked secret or why not.
    let mut answers: Vec<(String, Result<StoredSecret, ApiError>)> = Vec::new();
    let mut events = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let in_item = |e: ApiError| ApiError::new(e.code, format!("secrets[{i}]: {}", e.message));
        let fields = item.as_object().ok_or_else(|| {
            in_item(ductape::Error::invalid_field("each secret must be an object").into())
        })?;
        // A malformed item refuses the whole request, so every item here has a valid key.
        let secret = new_secret(&caller, fields).map_err(in_item)?;
        let key = secret.key.clone();
        let mut event = audit_trail::event(&caller, "create", &key, None, None);
        // A key twice: the first is decided, the repeat refused (the schema cannot say
        // "unique by key", so this is not a malformed request).
        let checked = if seen.insert(secret.key.clone()) {
            check_new(&caller, &secret).map(|()| secret)
        } else {
            Err(ductape::Error::invalid_field(format!(
                "secrets[{i}]: key '{}' appears more than once in the batch",
                secret.key
            ))
            .into())
        };
        event.detail = Some(changed_fields(fields));
        answers.push((key, checked));
        events.push(event);
    }
    let writes: Vec<(StoredSecret, AuditEvent)> = answers
        .iter()
        .zip(&events)
        .filter_map(|((_, a), e)| a.as_ref().ok().map(|s| (s.clone(), e.clone())))
        .collect();
    let mut written = if writes.is_empty() {
        Vec::new()
    } else {
        st.storage.create_secrets(writes).await?
    }
    .into_iter();
    let mut taken = Vec::new();
    for (key, answer) in answers.iter_mut() {
        if answer.is_ok() {
            if let Some(Err(e)) = written.next() {
                taken.push(SecretKey::parse(key)?);
                *answer = Err(e);
            }
        }
    }
    // Refusals go to the audit trail, with the real reason (malformed items do not:
    // they never got as far as a decision).
    let refusals: Vec<AuditEvent> = answers
        .iter()
        .zip(events)
        .filter_map(|((_, a), mut event)| {
            let e = a.as_ref().err().filter(|e| audit_trail::is_refusal(e))?;
            event.allowed = false;
            event.reason = Some(e.message.clone());
            Some(event)
        })
        .collect();
    // For a bound key, a taken name outside its binding gets the words that do not
    // confirm it exists.
    if caller.binding().is_bound() && !taken.is_empty() {
        let hidden = hidden_name_taken(&st, &caller, &taken).await?;
        for (k, refusal) in taken.iter().zip(hidden) {
            let answer = answers.iter_mut().find(|(key, _)| key == k.as_str());
            if let (Some(refusal), Some((_, answer))) = (refusal, answer) {
                *answer = Err(refusal);
            }
        }
    }
    if !refusals.is_empty() {
        if let Err(failed) = st.storage.append_audit(refusals).await {
            tracing::warn!(error = %failed.message, "could not record refused creates in the audit trail");
        }
    }
    let now = now_secs();
    let created = answers.iter().filter(|(_, a)| a.is_ok()).count();
    tracing::info!(created, of = answers.len(), access_key = %caller.key.id, "secrets created in a batch");
    Ok(Json(BatchCreateResponse {
        results: answers
            .into_iter()
            .map(|(key, answer)| match answer {
                Ok(secret) => BatchCreateItem {
                    key,
                    record: Some(secret.record(now)),
                    error: None,
                },
                Err(e) => BatchCreateItem {
                    key,
                    record: None,
                    error: Some(e.detail()),
                },
            })
            .collect(),
    }))
}

/// For a bound key whose creates hit taken names: for each name, when the existing secret
/// is outside the key's binding, a refusal that does not confirm it exists (the same words
/// whether the name is taken or was never available to this key); `None` when it is visible.
pub(crate) async fn hidden_name_taken(
    st: &AppState,
    caller: &Caller,
    keys: &[SecretKey],
) -> Result<Vec<Option<ApiError>>, ApiError> {
    let found = st.storage.get_secrets(&caller.workspace.id, keys).await?;
    Ok(keys
        .iter()
        .map(|key| {
            let visible = found
                .iter()
                .any(|s| s.key == key.as_str() && caller.binding().can_see(&s.scope, &s.envs));
            (!visible).then(|| {
                ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!("Secret '{key}' cannot be created with this access key: the name is not available within its binding"),
                )
            })
        })
        .collect())
}

/// List secrets' metadata (never values or ciphertext), in key order. With `limit` or
/// `cursor`: one page and the cursor of the next. With neither: every secret the key may see
/// as one JSON array, streamed page by page, so the server's memory stays flat however many
/// secrets there are.
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", params(ListQuery),
    responses((status = 200, body = Vec<SecretRecord>), (status = 400, body = ErrorBody)), security(("access_key" = [])))]
pub async fn list(
    State(st): State<Shared>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    caller.require(Permission::List)?;
    let bad = |msg: &str| ApiError::new(ErrorCode::InvalidQuery, msg);
    let Query(q) = query.map_err(|_| {
        bad("invalid query: GET /v1/secrets takes 'limit' (1 to 1000) and 'cursor' only")
    })?;
    let cursor = match &q.cursor {
        Some(c) => Some(
            SecretKey::parse(c)
                .map_err(|_| bad("'cursor' must be a previous page's next_cursor"))?
                .to_string(),
        ),
        None => None,
    };
    if q.limit.is_none() && cursor.is_none() {
        let body = stream_all(st, caller).await?;
        return Ok((
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response());
    }
    let limit = q.limit.unwrap_or(ListQuery::DEFAULT_LIMIT);
    if !(1..=ListQuery::MAX_LIMIT).contains(&limit) {
        return Err(bad("'limit' must be 1 to 1000"));
    }
    let (secrets, next_cursor) = visible_page(&st, &caller, cursor, limit as usize).await?;
    Ok(Json(SecretPage {
        secrets,
        next_cursor,
    })
    .into_response())
}

/// Up to `limit` secrets after `cursor`, keeping those the caller may see, and where the
/// next page starts (none when storage had no more).
async fn visible_page(
    st: &AppState,
    caller: &Caller,
    cursor: Option<String>,
    limit: usize,
) -> Result<(Vec<SecretRecord>, Option<String>), ApiError> {
    let rows = st
        .storage
        .list_secrets(&caller.workspace.id, cursor, limit)
        .await?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|s| s.key.clone()))
        .flatten();
    let now = now_secs();
    let binding = caller.binding();
    let visible = rows
        .iter()
        .filter(|s| binding.can_see(&s.scope, &s.envs))
        .map(|s| s.record(now))
        .collect();
    Ok((visible, next))
}

/// Rows per storage read while streaming a whole listing.
const STREAM_PAGE: usize = 500;

/// Every visible secret as one JSON array, read and written a page at a time. The first
/// page is read before answering, so that a failing database is a clean 503.
async fn stream_all(st: Shared, caller: Caller) -> Result<axum::body::Body, ApiError> {
    let first = visible_page(&st, &caller, None, STREAM_PAGE).await?;
    // State: the next page, whether `[` is written, whether a record is (for commas).
    let pages = futures_util::stream::unfold(
        (Some(first), false, false, st, caller),
        |(page, opened, any, st, caller)| async move {
            let (records, next) = page?;
            let mut chunk = Vec::with_capacity(records.len() * 256 + 2);
            if !opened {
                chunk.push(b'[');
            }
            for (i, r) in records.iter().enumerate() {
                if any || i > 0 {
                    chunk.push(b',');
                }
                // Serialising plain records cannot fail.
                let _ = serde_json::to_writer(&mut chunk, r);
            }
            let any = any || !records.is_empty();
            let following = match next {
                None => {
                    chunk.push(b']');
                    None
                }
                Some(after) => match visible_page(&st, &caller, Some(after), STREAM_PAGE).await {
                    Ok(p) => Some(p),
                    Err(e) => {
                        // The answer has begun: end it broken rather than pretend it is whole.
                        tracing::warn!(error = %e.message, "listing stopped part way");
                        return Some((
                            Err(std::io::Error::other("listing failed")),
                            (None, true, any, st, caller),
                        ));
                    }
                },
            };
            Some((
                Ok(axum::body::Bytes::from(chunk)),
                (following, true, any, st, caller),
            ))
        },
    );
    Ok(axum::body::Body::from_stream(pages))
}

/// Get one secret: metadata and ciphertext. 410 when revoked or expired.
#[utoipa::path(get, path = "/v1/secrets/{key}", tag = "secrets",
    params(("key" = String, Path), ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier read: 304 if the secret is still at it")),
    responses((status = 200, body = SecretWithCiphertext, headers(("ETag" = String))), (status = 304, description = "The client's copy is current", headers(("ETag" = String))),
        (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn get(
    State(st): State<Shared>,
    caller: Caller,
    PathParam(key): PathParam,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    caller.require(Permission::Read)?;
    let key = SecretKey::parse(&key)?;
    let mut results = read_checked(&st, &caller, "read", &[key], Claim::default()).await?;
    let s = match results.pop() {
        Some(Ok(s)) => s.read(now_secs()),
        Some(Err(e)) => return Err(e.into()),
        None => return Err(ApiError::internal("read returned nothing")),
    };
    // The read is checked and audited as any: a 304 means the client uses its copy.
    Ok(conditional::read_answer(&headers, s))
}

/// Change a secret's value and/or metadata; `null` clears a metadata field.
#[utoipa::path(patch, path = "/v1/secrets/{key}", tag = "secrets", params(("key" = String, Path), ("If-Match" = Option<String>, Header, description = "The version (or an ETag) the secret must be at: 409 otherwise")),
    request_body = UpdateSecretBody,
    responses((status = 200, body = SecretRecord), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn update(
    State(st): State<Shared>,
    caller: Caller,
    PathParam(key): PathParam,
    headers: axum::http::HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Json<SecretRecord>, ApiError> {
    let key = SecretKey::parse(&key)?;
    let mut event = audit_trail::event(&caller, "update", key.as_str(), None, None);
    event.detail = Some(changed_fields(&body));
    let outcome = update_secret(&st, &caller, &key, &headers, &body, event.clone()).await;
    audit_trail::record_refusal(&st, event, &outcome).await;
    outcome.map(Json)
}

async fn update_secret(
    st: &AppState,
    caller: &Caller,
    key: &SecretKey,
    headers: &axum::http::HeaderMap,
    body: &serde_json::Map<String, Value>,
    event: AuditEvent,
) -> Result<SecretRecord, ApiError> {
    caller.require(Permission::Write)?;
    refuse_plaintext(body)?;
    validate::reject_unknown_fields(
        body,
        &[&UPDATE_FIELDS[..], &validate::METADATA_FIELDS].concat(),
    )?;
    let ciphertext = match body.get("ciphertext") {
        None => None,
        Some(_) => Some(check_ciphertext(
            caller,
            validate::required_string(body, "ciphertext")?,
        )?),
    };
    let expected_version =
        conditional::required_version(headers, validate::expected_version(body)?)?;
    let meta = MetadataInput::from_object(body)?;
    if ciphertext.is_none() && meta.is_empty() {
        return Err(ductape::Error::invalid_field(
            "nothing to update: give a value or at least one metadata field",
        )
        .into());
    }
    if ciphertext.is_none()
        && caller.workspace.keyring.is_some()
        && !(meta.scope.is_keep() && meta.envs.is_keep())
    {
        // Who can decrypt follows scope and envs: the value must be sealed anew for them.
        return Err(ductape::Error::invalid_field(
            "changing 'scope' or 'envs' re-seals the value for its new readers: send 'ciphertext' sealed for them with the change (Ductape clients do)",
        )
        .into());
    }
    let binding = caller.owned_binding();
    let change = Change::new("update", caller.who(), Some(changed_fields(body)));
    let updated = st
        .storage
        .modify_secret(
            &caller.workspace.id,
            key.as_str(),
            Box::new(move |s| {
                writable(s, &binding)?;
                conditional::check_version(&s.key, expected_version, s.version)?;
                if let Some(c) = ciphertext {
                    s.ciphertext = c;
                }
                s.description = meta.description.apply(s.description.take());
                s.token_type = meta.token_type.apply(s.token_type.take());
                s.scope = meta.scope.apply_list(std::mem::take(&mut s.scope));
                s.envs = meta.envs.apply_list(std::mem::take(&mut s.envs));
                s.expires_at = meta.expires_at.apply(s.expires_at);
                // The change itself must not carry the secret out of the binding either.
                access::check_write_within(&s.key, &s.scope, &s.envs, binding.get())?;
                s.touch(now_millis(), change);
                Ok(())
            }),
            event,
            st.retention,
        )
        .await?;
    tracing::info!(key = %updated.key, version = updated.version, access_key = %caller.key.id, "secret updated");
    Ok(updated.record(now_secs()))
}

/// Delete a secret: into the trash, with its history, for the server's `--trash-days`
/// (`POST /v1/secrets/{key}/undelete` brings it back); `?permanent=true` (admin) at once.
#[utoipa::path(delete, path = "/v1/secrets/{key}", tag = "secrets", params(("key" = String, Path), DeleteQuery, ("If-Match" = Option<String>, Header, description = "The version (or an ETag) the secret must be at: 409 otherwise")),
    responses((status = 200, body = DeletedResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn delete(
    State(st): State<Shared>,
    caller: Caller,
    PathParam(key): PathParam,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
) -> Result<Json<DeletedResponse>, ApiError> {
    let key = SecretKey::parse(&key)?;
    let Query(q) = query.map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            "invalid query: DELETE /v1/secrets/{key} takes 'permanent' (true or false) only",
        )
    })?;
    let permanent = q.permanent.unwrap_or(false);
    let mut event = audit_trail::event(&caller, "delete", key.as_str(), None, None);
    event.detail = permanent.then(|| "permanent".to_owned());
    let outcome = async {
        caller.require(if permanent {
            Permission::Admin
        } else {
            Permission::Write
        })?;
        let want = conditional::if_match(&headers)?;
        let binding = caller.owned_binding();
        let now = now_millis();
        // No trash kept (`--trash-days 0`): every delete is for good.
        let how = if permanent || st.retention.trash_ms == 0 {
            Deletion::Permanent
        } else {
            Deletion::Trash {
                now_ms: now,
                purge_before_ms: st.retention.trash_cutoff(now),
            }
        };
        st.storage
            .delete_secret(
                &caller.workspace.id,
                key.as_str(),
                Box::new(move |s| {
                    writable(s, &binding)?;
                    conditional::check_version(&s.key, want, s.version)
                }),
                event.clone(),
                how,
            )
            .await
    }
    .await;
    audit_trail::record_refusal(&st, event, &outcome).await;
    outcome?;
    tracing::info!(key = %key, permanent, access_key = %caller.key.id, "secret deleted");
    Ok(Json(DeletedResponse {
        deleted: true,
        key: key.to_string(),
    }))
}

/// Revoke a secret: listed still, but its value can no longer be read.
#[utoipa::path(post, path = "/v1/secrets/{key}/revoke", tag = "secrets", params(("key" = String, Path), ("If-Match" = Option<String>, Header, description = "The version (or an ETag) the secret must be at: 409 otherwise")),
    responses((status = 200, body = SecretRecord), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn revoke(
    State(st): State<Shared>,
    caller: Caller,
    PathParam(key): PathParam,
    headers: axum::http::HeaderMap,
) -> Result<Json<SecretRecord>, ApiError> {
    set_revoked(st, caller, key, &headers, true).await
}

/// Undo a revoke.
#[utoipa::path(post, path = "/v1/secrets/{key}/restore", tag = "secrets", params(("key" = String, Path), ("If-Match" = Option<String>, Header, description = "The version (or an ETag) the secret must be at: 409 otherwise")),
    responses((status = 200, body = SecretRecord), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn restore(
    State(st): State<Shared>,
    caller: Caller,
    PathParam(key): PathParam,
    headers: axum::http::HeaderMap,
) -> Result<Json<SecretRecord>, ApiError> {
    set_revoked(st, caller, key, &headers, false).await
}

async fn set_revoked(
    st: Shared,
    caller: Caller,
    key: String,
    headers: &axum::http::HeaderMap,
    revoked: bool,
) -> Result<Json<SecretRecord>, ApiError> {
    let key = SecretKey::parse(&key)?;
    let action = if revoked { "revoke" } else { "restore" };
    let event = audit_trail::event(&caller, action, key.as_str(), None, None);
    let outcome = async {
        caller.require(Permission::Revoke)?;
        let want = conditional::if_match(headers)?;
        let binding = caller.owned_binding();
        let change = Change::new(action, caller.who(), None);
        st.storage
            .modify_secret(
                &caller.workspace.id,
                key.as_str(),
                Box::new(move |s| {
                    writable(s, &binding)?;
                    conditional::check_version(&s.key, want, s.version)?;
                    // Revoking a revoked secret (or restoring an active one) changes nothing.
                    if s.revoked != revoked {
                        s.revoked = revoked;
                        s.touch(now_millis(), change);
                    }
                    Ok(())
                }),
                event.clone(),
                st.retention,
            )
            .await
    }
    .await;
    audit_trail::record_refusal(&st, event, &outcome).await;
    let s = outcome?;
    tracing::info!(key = %key, revoked, access_key = %caller.key.id, "secret revocation changed");
    Ok(Json(s.record(now_secs())))
}

/// Whether a key with `binding` may change `s`: a secret it cannot see does not exist for
/// it (404); one it can see but that reaches beyond its binding is refused (403).
pub(crate) fn writable(s: &StoredSecret, binding: &OwnedBinding) -> Result<(), ApiError> {
    let b = binding.get();
    if !b.can_see(&s.scope, &s.envs) {
        return Err(ApiError::not_found(&s.key));
    }
    access::check_write_within(&s.key, &s.scope, &s.envs, b)?;
    Ok(())
}

/// The names of the fields a create or update sets (never their values): `ciphertext` is
/// reported as `value`.
pub(crate) fn changed_fields(body: &serde_json::Map<String, Value>) -> String {
    let mut names: Vec<&str> = body
        .keys()
        .filter(|k| validate::METADATA_FIELDS.contains(&k.as_str()) || k.as_str() == "ciphertext")
        .map(|k| {
            if k == "ciphertext" {
                "value"
            } else {
                k.as_str()
            }
        })
        .collect();
    names.sort_unstable();
    names.join(",")
}

/// Read many secrets in one request for an app and environment; each result is the
/// secret or why it cannot be had (the messages of DESIGN.md §5).
#[utoipa::path(post, path = "/v1/secrets/batch-get", tag = "secrets", request_body = BatchGetBody,
    responses((status = 200, body = BatchGetResponse)), security(("access_key" = [])))]
pub async fn batch_get(
    State(st): State<Shared>,
    caller: Caller,
    JsonObject(mut body): JsonObject,
) -> Result<axum::response::Response, ApiError> {
    caller.require(Permission::Read)?;
    validate::reject_unknown_fields(&body, &["keys", "app", "env", "metadata_only", "compact"])?;
    let metadata_only = validate::optional_flag(&body, "metadata_only")?;
    let compact = validate::optional_flag(&body, "compact")?;
    if metadata_only && compact {
        return Err(ductape::Error::invalid_field(
            "fields 'metadata_only' and 'compact' cannot both be true: a check answers no ciphertext",
        )
        .into());
    }
    let not_keys = || ductape::Error::invalid_field("field 'keys' must be an array of secret keys");
    // Taken out of the body, so each key keeps the string it was parsed into.
    let Some(Value::Array(keys)) = body.remove("keys") else {
        return Err(not_keys().into());
    };
    if keys.is_empty() || keys.len() > MAX_BATCH_KEYS {
        return Err(ductape::Error::invalid_field(format!(
            "field 'keys' must hold 1 to {MAX_BATCH_KEYS} keys"
        ))
        .into());
    }
    let keys = keys
        .into_iter()
        .map(|k| match k {
            Value::String(k) => SecretKey::try_from(k),
            _ => Err(not_keys()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let app = validate::optional_tag(&body, "app")?;
    let env = validate::optional_tag(&body, "env")?;
    let action = if metadata_only { "check" } else { "resolve" };
    let claimed = Claim {
        app,
        envs: env.into_iter().collect(),
    };
    let results = read_checked(&st, &caller, action, &keys, claimed).await?;
    let now = now_secs();
    // A compact answer carries only the wraps the caller opens: its own binding's.
    let mine = compact.then(|| binding_id(caller.key.app.as_deref(), &caller.key.envs));
    // Written out here, while the rows it borrows keys and ciphertexts from are held.
    let answer = BatchGetResponse::<AnswerText> {
        results: keys
            .iter()
            .zip(&results)
            .map(|(k, r)| {
                let key = AnswerText::Text(Cow::Borrowed(k.as_str()));
                match r {
                    Ok(s) if metadata_only => BatchItem {
                        key,
                        record: Some(Box::new(s.record(now))),
                        ..BatchItem::default()
                    },
                    Ok(s) if compact => BatchItem {
                        key,
                        sealed: Some(s.sealed(now, mine.as_deref().unwrap_or_default())),
                        ..BatchItem::default()
                    },
                    Ok(s) => BatchItem {
                        key,
                        secret: Some(Box::new(s.read(now))),
                        ..BatchItem::default()
                    },
                    Err(e) => BatchItem {
                        key,
                        error: Some(Box::new(ErrorDetail {
                            status: e.status().unwrap_or(500),
                            code: e.code_str().to_owned(),
                            message: e.message().to_owned(),
                        })),
                        ..BatchItem::default()
                    },
                }
            })
            .collect(),
    };
    // Written into a buffer of about its final size (~250 bytes a compact secret), rather
    // than one that starts small and is copied each time it grows.
    let mut body = Vec::with_capacity(results.len() * 320);
    serde_json::to_writer(&mut body, &answer).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The app and environment a caller claims to read for (batch reads); none for a get.
#[derive(Clone, Debug, Default)]
pub(crate) struct Claim {
    app: Option<String>,
    envs: Vec<String>,
}

/// Reads `keys` as one unit of work: the access rules applied to each, every read recorded
/// in the audit trail (committed before any ciphertext leaves), each secret or its denial
/// returned.
async fn read_checked(
    st: &AppState,
    caller: &Caller,
    action: &'static str,
    keys: &[SecretKey],
    claimed: Claim,
) -> Result<ReadAnswers, ApiError> {
    let rule: ReadRule = Box::new(move |found| judge_reads(caller, action, keys, found, &claimed));
    st.storage
        .read_secrets(&caller.workspace.id, keys, rule)
        .await
}

/// Applies the access rules to each requested key: each secret or its denial, and the
/// audit events of the read.
///
/// For a bound key, a secret outside its binding is reported exactly as a missing one; the
/// audit trail keeps the real reason.
pub(crate) fn judge_reads(
    caller: &Caller,
    action: &str,
    keys: &[SecretKey],
    found: Vec<Arc<StoredSecret>>,
    claim: &Claim,
) -> (ReadAnswers, Vec<AuditEvent>) {
    let claimed = Context {
        app: claim.app.as_deref(),
        envs: &claim.envs,
    };
    let now = now_secs();
    let bound = caller.binding();
    // Rows come back in the order of the keys when every key was found (the read cache's
    // answer, and any single read): matched by place then, else by key.
    let in_order =
        found.len() == keys.len() && found.iter().zip(keys).all(|(s, k)| s.key == k.as_str());
    let by_key: HashMap<&str, &Arc<StoredSecret>> = if in_order {
        HashMap::new()
    } else {
        found.iter().map(|s| (s.key.as_str(), s)).collect()
    };
    // Refusals are events of their own; the allowed reads become one (see
    // `one_event_per_batch`), so only their keys and places are kept here.
    let event = |key: &SecretKey| {
        audit_trail::event(
            caller,
            action,
            key.as_str(),
            claimed.app,
            claimed.envs.first().map(String::as_str),
        )
    };
    let mut refused = Vec::new();
    let mut allowed: Vec<(usize, &SecretKey)> = Vec::new();
    let mut out = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let stored = if in_order {
            Some(Arc::clone(&found[i]))
        } else {
            by_key.get(key.as_str()).map(|s| Arc::clone(s))
        };
        // Outside the binding a secret is treated as absent, so the rules below report it
        // exactly as a missing one; the audit keeps the real reason.
        let (read, hidden) = match stored {
            Some(s) if bound.can_see(&s.scope, &s.envs) => (Some(s), None),
            Some(s) => (
                None,
                Some(format!(
                    "outside the access key's binding: {}",
                    access::check_scope(&s.key, &s.scope, &s.envs, bound)
                        .err()
                        .map(|e| e.message().to_owned())
                        .unwrap_or_default()
                )),
            ),
            None => (None, None),
        };
        let rules = read.as_ref().map(|r| r.rules(now));
        // The claimed context first (so the message names what the caller asked for), then
        // what the access key is bound to, whatever the caller claimed.
        let verdict = access::check_rules(key.as_str(), rules, claimed, now)
            .and_then(|()| access::check_rules(key.as_str(), rules, bound, now))
            .and_then(|()| {
                // check_rules() reports a missing secret first, so this is never the error.
                read.ok_or_else(|| {
                    ductape::Error::new(
                        ErrorCode::SecretNotFound,
                        format!("Secret '{key}' not found"),
                    )
                })
            });
        match &verdict {
            Ok(_) => allowed.push((refused.len(), key)),
            Err(e) => refused.push(AuditEvent {
                allowed: false,
                reason: Some(hidden.unwrap_or_else(|| e.message().to_owned())),
                ..event(key)
            }),
        }
        out.push(verdict);
    }
    (out, one_event_per_batch(allowed, refused, event))
}

/// A batch's allowed reads as one event listing their keys (a row per key would make the
/// audit trail most of the cost of resolving many references), before the refusals, each
/// an event of its own (so refusals are found and counted as before). One allowed read is
/// an event like any read, in its place among the refusals. `allowed` holds each allowed
/// key with the number of refusals before it.
fn one_event_per_batch(
    allowed: Vec<(usize, &SecretKey)>,
    mut refused: Vec<AuditEvent>,
    event: impl Fn(&SecretKey) -> AuditEvent,
) -> Vec<AuditEvent> {
    match allowed.as_slice() {
        [] => refused,
        [(at, key)] => {
            refused.insert(*at, event(key));
            refused
        }
        [(_, first), ..] => {
            let batch = AuditEvent {
                secret_key: String::new(),
                keys: allowed.iter().map(|(_, k)| k.as_str().to_owned()).collect(),
                ..event(first)
            };
            std::iter::once(batch).chain(refused).collect()
        }
    }
}

/// A body carrying `value` came from something other than a Ductape client: the server
/// must never receive plaintext, so say so instead of storing it anywhere.
fn refuse_plaintext(body: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    if body.contains_key("value") {
        return Err(ductape::Error::invalid_field(
            "field 'value' is not accepted: values are encrypted by the client and sent as 'ciphertext' (use a Ductape SDK or the ductape CLI)",
        )
        .into());
    }
    Ok(())
}

/// The ciphertext must be sealed in the workspace's format: a `dv1` envelope under its key
/// (format 1), or a `dv2` sealed value (format 2; whom it is wrapped to is checked against
/// the keyring inside the write's transaction, see `storage::check_sealed`).
pub(crate) fn check_ciphertext(caller: &Caller, c: &str) -> Result<String, ApiError> {
    let format2 = caller.workspace.keyring.is_some();
    let limit = if format2 {
        MAX_SEALED_LEN
    } else {
        MAX_ENVELOPE_LEN
    };
    if c.len() > limit {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("field 'ciphertext' is over the limit of {limit} characters (values are limited to {} bytes)", validate::MAX_VALUE_BYTES),
        ));
    }
    if format2 {
        if SealedSecret::parse(c).is_some() {
            return Ok(c.to_owned());
        }
        if Envelope::parse(c).is_some() {
            return Err(ApiError::new(
                ErrorCode::UpgradeRequired,
                format!("this workspace uses format 2 (values sealed per secret to their readers' keys) and this 'dv1' envelope predates it: upgrade your Ductape client to {} or later", crate::MIN_CLIENT),
            ));
        }
        return Err(ductape::Error::invalid_field(
            "field 'ciphertext' must be a value sealed by a Ductape client ('dv2')",
        )
        .into());
    }
    let env = Envelope::parse(c).ok_or_else(|| {
        ductape::Error::invalid_field(
            "field 'ciphertext' must be an envelope sealed by a Ductape client",
        )
    })?;
    if env.key_id().as_str() != caller.workspace.key_id {
        return Err(ductape::Error::invalid_field(
            "field 'ciphertext' is sealed under another workspace key",
        )
        .into());
    }
    Ok(c.to_owned())
}
