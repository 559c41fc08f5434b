//! The HTTP wire types, defined once and shared by the server and every client.
//!
//! Responses use the documented field names (`_id`, `createdAt`, ...). Clients ignore
//! fields they do not know, so the server may add fields without breaking them.

use serde::{Deserialize, Serialize};

use crate::validate::TokenType;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// The lifecycle state of a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SecretStatus {
    Active,
    Revoked,
    Expired,
}

impl SecretStatus {
    /// Derives the status: revoked wins over expired; expiry is checked against `now_secs`.
    pub fn derive(revoked: bool, expires_at: Option<i64>, now_secs: i64) -> SecretStatus {
        if revoked {
            SecretStatus::Revoked
        } else if expires_at.is_some_and(|t| t <= now_secs) {
            SecretStatus::Expired
        } else {
            SecretStatus::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SecretStatus::Active => "active",
            SecretStatus::Revoked => "revoked",
            SecretStatus::Expired => "expired",
        }
    }
}

/// A secret's metadata, in the documented response shape. Never holds a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SecretRecord {
    /// 24 lowercase hex characters.
    #[serde(rename = "_id")]
    pub id: String,
    pub workspace_id: String,
    pub key: String,
    pub description: Option<String>,
    pub token_type: Option<TokenType>,
    /// App tags that may use the secret; empty means all apps.
    #[serde(default)]
    pub scope: Vec<String>,
    /// Environment slugs where the secret is available; empty means all.
    #[serde(default)]
    pub envs: Vec<String>,
    /// Unix seconds, or null for no expiry.
    pub expires_at: Option<i64>,
    /// ISO-8601 UTC with milliseconds.
    #[serde(rename = "createdAt")]
    pub created_at: String,
    /// ISO-8601 UTC with milliseconds.
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
    /// Starts at 1; every change adds one.
    pub version: i64,
    pub status: SecretStatus,
}

/// A secret's metadata with its ciphertext (the answer to a single-secret read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(from = "FlatSecret")]
pub struct SecretWithCiphertext {
    #[serde(flatten)]
    pub record: SecretRecord,
    /// The value's envelope (`dv1.xc20p.<key id>.<base64url>`); only a client can open it.
    pub ciphertext: String,
}

/// How [`SecretWithCiphertext`] is read: its fields in one struct. serde's `flatten`
/// buffers every field of every item before reading it (a 100-secret batch answer took
/// ~290 µs to parse that way, ~4× this).
#[derive(Deserialize)]
struct FlatSecret {
    #[serde(rename = "_id")]
    id: String,
    workspace_id: String,
    key: String,
    description: Option<String>,
    token_type: Option<TokenType>,
    #[serde(default)]
    scope: Vec<String>,
    #[serde(default)]
    envs: Vec<String>,
    expires_at: Option<i64>,
    #[serde(rename = "createdAt")]
    created_at: String,
    #[serde(rename = "updatedAt")]
    updated_at: String,
    version: i64,
    status: SecretStatus,
    ciphertext: String,
}

impl From<FlatSecret> for SecretWithCiphertext {
    fn from(f: FlatSecret) -> Self {
        SecretWithCiphertext {
            record: SecretRecord {
                id: f.id,
                workspace_id: f.workspace_id,
                key: f.key,
                description: f.description,
                token_type: f.token_type,
                scope: f.scope,
                envs: f.envs,
                expires_at: f.expires_at,
                created_at: f.created_at,
                updated_at: f.updated_at,
                version: f.version,
                status: f.status,
            },
            ciphertext: f.ciphertext,
        }
    }
}

/// `POST /v1/secrets`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateSecretBody {
    pub key: String,
    /// The envelope of the value, sealed by the client.
    pub ciphertext: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<TokenType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// `GET /v1/secrets` query: with `limit` or `cursor`, one page ([`SecretPage`]); with
/// neither, every secret as one array (streamed by the server).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1 to 1000 secrets per page (default 100 when only `cursor` is given).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl ListQuery {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;
}

