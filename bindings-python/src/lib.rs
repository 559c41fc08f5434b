//! The native half of the `ductape` Python package: a thin translation of the core client,
//! one typed method per operation (and its asyncio twin, `*_async`). Arguments arrive as
//! Python dicts and are checked by the core (the same rules and messages as every other
//! client); results leave as dicts in the documented shape, and the Python half
//! (`ductape/_client.py`) wraps them in typed objects.

mod config;
mod errors;
mod runtime;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ductape::client::seconds_to_duration;
use ductape::wire::ListQuery;
use ductape::{
    AuditQuery, CacheOptions, Config, CreateSecret, Ductape, Error, ErrorCode, ResolveOptions,
    UpdateSecret,
};
use errors::IntoPyResult;

/// How often a blocked sync call wakes to let Python handle signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// A core client tagged with the process that made its connections.
struct PerProcess {
    /// The process it belongs to, as [`this_process`] names it.
    process: u64,
    client: Ductape,
}

/// How many times this process's ancestry forked: counted in the child by a
/// `pthread_atfork` handler, so telling a forked child from its parent costs an atomic load
/// instead of a `getpid` system call on every call (the cache's fast path is a few hundred
/// nanoseconds).
#[cfg(unix)]
static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(unix)]
extern "C" fn forked_child() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
}

#[cfg(unix)]
fn this_process() -> u64 {
    FORKS.load(std::sync::atomic::Ordering::Acquire)
}

#[cfg(not(unix))]
fn this_process() -> u64 {
    u64::from(std::process::id())
}

/// One subscription to the change feed: `next()` waits for the next change (`None` once
/// the feed has ended).
#[pyclass(module = "ductape._native", frozen)]
struct NativeWatcher {
    changes: Arc<tokio::sync::Mutex<ductape::Watcher>>,
}

#[pymethods]
impl NativeWatcher {
    fn next(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        NativeClient::run(py, self.next_op())
    }

    fn next_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        NativeClient::run_async(py, self.next_op())
    }
}

impl NativeWatcher {
    fn next_op(&self) -> Op {
        let changes = self.changes.clone();
        op(async move {
            Ok(match changes.lock().await.next().await {
                Some(e) => Answer::Json(e.to_json()),
                None => Answer::Unit,
            })
        })
    }
}

/// The cache's generation counter (see `Secrets::cache_generation` in the core): `get()`
/// is one atomic load, no lock and no lookup, for the fast path of cache hits.
#[pyclass(module = "ductape._native", frozen)]
struct GenerationCell(Arc<std::sync::atomic::AtomicU64>);

#[pymethods]
impl GenerationCell {
    fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

#[pyclass(module = "ductape._native", frozen)]
struct NativeClient {
    inner: Mutex<PerProcess>,
}

fn py_to_json(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    pythonize::depythonize(obj).map_err(|e| {
        errors::to_py(Error::invalid_field(format!(
            "arguments must be JSON-like values: {e}"
        )))
    })
}

fn json_to_py(py: Python<'_>, v: &Value) -> PyResult<Py<PyAny>> {
    Ok(pythonize::pythonize(py, v)
        .map_err(|e| errors::to_py(Error::new(ErrorCode::Protocol, e.to_string())))?
        .unbind())
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The answer of an operation, as JSON for Python.
enum Answer {
    Json(Value),
    Bool(bool),
    Unit,
    /// A resolve's values, put into a copy of its configuration once the GIL is held again.
    Resolved(Py<PyAny>, ductape::client::Values),
}

impl<'py> IntoPyObject<'py> for Answer {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Answer::Json(v) => Ok(json_to_py(py, &v)?.into_bound(py)),
            Answer::Bool(b) => Ok(pyo3::types::PyBool::new(py, b).to_owned().into_any()),
            Answer::Unit => Ok(py.None().into_bound(py)),
            Answer::Resolved(config, values) => config::substitute(config.bind(py), &values),
        }
    }
}

/// One operation of the client: built while holding the GIL (arguments are converted and
/// checked then), run without it.
type Op = std::pin::Pin<Box<dyn Future<Output = Result<Answer, Error>> + Send>>;

fn op<F>(fut: F) -> Op
where
    F: Future<Output = Result<Answer, Error>> + Send + 'static,
{
    Box::pin(fut)
}

fn json_answer<T: serde::Serialize>(r: Result<T, Error>) -> Result<Answer, Error> {
    r.map(|v| Answer::Json(to_value(&v)))
}

