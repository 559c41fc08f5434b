//! Storage behind one trait: the server's handlers never see SQL.
//!
//! Rows hold ciphertext and metadata only. Every write is one transaction; read-modify-write
//! changes go through [`Storage::modify_secret`], so the merge rules live in [`StoredSecret`]
//! and not in each backend.

mod journal;
pub mod postgres;
mod read_cache;
pub mod sqlite;

use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use ductape::access::Rules;
use ductape::crypto::SealedView;
use ductape::ids::iso_millis;
use ductape::wire::{
    AccessKeyInfo, AuditEntry, AuditQuery, Permission, SealedValue, SecretRecord, SecretStatus,
    SecretVersion, SecretWithCiphertext, WorkspaceInfo,
};
use ductape::{ErrorCode, SecretKey, TokenType};

use crate::error::ApiError;

/// A workspace row.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub key_id: String,
    pub created_ms: i64,
    /// Format 2: the public keyring (JSON); `None` for a format-1 workspace.
    pub keyring: Option<String>,
}

impl Workspace {
    pub fn info(&self) -> WorkspaceInfo {
        WorkspaceInfo {
            workspace_id: self.id.clone(),
            name: self.name.clone(),
            key_id: self.key_id.clone(),
            created_at: iso_millis(self.created_ms),
        }
    }
}

/// An access-key row: the secret's hash, never the secret.
#[derive(Clone, Debug)]
pub struct StoredAccessKey {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub secret_hash: String,
    pub wrapped_key: String,
    pub permissions: Vec<Permission>,
    pub app: Option<String>,
    pub envs: Vec<String>,
    pub created_ms: i64,
}

impl StoredAccessKey {
    pub fn info(&self) -> AccessKeyInfo {
        AccessKeyInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            permissions: self.permissions.clone(),
            app: self.app.clone(),
            envs: self.envs.clone(),
            created_at: iso_millis(self.created_ms),
        }
    }
}

/// A row's ciphertext written out as a JSON string once, for every compact read after: a
/// ciphertext is base64url with `.` and `:`, which JSON never escapes, yet `serde_json`
/// looks up each of its bytes in its escape table on every read (~7% of the server's CPU
/// for a 100-secret batch read). A value wrapped to many bindings is answered with the
/// reader's wrap alone: that text is kept too, for the first binding that reads the row (a
/// row is read mostly through one service's key); another binding's is made each time.
#[derive(Clone, Debug, Default)]
pub struct CiphertextJson {
    whole: std::sync::OnceLock<Option<Box<RawValue>>>,
    trimmed: std::sync::OnceLock<Option<Trimmed>>,
}

/// A ciphertext with one binding's wrap alone (`SealedView::only_for`), as a JSON string,
/// and where its two pieces lay in the text it was made from.
#[derive(Clone, Debug)]
struct Trimmed {
    binding: Box<str>,
    json: Box<RawValue>,
    /// The length of the text before the wraps (the first piece).
    head: usize,
    /// Where the binding's `<binding>:<wrap>` began (the second piece).
    item_at: usize,
}

/// `text` as a JSON string, if it holds nothing JSON would escape.
fn plain_json(text: &[&str]) -> Option<Box<RawValue>> {
    let plain = text
        .iter()
        .flat_map(|t| t.bytes())
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    plain
        .then(|| RawValue::from_string(["\"", &text.concat(), "\""].concat()).ok())
        .flatten()
}

impl CiphertextJson {
    /// `ciphertext` (the row's) as a JSON string; none when it holds a character JSON would
    /// escape, or is no longer the text this was made from (a row changed in place), and is
    /// then written the usual way.
    fn of(&self, ciphertext: &str) -> Option<&RawValue> {
        let made = self
            .whole
            .get_or_init(|| plain_json(&[ciphertext]))
            .as_deref()?;
        let quoted = made.get().as_bytes();
        (quoted.get(1..quoted.len() - 1) == Some(ciphertext.as_bytes())).then_some(made)
    }