/// One page of secrets' metadata, in key order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SecretPage {
    pub secrets: Vec<SecretRecord>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `PATCH /v1/secrets/{key}`: every field optional; `null` clears a metadata field.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UpdateSecretBody {
    pub ciphertext: Option<String>,
    pub description: Option<String>,
    pub token_type: Option<TokenType>,
    pub scope: Option<Vec<String>>,
    pub envs: Option<Vec<String>>,
    pub expires_at: Option<i64>,
    /// Optimistic concurrency: fail with 409 `version_conflict` unless the secret is at
    /// this version.
    pub expected_version: Option<i64>,
}

/// `DELETE /v1/secrets/{key}` query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Delete at once with its history instead of moving it to the trash (admin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permanent: Option<bool>,
}

/// One version of a secret (`GET /v1/secrets/{key}/versions`): when it was made, by which
/// access key, what it changed (field names, never values).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SecretVersion {
    pub version: i64,
    /// When this version was made (ISO-8601 UTC with milliseconds).
    #[serde(rename = "createdAt")]
    pub created_at: String,
    /// The access key that made it (absent for versions made before history was kept).
    pub access_key_id: Option<String>,
    /// That key's name when it made the version.
    pub access_key_name: Option<String>,
    /// `create`, `update`, `revoke`, `restore`, `rollback` or `undelete`.
    pub action: Option<String>,
    /// The fields it set: `value` for the value, metadata field names.
    pub fields: Vec<String>,
    /// A rollback's source version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<i64>,
    /// The secret's status at this version.
    pub status: SecretStatus,
    /// Whether this is the current version.
    pub current: bool,
}

/// `GET /v1/secrets/{key}/versions`: newest first, a page at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VersionPage {
    pub versions: Vec<SecretVersion>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<i64>,
}

/// `GET /v1/secrets/{key}/versions` query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct VersionQuery {
    /// Versions per page, 1 to 1000 (default 100).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page: versions older than it.
    #[cfg_attr(feature = "openapi", param(minimum = 1))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<i64>,
}

impl VersionQuery {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;
}

/// One change of the feed (`GET /v1/events`, `event: change`): which secret, its new
/// version, and what happened. Never a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ChangeEvent {
    pub key: String,
    /// The version the change made (for `delete`, the version deleted).
    pub version: i64,
    /// `create`, `update`, `revoke`, `restore`, `rollback`, `undelete` or `delete`.
    pub kind: String,
}

/// `POST /v1/secrets/{key}/rollback`: a new current version with an earlier version's
/// value (metadata stays as it is).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RollbackBody {
    /// The version whose value becomes current again.
    pub version: i64,
    /// That value sealed anew by the client, when the stored one cannot be copied (its
    /// readers or key generation differ from the secret's now: 409 `keyring_changed`
    /// without it). Ductape clients send it only then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<String>,
    /// Optimistic concurrency, as `If-Match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
}

/// `POST /v1/secrets/batch-get`: many secrets in one request, for resolution.
// Generic over its strings, so that a client sends the keys it holds without copying each.
// The API documents the `String` form.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BatchGetBody<S = String> {
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub keys: Vec<S>,
    /// The app tag the caller resolves for (checked against each secret's `scope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub app: Option<S>,
    /// The environment slug the caller resolves for (checked against `envs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub env: Option<S>,
    /// Return metadata only (no ciphertext): a preflight check. Audited as `check`.
    #[serde(default)]
    pub metadata_only: bool,
    /// Answer each secret as a [`SealedValue`] (its ciphertext and the rules a client
    /// checks again) rather than its whole record: what resolving needs, at a fraction of
    /// the bytes to write and parse.
    #[serde(default)]
    pub compact: bool,
}

