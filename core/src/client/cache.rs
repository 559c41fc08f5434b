//! The client's value cache (opt-in, [`Config::cache`](super::Config::cache)): decrypted
//! values kept in zeroizing memory for a TTL, then revalidated with `If-None-Match` (a 304
//! keeps the entry without sending the ciphertext again), never blindly expired and never
//! served after a revalidation that finds the secret revoked, expired, deleted or outside
//! the key's binding. An `expires_at` that passes while cached stops the value at once.
//!
//! Entries are keyed by everything that decides the answer: the secret's key, the version
//! asked for (none: the current one) and the app/environment context of a resolve. Bounded
//! by entries and bytes (moka, least recently used out first). The client's own changes to
//! a secret drop every entry of it at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::crypto::Plaintext;
use crate::wire::SecretRecord;

/// How a client caches values. `Debug` shows the bounds only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheOptions {
    /// How long a value is served without asking the server (then revalidated).
    pub ttl: Duration,
    /// Most entries kept.
    pub max_entries: u64,
    /// Most bytes of values kept (each entry counted at least `max_bytes / max_entries`).
    pub max_bytes: u64,
    /// Off (`None`) by default: when the server is unreachable or answers 5xx, serve the
    /// last good value for at most this long past its TTL (never on 401/403/404/410).
    pub stale_if_error: Option<Duration>,
    /// Follow the server's change feed from `init()` on, dropping a secret's entries as
    /// soon as anyone changes it (off by default; needs a multi-threaded async runtime).
    pub watch: bool,
    /// A file to keep the cache's answers in (as ciphertext), for starting while the
    /// server is unreachable: see the `snapshot` module. Off by default.
    pub snapshot: Option<std::path::PathBuf>,
}

impl CacheOptions {
    /// Values served for `ttl` before they are revalidated; 10,000 entries, 64 MiB.
    pub fn ttl(ttl: Duration) -> Self {
        CacheOptions {
            ttl,
            max_entries: 10_000,
            max_bytes: 64 << 20,
            stale_if_error: None,
            watch: false,
            snapshot: None,
        }
    }

    /// Keeps the cache's answers (as the server holds them: ciphertext) in `path`, so
    /// that `init()` and reads can start from it, within `stale_if_error`, while the
    /// server is unreachable.
    pub fn snapshot(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.snapshot = Some(path.into());
        self
    }

    /// Follows the change feed to drop changed values within about a second.
    pub fn watch(mut self, on: bool) -> Self {
        self.watch = on;
        self
    }

    /// Serves the last good value for at most `bound` past its TTL when the server cannot
    /// answer.
    pub fn stale_if_error(mut self, bound: Duration) -> Self {
        self.stale_if_error = Some(bound);
        self
    }

    /// From the bindings' numbers (seconds): `ttl` on, `stale_if_error` if given; each
    /// must be a finite, non-negative number of seconds (checked with the argument's name).
    pub fn from_seconds(ttl: f64, stale_if_error: Option<f64>) -> Result<Self, crate::Error> {
        let mut o = CacheOptions::ttl(super::seconds_to_duration("cache ttl", ttl)?);
        if let Some(s) = stale_if_error {
            o = o.stale_if_error(super::seconds_to_duration("stale_if_error", s)?);
        }
        Ok(o)
    }

    /// The bindings' cache arguments, checked in one place: `None` without a TTL (the cache
    /// off), an error when another cache option comes without one. `names` spells the
    /// options as the binding does (TTL, stale-if-error, watch, snapshot) for the message.
    pub fn from_arguments(
        ttl: Option<f64>,
        stale_if_error: Option<f64>,
        watch: bool,
        snapshot: Option<std::path::PathBuf>,
        names: [&str; 4],
    ) -> Result<Option<Self>, crate::Error> {
        let Some(ttl) = ttl else {
            if stale_if_error.is_some() || watch || snapshot.is_some() {
                let [ttl, stale, watch, snapshot] = names;
                return Err(crate::Error::invalid_field(format!(
                    "{stale}, {watch} and {snapshot} need the cache on: give {ttl} too"
                )));
            }
            return Ok(None);
        };
        let mut options = Self::from_seconds(ttl, stale_if_error)?.watch(watch);
        options.snapshot = snapshot;
        Ok(Some(options))
    }

    /// Bounds the cache to `entries` entries and `bytes` bytes of values.
    pub fn bounded(mut self, entries: u64, bytes: u64) -> Self {
        self.max_entries = entries.max(1);
        self.max_bytes = bytes.max(1);
        self
    }
}

