use bytes::Bytes;
use reqwest::Method;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::cache::{self, CacheKey, Entry, Freshness};
use super::keys::SessionKeys;
use super::transport::{answer_text, unexpected_answer, Idempotency};
use super::Ductape;
use super::Session;
use crate::access;
use crate::args::CheckedCreate;
pub use crate::args::{CreateSecret, UpdateSecret};
use crate::crypto::Plaintext;
use crate::error::{Error, ErrorCode};
use crate::ids::now_secs;
use crate::validate::{self, MetadataInput, SecretKey};
use crate::wire::{
    BatchCreateBody, BatchCreateResponse, BatchGetBody, BatchItem, DeletedResponse, ListQuery,
    SecretPage, SecretRecord, SecretVersion, SecretWithCiphertext, UsageEntry, VersionPage,
    VersionQuery,
};

/// A secret with its decrypted value (the answer of `fetch`). `Debug` hides the value.
#[derive(Clone)]
pub struct FetchedSecret {
    pub record: SecretRecord,
    pub value: Plaintext,
    /// Served from the cache past its TTL because the server could not answer
    /// (`CacheOptions::stale_if_error`).
    pub stale: bool,
}

impl fmt::Debug for FetchedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedSecret")
            .field("record", &self.record)
            .field("value", &self.value)
            .field("stale", &self.stale)
            .finish()
    }
}

impl FetchedSecret {
    /// The documented response shape of `fetch`: the metadata fields plus `value`.
    /// (This is the one place a value is put into JSON, for the bindings and the CLI.)
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.record).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert(
                "value".into(),
                Value::String(self.value.expose().to_owned()),
            );
            // Only when it is so (the bindings warn, then drop it).
            if self.stale {
                map.insert("stale".into(), Value::Bool(true));
            }
        }
        v
    }
}

impl std::ops::Deref for FetchedSecret {
    type Target = SecretRecord;
    fn deref(&self) -> &SecretRecord {
        &self.record
    }
}

/// The most bytes of sealed secrets [`Secrets::create_batch`] puts in one request (under
/// the server's 256 KiB body limit, with room for the JSON around them).
const BATCH_CREATE_BYTES: usize = 192 * 1024;

/// About how many bytes a body takes as JSON (strings dominate; escapes are rare).
fn body_len(body: &Map<String, Value>) -> usize {
    body.iter()
        .map(|(k, v)| k.len() + 8 + v.as_str().map_or(64, str::len))
        .sum()
}

/// One answer of a batch read: the key, and its decrypted secret or why it cannot be had.
pub type BatchResult = (SecretKey, Result<FetchedSecret, Error>);

/// Secret operations of a [`Ductape`] client.
pub struct Secrets<'a> {
    pub(super) client: &'a Ductape,
}

impl<'a> Secrets<'a> {
    pub(crate) fn new(client: &'a Ductape) -> Self {
        Secrets { client }
    }

    /// Encrypts the value here and creates the secret. 409 `secret_exists` if the key is taken.
    pub async fn create(&self, args: CreateSecret) -> Result<SecretRecord, Error> {
        let checked = CheckedCreate::new(args)?;
        let mut refreshed = false;
        loop {
            let body = checked.seal(&*self.client.session()?)?;
            let answer = self
                .client
                .transport()
                .call(
                    Method::POST,
                    "/v1/secrets",
                    Some(&Value::Object(body)),
                    Idempotency::NotIdempotent,
                )
                .await;
            match answer {
                // A binding was added since init(): learn it and seal again, once.
                Err(e) if e.code() == ErrorCode::KeyringChanged && !refreshed => {
                    self.client.init().await?;
                    refreshed = true;
                }
                answer => return answer,
            }
        }
    }

    /// Creates many secrets, each encrypted here, in as few requests as the server's limits
    /// allow (up to [`BatchCreateBody::MAX_SECRETS`] secrets and about 192 KiB a request);
    /// what bulk import uses. Each answer is the new secret's metadata or why it was not
    /// created: a key already taken answers `secret_exists` and is left unchanged, so a
    /// re-run creates only what is missing. The outer error means a request failed; the
    /// requests before it were applied.
    ///
    /// ```no_run
    /// # async fn demo(d: ductape::Ductape) -> Result<(), ductape::Error> {
    /// use ductape::CreateSecret;
    /// let answers = d.secrets().create_batch(vec![
    ///     CreateSecret::new("A_KEY", "value-a"),
    ///     CreateSecret::new("B_KEY", "value-b"),
    /// ]).await?;
    /// for (key, answer) in answers { println!("{key}: {}", answer.is_ok()); }
    /// # Ok(()) }
    /// ```
    pub async fn create_batch(
        &self,
        secrets: Vec<CreateSecret>,
    ) -> Result<Vec<(String, Result<SecretRecord, Error>)>, Error> {
        // Every item checked first: bad arguments are reported as such, even before init.
        let checked: Vec<(String, Result<CheckedCreate, Error>)> = secrets
            .into_iter()
            .map(|args| (args.key.clone(), CheckedCreate::new(args)))
            .collect();
        let session = self.client.session()?;
        let mut answers: Vec<(String, Result<SecretRecord, Error>)> =
            Vec::with_capacity(checked.len());
        // Sealed bodies waiting for a request, with the index of their answer.
        let mut pending: Vec<(usize, Map<String, Value>)> = Vec::new();
        let mut pending_bytes = 0;
        for (key, checked) in checked {
            match checked.and_then(|c| c.seal(&session)) {
                Ok(body) => {
                    let bytes = body_len(&body);
                    if !pending.is_empty()
                        && (pending.len() == BatchCreateBody::MAX_SECRETS
                            || pending_bytes + bytes > BATCH_CREATE_BYTES)
                    {
                        self.send_creates(std::mem::take(&mut pending), &mut answers)
                            .await?;
                        pending_bytes = 0;
                    }
                    pending_bytes += bytes;
                    pending.push((answers.len(), body));
                    answers.push((key, Err(mismatch())));
                }
                Err(e) => answers.push((key, Err(e))),
            }
        }
        if !pending.is_empty() {
            self.send_creates(pending, &mut answers).await?;
        }
        Ok(answers)
    }