/// One answer of a batch get: the secret, or why it cannot be had.
// `S` is the type of its key and ciphertext: `String`, or a borrowed string where the answer
// is written from rows the server holds, or read in place from the bytes a client received
// (neither copies a string per secret). The API documents the `String` form.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BatchItem<S = String> {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub key: S,
    // The answers of other modes, and errors, are boxed: a compact item is what a resolve
    // reads by the hundred, and moves at the size of its largest field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<SecretWithCiphertext>))]
    pub secret: Option<Box<SecretWithCiphertext>>,
    /// In `metadata_only` mode: the metadata of a secret that would resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<SecretRecord>))]
    pub record: Option<Box<SecretRecord>>,
    /// In `compact` mode: the secret's ciphertext and the rules it is read under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<SealedValue>))]
    pub sealed: Option<SealedValue<S>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ErrorDetail>))]
    pub error: Option<Box<ErrorDetail>>,
}

/// A secret as a `compact` batch read answers it: the ciphertext, and the fields of its
/// record that decide who may use it, which a client checks again so that a misbehaving
/// server cannot hand out what they forbid. Empty lists and a missing expiry are left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SealedValue<S = String> {
    /// The value's envelope; only a client can open it.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub ciphertext: S,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    pub status: SecretStatus,
}

/// The answer of a batch get, in the order of the request's keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BatchGetResponse<S = String> {
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<BatchItem>))]
    pub results: Vec<BatchItem<S>>,
}

/// `POST /v1/secrets/batch-create`: up to [`BatchCreateBody::MAX_SECRETS`] creates in one
/// request (bulk import). Each item is the body of a single create; the valid ones are
/// written in one transaction.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BatchCreateBody {
    pub secrets: Vec<CreateSecretBody>,
}

impl BatchCreateBody {
    /// Most secrets in one batch create.
    pub const MAX_SECRETS: usize = 500;
}

/// One answer of a batch create: the new secret's metadata, or why it was not created
/// (`secret_exists` for a key already taken: a re-run of an import skips it).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BatchCreateItem {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<SecretRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The answer of a batch create, in the order of the request's secrets.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BatchCreateResponse {
    pub results: Vec<BatchCreateItem>,
}

/// `DELETE /v1/secrets/{key}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeletedResponse {
    pub deleted: bool,
    pub key: String,
}

/// What an access key may do. `admin` implies all the others and managing access keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// List secrets' metadata.
    List,
    /// Read values (ciphertext).
    Read,
    /// Create, update and delete secrets.
    Write,
    /// Revoke and restore secrets.
    Revoke,
    /// Everything, and manage access keys.
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::List,
        Permission::Read,
        Permission::Write,
        Permission::Revoke,
        Permission::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::List => "list",
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Revoke => "revoke",
            Permission::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether a key holding `held` may do `self`.
    pub fn granted_by(self, held: &[Permission]) -> bool {
        held.contains(&Permission::Admin) || held.contains(&self)
    }
}

/// An access key as the server describes it: never its secret or unwrap key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AccessKeyInfo {
    pub id: String,
    pub name: String,
    pub permissions: Vec<Permission>,
    /// When set, the key reads only secrets whose scope is empty or holds this app.
    pub app: Option<String>,
    /// When non-empty, the key reads only secrets available in one of these environments.
    #[serde(default)]
    pub envs: Vec<String>,
    #[serde(rename = "createdAt")]
    pub created_at: String,
}

/// `POST /v1/access-keys`: the client made the key and wrapped the workspace key for it.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateAccessKeyBody {
    pub id: String,
    /// The key's secret part; the server stores only its hash.
    pub secret: String,
    /// The workspace key wrapped under the new key's unwrap key.
    pub wrapped_key: String,
    pub name: String,
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub envs: Vec<String>,
}

impl std::fmt::Debug for CreateAccessKeyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateAccessKeyBody")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .field("name", &self.name)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/setup`: the first client creates the workspace and its first admin key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SetupBody {
    pub setup_token: String,
    pub workspace_id: String,
    pub workspace_name: String,
    /// The id of the workspace key the client made.
    pub key_id: String,
    pub access_key: CreateAccessKeyBody,
}

/// A workspace as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WorkspaceInfo {
    pub workspace_id: String,
    pub name: String,
    /// The id of the workspace key; envelopes must carry it.
    pub key_id: String,
    #[serde(rename = "createdAt")]
    pub created_at: String,
}