    /// `ciphertext` with `binding`'s wrap alone, as a JSON string: none for a binding other
    /// than the one it was kept for, when there is nothing to leave out, or when the row's
    /// text no longer holds the two pieces where they were (a row changed in place).
    fn trimmed(&self, ciphertext: &str, binding: &str) -> Option<&RawValue> {
        let t = self
            .trimmed
            .get_or_init(|| {
                let (head, item) = SealedView::parse(ciphertext)?.only_for_ranges(binding)?;
                let json = plain_json(&[&ciphertext[head.clone()], &ciphertext[item.clone()]])?;
                Some(Trimmed {
                    binding: binding.into(),
                    json,
                    head: head.end,
                    item_at: item.start,
                })
            })
            .as_ref()?;
        let quoted = t.json.get();
        let (head, item) = quoted.get(1..quoted.len() - 1)?.split_at_checked(t.head)?;
        let item_end = t.item_at + item.len();
        // The same pieces at the same places, the item a whole one (wrap ids are unique in
        // a sealed value, so it is the binding's only wrap): `only_for` would answer this.
        let held = *t.binding == *binding
            && ciphertext.get(..t.head) == Some(head)
            && ciphertext.get(t.item_at..item_end) == Some(item)
            && (t.item_at == t.head || ciphertext.as_bytes().get(t.item_at - 1) == Some(&b','))
            && matches!(ciphertext.as_bytes().get(item_end), None | Some(b','));
        held.then_some(&*t.json)
    }
}

/// A string of an answer: text to write as a JSON string, or one already written.
#[derive(Debug)]
pub enum AnswerText<'a> {
    Text(Cow<'a, str>),
    Json(&'a RawValue),
}

impl Default for AnswerText<'_> {
    fn default() -> Self {
        AnswerText::Text(Cow::Borrowed(""))
    }
}

impl serde::Serialize for AnswerText<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AnswerText::Text(t) => s.serialize_str(t),
            AnswerText::Json(j) => j.serialize(s),
        }
    }
}

/// A secret row.
#[derive(Clone, Debug)]
pub struct StoredSecret {
    pub id: String,
    pub workspace_id: String,
    pub key: String,
    pub ciphertext: String,
    /// `ciphertext` as a JSON string, made on the first compact read of this row.
    pub ciphertext_json: CiphertextJson,
    pub description: Option<String>,
    pub token_type: Option<TokenType>,
    pub scope: Vec<String>,
    pub envs: Vec<String>,
    pub expires_at: Option<i64>,
    pub revoked: bool,
    pub version: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Who made this version and what it changed.
    pub change: Change,
}

#[cfg(test)]
impl StoredSecret {
    /// A row of `key` in `workspace_id` at `version`, its ciphertext `ct-{version}`.
    pub(crate) fn sample(workspace_id: &str, key: &str, version: i64) -> Self {
        StoredSecret {
            id: format!("sec_{key}"),
            workspace_id: workspace_id.into(),
            key: key.into(),
            ciphertext: format!("ct-{version}"),
            ciphertext_json: Default::default(),
            description: None,
            token_type: None,
            scope: Vec::new(),
            envs: Vec::new(),
            expires_at: None,
            revoked: false,
            version,
            created_ms: 0,
            updated_ms: 0,
            change: Change::default(),
        }
    }
}

/// Who made a version of a secret and what it changed: names of fields, never values.
/// Empty for versions written before history was kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The access key's id and its name then.
    pub by: Option<(String, String)>,
    /// `create`, `update`, `revoke`, `restore`, `rollback` or `undelete`.
    pub action: Option<String>,
    /// The fields set (`value` for the value), comma-separated.
    pub fields: Option<String>,
    /// A rollback's source version.
    pub rollback_of: Option<i64>,
}

impl Change {
    pub fn new(action: &str, by: (&str, &str), fields: Option<String>) -> Self {
        Change {
            by: Some((by.0.to_owned(), by.1.to_owned())),
            action: Some(action.to_owned()),
            fields: fields.filter(|f| !f.is_empty()),
            rollback_of: None,
        }
    }

    /// The stored text of `action` and `fields`: `action[:field,field]`.
    pub fn stored(&self) -> Option<String> {
        let action = self.action.as_deref()?;
        Some(match &self.fields {
            Some(f) => format!("{action}:{f}"),
            None => action.to_owned(),
        })
    }

    /// From the stored columns (see [`Change::stored`]).
    pub fn from_stored(
        changed: Option<String>,
        by: Option<String>,
        by_name: Option<String>,
        rollback_of: Option<i64>,
    ) -> Self {
        let (action, fields) = match changed {
            Some(c) => match c.split_once(':') {
                Some((a, f)) => (Some(a.to_owned()), Some(f.to_owned())),
                None => (Some(c), None),
            },
            None => (None, None),
        };
        Change {
            by: by.map(|id| (id, by_name.unwrap_or_default())),
            action,
            fields,
            rollback_of,
        }
    }

