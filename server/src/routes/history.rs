//! A secret's history: `GET /v1/secrets/{key}/versions` (what changed, when, by whom),
//! `GET /v1/secrets/{key}/versions/{version}` (an earlier value, sealed as it was),
//! `POST /v1/secrets/{key}/rollback` and `POST /v1/secrets/{key}/undelete`.
//!
//! An earlier version is read under the rules of a read of the secret as it is now (a
//! revoked, expired or hidden secret's versions are not readable either) and, for a bound
//! key, only if that version was within its binding too. A rollback copies the earlier
//! ciphertext when it is still sealed for the secret's readers now (the envelope binds the
//! workspace, key and key generation, never the version); otherwise the client seals the
//! value anew and sends it.

use axum::extract::{Query, State};
use axum::Json;
use serde_json::Value;

use super::secrets::{check_ciphertext, hidden_name_taken, judge_reads, writable, Claim};
use crate::audit_trail;
use crate::auth::{Caller, Shared};
use crate::body::{JsonObject, PathParam, PathParams};
use crate::conditional;
use crate::error::ApiError;
use crate::storage::{check_sealed, not_in_trash, stored_keyring, Change, StoredSecret};
use ductape::ids::{now_millis, now_secs};
use ductape::validate;
use ductape::wire::{
    ErrorBody, Permission, RollbackBody, SecretRecord, SecretWithCiphertext, VersionPage,
    VersionQuery,
};
use ductape::{ErrorCode, SecretKey};

/// The answer for a version that is not kept (or not within the caller's binding).
fn no_version(key: &SecretKey, version: i64) -> ApiError {
    ApiError::new(
        ErrorCode::SecretNotFound,
        format!("Secret '{key}' has no version {version} (versions beyond the server's --max-versions are not kept)"),
    )
}

/// A version number from a path or a body: a positive integer.
fn version_number(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ductape::Error::invalid_field("a version must be a positive integer").into())
}