/// `GET /v1/session`: who the caller is, and its wrapped copy of the workspace key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SessionResponse {
    pub workspace: WorkspaceInfo,
    pub access_key: AccessKeyInfo,
    /// Format 1: the workspace key wrapped for this key (`dwk1`). Format 2: this key's
    /// public key and its grants (`dg2`).
    pub wrapped_key: String,
    /// Format 2: the workspace's public keyring (absent in format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub keyring: Option<crate::crypto::Keyring>,
}

/// The one error shape of every non-2xx answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorDetail {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// `GET /healthz`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Health {
    pub status: String,
    pub version: String,
    /// Whether the server has a workspace (setup done).
    pub initialized: bool,
}

/// Filters of the audit listing (`GET /v1/audit` query); every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub secret_key: Option<String>,
    pub access_key_id: Option<String>,
    pub app: Option<String>,
    pub env: Option<String>,
    /// Only events older than this id (the previous page's `next_before`).
    pub before: Option<i64>,
    /// 1 to 1000 (default 100).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000))]
    pub limit: Option<u32>,
}

impl AuditQuery {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;
}

/// One audit entry: who read or changed what, for which app and environment, and the
/// verdict. Never holds a value. Entries of one workspace form a hash chain (see
/// [`crate::audit`]): each carries its predecessor's hash and its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    /// ISO-8601 UTC with milliseconds.
    pub at: String,
    pub access_key_id: String,
    /// The secret the event is about (for access-key events, the access key's id; for
    /// setup, and for a batch read recorded as one event, empty).
    pub secret_key: String,
    /// Reads: `read`, `resolve`, `check`. Changes: `create`, `update`, `delete`, `revoke`,
    /// `restore`, `access_key.create`, `access_key.delete`, `setup`.
    pub action: String,
    /// The app the access key is bound to, else the one the caller named.
    pub app: Option<String>,
    /// The environment the access key is bound to (or the named one within its binding),
    /// else the one the caller named.
    pub env: Option<String>,
    /// What the caller claimed, when it differs from the binding recorded above.
    #[serde(default)]
    pub claimed_app: Option<String>,
    #[serde(default)]
    pub claimed_env: Option<String>,
    pub allowed: bool,
    /// Why it was refused, when it was.
    pub reason: Option<String>,
    /// What a change touched (field names, never values), e.g. `value,scope`.
    #[serde(default)]
    pub detail: Option<String>,
    /// The secrets a batch read (`resolve`, `check`) was allowed to read, when one event
    /// records them all; empty otherwise. A batch's refusals are events of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// The previous entry's hash (64 zeros for the first), and this entry's.
    #[serde(default)]
    pub prev_hash: String,
    #[serde(default)]
    pub hash: String,
}

impl AuditEntry {
    /// Whether the event is a read of a value (`read`, `resolve`, `check`), not a change.
    pub fn action_is_read(&self) -> bool {
        matches!(self.action.as_str(), "read" | "resolve" | "check")
    }

    /// What the event is about: its secret (or access key), or a batch read's keys
    /// comma-separated.
    pub fn subject(&self) -> String {
        if self.keys.is_empty() {
            self.secret_key.clone()
        } else {
            self.keys.join(",")
        }
    }
}

/// A page of audit entries, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditPage {
    pub events: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<i64>,
}

/// Where a secret was used: per app and environment, the last access and counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UsageEntry {
    pub app: Option<String>,
    pub env: Option<String>,
    /// ISO-8601 UTC with milliseconds.
    pub last_access: String,
    pub reads: u64,
    pub denied: u64,
}

/// `POST /v1/keyring/bindings`: a new binding's public key for the current generation,
/// its private key wrapped to the wider bindings (made by an admin's client).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterBindingBody {
    pub generation: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub binding: crate::crypto::keyring::Binding,
}

/// `POST /v1/keyring/bindings/{id}/pending`: where the scan for secrets not yet wrapped to
/// the binding goes on from (absent: the start).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PendingWrapsBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// A secret the binding may read but is not wrapped to yet: its sealed value as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PendingSecret {
    pub key: String,
    pub ciphertext: String,
    /// Its scope and envs: who may read it (what a reseal wraps the new value to).
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default)]
    pub envs: Vec<String>,
}

