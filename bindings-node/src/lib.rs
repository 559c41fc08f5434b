//! The native half of `@ductape/sdk`: the core client as napi async methods. Every call
//! runs on napi's tokio runtime, off the JavaScript thread, and resolves a Promise.
//!
//! Arguments arrive as JSON-like values and are checked by the core (same rules and
//! messages as every client). Errors cross as one `Error` whose message starts with
//! `[ductape:<status>:<code>] ` so the TypeScript half can rebuild a typed `DuctapeError`;
//! that prefix is written only here and parsed only in `src/errors.ts`.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::Value;

use ductape::client::seconds_to_duration;
use ductape::wire::ListQuery;
use ductape::{
    AuditQuery, CacheOptions, Config, CreateSecret, Ductape, ResolveOptions, UpdateSecret,
};

/// napi's runtime, with one worker: a call's future and its connection's task then run on
/// the same thread, so a call pays the two hand-offs it must (JavaScript to the runtime and
/// back) and no third between workers.
#[napi_derive::module_init]
fn one_worker() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ductape-io")
        .enable_all()
        .build()
        .expect("cannot start the Ductape runtime");
    create_custom_tokio_runtime(rt);
}

fn tagged(e: &ductape::Error) -> String {
    let status = e
        .status()
        .map(|s| s.to_string())
        .unwrap_or_else(|| "-".into());
    format!("[ductape:{status}:{}] {}", e.code_str(), e.message())
}

/// The error as one line; an error standing for several failures adds one line each.
fn to_napi(e: ductape::Error) -> napi::Error {
    let mut text = tagged(&e);
    for f in e.failures() {
        text.push('\n');
        text.push_str(&tagged(f));
    }
    napi::Error::new(Status::GenericFailure, text)
}

trait IntoNapi<T> {
    fn napi(self) -> napi::Result<T>;
}

impl<T> IntoNapi<T> for std::result::Result<T, ductape::Error> {
    fn napi(self) -> napi::Result<T> {
        self.map_err(to_napi)
    }
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Client options as the TypeScript layer passes them.
#[napi(object)]
pub struct NativeOptions {
    pub access_key: Option<String>,
    pub url: Option<String>,
    /// Seconds.
    pub timeout: Option<f64>,
    pub max_retries: Option<u32>,
    /// Seconds: the value cache's TTL (the cache is off without it).
    pub cache_ttl: Option<f64>,
    /// Seconds past the TTL a cached value may be served when the server cannot answer.
    pub stale_if_error: Option<f64>,
    /// Follow the change feed, dropping what anyone changes from the cache.
    pub cache_watch: Option<bool>,
    /// A file for the cache's snapshot (offline start).
    pub cache_snapshot: Option<String>,
}

/// A cache hit: the cache's generation then (exact below 2^53), how many milliseconds the
/// entry stays fresh, and the secret.
#[napi(object)]
pub struct NativeHit {
    pub generation: f64,
    pub fresh_ms: f64,
    pub secret: Value,
}

/// Options of `resolve` and `check`.
#[napi(object)]
pub struct NativeResolveOptions {
    pub app: Option<String>,
    pub env: Option<String>,
    /// Seconds: `check` warns about secrets expiring this soon (default 7 days).
    pub expiring_within: Option<f64>,
}

fn resolve_options(o: Option<NativeResolveOptions>) -> napi::Result<ResolveOptions> {
    let Some(o) = o else {
        return Ok(ResolveOptions::default());
    };
    let mut opts = ResolveOptions::new(o.app.as_deref(), o.env.as_deref());
    if let Some(s) = o.expiring_within {
        opts.expiring_within = Some(seconds_to_duration("expiringWithin", s).napi()?);
    }
    Ok(opts)
}

/// What may be shown of a client: never the key itself.
#[napi(object)]
pub struct NativeDescription {
    pub url: String,
    pub access_key_id: String,
    pub initialized: bool,
    /// `init()` started from the cache snapshot (the server was unreachable).
    pub offline: bool,
}

#[napi]
pub struct NativeClient {
    inner: Ductape,
}

/// One subscription to the change feed: `next()` resolves with the next change (`null`
/// once closed or the feed has ended).
#[napi]
pub struct NativeWatcher {
    changes: tokio::sync::Mutex<ductape::Watcher>,
    closed: tokio::sync::Notify,
    done: std::sync::atomic::AtomicBool,
}

#[napi]
impl NativeWatcher {
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<Value>> {
        use std::sync::atomic::Ordering;
        if self.done.load(Ordering::Acquire) {
            return Ok(None);
        }
        let mut changes = self.changes.lock().await;
        tokio::select! {
            e = changes.next() => Ok(e.map(|e| e.to_json())),
            _ = self.closed.notified() => Ok(None),
        }
    }

