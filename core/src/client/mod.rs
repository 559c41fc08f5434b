//! The client: `init()`, then `secrets()` and `access_keys()`.

mod access_keys;
/// The session's keys (ungated, so the browser build has them too).
pub(crate) use crate::session as keys;
pub(crate) use crate::session::{unwrap_workspace_key, Session};
#[cfg(feature = "blocking")]
pub mod blocking;
mod cache;
mod config;
mod doctor;
mod resolve;
mod rotation;
mod secrets;
mod snapshot;
mod transport;
mod watch;

pub use access_keys::{AccessKeyOptions, AccessKeys, CreatedAccessKey};
pub use cache::CacheOptions;
pub use config::{check_url, seconds_to_duration, Config, DEFAULT_URL};
pub use doctor::{doctor, doctor_server, Finding};
pub use resolve::{CheckItem, CheckReport, ResolveOptions, Values, DEFAULT_EXPIRY_WARNING};
pub use rotation::Rotation;
pub use secrets::{BatchResult, CachedHit, CreateSecret, FetchedSecret, Secrets, UpdateSecret};
pub use watch::{WatchEvent, Watcher};

use reqwest::Method;
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::crypto::{AccessKey, WrappedKey};
use crate::error::{Error, ErrorCode};
use crate::wire::{AccessKeyInfo, AuditPage, AuditQuery, Health, SessionResponse, WorkspaceInfo};
use transport::{Idempotency, Transport};

/// The Ductape Secrets client. Cheap to clone: clones share one connection pool and session.
///
/// ```no_run
/// # async fn demo() -> Result<(), ductape::Error> {
/// let ductape = ductape::Ductape::new(ductape::Config::resolve(None, None)?)?;
/// ductape.init().await?;
/// for s in ductape.secrets().fetch_all().await? {
///     println!("{} ({})", s.key, s.status.as_str());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Ductape {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    session: RwLock<Option<Arc<Session>>>,
    cache: Option<cache::Cache>,
    /// Whether `init()` started from the snapshot.
    offline: std::sync::atomic::AtomicBool,
    /// The change feed's broadcast, once its task runs.
    feed: std::sync::Mutex<Option<tokio::sync::broadcast::Sender<watch::WatchEvent>>>,
}

impl Ductape {
    pub fn new(config: Config) -> Result<Self, Error> {
        let cache = config
            .cache
            .clone()
            .map(|o| cache::Cache::new(o, config.access_key()));
        Ok(Ductape {
            inner: Arc::new(Inner {
                transport: Transport::new(config)?,
                session: RwLock::new(None),
                cache,
                offline: std::sync::atomic::AtomicBool::new(false),
                feed: std::sync::Mutex::new(None),
            }),
        })
    }

    /// A client configured from `DUCTAPE_URL` and `DUCTAPE_ACCESS_KEY`.
    pub fn from_env() -> Result<Self, Error> {
        Ductape::new(Config::resolve(None, None)?)
    }

    /// A client with the same configuration and session but a new connection pool: what a
    /// forked child process needs, since the parent's sockets and runtime do not survive.
    pub fn rebuilt(&self) -> Result<Self, Error> {
        let fresh = Ductape::new(self.config().clone())?;
        *write(&fresh.inner.session) = read(&self.inner.session).clone();
        Ok(fresh)
    }

    pub fn config(&self) -> &Config {
        self.inner.transport.config()
    }