/// One page of the scan: the secrets still to wrap, how many rows it looked at, where to
/// go on from (`None`: the scan is done), and on the first page the workspace's total.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PendingWraps {
    pub secrets: Vec<PendingSecret>,
    pub scanned: u64,
    pub next_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

impl PendingWraps {
    /// Secrets a page holds at most.
    pub const MAX_SECRETS: usize = 500;
}

/// One wrap to add: the data key of `key`'s sealed value (whose SHA-256 hex is `of`, so a
/// value changed meanwhile is not given a wrap of the old key) wrapped to the binding.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddWrap {
    pub key: String,
    pub of: String,
    pub wrap: String,
}

/// `POST /v1/keyring/bindings/{id}/wraps`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddWrapsBody {
    pub wraps: Vec<AddWrap>,
}

/// How many wraps were added, and how many found their value changed meanwhile (a change
/// made after the binding was registered is sealed for it already).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AddWrapsResponse {
    pub added: u64,
    pub stale: u64,
}

/// An access key as its grants see it (`GET /v1/keyring/grantees`, admin): its binding,
/// its X25519 public key (`None`: a format-1 key not yet used by a current client) and the
/// key generations it holds a grant of.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Grantee {
    pub id: String,
    pub app: Option<String>,
    #[serde(default)]
    pub envs: Vec<String>,
    pub public_key: Option<String>,
    #[serde(default)]
    pub generations: Vec<u32>,
}

/// A grant to add to an access key: `dg2.<its public key>.<generation>:<binding>:<wrap>`,
/// one grant, of the current generation, of the key's own binding.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GrantTo {
    pub id: String,
    pub grants: String,
}

/// `POST /v1/keyring/grants`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddGrantsBody {
    pub grants: Vec<GrantTo>,
}

/// `POST /v1/keyring/generations`: starts a rotation (or the upgrade from format 1) with
/// the next generation's bindings and a grant of it to every access key that has a
/// public key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewGenerationBody {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub generation: crate::crypto::keyring::Generation,
    pub grants: Vec<GrantTo>,
    /// The upgrade from format 1 only: the old workspace key wrapped to the new unbound
    /// binding (see `Keyring::upgrade_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_key: Option<String>,
}

/// A value sealed anew under the current generation, replacing the stored one only while
/// that is still the one whose SHA-256 hex is `of`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Reseal {
    pub key: String,
    pub of: String,
    pub ciphertext: String,
}

/// `POST /v1/keyring/reseal`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResealBody {
    pub reseals: Vec<Reseal>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_with_its_ciphertext_reads_back_what_it_writes_and_defaults_its_lists() {
        let s = SecretWithCiphertext {
            record: SecretRecord {
                id: "0123456789abcdef01234567".into(),
                workspace_id: "ws_1".into(),
                key: "K".into(),
                description: Some("d".into()),
                token_type: Some(TokenType::Api),
                scope: vec!["web".into()],
                envs: vec!["prd".into()],
                expires_at: Some(1_900_000_000),
                created_at: "2026-01-01T00:00:00.000Z".into(),
                updated_at: "2026-01-02T00:00:00.000Z".into(),
                version: 3,
                status: SecretStatus::Active,
            },
            ciphertext: "dv2.1.x.y".into(),
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            text.contains(r#""_id":"0123456789abcdef01234567""#),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<SecretWithCiphertext>(&text).unwrap(),
            s
        );
        // Lists absent: empty; a field from a newer server: ignored.
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("scope");
        o.remove("envs");
        o.insert("added_later".into(), serde_json::json!(1));
        let back: SecretWithCiphertext = serde_json::from_value(v).unwrap();
        assert!(back.record.scope.is_empty() && back.record.envs.is_empty());
        // The ciphertext is required.
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v.as_object_mut().unwrap().remove("ciphertext");
        assert!(serde_json::from_value::<SecretWithCiphertext>(v).is_err());
    }
}