    /// Ends the subscription; a pending `next()` resolves with `null`.
    #[napi]
    pub fn close(&self) {
        self.done.store(true, std::sync::atomic::Ordering::Release);
        self.closed.notify_waiters();
    }
}

#[napi]
impl NativeClient {
    #[napi(constructor)]
    pub fn new(options: Option<NativeOptions>) -> napi::Result<Self> {
        let o = options.unwrap_or(NativeOptions {
            access_key: None,
            url: None,
            timeout: None,
            max_retries: None,
            cache_ttl: None,
            stale_if_error: None,
            cache_watch: None,
            cache_snapshot: None,
        });
        let mut config = Config::resolve(o.url.as_deref(), o.access_key.as_deref())
            .napi()?
            .sdk("ductape-node");
        if let Some(t) = o.timeout {
            config = config.timeout(seconds_to_duration("timeout", t).napi()?);
        }
        if let Some(n) = o.max_retries {
            config = config.max_retries(n);
        }
        let cache = CacheOptions::from_arguments(
            o.cache_ttl,
            o.stale_if_error,
            o.cache_watch.unwrap_or(false),
            o.cache_snapshot.map(Into::into),
            [
                "cache.ttl",
                "cache.staleIfError",
                "cache.watch",
                "cache.snapshot",
            ],
        )
        .napi()?;
        if let Some(options) = cache {
            config = config.cache(options);
        }
        Ok(NativeClient {
            inner: Ductape::new(config).napi()?,
        })
    }

    #[napi]
    pub fn describe(&self) -> NativeDescription {
        NativeDescription {
            url: self.inner.config().url().to_owned(),
            access_key_id: self.inner.config().access_key().id().to_owned(),
            initialized: self.inner.is_initialized(),
            offline: self.inner.started_offline(),
        }
    }

    #[napi]
    pub async fn init(&self) -> napi::Result<()> {
        self.inner.init().await.napi()
    }

    #[napi]
    pub async fn create(&self, args: Value) -> napi::Result<Value> {
        let args = CreateSecret::from_json(&args).napi()?;
        self.inner
            .secrets()
            .create(args)
            .await
            .map(|r| json(&r))
            .napi()
    }

    #[napi]
    pub async fn fetch_all(&self) -> napi::Result<Value> {
        self.inner
            .secrets()
            .fetch_all()
            .await
            .map(|r| json(&r))
            .napi()
    }

    /// One page of metadata in key order (`limit` 1 to 1000; `cursor` from the last page).
    #[napi]
    pub async fn page(&self, limit: Option<u32>, cursor: Option<String>) -> napi::Result<Value> {
        let query = ListQuery { limit, cursor };
        self.inner
            .secrets()
            .page(&query)
            .await
            .map(|r| json(&r))
            .napi()
    }

    #[napi]
    pub async fn fetch(
        &self,
        key: String,
        version: Option<i64>,
        fresh: Option<bool>,
    ) -> napi::Result<Value> {
        let secrets = self.inner.secrets();
        match (version, fresh.unwrap_or(false)) {
            (Some(v), _) => secrets.fetch_version(&key, v).await,
            (None, true) => secrets.fetch_fresh(&key).await,
            (None, false) => secrets.fetch(&key).await,
        }
        .map(|s| s.to_json())
        .napi()
    }

    /// The cache's fast path (synchronous, no runtime): a fresh hit's stamp and the
    /// secret, or `null`.
    #[napi]
    pub fn cache_hit(&self, key: String) -> Option<NativeHit> {
        self.inner.secrets().cached(&key).map(|hit| NativeHit {
            generation: hit.generation as f64,
            fresh_ms: hit.fresh_for.as_secs_f64() * 1000.0,
            secret: hit.secret.to_json(),
        })
    }

    /// The cache's generation: while it is a hit's and the hit's `freshMs` has not run
    /// out, that hit is still the answer (one atomic load, no argument to convert).
    #[napi]
    pub fn cache_generation(&self) -> Option<f64> {
        self.inner.secrets().cache_generation().map(|g| g as f64)
    }