    /// The wire form of one version of a secret.
    pub fn version(&self, s: &StoredSecret, current: bool, now_secs: i64) -> SecretVersion {
        SecretVersion {
            version: s.version,
            created_at: iso_millis(s.updated_ms),
            access_key_id: self.by.as_ref().map(|b| b.0.clone()),
            access_key_name: self.by.as_ref().map(|b| b.1.clone()),
            action: self.action.clone(),
            fields: self
                .fields
                .as_deref()
                .map(|f| f.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            rollback_of: self.rollback_of,
            status: SecretStatus::derive(s.revoked, s.expires_at, now_secs),
            current,
        }
    }
}

/// One row of the change feed: a new version of a secret, or its deletion. Metadata only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRow {
    pub id: i64,
    pub key: String,
    pub version: i64,
    /// `create`, `update`, `revoke`, `restore`, `rollback`, `undelete` or `delete`.
    pub kind: String,
    /// The secret's scope and envs at the change (who may hear of it).
    pub scope: Vec<String>,
    pub envs: Vec<String>,
    pub at_ms: i64,
}

impl ChangeRow {
    /// The kind of change that made `s` what it is now.
    pub fn kind_of(s: &StoredSecret) -> &str {
        s.change.action.as_deref().unwrap_or("update")
    }
}

/// How much history is kept (`ductape server --max-versions`, `--trash-days`).
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Most versions kept of a secret, the current one included; `None`: all.
    pub max_versions: Option<u32>,
    /// How long a deleted secret stays in the trash, in milliseconds.
    pub trash_ms: i64,
}

impl Retention {
    pub const DEFAULT_TRASH_DAYS: u32 = 7;

    /// Deleted before this time: out of the trash (gone for good).
    pub fn trash_cutoff(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.trash_ms)
    }

    /// The newest version pruned when a secret is at `current` (0: none).
    pub fn pruned_through(&self, current: i64) -> i64 {
        self.max_versions
            .map_or(0, |n| current.saturating_sub(i64::from(n)).max(0))
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_versions: None,
            trash_ms: i64::from(Self::DEFAULT_TRASH_DAYS) * 86_400_000,
        }
    }
}

/// How a secret is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Into the trash (with its history), for undelete; what was deleted before
    /// `purge_before_ms` leaves the trash for good in the same transaction.
    Trash { now_ms: i64, purge_before_ms: i64 },
    /// At once, with its history.
    Permanent,
}

impl StoredSecret {
    /// The answer to a read: the documented shape with the ciphertext.
    pub fn read(&self, now_secs: i64) -> SecretWithCiphertext {
        SecretWithCiphertext {
            record: self.record(now_secs),
            ciphertext: self.ciphertext.clone(),
        }
    }

    /// The compact answer to a batch read by a reader of `binding`: the ciphertext with
    /// that binding's wrap alone (borrowed as stored when it has no other), and the rules
    /// it is read under.
    pub fn sealed(&self, now_secs: i64, binding: &str) -> SealedValue<AnswerText<'_>> {
        // Only a value with more than one wrap has any to leave out.
        let trimmed = || {
            let kept = self.ciphertext_json.trimmed(&self.ciphertext, binding);
            kept.map(AnswerText::Json).or_else(|| {
                SealedView::parse(&self.ciphertext)
                    .and_then(|v| v.only_for(binding))
                    .map(|t| AnswerText::Text(Cow::Owned(t)))
            })
        };
        let ciphertext = self
            .ciphertext
            .contains(',')
            .then(trimmed)
            .flatten()
            .unwrap_or_else(|| {
                self.ciphertext_json.of(&self.ciphertext).map_or(
                    AnswerText::Text(Cow::Borrowed(&self.ciphertext)),
                    AnswerText::Json,
                )
            });
        SealedValue {
            status: SecretStatus::derive(self.revoked, self.expires_at, now_secs),
            ciphertext,
            scope: self.scope.clone(),
            envs: self.envs.clone(),
            expires_at: self.expires_at,
        }
    }

    /// What the access rules read of it, with the status as of `now_secs`.
    pub fn rules(&self, now_secs: i64) -> Rules<'_> {
        Rules {
            status: SecretStatus::derive(self.revoked, self.expires_at, now_secs),
            expires_at: self.expires_at,
            scope: &self.scope,
            envs: &self.envs,
        }
    }

    /// The documented response shape (metadata only), with the status as of `now_secs`.
    pub fn record(&self, now_secs: i64) -> SecretRecord {
        SecretRecord {
            id: self.id.clone(),
            workspace_id: self.workspace_id.clone(),
            key: self.key.clone(),
            description: self.description.clone(),
            token_type: self.token_type,
            scope: self.scope.clone(),
            envs: self.envs.clone(),
            expires_at: self.expires_at,
            created_at: iso_millis(self.created_ms),
            updated_at: iso_millis(self.updated_ms),
            version: self.version,
            status: SecretStatus::derive(self.revoked, self.expires_at, now_secs),
        }
    }

    /// Records a change: a new version, its time and who made it.
    pub fn touch(&mut self, now_ms: i64, change: Change) {
        self.version += 1;
        // Keep updatedAt strictly after createdAt-ordered history even within one ms.
        self.updated_ms = now_ms.max(self.updated_ms);
        self.change = change;
    }
}