impl NativeClient {
    /// This process's client: a forked child rebuilds its connection pool (the parent's
    /// sockets and runtime threads are not its own) and keeps the session.
    fn client(&self) -> PyResult<Ductape> {
        let process = this_process();
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if guard.process != process {
            guard.client = guard.client.rebuilt().py()?;
            guard.process = process;
        }
        Ok(guard.client.clone())
    }

    /// Runs an operation to completion on this thread (see `runtime::on_this_thread`)
    /// without holding the GIL, coming back every 50 ms so that Ctrl-C (or any signal
    /// handler raising) interrupts it promptly: the operation is then dropped.
    fn run(py: Python<'_>, op: Op) -> PyResult<Py<PyAny>> {
        let mut op = op;
        loop {
            // The operation moves into the GIL-free closure and back (it is Send, not Sync).
            let (got, back) = py.detach(move || {
                let got = runtime::on_this_thread(async {
                    tokio::time::timeout(SIGNAL_CHECK, &mut op).await.ok()
                });
                (got, op)
            });
            op = back;
            match got {
                Some(result) => return result.py()?.into_pyobject(py).map(Bound::unbind),
                None => py.check_signals()?,
            }
        }
    }

    /// [`NativeClient::run`] on the shared runtime, for an operation that may start a
    /// background task (the change feed of `init`), which must outlive the call.
    fn run_shared(py: Python<'_>, op: Op) -> PyResult<Py<PyAny>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let task = runtime::runtime().spawn(async move {
            let _ = tx.send(op.await);
        });
        let mut rx = rx;
        loop {
            // The receiver moves into the GIL-free closure and back (it is Send, not Sync).
            let (got, back) = py.detach(move || (rx.recv_timeout(SIGNAL_CHECK), rx));
            rx = back;
            match got {
                Ok(result) => return result.py()?.into_pyobject(py).map(Bound::unbind),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(interrupted) = py.check_signals() {
                        task.abort();
                        return Err(interrupted);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(errors::to_py(Error::new(
                        ErrorCode::Internal,
                        "the operation was dropped",
                    )));
                }
            }
        }
    }

    /// The same operation as an awaitable for asyncio.
    fn run_async(py: Python<'_>, op: Op) -> PyResult<Bound<'_, PyAny>> {
        runtime::into_awaitable(py, async move { op.await.py() })
    }

    fn init_op(&self) -> PyResult<Op> {
        let c = self.client()?;
        Ok(op(async move { c.init().await.map(|()| Answer::Unit) }))
    }

    fn create_op(&self, args: &Bound<'_, PyAny>) -> PyResult<Op> {
        let c = self.client()?;
        let args = CreateSecret::from_json(&py_to_json(args)?).py()?;
        Ok(op(
            async move { json_answer(c.secrets().create(args).await) },
        ))
    }

    fn fetch_all_op(&self) -> PyResult<Op> {
        let c = self.client()?;
        Ok(op(
            async move { json_answer(c.secrets().fetch_all().await) },
        ))
    }

    fn page_op(&self, limit: Option<u32>, cursor: Option<String>) -> PyResult<Op> {
        let c = self.client()?;
        let query = ListQuery { limit, cursor };
        Ok(op(
            async move { json_answer(c.secrets().page(&query).await) },
        ))
    }

    fn fetch_op(&self, key: String, version: Option<i64>, fresh: bool) -> PyResult<Op> {
        let c = self.client()?;
        Ok(op(async move {
            let s = c.secrets();
            match (version, fresh) {
                (Some(v), _) => s.fetch_version(&key, v).await,
                (None, true) => s.fetch_fresh(&key).await,
                (None, false) => s.fetch(&key).await,
            }
            .map(|s| Answer::Json(s.to_json()))
        }))
    }

    fn versions_op(&self, key: String) -> PyResult<Op> {
        let c = self.client()?;
        Ok(op(
            async move { json_answer(c.secrets().versions(&key).await) },
        ))
    }

    fn rollback_op(&self, key: String, version: i64, if_version: Option<i64>) -> PyResult<Op> {
        let c = self.client()?;
        Ok(op(async move {
            json_answer(
                c.secrets()
                    .rollback_if_version(&key, version, if_version)
                    .await,
            )
        }))
    }

    fn undelete_op(&self, key: String) -> PyResult<Op> {
        let c = self.client()?;
        Ok(op(
            async move { json_answer(c.secrets().undelete(&key).await) },
        ))
    }

    fn update_op(&self, key: String, args: &Bound<'_, PyAny>) -> PyResult<Op> {
        let c = self.client()?;
        let args = UpdateSecret::from_json(&py_to_json(args)?).py()?;
        Ok(op(async move {
            json_answer(c.secrets().update(&key, args).await)
        }))
    }

    fn delete_op(&self, key: String, if_version: Option<i64>, permanent: bool) -> PyResult<Op> {
        let c = self.client()?;
        Ok(op(async move {
            let s = c.secrets();
            if permanent {
                s.delete_permanently(&key, if_version).await
            } else {
                s.delete_if_version(&key, if_version).await
            }
            .map(Answer::Bool)
        }))
    }

    fn revoke_op(&self, key: String, if_version: Option<i64>) -> PyResult<Op> {
        let c = self.client()?;
        Ok(op(async move {
            c.secrets()
                .revoke_if_version(&key, if_version)
                .await
                .map(Answer::Bool)
        }))
    }

    fn restore_op(&self, key: String, if_version: Option<i64>) -> PyResult<Op> {
        let c = self.client()?;
        Ok(op(async move {
            json_answer(c.secrets().restore_if_version(&key, if_version).await)
        }))
    }

    fn resolve_op(
        &self,
        config: &Bound<'_, PyAny>,
        app: Option<String>,
        env: Option<String>,
    ) -> PyResult<Op> {
        let c = self.client()?;
        let keys = config::references(config)?;
        let config = config.clone().unbind();
        let opts = ResolveOptions::new(app.as_deref(), env.as_deref());
        Ok(op(async move {
            let values = c.secrets().values_of(keys, &opts).await?;
            Ok(Answer::Resolved(config, values))
        }))
    }

    fn check_op(
        &self,
        config: &Bound<'_, PyAny>,
        app: Option<String>,
        env: Option<String>,
        expiring_within: Option<f64>,
    ) -> PyResult<Op> {
        let c = self.client()?;
        let keys = config::references(config)?;
        let mut opts = ResolveOptions::new(app.as_deref(), env.as_deref());
        opts.expiring_within = expiring_within
            .map(|secs| seconds_to_duration("expiring_within", secs))
            .transpose()
            .py()?;
        Ok(op(async move {
            json_answer(c.secrets().check_keys(&keys, &opts).await)
        }))
    }

    fn usage_op(&self, key: String) -> PyResult<Op> {
        let c = self.client()?;
        Ok(op(
            async move { json_answer(c.secrets().usage(&key).await) },
        ))
    }

    fn rotate_key_op(&self) -> PyResult<Op> {
        let c = self.client()?;
        Ok(op(async move { json_answer(c.rotate_key().await) }))
    }

    fn audit_op(&self, filters: &Bound<'_, PyAny>) -> PyResult<Op> {
        let c = self.client()?;
        let q = audit_query(py_to_json(filters)?).py()?;
        Ok(op(async move { json_answer(c.audit(&q).await) }))
    }
}