    /// The cache's generation as a two-element `Uint32Array` (low, high words) over the
    /// core's own counter, so a hit costs no call into the addon; `null` without a cache, or
    /// where the runtime copies external memory instead of sharing it (then JS asks
    /// `cacheGeneration()`).
    #[napi(ts_return_type = "Uint32Array | null")]
    pub fn cache_generation_view<'env>(
        &self,
        env: &'env Env,
    ) -> napi::Result<Option<Uint32ArraySlice<'env>>> {
        let Some(cell) = self.inner.secrets().cache_generation_cell() else {
            return Ok(None);
        };
        let data = cell.as_ptr().cast::<u32>();
        // SAFETY: `data` points at the counter's 8 bytes (aligned for u64, so for u32),
        // which the `Arc` passed as the finalize hint keeps alive until V8 lets the buffer
        // go. The core only changes them with atomic operations and JS only reads them with
        // `Atomics.load`.
        let view =
            unsafe { Uint32ArraySlice::from_external(env, data, 2, cell, |_, cell| drop(cell)) }?;
        // On a runtime without external buffers napi-rs hands back a copy: a view that
        // would never move, so no view at all.
        Ok((view.as_ptr() == data.cast_const()).then_some(view))
    }

    /// Follows the change feed from now on.
    #[napi]
    pub async fn watch(&self) -> napi::Result<NativeWatcher> {
        Ok(NativeWatcher {
            changes: tokio::sync::Mutex::new(self.inner.watch().napi()?),
            closed: tokio::sync::Notify::new(),
            done: std::sync::atomic::AtomicBool::new(false),
        })
    }

    #[napi]
    pub async fn versions(&self, key: String) -> napi::Result<Value> {
        self.inner
            .secrets()
            .versions(&key)
            .await
            .map(|r| json(&r))
            .napi()
    }

    #[napi]
    pub async fn rollback(
        &self,
        key: String,
        version: i64,
        if_version: Option<i64>,
    ) -> napi::Result<Value> {
        self.inner
            .secrets()
            .rollback_if_version(&key, version, if_version)
            .await
            .map(|r| json(&r))
            .napi()
    }

    #[napi]
    pub async fn undelete(&self, key: String) -> napi::Result<Value> {
        self.inner
            .secrets()
            .undelete(&key)
            .await
            .map(|r| json(&r))
            .napi()
    }

    #[napi]
    pub async fn update(&self, key: String, args: Value) -> napi::Result<Value> {
        let args = UpdateSecret::from_json(&args).napi()?;
        self.inner
            .secrets()
            .update(&key, args)
            .await
            .map(|r| json(&r))
            .napi()
    }

    #[napi]
    pub async fn delete(
        &self,
        key: String,
        if_version: Option<i64>,
        permanent: Option<bool>,
    ) -> napi::Result<bool> {
        let secrets = self.inner.secrets();
        if permanent.unwrap_or(false) {
            secrets.delete_permanently(&key, if_version).await
        } else {
            secrets.delete_if_version(&key, if_version).await
        }
        .napi()
    }

    #[napi]
    pub async fn revoke(&self, key: String, if_version: Option<i64>) -> napi::Result<bool> {
        self.inner
            .secrets()
            .revoke_if_version(&key, if_version)
            .await
            .napi()
    }

    #[napi]
    pub async fn restore(&self, key: String, if_version: Option<i64>) -> napi::Result<Value> {
        self.inner
            .secrets()
            .restore_if_version(&key, if_version)
            .await
            .map(|r| json(&r))
            .napi()
    }

    #[napi]
    pub async fn resolve(
        &self,
        config: Value,
        options: Option<NativeResolveOptions>,
    ) -> napi::Result<Value> {
        let opts = resolve_options(options)?;
        self.inner.secrets().resolve(&config, &opts).await.napi()
    }

    #[napi]
    pub async fn check(
        &self,
        config: Value,
        options: Option<NativeResolveOptions>,
    ) -> napi::Result<Value> {
        let opts = resolve_options(options)?;
        self.inner
            .secrets()
            .check(&config, &opts)
            .await
            .map(|r| json(&r))
            .napi()
    }

    #[napi]
    pub async fn usage(&self, key: String) -> napi::Result<Value> {
        self.inner
            .secrets()
            .usage(&key)
            .await
            .map(|r| json(&r))
            .napi()
    }

    #[napi]
    pub async fn rotate_key(&self) -> napi::Result<Value> {
        self.inner.rotate_key().await.map(|r| json(&r)).napi()
    }

    /// `query` has the snake_case fields of `AuditQuery` (undefined ones left out).
    #[napi]
    pub async fn audit(&self, query: Option<Value>) -> napi::Result<Value> {
        let q: AuditQuery = match query {
            None | Some(Value::Null) => AuditQuery::default(),
            Some(v) => serde_json::from_value(v).map_err(|e| {
                to_napi(ductape::Error::invalid_field(format!(
                    "invalid audit filter: {e}"
                )))
            })?,
        };
        self.inner.audit(&q).await.map(|r| json(&r)).napi()
    }
}