/// One entry of the audit trail, before it is chained. Never holds a value. (Serialized
/// only into the SQLite server's audit journal.)
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    pub at_ms: i64,
    pub workspace_id: String,
    pub access_key_id: String,
    pub secret_key: String,
    pub action: String,
    pub app: Option<String>,
    pub env: Option<String>,
    pub claimed_app: Option<String>,
    pub claimed_env: Option<String>,
    pub allowed: bool,
    pub reason: Option<String>,
    pub detail: Option<String>,
    /// A batch read's keys, when one event records them all (`secret_key` is then empty).
    pub keys: Vec<String>,
}

impl AuditEvent {
    /// The wire form, with its place in the chain.
    pub fn entry(&self, id: i64, prev_hash: String, hash: String) -> AuditEntry {
        AuditEntry {
            id,
            at: iso_millis(self.at_ms),
            access_key_id: self.access_key_id.clone(),
            secret_key: self.secret_key.clone(),
            action: self.action.clone(),
            app: self.app.clone(),
            env: self.env.clone(),
            claimed_app: self.claimed_app.clone(),
            claimed_env: self.claimed_env.clone(),
            allowed: self.allowed,
            reason: self.reason.clone(),
            detail: self.detail.clone(),
            keys: self.keys.clone(),
            prev_hash,
            hash,
        }
    }

    /// The `batch_keys` column: the keys comma-separated (secret keys hold no commas), NULL
    /// for an event that is not a batch read.
    pub fn batch_keys(&self) -> Option<String> {
        (!self.keys.is_empty()).then(|| self.keys.join(","))
    }

    /// The keys of a `batch_keys` column.
    pub fn keys_from(column: Option<String>) -> Vec<String> {
        column
            .map(|c| c.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// This event's hash when it follows `prev_hash` (both backends chain with this).
    pub fn chain_hash(&self, prev_hash: &str) -> String {
        ductape::audit::Chained {
            workspace_id: &self.workspace_id,
            at: &iso_millis(self.at_ms),
            access_key_id: &self.access_key_id,
            secret_key: &self.secret_key,
            action: &self.action,
            app: &self.app,
            env: &self.env,
            claimed_app: &self.claimed_app,
            claimed_env: &self.claimed_env,
            allowed: self.allowed,
            reason: &self.reason,
            detail: &self.detail,
            keys: &self.keys,
        }
        .hash(prev_hash)
    }
}

/// The keyring as stored (format 2), parsed; `None` for a format-1 workspace. A stored
/// keyring that does not parse is the server's fault (500), never the caller's.
pub fn stored_keyring(text: Option<String>) -> Result<Option<ductape::crypto::Keyring>, ApiError> {
    text.map(|t| ductape::crypto::Keyring::parse(&t))
        .transpose()
        .map_err(|_| ApiError::internal("the workspace keyring in the database is malformed"))
}

/// Format 2: a written value must be sealed for exactly the audience the keyring gives its
/// scope and envs. Backends run this inside the write's transaction with the keyring read
/// there, so a binding registered at the same moment either is seen here or sees this
/// secret in its grant scan. `None` (format 1) checks nothing: routes check `dv1` shape.
pub fn check_sealed(
    keyring: Option<&ductape::crypto::Keyring>,
    s: &StoredSecret,
) -> Result<(), ApiError> {
    let Some(ring) = keyring else {
        return Ok(());
    };
    let sealed = ductape::crypto::SealedSecret::parse(&s.ciphertext).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UpgradeRequired,
            format!("this workspace uses format 2 (values sealed per secret to their readers' keys): field 'ciphertext' must be a 'dv2' sealed value; upgrade your Ductape client to {} or later", crate::MIN_CLIENT),
        )
    })?;
    ring.check_audience(&sealed, &s.scope, &s.envs)
        .map_err(ApiError::from)
}

/// Whether a change rewrote what [`check_sealed`] checks: the value or its audience.
pub fn reseals(before: &StoredSecret, after: &StoredSecret) -> bool {
    before.ciphertext != after.ciphertext
        || before.scope != after.scope
        || before.envs != after.envs
}

/// A change of the keyring inside one transaction: from the stored one (if any) and the
/// workspace's access keys as they are then, the new keyring and the keys whose grants
/// change.
pub type KeyringChange = Box<
    dyn FnOnce(
            Option<ductape::crypto::Keyring>,
            &[StoredAccessKey],
        ) -> Result<KeyringUpdate, ApiError>
        + Send,
>;