/// Audit filters from the Python layer (`None` for a filter not given).
fn audit_query(v: Value) -> Result<AuditQuery, Error> {
    let mut v = v;
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    serde_json::from_value(v)
        .map_err(|e| Error::invalid_field(format!("invalid audit filter: {e}")))
}

#[pymethods]
impl NativeClient {
    #[new]
    #[pyo3(signature = (access_key=None, url=None, timeout=None, max_retries=None, cache_ttl=None, stale_if_error=None, cache_watch=false, cache_snapshot=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        access_key: Option<&str>,
        url: Option<&str>,
        timeout: Option<f64>,
        max_retries: Option<u32>,
        cache_ttl: Option<f64>,
        stale_if_error: Option<f64>,
        cache_watch: bool,
        cache_snapshot: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        let mut config = Config::resolve(url, access_key).py()?.sdk("ductape-python");
        let cache = CacheOptions::from_arguments(
            cache_ttl,
            stale_if_error,
            cache_watch,
            cache_snapshot,
            [
                "cache_ttl",
                "stale_if_error",
                "cache_watch",
                "cache_snapshot",
            ],
        )
        .py()?;
        if let Some(options) = cache {
            config = config.cache(options);
        }
        if let Some(t) = timeout {
            config = config.timeout(seconds_to_duration("timeout", t).py()?);
        }
        if let Some(n) = max_retries {
            config = config.max_retries(n);
        }
        let client = Ductape::new(config).py()?;
        Ok(NativeClient {
            inner: Mutex::new(PerProcess {
                process: this_process(),
                client,
            }),
        })
    }

    // One method per operation, each with its asyncio twin (`*_async`). The sync ones run
    // without the GIL, waking every 50 ms for signals (Ctrl-C).
    fn init(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Self::run_shared(py, self.init_op()?)
    }

    fn init_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.init_op()?)
    }

    #[pyo3(signature = (args))]
    fn create(&self, py: Python<'_>, args: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Self::run(py, self.create_op(args)?)
    }

    #[pyo3(signature = (args))]
    fn create_async<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.create_op(args)?)
    }

    fn fetch_all(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Self::run(py, self.fetch_all_op()?)
    }

    fn fetch_all_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.fetch_all_op()?)
    }

    #[pyo3(signature = (limit=None, cursor=None))]
    fn page(
        &self,
        py: Python<'_>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        Self::run(py, self.page_op(limit, cursor)?)
    }

    #[pyo3(signature = (limit=None, cursor=None))]
    fn page_async<'py>(
        &self,
        py: Python<'py>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.page_op(limit, cursor)?)
    }

    #[pyo3(signature = (key, version=None, fresh=false))]
    fn fetch(
        &self,
        py: Python<'_>,
        key: String,
        version: Option<i64>,
        fresh: bool,
    ) -> PyResult<Py<PyAny>> {
        Self::run(py, self.fetch_op(key, version, fresh)?)
    }

    #[pyo3(signature = (key, version=None, fresh=false))]
    fn fetch_async<'py>(
        &self,
        py: Python<'py>,
        key: String,
        version: Option<i64>,
        fresh: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.fetch_op(key, version, fresh)?)
    }

    /// The cache's fast path (no runtime, no GIL release): a fresh hit as the cache's
    /// generation then, the seconds it stays fresh, and the secret; or `None`.
    fn cache_hit(&self, py: Python<'_>, key: &str) -> PyResult<Option<(u64, f64, Py<PyAny>)>> {
        let c = self.client()?;
        match c.secrets().cached(key) {
            Some(hit) => Ok(Some((
                hit.generation,
                hit.fresh_for.as_secs_f64(),
                json_to_py(py, &hit.secret.to_json())?,
            ))),
            None => Ok(None),
        }
    }

    /// The cache's generation counter, or `None` without a cache. A hit stays the answer
    /// while the counter reads its generation and its freshness has not run out. This
    /// process's client only: a forked child asks again.
    fn cache_generation_cell(&self) -> PyResult<Option<GenerationCell>> {
        Ok(self
            .client()?
            .secrets()
            .cache_generation_cell()
            .map(GenerationCell))
    }

    /// Follows the change feed from now on (see `NativeWatcher`).
    fn watch(&self) -> PyResult<NativeWatcher> {
        let c = self.client()?;
        let _in_runtime = runtime::runtime().enter();
        Ok(NativeWatcher {
            changes: Arc::new(tokio::sync::Mutex::new(c.watch().py()?)),
        })
    }

    #[pyo3(signature = (key))]
    fn versions(&self, py: Python<'_>, key: String) -> PyResult<Py<PyAny>> {
        Self::run(py, self.versions_op(key)?)
    }

    #[pyo3(signature = (key))]
    fn versions_async<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.versions_op(key)?)
    }

    #[pyo3(signature = (key, version, if_version=None))]
    fn rollback(
        &self,
        py: Python<'_>,
        key: String,
        version: i64,
        if_version: Option<i64>,
    ) -> PyResult<Py<PyAny>> {
        Self::run(py, self.rollback_op(key, version, if_version)?)
    }

    #[pyo3(signature = (key, version, if_version=None))]
    fn rollback_async<'py>(
        &self,
        py: Python<'py>,
        key: String,
        version: i64,
        if_version: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.rollback_op(key, version, if_version)?)
    }

    #[pyo3(signature = (key))]
    fn undelete(&self, py: Python<'_>, key: String) -> PyResult<Py<PyAny>> {
        Self::run(py, self.undelete_op(key)?)
    }

    #[pyo3(signature = (key))]
    fn undelete_async<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.undelete_op(key)?)
    }

    #[pyo3(signature = (key, args))]
    fn update(&self, py: Python<'_>, key: String, args: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Self::run(py, self.update_op(key, args)?)
    }

    #[pyo3(signature = (key, args))]
    fn update_async<'py>(
        &self,
        py: Python<'py>,
        key: String,
        args: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.update_op(key, args)?)
    }

    #[pyo3(signature = (key, if_version=None, permanent=false))]
    fn delete(
        &self,
        py: Python<'_>,
        key: String,
        if_version: Option<i64>,
        permanent: bool,
    ) -> PyResult<Py<PyAny>> {
        Self::run(py, self.delete_op(key, if_version, permanent)?)
    }

    #[pyo3(signature = (key, if_version=None, permanent=false))]
    fn delete_async<'py>(
        &self,
        py: Python<'py>,
        key: String,
        if_version: Option<i64>,
        permanent: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.delete_op(key, if_version, permanent)?)
    }

    #[pyo3(signature = (key, if_version=None))]
    fn revoke(&self, py: Python<'_>, key: String, if_version: Option<i64>) -> PyResult<Py<PyAny>> {
        Self::run(py, self.revoke_op(key, if_version)?)
    }

    #[pyo3(signature = (key, if_version=None))]
    fn revoke_async<'py>(
        &self,
        py: Python<'py>,
        key: String,
        if_version: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.revoke_op(key, if_version)?)
    }

    #[pyo3(signature = (key, if_version=None))]
    fn restore(&self, py: Python<'_>, key: String, if_version: Option<i64>) -> PyResult<Py<PyAny>> {
        Self::run(py, self.restore_op(key, if_version)?)
    }

    #[pyo3(signature = (key, if_version=None))]
    fn restore_async<'py>(
        &self,
        py: Python<'py>,
        key: String,
        if_version: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.restore_op(key, if_version)?)
    }

    #[pyo3(signature = (config, app=None, env=None))]
    fn resolve(
        &self,
        py: Python<'_>,
        config: &Bound<'_, PyAny>,
        app: Option<String>,
        env: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        Self::run(py, self.resolve_op(config, app, env)?)
    }

    #[pyo3(signature = (config, app=None, env=None))]
    fn resolve_async<'py>(
        &self,
        py: Python<'py>,
        config: &Bound<'py, PyAny>,
        app: Option<String>,
        env: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.resolve_op(config, app, env)?)
    }

    #[pyo3(signature = (config, app=None, env=None, expiring_within=None))]
    fn check(
        &self,
        py: Python<'_>,
        config: &Bound<'_, PyAny>,
        app: Option<String>,
        env: Option<String>,
        expiring_within: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        Self::run(py, self.check_op(config, app, env, expiring_within)?)
    }

    #[pyo3(signature = (config, app=None, env=None, expiring_within=None))]
    fn check_async<'py>(
        &self,
        py: Python<'py>,
        config: &Bound<'py, PyAny>,
        app: Option<String>,
        env: Option<String>,
        expiring_within: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.check_op(config, app, env, expiring_within)?)
    }

    #[pyo3(signature = (key))]
    fn usage(&self, py: Python<'_>, key: String) -> PyResult<Py<PyAny>> {
        Self::run(py, self.usage_op(key)?)
    }

    #[pyo3(signature = (key))]
    fn usage_async<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.usage_op(key)?)
    }

    #[pyo3(signature = (filters))]
    fn audit(&self, py: Python<'_>, filters: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Self::run(py, self.audit_op(filters)?)
    }

    #[pyo3(signature = (filters))]
    fn audit_async<'py>(
        &self,
        py: Python<'py>,
        filters: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.audit_op(filters)?)
    }

    fn rotate_key(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Self::run(py, self.rotate_key_op()?)
    }

    fn rotate_key_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Self::run_async(py, self.rotate_key_op()?)
    }

    /// Safe to show: the URL and the access key's public id.
    fn describe<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.client()?;
        let d = PyDict::new(py);
        d.set_item("url", c.config().url())?;
        d.set_item("access_key_id", c.config().access_key().id())?;
        d.set_item("initialized", c.is_initialized())?;
        d.set_item("offline", c.started_offline())?;
        Ok(d)
    }

    fn __repr__(&self) -> PyResult<String> {
        let c = self.client()?;
        Ok(format!(
            "NativeClient(url={:?}, access_key_id={:?})",
            c.config().url(),
            c.config().access_key().id()
        ))
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    #[cfg(unix)]
    {
        static REGISTERED: std::sync::Once = std::sync::Once::new();
        // SAFETY: registers a handler that only increments an atomic, as async-signal-safe
        // as a fork child handler must be.
        REGISTERED.call_once(|| unsafe {
            libc::pthread_atfork(None, None, Some(forked_child));
        });
    }
    m.add_class::<NativeClient>()?;
    m.add_class::<NativeWatcher>()?;
    m.add_class::<GenerationCell>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