    /// Authenticates, downloads this access key's grants (or, in a format-1 workspace, its
    /// wrapped workspace key) and opens them here. An unbound admin key upgrades a format-1
    /// workspace to format 2 here (or finishes an upgrade left half done): see
    /// [`Ductape::upgrade_with_progress`].
    pub async fn init(&self) -> Result<(), Error> {
        match self.open_session().await {
            Ok(()) => {}
            // The server cannot answer: a cache snapshot may let the client start.
            Err(e) if cache::outage(&e) => {
                return match self.start_from_snapshot().await? {
                    true => Ok(()),
                    false => Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        let session = self.session()?;
        let upgrade = match &session.keys {
            keys::SessionKeys::Workspace(_) => true,
            keys::SessionKeys::Ring(ring) => ring.keyring.upgrade_key.is_some(),
        };
        if upgrade && rotation::can_rotate(&session.access_key) {
            self.upgrade_with_progress(|_, _| {}).await?;
        }
        // A cache that follows the change feed drops what others change, as it happens.
        if self.cache().is_some_and(|c| c.watches()) {
            self.follow_changes()?;
        }
        Ok(())
    }

    /// `init()` without the upgrade: reads the session and opens its keys.
    pub(crate) async fn open_session(&self) -> Result<(), Error> {
        let resp: SessionResponse = self
            .transport()
            .call(Method::GET, "/v1/session", None, Idempotency::Idempotent)
            .await?;
        if let Some(snapshot) = self.cache().and_then(|c| c.snapshot()) {
            snapshot.set_session(&resp);
        }
        self.install_session(resp, true).await
    }

    /// Opens a session answer's keys here and keeps them (`online`: a format-1 key may
    /// convert itself, which needs the server).
    async fn install_session(&self, resp: SessionResponse, online: bool) -> Result<(), Error> {
        let ak = self.config().access_key();
        let session = match resp.keyring {
            Some(ring) if online && resp.wrapped_key.starts_with(WrappedKey::PREFIX) => {
                // A format-1 key in an upgraded workspace: it takes its grant, once.
                crate::session::answered_for(&resp.access_key, ak)?;
                ring.check()?;
                let ws = &resp.workspace.workspace_id;
                let wk = unwrap_workspace_key(&resp.wrapped_key, &resp.workspace, ak)?;
                let info = &resp.access_key;
                let (ring, grants) =
                    keys::Ring::converted(ring, ws, ak, info.app.as_deref(), &info.envs, wk)?;
                let body = serde_json::json!({
                    "grants": [{ "id": ak.id(), "grants": grants.to_string() }]
                });
                self.transport()
                    .call::<serde_json::Value>(
                        Method::POST,
                        "/v1/keyring/grants",
                        Some(&body),
                        Idempotency::Idempotent,
                    )
                    .await?;
                Session {
                    workspace: resp.workspace,
                    access_key: resp.access_key,
                    keys: keys::SessionKeys::Ring(ring),
                }
            }
            keyring => Session::open(SessionResponse { keyring, ..resp }, ak)?,
        };
        *write(&self.inner.session) = Some(Arc::new(session));
        Ok(())
    }

    /// Starts from the cache's snapshot (the server being unreachable): its session, and
    /// its answers with the age they had (served within `stale_if_error`). `false` when
    /// there is no snapshot; an integrity error when it does not open.
    async fn start_from_snapshot(&self) -> Result<bool, Error> {
        let Some(cache) = self.cache() else {
            return Ok(false);
        };
        let Some(snapshot) = cache.snapshot() else {
            return Ok(false);
        };
        let Some(loaded) = snapshot.load()? else {
            return Ok(false);
        };
        self.install_session(loaded.session, false).await?;
        let session = self.session()?;
        let ws = &session.workspace.workspace_id;
        let now_ms = crate::ids::now_millis();
        let mut kept = 0;
        for (k, e) in loaded.entries {
            let key = crate::validate::SecretKey::parse(&k.key)?;
            let value = session.keys.open(ws, &key, &e.ciphertext)?;
            let age = std::time::Duration::from_millis((now_ms - e.confirmed_ms).max(0) as u64);
            let Some(confirmed) = std::time::Instant::now().checked_sub(age) else {
                continue;
            };
            cache.restore(
                k,
                cache::Entry {
                    record: e.record,
                    value,
                    etag: e.etag,
                    sealed: e.ciphertext,
                    confirmed,
                },
            );
            kept += 1;
        }
        self.inner
            .offline
            .store(true, std::sync::atomic::Ordering::Release);
        tracing::warn!(path = %snapshot.path().display(), answers = kept, "the server is unreachable: started from the cache snapshot (values are served within stale_if_error)");
        Ok(true)
    }

    /// Whether `init()` started from the cache snapshot because the server could not be
    /// reached.
    pub fn started_offline(&self) -> bool {
        self.inner
            .offline
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether `init()` has succeeded.
    pub fn is_initialized(&self) -> bool {
        read(&self.inner.session).is_some()
    }

    /// The workspace, once initialized.
    pub fn workspace(&self) -> Result<WorkspaceInfo, Error> {
        Ok(self.session()?.workspace.clone())
    }

    /// This access key as the server describes it, once initialized.
    pub fn access_key_info(&self) -> Result<AccessKeyInfo, Error> {
        Ok(self.session()?.access_key.clone())
    }

    /// Secret operations.
    pub fn secrets(&self) -> Secrets<'_> {
        Secrets::new(self)
    }

    /// Access-key operations (admin permission).
    pub fn access_keys(&self) -> AccessKeys<'_> {
        AccessKeys::new(self)
    }

    /// The audit trail (admin permission), newest first, filtered and paged.
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditPage, Error> {
        // The same serde shape the server's Query extractor reads (absent filters left out).
        let params = serde_urlencoded::to_string(query)
            .map_err(|e| Error::invalid_field(format!("invalid audit filter: {e}")))?;
        let path = if params.is_empty() {
            "/v1/audit".to_owned()
        } else {
            format!("/v1/audit?{params}")
        };
        self.transport()
            .call(Method::GET, &path, None, Idempotency::Idempotent)
            .await
    }

    /// Walks the audit events matching `query` (its `limit` is ignored), newest first,
    /// a page at a time, handing each to `each` until it returns `false`, `max` events were
    /// handed over, or the trail ends.
    ///
    /// ```no_run
    /// # async fn demo(d: ductape::Ductape) -> Result<(), ductape::Error> {
    /// d.audit_each(Default::default(), Some(10), |e| { println!("{}", e.action); true }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn audit_each(
        &self,
        mut query: AuditQuery,
        max: Option<u64>,
        mut each: impl FnMut(crate::wire::AuditEntry) -> bool,
    ) -> Result<(), Error> {
        let mut left = max.unwrap_or(u64::MAX);
        while left > 0 {
            query.limit = Some(left.min(u64::from(AuditQuery::MAX_LIMIT)) as u32);
            let page = self.audit(&query).await?;
            left = left.saturating_sub(page.events.len() as u64);
            for e in page.events {
                if !each(e) {
                    return Ok(());
                }
            }
            match page.next_before {
                Some(b) => query.before = Some(b),
                None => break,
            }
        }
        Ok(())
    }

    /// Checks the workspace's whole audit trail (admin, unbound): every event matches its
    /// hash and follows the one before it. The outer error is a failed request; the inner
    /// one the first broken link.
    ///
    /// ```no_run
    /// # async fn demo(d: ductape::Ductape) -> Result<(), ductape::Error> {
    /// match d.verify_audit().await? {
    ///     Ok(v) => println!("{} events, head {:?}", v.events, v.head),
    ///     Err(broken) => eprintln!("broken at event {}: {}", broken.id, broken.reason),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn verify_audit(
        &self,
    ) -> Result<Result<crate::audit::Verified, crate::audit::Broken>, Error> {
        let workspace = self.workspace()?;
        let me = self.access_key_info()?;
        if me.app.is_some() || !me.envs.is_empty() {
            // A bound key sees only the events within its binding: the chain has gaps.
            return Err(Error::new(
                crate::ErrorCode::PermissionDenied,
                "verifying the audit trail needs an unbound admin access key (a bound key sees only part of it)",
            ));
        }
        let mut events = Vec::new();
        self.audit_each(AuditQuery::default(), None, |e| {
            events.push(e);
            true
        })
        .await?;
        events.reverse();
        Ok(crate::audit::verify(&workspace.workspace_id, &events))
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// The value cache, when the config turned it on.
    pub(crate) fn cache(&self) -> Option<&cache::Cache> {
        self.inner.cache.as_ref()
    }

    pub(crate) fn session(&self) -> Result<Arc<Session>, Error> {
        read(&self.inner.session).clone().ok_or_else(|| {
            Error::new(
                ErrorCode::NotInitialized,
                "the client is not initialized: call init() first",
            )
        })
    }
}

impl fmt::Debug for Ductape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ductape")
            .field("url", &self.config().url())
            .field("access_key_id", &self.config().access_key().id())
            .field("initialized", &self.is_initialized())
            .finish()
    }
}