/// What a [`KeyringChange`] writes: the keyring, and access keys' new grants (id, text).
pub struct KeyringUpdate {
    pub keyring: ductape::crypto::Keyring,
    pub grants: Vec<(String, String)>,
}

impl From<ductape::crypto::Keyring> for KeyringUpdate {
    fn from(keyring: ductape::crypto::Keyring) -> Self {
        KeyringUpdate {
            keyring,
            grants: Vec::new(),
        }
    }
}

/// A change applied inside one transaction; returning an error rolls it back.
pub type Modify = Box<dyn FnOnce(&mut StoredSecret) -> Result<(), ApiError> + Send>;
/// A check on a row inside the transaction that changes it; an error rolls back.
pub type Check<T> = Box<dyn FnOnce(&T) -> Result<(), ApiError> + Send>;

/// Every change is written in one transaction together with its audit event, so the trail
/// holds every change that happened and nothing that did not.
/// The answers of a read, one per key asked: the secret or why it cannot be had.
pub type ReadAnswers = Vec<Result<Arc<StoredSecret>, ductape::Error>>;

/// A route's access rules for a read: from the rows found, each answer and the audit
/// events that must be committed before any answer leaves. A storage may apply it more than
/// once (to rows it held, then to rows read again when those turned out to be stale): only
/// the answers of the events it commits are returned.
pub type ReadRule<'a> =
    Box<dyn Fn(Vec<Arc<StoredSecret>>) -> (ReadAnswers, Vec<AuditEvent>) + Send + Sync + 'a>;