    /// One `batch-create` request; fills in the answers at the given indexes.
    async fn send_creates(
        &self,
        bodies: Vec<(usize, Map<String, Value>)>,
        answers: &mut [(String, Result<SecretRecord, Error>)],
    ) -> Result<(), Error> {
        let (slots, bodies): (Vec<usize>, Vec<Value>) = bodies
            .into_iter()
            .map(|(i, b)| (i, Value::Object(b)))
            .unzip();
        let resp: BatchCreateResponse = self
            .client
            .transport()
            .call(
                Method::POST,
                "/v1/secrets/batch-create",
                Some(&serde_json::json!({ "secrets": bodies })),
                // A repeat after a lost answer creates nothing twice: the keys it created
                // the first time answer `secret_exists`.
                Idempotency::Idempotent,
            )
            .await?;
        if resp.results.len() != slots.len() {
            return Err(mismatch());
        }
        for (slot, item) in slots.into_iter().zip(resp.results) {
            let (key, answer) = &mut answers[slot];
            *answer = match (item.record, item.error) {
                (Some(r), _) if item.key == *key => Ok(r),
                (_, Some(e)) => Err(Error::from_server(e.status, Some(e.code), e.message, None)),
                _ => Err(mismatch()),
            };
        }
        Ok(())
    }