/// List a secret's versions, newest first: when each was made, by which access key, what
/// it changed (field names, never values). The secret as it is now must be visible to the
/// key.
#[utoipa::path(get, path = "/v1/secrets/{key}/versions", tag = "secrets", params(("key" = String, Path), VersionQuery),
    responses((status = 200, body = VersionPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn versions(
    State(st): State<Shared>,
    caller: Caller,
    PathParam(key): PathParam,
    query: Result<Query<VersionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<VersionPage>, ApiError> {
    caller.require(Permission::List)?;
    let key = SecretKey::parse(&key)?;
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidQuery,
            "invalid query: GET /v1/secrets/{key}/versions takes 'limit' (1 to 1000) and 'cursor' (a previous page's next_cursor) only",
        )
    };
    let Query(q) = query.map_err(|_| bad())?;
    let limit = q.limit.unwrap_or(VersionQuery::DEFAULT_LIMIT);
    if !(1..=VersionQuery::MAX_LIMIT).contains(&limit) || q.cursor.is_some_and(|c| c < 1) {
        return Err(bad());
    }
    let limit = limit as usize;
    let before = q.cursor.unwrap_or(i64::MAX);
    let binding = caller.binding();
    let (current, older) = st
        .storage
        .secret_history(&caller.workspace.id, key.as_str(), before, limit + 1)
        .await?
        .filter(|(s, _)| binding.can_see(&s.scope, &s.envs))
        .ok_or_else(|| ApiError::not_found(key.as_str()))?;
    let now = now_secs();
    let mut rows: Vec<(&StoredSecret, bool)> = Vec::with_capacity(limit + 1);
    if current.version < before {
        rows.push((&current, true));
    }
    rows.extend(older.iter().map(|s| (s, false)));
    let more = rows.len() > limit;
    rows.truncate(limit);
    let versions: Vec<_> = rows
        .iter()
        .map(|(s, is_current)| s.change.version(s, *is_current, now))
        .collect();
    let next_cursor = more.then(|| versions.last().map(|v| v.version)).flatten();
    Ok(Json(VersionPage {
        versions,
        next_cursor,
    }))
}

/// Get an earlier version of a secret: its metadata then and its ciphertext. Checked and
/// audited as a read of the secret (404, 410 as such), and the version must be kept and,
/// for a bound key, within its binding.
#[utoipa::path(get, path = "/v1/secrets/{key}/versions/{version}", tag = "secrets",
    params(("key" = String, Path), ("version" = i64, Path, minimum = 1), ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier read of this version: 304 if it is still the same")),
    responses((status = 200, body = SecretWithCiphertext, headers(("ETag" = String))), (status = 304, description = "The client's copy is current", headers(("ETag" = String))), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn get_version(
    State(st): State<Shared>,
    caller: Caller,
    PathParams((key, version)): PathParams<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    caller.require(Permission::Read)?;
    let key = SecretKey::parse(&key)?;
    let version = version_number(&version)?;
    let found = st
        .storage
        .secret_version(&caller.workspace.id, key.as_str(), version)
        .await?;
    let (current, at) = match found {
        Some((current, at)) => (vec![std::sync::Arc::new(current)], at),
        None => (Vec::new(), None),
    };
    // The secret as it is now, under the rules of any read.
    let (mut answers, mut events) = judge_reads(
        &caller,
        "read",
        std::slice::from_ref(&key),
        current,
        &Claim::default(),
    );
    let (Some(answer), Some(mut event)) = (answers.pop(), events.pop()) else {
        return Err(ApiError::internal("read returned nothing"));
    };
    event.detail = Some(format!("version={version}"));
    let binding = caller.binding();
    let outcome = answer.map_err(ApiError::from).and_then(|_| {
        match at {
            Some(s) if binding.can_see(&s.scope, &s.envs) => Ok(SecretWithCiphertext {
                record: s.record(now_secs()),
                ciphertext: s.ciphertext,
            }),
            Some(_) => Err((
                no_version(&key, version),
                "that version was outside the access key's binding",
            )),
            None => Err((no_version(&key, version), "that version is not kept")),
        }
        .map_err(|(e, why)| {
            event.allowed = false;
            event.reason = Some(why.to_owned());
            e
        })
    });
    st.storage.append_audit(vec![event]).await?;
    // Conditional as a read of the current version: a 304 after the checks and the audit.
    Ok(conditional::read_answer(&headers, outcome?))
}

/// Make a new current version with an earlier version's value (metadata stays as it is);
/// history is never rewritten. The server copies the earlier ciphertext when it is still
/// sealed for the secret's readers; otherwise 409 `keyring_changed`, and the client sends
/// the value sealed anew as `ciphertext`.
#[utoipa::path(post, path = "/v1/secrets/{key}/rollback", tag = "secrets",
    params(("key" = String, Path), ("If-Match" = Option<String>, Header, description = "The version (or an ETag) the secret must be at: 409 otherwise")),
    request_body = RollbackBody,
    responses((status = 200, body = SecretRecord), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn rollback(
    State(st): State<Shared>,
    caller: Caller,
    PathParam(key): PathParam,
    headers: axum::http::HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Json<SecretRecord>, ApiError> {
    let key = SecretKey::parse(&key)?;
    let mut event = audit_trail::event(&caller, "rollback", key.as_str(), None, None);
    let outcome = async {
        caller.require(Permission::Write)?;
        validate::reject_unknown_fields(&body, &["version", "ciphertext", "expected_version"])?;
        let version = validate::version_field(&body, "version")?.ok_or_else(|| {
            ductape::Error::invalid_field(
                "field 'version' must be the positive version number to roll back to",
            )
        })?;
        event.detail = Some(format!("source={version}"));
        let resealed = match body.get("ciphertext") {
            None | Some(Value::Null) => None,
            Some(_) => Some(check_ciphertext(
                &caller,
                validate::required_string(&body, "ciphertext")?,
            )?),
        };
        let expected = conditional::required_version(&headers, validate::expected_version(&body)?)?;
        let binding = caller.owned_binding();
        let (current, at) = st
            .storage
            .secret_version(&caller.workspace.id, key.as_str(), version)
            .await?
            .ok_or_else(|| ApiError::not_found(key.as_str()))?;
        // Hidden (404) or beyond the binding (403) before anything about its versions.
        writable(&current, &binding)?;
        let source = at
            .filter(|s| binding.get().can_see(&s.scope, &s.envs))
            .ok_or_else(|| no_version(&key, version))?;
        if source.version == current.version {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "version {version} is the current version of '{key}': nothing to roll back"
                ),
            ));
        }
        let value = match resealed {
            Some(c) => c,
            None => {
                copyable(&st, &caller, &current, &source).await?;
                source.ciphertext
            }
        };
        let mut change = Change::new("rollback", caller.who(), Some("value".into()));
        change.rollback_of = Some(version);
        st.storage
            .modify_secret(
                &caller.workspace.id,
                key.as_str(),
                Box::new(move |s| {
                    writable(s, &binding)?;
                    conditional::check_version(&s.key, expected, s.version)?;
                    s.ciphertext = value;
                    s.touch(now_millis(), change);
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
    tracing::info!(key = %key, version = s.version, access_key = %caller.key.id, "secret rolled back");
    Ok(Json(s.record(now_secs())))
}

/// Whether an earlier version's ciphertext can become current as it is: sealed for exactly
/// the readers the secret has now, under the current key generation (format 2; always in
/// format 1). Checked again inside the write's transaction.
async fn copyable(
    st: &crate::state::AppState,
    caller: &Caller,
    current: &StoredSecret,
    source: &StoredSecret,
) -> Result<(), ApiError> {
    if caller.workspace.keyring.is_none() {
        return Ok(());
    }
    let ring = stored_keyring(st.storage.workspace().await?.and_then(|w| w.keyring))?;
    let candidate = StoredSecret {
        ciphertext: source.ciphertext.clone(),
        ciphertext_json: Default::default(),
        ..current.clone()
    };
    check_sealed(ring.as_ref(), &candidate).map_err(|_| {
        ApiError::new(
            ErrorCode::KeyringChanged,
            format!(
                "version {} of '{}' was sealed for other readers or an older key generation: send its value sealed anew as 'ciphertext' (Ductape clients do)",
                source.version, current.key
            ),
        )
    })
}

/// Bring back the secret most recently deleted under this key, with its history, as a
/// new version. 404 once it has left the trash; 409 if the key has been taken since.
#[utoipa::path(post, path = "/v1/secrets/{key}/undelete", tag = "secrets", params(("key" = String, Path)),
    responses((status = 200, body = SecretRecord), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn undelete(
    State(st): State<Shared>,
    caller: Caller,
    PathParam(key): PathParam,
) -> Result<Json<SecretRecord>, ApiError> {
    let key = SecretKey::parse(&key)?;
    let event = audit_trail::event(&caller, "undelete", key.as_str(), None, None);
    let outcome = async {
        caller.require(Permission::Write)?;
        let binding = caller.owned_binding();
        let change = Change::new("undelete", caller.who(), None);
        let now = now_millis();
        let name = key.to_string();
        let found = st
            .storage
            .undelete_secret(
                &caller.workspace.id,
                key.as_str(),
                st.retention.trash_cutoff(now),
                Box::new(move |s| {
                    // A deleted secret outside the binding is not in this key's trash.
                    writable(s, &binding).map_err(|e| match e.code {
                        ErrorCode::SecretNotFound => not_in_trash(&name),
                        _ => e,
                    })?;
                    s.touch(now, change);
                    Ok(())
                }),
                event.clone(),
                st.retention,
            )
            .await;
        match found {
            // A name taken again by a secret this key cannot see: the words that do not
            // confirm it exists.
            Err(e) if e.code == ErrorCode::Conflict && caller.binding().is_bound() => {
                Err(hidden_name_taken(&st, &caller, std::slice::from_ref(&key))
                    .await?
                    .pop()
                    .flatten()
                    .unwrap_or(e))
            }
            other => other,
        }
    }
    .await;
    audit_trail::record_refusal(&st, event, &outcome).await;
    let s = outcome?;
    tracing::info!(key = %key, version = s.version, access_key = %caller.key.id, "secret undeleted");
    Ok(Json(s.record(now_secs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers_are_positive_integers() {
        assert_eq!(version_number("3").unwrap(), 3);
        for bad in ["0", "-1", "x", "", "1.5", "99999999999999999999"] {
            assert_eq!(
                version_number(bad).unwrap_err().code,
                ErrorCode::InvalidField,
                "{bad}"
            );
        }
    }
}
