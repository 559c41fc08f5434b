//! `/v1/audit` and `/v1/secrets/{key}/usage`: who read which secret, from which app and
//! environment, and whether it was allowed. Never values.

use axum::extract::Query;
use axum::Json;
use std::collections::BTreeMap;

use crate::auth::{Caller, Shared};
use crate::body::PathParam;
use crate::error::ApiError;
use axum::extract::State;
use ductape::wire::{AuditEntry, AuditPage, AuditQuery, ErrorBody, Permission, UsageEntry};
use ductape::{ErrorCode, SecretKey};

/// List audit events (admin), newest first, with filters and a cursor.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = ErrorBody)), security(("access_key" = [])))]
pub async fn list(
    State(st): State<Shared>,
    caller: Caller,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(Permission::Admin)?;
    let Query(q) = q.map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            "invalid query: known filters are secret_key, access_key_id, app, env, before and limit (whole numbers)",
        )
    })?;
    let limit = q.limit.unwrap_or(AuditQuery::DEFAULT_LIMIT);
    if !(1..=AuditQuery::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "'limit' must be 1 to 1000",
        ));
    }
    let rows = st.storage.list_audit(&caller.workspace.id, &q).await?;
    let next_before = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    // A bound admin key sees the events recorded within its binding only.
    let binding = caller.binding();
    Ok(Json(AuditPage {
        events: rows
            .into_iter()
            .filter(|e| recorded_within(e, binding))
            .collect(),
        next_before,
    }))
}

/// Whether an event was recorded within `binding`: its app is the bound app and its
/// environment one of the bound environments (every event, for an unbound key).
fn recorded_within(e: &AuditEntry, binding: ductape::access::Binding<'_>) -> bool {
    let app_ok = binding.app.is_none_or(|a| e.app.as_deref() == Some(a));
    let env_ok = binding.envs.is_empty()
        || e.env
            .as_ref()
            .is_some_and(|env| env.split(',').all(|x| binding.envs.iter().any(|b| b == x)));
    app_ok && env_ok
}

/// Usage of one secret (list permission), from the audit trail's reads. A bound key sees
/// the usage within its binding, of secrets it can see.
#[utoipa::path(get, path = "/v1/secrets/{key}/usage", tag = "audit", params(("key" = String, Path)),
    responses((status = 200, body = Vec<UsageEntry>)), security(("access_key" = [])))]
pub async fn usage(
    State(st): State<Shared>,
    caller: Caller,
    PathParam(key): PathParam,
) -> Result<Json<Vec<UsageEntry>>, ApiError> {
    caller.require(Permission::List)?;
    let key = SecretKey::parse(&key)?;
    // As on reads: for a bound key, a secret outside its binding does not exist.
    let binding = caller.binding();
    if binding.is_bound() {
        let found = st
            .storage
            .get_secrets(&caller.workspace.id, std::slice::from_ref(&key))
            .await?;
        if !found.iter().any(|s| binding.can_see(&s.scope, &s.envs)) {
            return Err(ApiError::not_found(key.as_str()));
        }
    }
    let mut by: BTreeMap<(Option<String>, Option<String>), UsageEntry> = BTreeMap::new();
    let mut before = None;
    loop {
        let filter = AuditQuery {
            secret_key: Some(key.to_string()),
            before,
            limit: Some(AuditQuery::MAX_LIMIT),
            ..Default::default()
        };
        let rows = st.storage.list_audit(&caller.workspace.id, &filter).await?;
        for e in rows
            .iter()
            .filter(|e| e.action_is_read() && recorded_within(e, binding))
        {
            let entry = by
                .entry((e.app.clone(), e.env.clone()))
                .or_insert_with(|| UsageEntry {
                    app: e.app.clone(),
                    env: e.env.clone(),
                    last_access: e.at.clone(),
                    reads: 0,
                    denied: 0,
                });
            if e.allowed {
                entry.reads += 1;
            } else {
                entry.denied += 1;
            }
        }
        if rows.len() < AuditQuery::MAX_LIMIT as usize {
            break;
        }
        before = rows.last().map(|r| r.id);
    }
    Ok(Json(by.into_values().collect()))
}