/// What decides an answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct CacheKey {
    pub(crate) key: String,
    /// An earlier version; `None`: the current one.
    pub(crate) version: Option<i64>,
    /// A resolve's app and environment; `None` for a fetch.
    pub(crate) context: Option<(Option<String>, Option<String>)>,
}

impl CacheKey {
    pub(crate) fn fetch(key: &str, version: Option<i64>) -> Self {
        CacheKey {
            key: key.to_owned(),
            version,
            context: None,
        }
    }

    /// Its name in the cache: the secret's key itself for the current version (so that
    /// the fast path looks it up without building anything), `KEY#v<n>` for a version,
    /// `KEY#@<app>#<env>` for a resolve (keys never hold `#`).
    fn label(&self) -> String {
        match (&self.version, &self.context) {
            (None, None) => self.key.clone(),
            (Some(v), _) => format!("{}#v{v}", self.key),
            (None, Some((app, env))) => format!(
                "{}#@{}#{}",
                self.key,
                app.as_deref().unwrap_or(""),
                env.as_deref().unwrap_or("")
            ),
        }
    }

    pub(crate) fn resolve(key: &str, app: Option<&str>, env: Option<&str>) -> Self {
        CacheKey {
            key: key.to_owned(),
            version: None,
            context: Some((app.map(str::to_owned), env.map(str::to_owned))),
        }
    }
}

/// One cached answer: the secret, its value, and when the server last confirmed it.
pub(crate) struct Entry {
    pub(crate) record: SecretRecord,
    pub(crate) value: Plaintext,
    /// The server's entity tag, for revalidation (resolves have none: they refetch).
    pub(crate) etag: Option<String>,
    /// The value as the server stores it (what a snapshot keeps).
    pub(crate) sealed: String,
    pub(crate) confirmed: Instant,
}

/// How fresh an entry is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Within its TTL: serve it.
    Fresh,
    /// Past its TTL: revalidate (and, on a server failure, serve it if `stale_if_error`
    /// allows).
    Stale { servable_on_error: bool },
    /// Its `expires_at` has passed: never serve it.
    Expired,
}