    /// Lists every secret's metadata (never values or ciphertext).
    pub async fn fetch_all(&self) -> Result<Vec<SecretRecord>, Error> {
        let mut all = Vec::new();
        let mut query = ListQuery {
            limit: Some(ListQuery::MAX_LIMIT),
            cursor: None,
        };
        loop {
            let page = self.page(&query).await?;
            all.extend(page.secrets);
            match page.next_cursor {
                Some(c) => query.cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// One page of metadata in key order; pass the page's `next_cursor` as `query.cursor`
    /// for the next. For workspaces too big to hold at once.
    ///
    /// ```no_run
    /// # async fn demo(d: ductape::Ductape) -> Result<(), ductape::Error> {
    /// use ductape::wire::ListQuery;
    /// let mut q = ListQuery { limit: Some(500), cursor: None };
    /// loop {
    ///     let page = d.secrets().page(&q).await?;
    ///     for s in &page.secrets { println!("{}", s.key); }
    ///     match page.next_cursor { Some(c) => q.cursor = Some(c), None => break }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn page(&self, query: &ListQuery) -> Result<SecretPage, Error> {
        let params = serde_urlencoded::to_string(query)
            .map_err(|e| Error::invalid_field(format!("invalid listing query: {e}")))?;
        self.client
            .transport()
            .call(
                Method::GET,
                &format!("/v1/secrets?{params}"),
                None,
                Idempotency::Idempotent,
            )
            .await
    }

    fn forgetting<'k>(&'k self, key: &'k str) -> Forget<'k> {
        Forget {
            cache: self.client.cache(),
            key,
        }
    }

    /// Fetches one secret and decrypts its value here (from the cache when the client has
    /// one and the value is fresh in it).
    pub async fn fetch(&self, key: &str) -> Result<FetchedSecret, Error> {
        let key = SecretKey::parse(key)?;
        self.fetch_through(&key, None, false).await
    }

    /// A fresh cache hit for `key` without any request or wait: the cache's generation and
    /// how long the entry stays fresh (see [`Secrets::cache_generation`]), and the secret;
    /// `None` on a miss, a stale or expired entry, or without a cache. What the bindings'
    /// fast path calls.
    pub fn cached(&self, key: &str) -> Option<CachedHit> {
        let cache = self.client.cache()?;
        // Read before the entry: a change after it makes the generation move on.
        let generation = cache.generation();
        let e = cache.get_current(key)?;
        (cache.freshness(&e) == Freshness::Fresh).then(|| CachedHit {
            generation,
            fresh_for: cache.fresh_for(&e),
            secret: served(&e, false),
        })
    }

    /// The cache's generation: while it is the number a [`CachedHit`] came with and the
    /// hit's `fresh_for` has not run out, that hit is still the answer (nothing came in or
    /// went out of the cache since). One atomic load: a binding checks it instead of
    /// calling into the core for each hit.
    pub fn cache_generation(&self) -> Option<u64> {
        Some(self.client.cache()?.generation())
    }

    /// The counter behind [`Secrets::cache_generation`] itself, for a binding that reads it
    /// from its own runtime without a call into the core (the number only ever grows; a
    /// reader must load it atomically).
    pub fn cache_generation_cell(&self) -> Option<Arc<std::sync::atomic::AtomicU64>> {
        Some(self.client.cache()?.generation_cell())
    }

    /// [`Secrets::fetch`] from the server whatever the cache holds (the answer then
    /// refreshes the cache).
    pub async fn fetch_fresh(&self, key: &str) -> Result<FetchedSecret, Error> {
        let key = SecretKey::parse(key)?;
        self.fetch_through(&key, None, true).await
    }

    /// Fetches an earlier version of a secret (its metadata then, its value decrypted
    /// here), under the access rules of a read of the secret as it is now.
    pub async fn fetch_version(&self, key: &str, version: i64) -> Result<FetchedSecret, Error> {
        let key = SecretKey::parse(key)?;
        let fetched = self
            .fetch_through(&key, Some(positive(version)?), false)
            .await?;
        if fetched.record.version != version {
            return Err(Error::new(
                ErrorCode::Integrity,
                format!("asked for version {version} of '{key}' but the server answered with version {}", fetched.record.version),
            ));
        }
        Ok(fetched)
    }

    /// A read through the cache (when there is one): a fresh entry answers; a stale one is
    /// revalidated (304 keeps it; a refusal or a verdict on the secret drops it; an outage
    /// serves it within `stale_if_error`); an expired one never answers.
    async fn fetch_through(
        &self,
        key: &SecretKey,
        version: Option<i64>,
        fresh: bool,
    ) -> Result<FetchedSecret, Error> {
        // Not initialized: say so before any request.
        self.client.session()?;
        let path = match version {
            Some(v) => secret_path(key, &format!("/versions/{v}")),
            None => secret_path(key, ""),
        };
        let Some(cache) = self.client.cache() else {
            let (got, _) = self
                .fetch_at(key, &path, None)
                .await?
                .ok_or_else(not_modified)?;
            return Ok(got);
        };
        let ck = CacheKey::fetch(key.as_str(), version);
        let held = if fresh { None } else { cache.get(&ck) };
        let answer = match &held {
            None => self.fetch_at(key, &path, None).await?,
            Some(e) => match cache.freshness(e) {
                Freshness::Fresh => return Ok(served(e, false)),
                Freshness::Expired => {
                    cache.forget(&ck);
                    let verdict = access::check(
                        key.as_str(),
                        Some(&e.record),
                        access::Context::default(),
                        now_secs(),
                    );
                    return Err(verdict.err().unwrap_or_else(|| {
                        Error::new(
                            ErrorCode::SecretExpired,
                            format!("Secret '{key}' has expired"),
                        )
                    }));
                }
                Freshness::Stale { servable_on_error } => {
                    match self.fetch_at(key, &path, e.etag.as_deref()).await {
                        Ok(None) => {
                            cache.confirm(&ck, e);
                            return Ok(served(e, false));
                        }
                        Ok(changed) => changed,
                        Err(err) if servable_on_error && cache::outage(&err) => {
                            tracing::warn!(key = %key, error = %err, "the server cannot answer: serving the cached value past its TTL (stale_if_error)");
                            return Ok(served(e, true));
                        }
                        Err(err) => {
                            if !cache::outage(&err) {
                                cache.forget(&ck);
                            }
                            return Err(err);
                        }
                    }
                }
            },
        };
        // A miss, a bypass, or a changed secret: the whole answer.
        let (got, sent) = answer.ok_or_else(not_modified)?;
        cache.put(
            ck,
            Entry {
                record: got.record.clone(),
                value: got.value.clone(),
                etag: sent.etag,
                sealed: sent.ciphertext,
                confirmed: Instant::now(),
            },
        );
        Ok(got)
    }

    /// Reads `path` (revalidating a copy held as `etag`: `None` when it is current): the
    /// secret opened here, and what the server sent.
    async fn fetch_at(
        &self,
        key: &SecretKey,
        path: &str,
        etag: Option<&str>,
    ) -> Result<Option<(FetchedSecret, Sent)>, Error> {
        let reply = self
            .client
            .transport()
            .get_if_changed::<SecretWithCiphertext>(path, etag)
            .await?;
        let Some(got) = reply.body else {
            return Ok(None);
        };
        let ciphertext = got.ciphertext.clone();
        let opened = self.open_answer(key, got).await?;
        Ok(Some((
            opened,
            Sent {
                ciphertext,
                etag: reply.etag,
            },
        )))
    }

    /// Opens a read's value here.
    async fn open_answer(
        &self,
        key: &SecretKey,
        got: SecretWithCiphertext,
    ) -> Result<FetchedSecret, Error> {
        let session = self.client.session()?;
        let mut value = open_value(&session, key, &got);
        if resealed(&value) {
            // Resealed by a rotation since this session began: a fresh session opens it.
            self.client.open_session().await?;
            value = open_value(&*self.client.session()?, key, &got);
        }
        Ok(FetchedSecret {
            record: got.record,
            value: value?,
            stale: false,
        })
    }

    /// Every kept version of a secret, newest first: when, by which access key, what
    /// changed (field names, never values). Reads page by page.
    pub async fn versions(&self, key: &str) -> Result<Vec<SecretVersion>, Error> {
        let mut all = Vec::new();
        let mut query = VersionQuery {
            limit: Some(VersionQuery::MAX_LIMIT),
            cursor: None,
        };
        loop {
            let page = self.versions_page(key, &query).await?;
            all.extend(page.versions);
            match page.next_cursor {
                Some(c) => query.cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// One page of [`Secrets::versions`].
    pub async fn versions_page(
        &self,
        key: &str,
        query: &VersionQuery,
    ) -> Result<VersionPage, Error> {
        let key = SecretKey::parse(key)?;
        let mut params = Vec::new();
        if let Some(l) = query.limit {
            params.push(format!("limit={l}"));
        }
        if let Some(c) = query.cursor {
            params.push(format!("cursor={c}"));
        }
        let path = secret_path(&key, &format!("/versions?{}", params.join("&")));
        self.client
            .transport()
            .call(Method::GET, &path, None, Idempotency::Idempotent)
            .await
    }

    /// Makes a new current version with `version`'s value (metadata stays; history is
    /// never rewritten). The server copies the stored ciphertext when it is still sealed
    /// for the secret's readers; otherwise (format 2, after a change of readers or a key
    /// rotation) the value is opened and sealed anew here, which needs `read` too.
    pub async fn rollback(&self, key: &str, version: i64) -> Result<SecretRecord, Error> {
        self.rollback_if_version(key, version, None).await
    }

    /// [`Secrets::rollback`], only if the secret is still at `if_version` (409
    /// `version_conflict` otherwise; sent as `If-Match`).
    pub async fn rollback_if_version(
        &self,
        key: &str,
        version: i64,
        if_version: Option<i64>,
    ) -> Result<SecretRecord, Error> {
        // The cached value goes whatever the outcome (a failed change may have happened).
        let _forget = self.forgetting(key);
        let key = SecretKey::parse(key)?;
        let path = secret_path(&key, "/rollback");
        let mut body = json!({ "version": positive(version)? });
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (answer, _) = self
                .client
                .transport()
                .call_full::<SecretRecord>(
                    Method::POST,
                    &path,
                    Some(&body),
                    Idempotency::NotIdempotent,
                    if_version,
                )
                .await;
            match answer {
                Err(e) if attempts < 4 && e.code() == ErrorCode::KeyringChanged => {
                    // Sealed for other readers or an older key generation: seal it anew.
                    let old = self.fetch_version(key.as_str(), version).await?;
                    let mut now = self
                        .batch_metadata(std::slice::from_ref(&key), None, None)
                        .await?;
                    let (_, record) = now.pop().ok_or_else(mismatch)?;
                    let record = record?;
                    let session = self.client.session()?;
                    let sealed = session.keys.seal(
                        &session.workspace.workspace_id,
                        &key,
                        &old.value,
                        &record.scope,
                        &record.envs,
                    )?;
                    body = json!({
                        "version": version,
                        "ciphertext": sealed,
                        "expected_version": if_version.unwrap_or(record.version),
                    });
                }
                // Changed between our read and our write (not a version the caller asked
                // for): read and seal again.
                Err(e)
                    if attempts < 4
                        && e.code() == ErrorCode::VersionConflict
                        && if_version.is_none()
                        && body.get("ciphertext").is_some() => {}
                answer => return answer,
            }
        }
    }

    /// Brings back the secret most recently deleted under `key` (with its history) from
    /// the trash, as a new version.
    pub async fn undelete(&self, key: &str) -> Result<SecretRecord, Error> {
        // The cached value goes whatever the outcome (a failed change may have happened).
        let _forget = self.forgetting(key);
        let key = SecretKey::parse(key)?;
        // Not retried blindly: a second undelete would find its own secret in the way.
        self.client
            .transport()
            .call(
                Method::POST,
                &secret_path(&key, "/undelete"),
                None,
                Idempotency::NotIdempotent,
            )
            .await
    }

    /// Deletes the secret and its history at once instead of moving them to the trash
    /// (admin). Resolves `true`.
    pub async fn delete_permanently(&self, key: &str, version: Option<i64>) -> Result<bool, Error> {
        self.remove(key, version, "?permanent=true").await
    }

    /// Changes the value (re-encrypted here) and/or metadata.
    ///
    /// In a format-2 workspace who can decrypt follows `scope` and `envs`, so a new value,
    /// or a change of either, is sealed here for the readers the secret will have: the
    /// client reads the secret's metadata (and, for a scope or envs change without a new
    /// value, its value) first, and the change is made only if the secret is still at the
    /// version read (a concurrent change makes it read and seal again).
    pub async fn update(&self, key: &str, args: UpdateSecret) -> Result<SecretRecord, Error> {
        // The cached value goes whatever the outcome (a failed change may have happened).
        let _forget = self.forgetting(key);
        let key = SecretKey::parse(key)?;
        let mut body = Map::new();
        args.metadata.write_to(&mut body);
        let metadata = MetadataInput::from_object(&body)?;
        if args.value.is_none() && metadata.is_empty() {
            return Err(Error::invalid_field(
                "nothing to update: give a value or at least one metadata field",
            ));
        }
        if let Some(value) = &args.value {
            validate::check_value(value.expose())?;
        }
        let mut body = Map::new();
        metadata.write_to(&mut body);
        if let Some(v) = args.expected_version {
            body.insert("expected_version".into(), Value::from(v));
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let session = self.client.session()?;
            let reseals =
                args.value.is_some() || !(metadata.scope.is_keep() && metadata.envs.is_keep());
            if reseals {
                let (ciphertext, version) =
                    self.seal_update(&session, &key, &args, &metadata).await?;
                body.insert("ciphertext".into(), Value::String(ciphertext));
                if let Some(v) = version {
                    body.insert("expected_version".into(), Value::from(v));
                }
            }
            let answer = self
                .client
                .transport()
                .call(
                    Method::PATCH,
                    &secret_path(&key, ""),
                    Some(&Value::Object(body.clone())),
                    Idempotency::NotIdempotent,
                )
                .await;
            match answer {
                Err(e) if attempts < 4 && e.code() == ErrorCode::KeyringChanged => {
                    self.client.init().await?;
                }
                // The secret changed between our read and our write (not a version the
                // caller asked for): read and seal again.
                Err(e)
                    if attempts < 4
                        && e.code() == ErrorCode::VersionConflict
                        && args.expected_version.is_none()
                        && matches!(session.keys, SessionKeys::Ring(_)) => {}
                answer => return answer,
            }
        }
    }

    /// The new sealed value of an update, and (format 2) the version it was sealed for.
    async fn seal_update(
        &self,
        session: &Session,
        key: &SecretKey,
        args: &UpdateSecret,
        metadata: &MetadataInput,
    ) -> Result<(String, Option<i64>), Error> {
        let ws = &session.workspace.workspace_id;
        if let SessionKeys::Workspace(_) = session.keys {
            let value = args.value.as_ref().ok_or_else(|| {
                Error::new(ErrorCode::Protocol, "format 1 reseals only new values")
            })?;
            return Ok((session.keys.seal(ws, key, value, &[], &[])?, None));
        }
        // Who reads it after the change, and its value when no new one is given.
        let (record, value) = match &args.value {
            Some(v) => {
                let mut answers = self
                    .batch_metadata(std::slice::from_ref(key), None, None)
                    .await?;
                let (_, record) = answers.pop().ok_or_else(mismatch)?;
                (record?, v.clone())
            }
            None => {
                let fetched = self.fetch(key.as_str()).await?;
                (fetched.record, fetched.value)
            }
        };
        let scope = metadata.scope.clone().apply_list(record.scope);
        let envs = metadata.envs.clone().apply_list(record.envs);
        let sealed = session.keys.seal(ws, key, &value, &scope, &envs)?;
        Ok((sealed, args.expected_version.or(Some(record.version))))
    }

    /// Deletes the secret: it moves to the server's trash with its history (see
    /// [`Secrets::undelete`]) and reads answer 404 at once. Resolves `true`. When an attempt failed in a way that
    /// may have carried it out and the retry finds the secret gone, that is success too.
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.delete_if_version(key, None).await
    }

    /// [`Secrets::delete`], only if the secret is still at `version` (409
    /// `version_conflict` otherwise; sent as `If-Match`).
    pub async fn delete_if_version(&self, key: &str, version: Option<i64>) -> Result<bool, Error> {
        self.remove(key, version, "").await
    }

    async fn remove(&self, key: &str, version: Option<i64>, query: &str) -> Result<bool, Error> {
        // The cached value goes whatever the outcome (a failed change may have happened).
        let _forget = self.forgetting(key);
        let key = SecretKey::parse(key)?;
        let (result, maybe_done) = self
            .client
            .transport()
            .call_full::<DeletedResponse>(
                Method::DELETE,
                &secret_path(&key, query),
                None,
                Idempotency::Idempotent,
                version,
            )
            .await;
        match result {
            Ok(resp) => Ok(resp.deleted),
            Err(e) if maybe_done && e.code() == ErrorCode::SecretNotFound => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Revokes the secret: it stays listed but its value can no longer be read. Resolves `true`.
    pub async fn revoke(&self, key: &str) -> Result<bool, Error> {
        self.revoke_if_version(key, None).await
    }

    /// [`Secrets::revoke`], only if the secret is still at `version` (409 otherwise).
    pub async fn revoke_if_version(&self, key: &str, version: Option<i64>) -> Result<bool, Error> {
        let record = self.lifecycle(key, "/revoke", version).await?;
        Ok(record.status == crate::wire::SecretStatus::Revoked)
    }

    /// Undoes a revoke.
    pub async fn restore(&self, key: &str) -> Result<SecretRecord, Error> {
        self.restore_if_version(key, None).await
    }

    /// [`Secrets::restore`], only if the secret is still at `version` (409 otherwise).
    pub async fn restore_if_version(
        &self,
        key: &str,
        version: Option<i64>,
    ) -> Result<SecretRecord, Error> {
        self.lifecycle(key, "/restore", version).await
    }

    /// Reads many secrets in one request, as the server allows for `app`/`env`; each result
    /// is the decrypted secret or the reason it cannot be had (see the resolver).
    pub async fn batch_get(
        &self,
        keys: &[SecretKey],
        app: Option<&str>,
        env: Option<&str>,
    ) -> Result<Vec<BatchResult>, Error> {
        let Some(cache) = self.client.cache() else {
            return self.batch_fetch(keys, app, env).await;
        };
        // Fresh entries for this context answer; the rest are read in one request (a batch
        // read does not revalidate: a stale entry is read again whole).
        let held: Vec<Option<Arc<Entry>>> = keys
            .iter()
            .map(|k| cache.get(&CacheKey::resolve(k.as_str(), app, env)))
            .collect();
        let mut answers: Vec<Option<Result<FetchedSecret, Error>>> = held
            .iter()
            .map(|e| {
                e.as_ref()
                    .filter(|e| cache.freshness(e) == Freshness::Fresh)
                    .map(|e| Ok(served(e, false)))
            })
            .collect();
        let missing: Vec<SecretKey> = keys
            .iter()
            .zip(&answers)
            .filter(|(_, a)| a.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        if !missing.is_empty() {
            let fetched = match self.batch_fetch_sealed(&missing, app, env).await {
                Ok(f) => f,
                Err(err) if cache::outage(&err) => {
                    // Within stale_if_error, every missing key's last good value, or nothing.
                    for (answer, e) in answers.iter_mut().zip(&held) {
                        if answer.is_none() {
                            let stale = e.as_ref().filter(|e| {
                                cache.freshness(e)
                                    == Freshness::Stale {
                                        servable_on_error: true,
                                    }
                            });
                            let Some(e) = stale else { return Err(err) };
                            *answer = Some(Ok(served(e, true)));
                        }
                    }
                    tracing::warn!(error = %err, "the server cannot answer: serving cached values past their TTL (stale_if_error)");
                    return Ok(keys
                        .iter()
                        .cloned()
                        .zip(answers.into_iter().flatten())
                        .collect());
                }
                Err(err) => return Err(err),
            };
            let mut fetched = fetched.into_iter();
            let (mut puts, mut forgets) = (Vec::new(), Vec::new());
            for (answer, key) in answers.iter_mut().zip(keys) {
                if answer.is_some() {
                    continue;
                }
                let (_, got, sealed) = fetched.next().ok_or_else(mismatch)?;
                let ck = CacheKey::resolve(key.as_str(), app, env);
                match (&got, sealed) {
                    (Ok(s), Some(sealed)) => puts.push((
                        ck,
                        Entry {
                            record: s.record.clone(),
                            value: s.value.clone(),
                            etag: None,
                            sealed,
                            confirmed: Instant::now(),
                        },
                    )),
                    _ => forgets.push(ck),
                }
                *answer = Some(got);
            }
            cache.apply(puts, &forgets);
        }
        Ok(keys
            .iter()
            .cloned()
            .zip(answers.into_iter().flatten())
            .collect())
    }

    async fn batch_fetch(
        &self,
        keys: &[SecretKey],
        app: Option<&str>,
        env: Option<&str>,
    ) -> Result<Vec<BatchResult>, Error> {
        Ok(self
            .batch_fetch_sealed(keys, app, env)
            .await?
            .into_iter()
            .map(|(k, r, _)| (k, r))
            .collect())
    }

    /// [`Secrets::batch_fetch`] with each answer's ciphertext as the server sent it.
    async fn batch_fetch_sealed(
        &self,
        keys: &[SecretKey],
        app: Option<&str>,
        env: Option<&str>,
    ) -> Result<Vec<(SecretKey, Result<FetchedSecret, Error>, Option<String>)>, Error> {
        let answer = self.batch_request(keys, app, env, Answer::Whole).await?;
        let results = batch_results::<String>(keys, &answer)?;
        let values = self
            .open_each(keys, &results, |session, key, item| {
                match (&item.secret, &item.error) {
                    (Some(s), _) if item.key == key.as_str() => open_value(session, key, s),
                    (_, Some(e)) => Err((**e).clone().into()),
                    _ => Err(mismatch()),
                }
            })
            .await?;
        Ok(keys
            .iter()
            .zip(results)
            .zip(values)
            .map(|((key, item), value)| {
                let sealed = item.secret.as_ref().map(|s| s.ciphertext.clone());
                let fetched = value.and_then(|value| {
                    let record = item.secret.ok_or_else(mismatch)?.record;
                    Ok(FetchedSecret {
                        record,
                        value,
                        stale: false,
                    })
                });
                (key.clone(), fetched, sealed)
            })
            .collect())
    }

    /// The values of `keys`, in their order, for resolving in `ctx`, read past the cache in
    /// one compact batch read: each secret's rules are checked again here (a misbehaving
    /// server cannot hand out what they forbid) before its value is opened.
    pub(crate) async fn batch_values(
        &self,
        keys: &[SecretKey],
        ctx: access::Context<'_>,
    ) -> Result<Vec<Result<Plaintext, Error>>, Error> {
        let env = ctx.envs.first().map(String::as_str);
        let answer = self
            .batch_request(keys, ctx.app, env, Answer::Compact)
            .await?;
        // Read in place: keys and ciphertexts are borrowed from the answer, not copied out.
        let results = batch_results::<Text>(keys, &answer)?;
        let now = now_secs();
        self.open_each(keys, &results, |session, key, item| {
            match (&item.sealed, &item.error) {
                (Some(s), _) if *item.key.0 == *key.as_str() => {
                    access::check_rules(key.as_str(), Some(s.into()), ctx, now)?;
                    session
                        .keys
                        .open(&session.workspace.workspace_id, key, &s.ciphertext.0)
                }
                (_, Some(e)) => Err((**e).clone().into()),
                _ => Err(mismatch()),
            }
        })
        .await
    }

    /// `open` of each answer with this session's keys; those sealed under keys rotated in
    /// since the session began are opened once more with a new session.
    async fn open_each<T>(
        &self,
        keys: &[SecretKey],
        items: &[T],
        open: impl Fn(&Session, &SecretKey, &T) -> Result<Plaintext, Error>,
    ) -> Result<Vec<Result<Plaintext, Error>>, Error> {
        let session = self.client.session()?;
        let mut values: Vec<Result<Plaintext, Error>> = keys
            .iter()
            .zip(items)
            .map(|(key, item)| open(&session, key, item))
            .collect();
        if values.iter().any(resealed) {
            self.client.open_session().await?;
            let session = self.client.session()?;
            for ((value, key), item) in values.iter_mut().zip(keys).zip(items) {
                if resealed(value) {
                    *value = open(&session, key, item);
                }
            }
        }
        Ok(values)
    }

    /// Like [`Secrets::batch_get`] but metadata only (no ciphertext leaves the server);
    /// what `check` uses.
    pub async fn batch_metadata(
        &self,
        keys: &[SecretKey],
        app: Option<&str>,
        env: Option<&str>,
    ) -> Result<Vec<(SecretKey, Result<SecretRecord, Error>)>, Error> {
        let answer = self.batch_request(keys, app, env, Answer::Metadata).await?;
        let results = batch_results::<String>(keys, &answer)?;
        Ok(keys
            .iter()
            .zip(results)
            .map(|(key, item)| {
                let result = match (item.record, item.error) {
                    (Some(r), _) if item.key == key.as_str() => Ok(*r),
                    (_, Some(e)) => Err((*e).into()),
                    _ => Err(mismatch()),
                };
                (key.clone(), result)
            })
            .collect())
    }

    async fn batch_request(
        &self,
        keys: &[SecretKey],
        app: Option<&str>,
        env: Option<&str>,
        answer: Answer,
    ) -> Result<Bytes, Error> {
        let body = BatchGetBody {
            keys: keys.iter().map(SecretKey::as_str).collect(),
            app,
            env,
            metadata_only: answer == Answer::Metadata,
            compact: answer == Answer::Compact,
        };
        self.client
            .transport()
            .call_bytes(
                Method::POST,
                "/v1/secrets/batch-get",
                Some(&body),
                Idempotency::Idempotent,
            )
            .await
    }

    /// Which apps and environments used a secret, and when last (from the audit trail).
    pub async fn usage(&self, key: &str) -> Result<Vec<UsageEntry>, Error> {
        let key = SecretKey::parse(key)?;
        self.client
            .transport()
            .call(
                Method::GET,
                &secret_path(&key, "/usage"),
                None,
                Idempotency::Idempotent,
            )
            .await
    }

    async fn lifecycle(
        &self,
        key: &str,
        action: &str,
        version: Option<i64>,
    ) -> Result<SecretRecord, Error> {
        let _forget = self.forgetting(key);
        let key = SecretKey::parse(key)?;
        self.client
            .transport()
            .call_full(
                Method::POST,
                &secret_path(&key, action),
                None,
                Idempotency::Idempotent,
                version,
            )
            .await
            .0
    }
}

/// What a batch read answers for each secret.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The record and its ciphertext.
    Whole,
    /// The record alone (a check: no ciphertext leaves the server).
    Metadata,
    /// The ciphertext and the rules it is read under.
    Compact,
}

/// A string of an answer read in place: borrowed from its bytes, unless it was written with
/// escapes (valid JSON all the same, then unescaped into a copy).
#[derive(Debug, Deserialize)]
struct Text<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

/// The results of a batch read's `answer`, one for each of `keys`; their keys and
/// ciphertexts as `S` ([`Text`] borrows them from `answer`).
fn batch_results<'a, S: Deserialize<'a>>(
    keys: &[SecretKey],
    answer: &'a [u8],
) -> Result<Vec<BatchItem<S>>, Error> {
    let mut de = serde_json::Deserializer::from_str(answer_text(answer)?);
    let results = BatchAnswer::<S>(keys.len(), std::marker::PhantomData)
        .deserialize(&mut de)
        .and_then(|results| de.end().map(|()| results))
        .map_err(unexpected_answer)?;
    if results.len() != keys.len() {
        return Err(mismatch());
    }
    Ok(results)
}

/// Reads a [`crate::wire::BatchGetResponse`]'s results into a vector made once for the
/// number of keys asked: a vector grown a doubling at a time (serde's, which is told no
/// length) copies a 100-key answer's items about twice over.
/// Holds the number of keys asked.
struct BatchAnswer<S>(usize, std::marker::PhantomData<S>);

impl<'de, S: Deserialize<'de>> DeserializeSeed<'de> for BatchAnswer<S> {
    type Value = Vec<BatchItem<S>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: Deserialize<'de>> Visitor<'de> for BatchAnswer<S> {
    type Value = Vec<BatchItem<S>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with the batch's 'results'")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut results = None;
        while let Some(field) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if field == "results" {
                if results.is_some() {
                    return Err(serde::de::Error::duplicate_field("results"));
                }
                results = Some(map.next_value_seed(BatchItems::<S>(self.0, self.1))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        results.ok_or_else(|| serde::de::Error::missing_field("results"))
    }
}

/// The array of a [`BatchAnswer`], with room for this many items.
struct BatchItems<S>(usize, std::marker::PhantomData<S>);

impl<'de, S: Deserialize<'de>> DeserializeSeed<'de> for BatchItems<S> {
    type Value = Vec<BatchItem<S>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: Deserialize<'de>> Visitor<'de> for BatchItems<S> {
    type Value = Vec<BatchItem<S>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of batch results")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // One more than asked, so that an answer with too many is still read (and refused
        // by its length) without a reallocation; never more than a batch may hold.
        let mut items = Vec::with_capacity(self.0.min(super::resolve::MAX_BATCH) + 1);
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(items)
    }
}

/// Drops a secret's cache entries when dropped: after a change, whatever its outcome.
struct Forget<'a> {
    cache: Option<&'a cache::Cache>,
    key: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.cache {
            c.forget_secret(self.key);
        }
    }
}

/// A fresh cache hit (see [`Secrets::cached`]).
#[derive(Debug)]
pub struct CachedHit {
    pub generation: u64,
    pub fresh_for: std::time::Duration,
    pub secret: FetchedSecret,
}

/// What the server sent with a read, besides the record.
struct Sent {
    ciphertext: String,
    etag: Option<String>,
}

/// A cached answer, as served.
fn served(e: &Entry, stale: bool) -> FetchedSecret {
    FetchedSecret {
        record: e.record.clone(),
        value: e.value.clone(),
        stale,
    }
}

fn not_modified() -> Error {
    Error::new(
        ErrorCode::Protocol,
        "the server answered 304 to a read that held no copy",
    )
}

/// A version number as the server takes it.
fn positive(version: i64) -> Result<i64, Error> {
    if version > 0 {
        Ok(version)
    } else {
        Err(Error::invalid_field("a version must be a positive integer"))
    }
}

fn mismatch() -> Error {
    Error::new(
        ErrorCode::Protocol,
        "the batch answer does not match the request",
    )
}

fn secret_path(key: &SecretKey, suffix: &str) -> String {
    // Key characters are all URL-safe, so the key goes into the path as it is.
    format!("/v1/secrets/{}{}", key.as_str(), suffix)
}

/// Whether an open failed because the value is sealed under a key generation newer than
/// the session's (a rotation went on meanwhile).
fn resealed<T>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(e) if e.code() == ErrorCode::KeyringChanged)
}

/// Opens the value of `got`, which must be the secret `key` asked for.
fn open_value(
    session: &super::Session,
    key: &SecretKey,
    got: &SecretWithCiphertext,
) -> Result<Plaintext, Error> {
    if got.record.key != key.as_str() {
        return Err(Error::new(
            ErrorCode::Integrity,
            format!("asked for secret '{key}' but the server answered with another"),
        ));
    }
    session
        .keys
        .open(&session.workspace.workspace_id, key, &got.ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answer_is_read_in_place_and_escapes_are_still_understood() {
        let keys = [
            SecretKey::parse("A_KEY").unwrap(),
            SecretKey::parse("B").unwrap(),
        ];
        let answer = br#"{"results":[
            {"key":"A_KEY","sealed":{"ciphertext":"dv2.1.abc.0123456789abcdef:xyz","status":"active"}},
            {"key":"\u0042","sealed":{"ciphertext":"dv2.1.a\/c.x:y","status":"revoked","scope":["web"]}}]}"#;
        let results = batch_results::<Text>(&keys, answer).unwrap();
        let first = results[0].sealed.as_ref().unwrap();
        assert!(matches!(
            results[0].key.0,
            std::borrow::Cow::Borrowed("A_KEY")
        ));
        assert!(matches!(first.ciphertext.0, std::borrow::Cow::Borrowed(_)));
        let second = results[1].sealed.as_ref().unwrap();
        assert_eq!(results[1].key.0, "B");
        assert_eq!(second.ciphertext.0, "dv2.1.a/c.x:y");
        assert_eq!(second.status, crate::wire::SecretStatus::Revoked);
        assert_eq!(second.scope, ["web"]);
        // One result short, or not JSON: a protocol error, not a panic.
        assert_eq!(
            batch_results::<Text>(&keys[..1], answer)
                .unwrap_err()
                .code(),
            ErrorCode::Protocol
        );
        let e = batch_results::<Text>(&keys, b"{\"results\":[{\"key\":1}]}").unwrap_err();
        assert_eq!(e.code(), ErrorCode::Protocol);
        assert!(
            e.message().starts_with("unexpected answer from the server"),
            "{e}"
        );
    }