/// A read's plain course: the rows read from the database, judged by `rule`, its events
/// committed, its answers returned.
async fn read_and_record<S: Storage + ?Sized>(
    storage: &S,
    workspace_id: &str,
    keys: &[SecretKey],
    rule: &ReadRule<'_>,
) -> Result<ReadAnswers, ApiError> {
    let found = storage.get_secrets(workspace_id, keys).await?;
    let (answers, events) = rule(found);
    storage.append_audit(events).await?;
    Ok(answers)
}

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Touches the database (readiness): an error when it cannot answer.
    async fn ping(&self) -> Result<(), ApiError>;
    /// Finishes pending work before the server exits (the SQLite audit journal's events
    /// moved into the table, so that the database alone holds the whole trail).
    async fn close(&self) -> Result<(), ApiError> {
        Ok(())
    }
    /// The workspace, once set up.
    async fn workspace(&self) -> Result<Option<Workspace>, ApiError>;
    /// Creates the workspace and its first access key, consuming the setup token, in one
    /// transaction. Fails with 409 if a workspace exists or 401 if the token hash differs.
    async fn setup(
        &self,
        token_hash: &str,
        ws: Workspace,
        key: StoredAccessKey,
        event: AuditEvent,
    ) -> Result<(), ApiError>;
    /// Stores a setup token's hash unless one is pending (then `false`, and the pending one
    /// stays valid) or `replace` is set. Atomic, so that of several servers starting on one
    /// database exactly one issues the token.
    async fn offer_setup_token(&self, token_hash: &str, replace: bool) -> Result<bool, ApiError>;

    async fn access_key(&self, id: &str) -> Result<Option<StoredAccessKey>, ApiError>;
    async fn create_access_key(
        &self,
        key: StoredAccessKey,
        event: AuditEvent,
    ) -> Result<(), ApiError>;
    async fn list_access_keys(&self, workspace_id: &str) -> Result<Vec<StoredAccessKey>, ApiError>;
    /// Deletes the key and its wrapped workspace key after `check` passes on it, unless it
    /// is the workspace's last admin key (409). Serialised with other deletions, so that
    /// concurrent deletions cannot leave the workspace without an admin key. 404 if none.
    async fn delete_access_key(
        &self,
        workspace_id: &str,
        id: &str,
        check: Check<StoredAccessKey>,
        event: AuditEvent,
    ) -> Result<(), ApiError>;

    /// 409 `secret_exists` if the key is taken.
    async fn create_secret(&self, secret: StoredSecret, event: AuditEvent) -> Result<(), ApiError> {
        let mut answers = self.create_secrets(vec![(secret, event)]).await?;
        answers
            .pop()
            .unwrap_or_else(|| Err(ApiError::internal("create returned nothing")))
    }
    /// Inserts each secret whose key is free, with its event, all in one transaction; an
    /// item whose key is taken gets `secret_exists` and writes nothing (its refusal is the
    /// caller's to record). The outer error is the database's: then nothing was written.
    async fn create_secrets(
        &self,
        items: Vec<(StoredSecret, AuditEvent)>,
    ) -> Result<Vec<Result<(), ApiError>>, ApiError>;
    /// Up to `limit` secrets in key order (bytewise), after the key `after` if given.
    async fn list_secrets(
        &self,
        workspace_id: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<StoredSecret>, ApiError>;
    /// Shared rows: a server that keeps rows in memory hands out the ones it holds.
    async fn get_secrets(
        &self,
        workspace_id: &str,
        keys: &[SecretKey],
    ) -> Result<Vec<Arc<StoredSecret>>, ApiError>;
    /// Reads, changes and writes back one secret in one transaction. 404 if missing. When
    /// the change makes a new version, the version it replaces joins the secret's history
    /// (the oldest beyond `retention.max_versions` pruned in the same transaction).
    async fn modify_secret(
        &self,
        workspace_id: &str,
        key: &str,
        change: Modify,
        event: AuditEvent,
        retention: Retention,
    ) -> Result<StoredSecret, ApiError>;
    /// Deletes the secret after `check` passes on it, in one transaction: into the trash
    /// with its history, or for good. 404 if missing.
    async fn delete_secret(
        &self,
        workspace_id: &str,
        key: &str,
        check: Check<StoredSecret>,
        event: AuditEvent,
        how: Deletion,
    ) -> Result<(), ApiError>;
    /// Brings back the secret `key` most recently deleted at or after `since_ms`, changed by
    /// `change` (which checks it and makes its new version), in one transaction; its
    /// version at deletion joins its history. 404 if the trash holds none, 409 if a secret
    /// `key` exists.
    async fn undelete_secret(
        &self,
        workspace_id: &str,
        key: &str,
        since_ms: i64,
        change: Modify,
        event: AuditEvent,
        retention: Retention,
    ) -> Result<StoredSecret, ApiError>;
    /// Deletes what was put in the trash before `before_ms`, with its history; how many.
    async fn purge_trash(&self, before_ms: i64) -> Result<u64, ApiError>;
    /// The secret `key` and up to `limit` of its earlier versions below `before`, newest
    /// first; `None` if there is no secret `key`.
    async fn secret_history(
        &self,
        workspace_id: &str,
        key: &str,
        before: i64,
        limit: usize,
    ) -> Result<Option<(StoredSecret, Vec<StoredSecret>)>, ApiError>;
    /// The secret `key` and its version `version` (the current row when that is current),
    /// if kept; `None` if there is no secret `key`. One history read: the newest version
    /// below `version + 1` is `version` itself when it is kept.
    async fn secret_version(
        &self,
        workspace_id: &str,
        key: &str,
        version: i64,
    ) -> Result<Option<(StoredSecret, Option<StoredSecret>)>, ApiError> {
        let found = self
            .secret_history(workspace_id, key, version.saturating_add(1), 1)
            .await?;
        Ok(found.map(|(current, older)| {
            let at = if version == current.version {
                Some(current.clone())
            } else {
                older.into_iter().find(|s| s.version == version)
            };
            (current, at)
        }))
    }

    /// Up to `limit` rows of the change feed after id `after`, in id order.
    async fn changes_after(
        &self,
        workspace_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ChangeRow>, ApiError>;
    /// The oldest and newest ids the change feed holds (`None` when empty).
    async fn change_bounds(
        &self,
        workspace_id: &str,
    ) -> Result<(Option<i64>, Option<i64>), ApiError>;
    /// Deletes change-feed rows older than `before_ms`; how many.
    async fn prune_changes(&self, before_ms: i64) -> Result<u64, ApiError>;

    /// How many sealed values the workspace stores: current, earlier versions and trash.
    async fn count_sealed(&self, workspace_id: &str) -> Result<u64, ApiError>;
    /// Every stored row holding a sealed value (current secrets, their earlier versions and
    /// the trash) of the next `limit` secret keys after `after` (a key's rows never split
    /// across pages), in key order; and the key the next page starts after, `None` at the end.
    async fn list_sealed(
        &self,
        workspace_id: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<StoredSecret>, Option<String>), ApiError>;
    /// Every stored row holding a sealed value of these keys (see [`Storage::list_sealed`]).
    async fn sealed_rows(
        &self,
        workspace_id: &str,
        keys: &[String],
    ) -> Result<Vec<StoredSecret>, ApiError>;
    /// Replaces the keyring with what `change` makes of it, with `event`, in one
    /// transaction serialised with every secret write (see [`check_sealed`]).
    async fn update_keyring(
        &self,
        workspace_id: &str,
        change: KeyringChange,
        event: AuditEvent,
    ) -> Result<ductape::crypto::Keyring, ApiError>;
    /// Sets the ciphertext of each secret `key` from `old` to `new` wherever it is stored
    /// as `old` (its current row, earlier versions and trash: compare and swap, so a value
    /// changed meanwhile is left alone), without a new version, in one transaction with
    /// `event`. One answer per item: whether any row was replaced.
    async fn replace_ciphertexts(
        &self,
        workspace_id: &str,
        items: Vec<(String, String, String)>,
        event: AuditEvent,
    ) -> Result<Vec<bool>, ApiError>;

    /// Appends events to the chain (reads, and refused changes).
    async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<(), ApiError>;
    /// A read as one unit of work: the rows of `keys` (those that exist), judged by `rule`,
    /// whose audit events are committed before its answers are returned.
    async fn read_secrets(
        &self,
        workspace_id: &str,
        keys: &[SecretKey],
        rule: ReadRule<'_>,
    ) -> Result<ReadAnswers, ApiError> {
        read_and_record(self, workspace_id, keys, &rule).await
    }
    /// Deletes audit events older than `before_ms`; returns how many.
    async fn prune_audit(&self, before_ms: i64) -> Result<u64, ApiError>;
    /// Newest first; `before` is an exclusive cursor (the id of the last event seen); at most
    /// `limit` (default [`AuditQuery::DEFAULT_LIMIT`]).
    async fn list_audit(
        &self,
        workspace_id: &str,
        filter: &AuditQuery,
    ) -> Result<Vec<AuditEntry>, ApiError>;
}

/// The error for a key that is not there (or that the caller may not know is there).
/// What a batch of inserts did: one answer per secret, and the events of those created
/// (to be appended in the same transaction).
pub struct Inserted {
    pub answers: Vec<Result<(), ApiError>>,
    pub events: Vec<AuditEvent>,
}

impl Inserted {
    pub fn with_capacity(n: usize) -> Self {
        Inserted {
            answers: Vec::with_capacity(n),
            events: Vec::with_capacity(n),
        }
    }

    /// One insert refused inside the transaction (nothing written, no event).
    pub fn refuse(&mut self, why: ApiError) {
        self.answers.push(Err(why));
    }

    /// One insert: created, or its key was taken (nothing written, no event).
    pub fn record(&mut self, created: bool, key: &str, event: AuditEvent) {
        if created {
            self.answers.push(Ok(()));
            self.events.push(event);
        } else {
            self.answers.push(Err(secret_exists(key)));
        }
    }
}

/// The answer for a create whose key is taken.
pub fn secret_exists(key: &str) -> ApiError {
    ApiError::new(
        ErrorCode::SecretExists,
        format!("Secret with key '{key}' already exists"),
    )
}

pub fn no_such_access_key() -> ApiError {
    ApiError::new(ductape::ErrorCode::NotFound, "no access key with that id")
}

/// The refusal to delete the last admin key.
pub fn last_admin_key() -> ApiError {
    ApiError::new(
        ductape::ErrorCode::Conflict,
        "cannot delete the last admin access key",
    )
}

/// Whether deleting `target` from `keys` would leave no admin key.
pub fn is_last_admin(keys: &[StoredAccessKey], target: &StoredAccessKey) -> bool {
    target.permissions.contains(&Permission::Admin)
        && keys
            .iter()
            .filter(|k| k.permissions.contains(&Permission::Admin))
            .count()
            <= 1
}

/// The answer for an undelete that finds nothing to bring back.
pub fn not_in_trash(key: &str) -> ApiError {
    ApiError::new(
        ErrorCode::SecretNotFound,
        format!("Secret '{key}' is not in the trash (deleted secrets are kept there for the server's --trash-days, then gone for good)"),
    )
}

/// The answer for an undelete whose key has been taken again since the delete.
pub fn name_taken_again(key: &str, trashed_id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!("cannot undelete '{key}' (id {trashed_id}): a secret '{key}' was created since it was deleted; delete that one first (it then goes to the trash, and this undelete brings back the older one)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compact_answer_is_written_as_serde_json_writes_it() {
        let mut row = StoredSecret::sample("ws", "K", 1);
        // A real ciphertext, then texts JSON must escape or that are not ASCII: whichever
        // way each is written, the bytes are those of `serde_json` writing the text.
        for ct in [
            "dv2.1.qL0-Zx_9.0123456789abcdef:pVnZiZuLgeUdM42RkOzrNn1K99PY",
            "with \"quote\"",
            "back\\slash",
            "control\u{1}char",
            "tab\there",
            "ünïcodé ✓",
            "",
        ] {
            row.ciphertext = ct.to_owned();
            row.ciphertext_json = CiphertextJson::default();
            for _ in 0..2 {
                // Twice: as made, then as kept.
                let sealed = row.sealed(0, "0123456789abcdef");
                let expected = SealedValue {
                    ciphertext: ct,
                    scope: Vec::new(),
                    envs: Vec::new(),
                    expires_at: None,
                    status: SecretStatus::Active,
                };
                assert_eq!(
                    serde_json::to_string(&sealed).unwrap(),
                    serde_json::to_string(&expected).unwrap(),
                    "{ct:?}"
                );
            }
        }
        // A row whose ciphertext changed in place after it was written out is written anew.
        row.ciphertext = "dv2.1.a.b:c".into();
        row.ciphertext_json = CiphertextJson::default();
        assert!(matches!(row.sealed(0, "b").ciphertext, AnswerText::Json(_)));
        row.ciphertext = "dv2.1.a.b:d".into();
        let sealed = row.sealed(0, "b");
        assert!(matches!(sealed.ciphertext, AnswerText::Text(_)));
        assert!(serde_json::to_string(&sealed)
            .unwrap()
            .contains(r#""ciphertext":"dv2.1.a.b:d""#));
    }

    #[test]
    fn a_value_for_many_bindings_is_answered_with_the_readers_wrap_kept_for_one_binding() {
        let (a, b, c) = ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc");
        let text = format!("dv2.1.Qm9keQ.{a}:wA,{b}:wB,{c}:wC");
        let mut row = StoredSecret::sample("ws", "K", 1);
        row.ciphertext = text.clone();
        let answer = |row: &StoredSecret, binding: &str| {
            let sealed = row.sealed(0, binding);
            let kept = matches!(sealed.ciphertext, AnswerText::Json(_));
            let json: serde_json::Value = serde_json::to_value(&sealed).unwrap();
            (json["ciphertext"].as_str().unwrap().to_owned(), kept)
        };
        // The first binding to read is kept (from its second read on, as made); every
        // answer is exactly what `only_for` makes.
        let only = |t: &str, x: &str| SealedView::parse(t).unwrap().only_for(x).unwrap();
        assert_eq!(answer(&row, b), (only(&text, b), true));
        assert_eq!(answer(&row, b), (only(&text, b), true));
        assert_eq!(only(&text, b), format!("dv2.1.Qm9keQ.{b}:wB"));
        assert_eq!(answer(&row, a), (only(&text, a), false));
        assert_eq!(answer(&row, c), (format!("dv2.1.Qm9keQ.{c}:wC"), false));
        // A binding with no wrap gets the whole text, as before.
        assert_eq!(answer(&row, "dddddddddddddddd").0, text);
        // Changed in place (not through a new row): b's wrap rewritten at the same length,
        // the wraps reordered, b's wrap removed, one wrap left, another body: each answer is
        // the current text's, never the kept one.
        for changed in [
            format!("dv2.1.Qm9keQ.{a}:wA,{b}:wX,{c}:wC"),
            format!("dv2.1.Qm9keQ.{b}:wB,{a}:wA,{c}:wC"),
            format!("dv2.1.Qm9keQ.{a}:wA,{c}:wC"),
            format!("dv2.1.Qm9keQ.{b}:wB"),
            format!("dv2.1.Qm9keR.{a}:wA,{b}:wB,{c}:wC"),
            format!("dv2.1.Qm9keQ.{a}:wA,{b}:wB"),
            format!("dv2.1.Qm9keQ.{a}:wA,{b}:wBB,{c}:wC"),
        ] {
            row.ciphertext = changed.clone();
            let expected = SealedView::parse(&changed)
                .unwrap()
                .only_for(b)
                .unwrap_or_else(|| changed.clone());
            assert_eq!(answer(&row, b).0, expected, "{changed}");
        }
    }

    #[test]
    fn an_event_hashes_as_its_wire_form_does() {
        // What the server writes is what a client verifies (`ductape audit verify`).
        let single = AuditEvent {
            at_ms: 1_764_000_000_123,
            workspace_id: "ws_1".into(),
            access_key_id: "ak_1".into(),
            secret_key: "K".into(),
            action: "read".into(),
            app: Some("web".into()),
            claimed_env: Some("prod".into()),
            allowed: true,
            ..AuditEvent::default()
        };
        let batch = AuditEvent {
            secret_key: String::new(),
            action: "resolve".into(),
            keys: vec!["A".into(), "B".into()],
            ..single.clone()
        };
        let refused = AuditEvent {
            allowed: false,
            reason: Some("outside the access key's binding".into()),
            detail: Some("value".into()),
            ..single.clone()
        };
        let mut prev = ductape::audit::GENESIS.to_owned();
        for e in [single, batch, refused] {
            let wire = e.entry(1, String::new(), String::new());
            let hash = e.chain_hash(&prev);
            assert_eq!(
                hash,
                ductape::audit::chain_hash(&prev, &e.workspace_id, &wire)
            );
            prev = hash;
        }
    }
}