// A poisoned lock only means another thread panicked mid-assignment of an Option<Arc>,
// which cannot leave it half-written; keep going.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Bootstraps a fresh server: makes the workspace key and the first admin access key here,
/// and registers them with the one-time `setup_token` the server printed.
/// Returns the access key, to show the user once.
pub async fn setup(
    url: &str,
    setup_token: &str,
    workspace_name: &str,
) -> Result<(AccessKey, WorkspaceInfo), Error> {
    check_url(url)?;
    let (ak, body) = crate::bootstrap::setup_body(setup_token, workspace_name);
    let http = anonymous_client()?;
    let url = format!("{}/v1/setup", url.trim_end_matches('/'));
    let info: WorkspaceInfo =
        Transport::call_anonymous(&http, &url, Method::POST, Some(&body)).await?;
    Ok((ak, info))
}

/// `GET /healthz` of a server, without credentials.
pub async fn health(url: &str) -> Result<Health, Error> {
    check_url(url)?;
    let url = format!("{}/healthz", url.trim_end_matches('/'));
    Transport::call_anonymous(&anonymous_client()?, &url, Method::GET, None).await
}

/// A client for calls without an access key, trusting `DUCTAPE_CA_CERT` like the others.
fn anonymous_client() -> Result<reqwest::Client, Error> {
    let t = std::time::Duration::from_secs(30);
    transport::http_client(config::ca_from_env()?.as_deref(), t, t)?
        .build()
        .map_err(transport::build_error)
}

/// Replaces `path` with `bytes` atomically, readable by its owner only: a new file (0600)
/// written and fsynced beside it, renamed over the old, the directory fsynced. A process
/// killed mid-write leaves the old file whole. (The cache snapshot's and the CLI's kept
/// login's writer.)
pub fn replace_private_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