pub(crate) struct Cache {
    options: CacheOptions,
    entries: moka::sync::Cache<String, Arc<Entry>>,
    snapshot: Option<super::snapshot::Snapshot>,
    /// Bumped by every change of what the cache holds (an answer in, an answer out): a
    /// binding that saw the same number holds no outdated object (see [`Cache::generation`]).
    /// Shared so a binding can read it without a call (see [`Cache::generation_cell`]).
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Cache {
    pub(crate) fn new(options: CacheOptions, key: &crate::AccessKey) -> Self {
        let floor = (options.max_bytes / options.max_entries.max(1)).max(1);
        let entries = moka::sync::Cache::builder()
            .max_capacity(options.max_bytes)
            // Each entry weighs its value's bytes, and at least max_bytes / max_entries, so
            // both bounds hold.
            .weigher(move |_: &String, e: &Arc<Entry>| {
                let bytes = e.value.expose().len() as u64 + 256;
                u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
            })
            .build();
        let snapshot = options.snapshot.clone().map(|p| {
            let limit = usize::try_from(options.max_entries).unwrap_or(usize::MAX);
            super::snapshot::Snapshot::new(p, key.clone(), limit)
        });
        Cache {
            options,
            entries,
            snapshot,
            generation: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }

    /// The number of the cache's contents: the same number as before means no entry came
    /// in or went out since (evictions for space aside: what was fresh stays fresh).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The counter [`Cache::generation`] reads, for a binding that maps it into its own
    /// runtime's memory (Node reads it as a typed array: no native call per hit).
    pub(crate) fn generation_cell(&self) -> Arc<std::sync::atomic::AtomicU64> {
        Arc::clone(&self.generation)
    }

    fn changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// How much longer a fresh entry stays fresh (its TTL, or its expiry if sooner).
    pub(crate) fn fresh_for(&self, e: &Entry) -> Duration {
        let by_ttl = self.options.ttl.saturating_sub(e.confirmed.elapsed());
        match e.record.expires_at {
            Some(t) => {
                let left = (t - crate::ids::now_secs()).max(0) as u64;
                by_ttl.min(Duration::from_secs(left))
            }
            None => by_ttl,
        }
    }

    pub(crate) fn snapshot(&self) -> Option<&super::snapshot::Snapshot> {
        self.snapshot.as_ref()
    }

    /// An entry read back from the snapshot (not written again).
    pub(crate) fn restore(&self, k: CacheKey, entry: Entry) {
        self.entries.insert(k.label(), Arc::new(entry));
        self.changed();
    }

    pub(crate) fn get(&self, k: &CacheKey) -> Option<Arc<Entry>> {
        self.entries.get(&k.label())
    }

    /// The current version of `key` (a plain fetch's entry), found without allocating.
    pub(crate) fn get_current(&self, key: &str) -> Option<Arc<Entry>> {
        self.entries.get(key)
    }

    /// A new answer from the server (kept in the snapshot too, when there is one).
    pub(crate) fn put(&self, k: CacheKey, entry: Entry) {
        self.apply(vec![(k, entry)], &[]);
    }

    /// New answers in and refused ones out, the snapshot written once for all of them.
    pub(crate) fn apply(&self, puts: Vec<(CacheKey, Entry)>, forgets: &[CacheKey]) {
        if let Some(s) = &self.snapshot {
            let now = crate::ids::now_millis();
            let kept = puts
                .iter()
                .map(|(k, e)| {
                    let kept = super::snapshot::Kept {
                        record: e.record.clone(),
                        ciphertext: e.sealed.clone(),
                        etag: e.etag.clone(),
                        confirmed_ms: now,
                    };
                    (k.clone(), kept)
                })
                .collect();
            s.apply(kept, forgets);
        }
        for (k, e) in puts {
            self.entries.insert(k.label(), Arc::new(e));
        }
        for k in forgets {
            self.entries.invalidate(&k.label());
        }
        self.changed();
    }

    /// The server confirmed `k` unchanged (304): fresh again.
    pub(crate) fn confirm(&self, k: &CacheKey, e: &Entry) {
        self.restore(
            k.clone(),
            Entry {
                record: e.record.clone(),
                value: e.value.clone(),
                etag: e.etag.clone(),
                sealed: e.sealed.clone(),
                confirmed: Instant::now(),
            },
        );
    }

    pub(crate) fn watches(&self) -> bool {
        self.options.watch
    }

    /// Drops every entry (the change feed could not say what changed).
    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
        self.changed();
        if let Some(s) = &self.snapshot {
            s.clear();
        }
    }

    pub(crate) fn forget(&self, k: &CacheKey) {
        self.apply(Vec::new(), std::slice::from_ref(k));
    }

    /// Drops every entry of the secret `key` (any version, any context).
    pub(crate) fn forget_secret(&self, key: &str) {
        let doomed: Vec<Arc<String>> = self
            .entries
            .iter()
            .filter(|(k, _)| k.split('#').next() == Some(key))
            .map(|(k, _)| k)
            .collect();
        for k in doomed {
            self.entries.invalidate(&*k);
        }
        self.changed();
        if let Some(s) = &self.snapshot {
            s.forget_secret(key);
        }
    }

    pub(crate) fn freshness(&self, e: &Entry) -> Freshness {
        // The wall clock only for a secret that expires.
        if e.record
            .expires_at
            .is_some_and(|t| t <= crate::ids::now_secs())
        {
            return Freshness::Expired;
        }
        let age = e.confirmed.elapsed();
        if age < self.options.ttl {
            return Freshness::Fresh;
        }
        let servable_on_error = self
            .options
            .stale_if_error
            .is_some_and(|bound| age < self.options.ttl + bound);
        Freshness::Stale { servable_on_error }
    }

    #[cfg(test)]
    fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

/// Whether a failed revalidation may fall back to a stale value: the server could not be
/// reached or failed (5xx, timeouts), never a refusal or a verdict on the secret.
pub(crate) fn outage(e: &crate::Error) -> bool {
    use crate::ErrorCode::*;
    matches!(
        e.code(),
        Connection | Timeout | Unavailable | Internal | RateLimited
    ) || e.status().is_some_and(|s| s >= 500)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::SecretStatus;

    fn record(key: &str, expires_at: Option<i64>) -> SecretRecord {
        SecretRecord {
            id: "0".repeat(24),
            workspace_id: "w".into(),
            key: key.into(),
            description: None,
            token_type: None,
            scope: vec![],
            envs: vec![],
            expires_at,
            created_at: String::new(),
            updated_at: String::new(),
            version: 1,
            status: SecretStatus::Active,
        }
    }

    fn entry(key: &str, value: &str, expires_at: Option<i64>, age: Duration) -> Entry {
        Entry {
            record: record(key, expires_at),
            value: Plaintext::from(value),
            etag: Some("\"1-abc\"".into()),
            sealed: String::new(),
            confirmed: Instant::now() - age,
        }
    }

    #[test]
    fn freshness_follows_ttl_expiry_and_the_stale_bound() {
        let c = Cache::new(
            CacheOptions::ttl(Duration::from_secs(60)),
            &crate::AccessKey::generate(),
        );
        let now = crate::ids::now_secs();
        let fresh = entry("K", "v", None, Duration::ZERO);
        assert_eq!(c.freshness(&fresh), Freshness::Fresh);
        let old = entry("K", "v", None, Duration::from_secs(61));
        assert_eq!(
            c.freshness(&old),
            Freshness::Stale {
                servable_on_error: false
            }
        );
        let expired = entry("K", "v", Some(now), Duration::ZERO);
        assert_eq!(c.freshness(&expired), Freshness::Expired);
        let c = Cache::new(
            CacheOptions::ttl(Duration::from_secs(60)).stale_if_error(Duration::from_secs(30)),
            &crate::AccessKey::generate(),
        );
        assert_eq!(
            c.freshness(&old),
            Freshness::Stale {
                servable_on_error: true
            }
        );
        let too_old = entry("K", "v", None, Duration::from_secs(91));
        assert_eq!(
            c.freshness(&too_old),
            Freshness::Stale {
                servable_on_error: false
            }
        );
    }

    #[test]
    fn entries_are_bounded_and_forgotten_per_secret() {
        let c = Cache::new(
            CacheOptions::ttl(Duration::from_secs(60)).bounded(10, 1 << 20),
            &crate::AccessKey::generate(),
        );
        for i in 0..50 {
            c.put(
                CacheKey::fetch(&format!("K{i}"), None),
                entry("K", "v", None, Duration::ZERO),
            );
        }
        assert!(c.len() <= 10, "{}", c.len());
        let c = Cache::new(
            CacheOptions::ttl(Duration::from_secs(60)),
            &crate::AccessKey::generate(),
        );
        c.put(
            CacheKey::fetch("A", None),
            entry("A", "1", None, Duration::ZERO),
        );
        c.put(
            CacheKey::fetch("A", Some(1)),
            entry("A", "1", None, Duration::ZERO),
        );
        c.put(
            CacheKey::resolve("A", Some("web"), None),
            entry("A", "1", None, Duration::ZERO),
        );
        c.put(
            CacheKey::fetch("B", None),
            entry("B", "2", None, Duration::ZERO),
        );
        c.forget_secret("A");
        assert_eq!(c.len(), 1);
        assert!(c.get(&CacheKey::fetch("B", None)).is_some());
    }

    #[test]
    fn every_change_of_the_contents_moves_the_generation_and_freshness_counts_down() {
        let c = Cache::new(
            CacheOptions::ttl(Duration::from_secs(60)),
            &crate::AccessKey::generate(),
        );
        let g0 = c.generation();
        c.put(
            CacheKey::fetch("A", None),
            entry("A", "1", None, Duration::ZERO),
        );
        let g1 = c.generation();
        assert!(g1 > g0);
        assert!(c.get_current("A").is_some());
        assert_eq!(c.generation(), g1, "a read changes nothing");
        c.forget_secret("A");
        assert!(c.generation() > g1);
        let aged = entry("A", "1", None, Duration::from_secs(50));
        let left = c.fresh_for(&aged);
        assert!(
            left <= Duration::from_secs(10) && left > Duration::from_secs(9),
            "{left:?}"
        );
        let expiring = entry("A", "1", Some(crate::ids::now_secs() + 3), Duration::ZERO);
        assert!(c.fresh_for(&expiring) <= Duration::from_secs(3));
    }

    #[test]
    fn outages_are_told_from_verdicts() {
        use crate::{Error, ErrorCode};
        assert!(outage(&Error::new(ErrorCode::Connection, "down")));
        assert!(outage(&Error::from_server(
            502,
            None,
            "bad gateway".into(),
            None
        )));
        for status in [401u16, 403, 404, 410] {
            assert!(!outage(&Error::from_server(
                status,
                None,
                "no".into(),
                None
            )));
        }
    }
}