    #[test]
    fn a_batch_answer_is_refused_unless_it_holds_exactly_its_results() {
        let keys = [SecretKey::parse("A").unwrap()];
        let item = r#"{"key":"A","error":{"status":404,"code":"secret_not_found","message":"m"}}"#;
        // Owned (`String`) strings, so that an answer need not outlive its reading.
        let read = |answer: String| batch_results::<String>(&keys, answer.as_bytes());
        // Fields it does not know are passed over, before or after the results, and a field
        // name written with escapes is still its name.
        let ok = read(format!(
            r#"{{"next":{{"a":[1]}},"re\u0073ults":[{item}],"x":null}}"#
        ));
        assert_eq!(ok.unwrap()[0].error.as_ref().unwrap().status, 404);
        for (answer, what) in [
            (r#"{"result":[]}"#.to_owned(), "missing field `results`"),
            (
                r#"[]"#.to_owned(),
                "expected an object with the batch's 'results'",
            ),
            (
                r#"{"results":{}}"#.to_owned(),
                "expected an array of batch results",
            ),
            (
                format!(r#"{{"results":[{item}]}} trailing"#),
                "trailing characters",
            ),
            (
                format!(r#"{{"results":[],"results":[{item}]}}"#),
                "duplicate field `results`",
            ),
        ] {
            let e = read(answer).unwrap_err();
            assert_eq!(e.code(), ErrorCode::Protocol);
            assert!(e.message().contains(what), "{e}");
        }
        // More results than keys asked: read whole, then refused by their number.
        let e = read(format!(r#"{{"results":[{item},{item}]}}"#)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Protocol);
        assert_eq!(e.message(), mismatch().message());
        // Bytes that are not UTF-8, inside a string: refused as a whole, never read.
        let mut bytes = format!(r#"{{"results":[{item}]}}"#).into_bytes();
        bytes[9] = 0xff;
        let e = batch_results::<String>(&keys, &bytes).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Protocol);
        assert!(e.message().contains("not UTF-8"), "{e}");
    }
}
