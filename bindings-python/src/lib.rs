//! The native half of the `ductape` Python package: a thin translation of the core client.
//! Arguments arrive as Python dicts and are checked by the core (the same rules and messages
//! as every other client); results leave as dicts in the documented shape, and the Python
//! half (`ductape/_client.py`) wraps them in typed objects.

mod errors;
mod runtime;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use ductape::client::seconds_to_duration;
use ductape::wire::ListQuery;
use ductape::{
    AuditQuery, Config, CreateSecret, Ductape, Error, ErrorCode, ResolveOptions, UpdateSecret,
};
use errors::IntoPyResult;

/// How often a blocked sync call wakes to let Python handle signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// A core client tagged with the process that made its connections.
struct PerProcess {
    pid: u32,
    client: Ductape,
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
        }
    }
}

/// One operation of the client: built while holding the GIL (arguments are converted and
/// checked then), run without it.
type Op = std::pin::Pin<Box<dyn Future<Output = Result<Answer, Error>> + Send>>;

impl NativeClient {
    /// This process's client: a forked child rebuilds its connection pool (the parent's
    /// sockets and runtime threads are not its own) and keeps the session.
    fn client(&self) -> PyResult<Ductape> {
        let pid = std::process::id();
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if guard.pid != pid {
            guard.client = guard.client.rebuilt().py()?;
            guard.pid = pid;
        }
        Ok(guard.client.clone())
    }

    fn op(&self, name: &str, args: Option<&Bound<'_, PyAny>>, key: Option<String>) -> PyResult<Op> {
        let c = self.client()?;
        let json = args.map(py_to_json).transpose()?;
        let key = key.unwrap_or_default();
        Ok(match name {
            "init" => Box::pin(async move { c.init().await.map(|()| Answer::Unit) }),
            "create" => {
                let args = CreateSecret::from_json(&json.unwrap_or(Value::Null)).py()?;
                Box::pin(async move {
                    c.secrets()
                        .create(args)
                        .await
                        .map(|r| Answer::Json(to_value(&r)))
                })
            }
            "fetch_all" => Box::pin(async move {
                c.secrets()
                    .fetch_all()
                    .await
                    .map(|r| Answer::Json(to_value(&r)))
            }),
            "page" => {
                let query: ListQuery = serde_json::from_value(json.unwrap_or(Value::Null))
                    .map_err(|e| Error::invalid_field(format!("invalid page arguments: {e}")))
                    .py()?;
                Box::pin(async move {
                    c.secrets()
                        .page(&query)
                        .await
                        .map(|r| Answer::Json(to_value(&r)))
                })
            }
            "fetch" => Box::pin(async move {
                c.secrets()
                    .fetch(&key)
                    .await
                    .map(|s| Answer::Json(s.to_json()))
            }),
            "update" => {
                let args = UpdateSecret::from_json(&json.unwrap_or(Value::Null)).py()?;
                Box::pin(async move {
                    c.secrets()
                        .update(&key, args)
                        .await
                        .map(|r| Answer::Json(to_value(&r)))
                })
            }
            "delete" => Box::pin(async move { c.secrets().delete(&key).await.map(Answer::Bool) }),
            "revoke" => Box::pin(async move { c.secrets().revoke(&key).await.map(Answer::Bool) }),
            "restore" => Box::pin(async move {
                c.secrets()
                    .restore(&key)
                    .await
                    .map(|r| Answer::Json(to_value(&r)))
            }),
            "resolve" | "check" => {
                let (config, opts) = resolve_args(json.unwrap_or(Value::Null)).py()?;
                if name == "resolve" {
                    Box::pin(
                        async move { c.secrets().resolve(&config, &opts).await.map(Answer::Json) },
                    )
                } else {
                    Box::pin(async move {
                        c.secrets()
                            .check(&config, &opts)
                            .await
                            .map(|r| Answer::Json(to_value(&r)))
                    })
                }
            }
            "usage" => Box::pin(async move {
                c.secrets()
                    .usage(&key)
                    .await
                    .map(|r| Answer::Json(to_value(&r)))
            }),
            "audit" => {
                let q = audit_query(json.unwrap_or(Value::Null)).py()?;
                Box::pin(async move { c.audit(&q).await.map(|r| Answer::Json(to_value(&r))) })
            }
            other => {
                return Err(pyo3::exceptions::PyAttributeError::new_err(format!(
                    "no operation {other}"
                )))
            }
        })
    }
}

/// `{config, app, env, expiring_within}` from the Python layer.
fn resolve_args(v: Value) -> Result<(Value, ResolveOptions), Error> {
    let Value::Object(mut obj) = v else {
        return Err(Error::invalid_field("resolve arguments must be an object"));
    };
    let config = obj.remove("config").unwrap_or(Value::Null);
    let text = |obj: &serde_json::Map<String, Value>, f: &str| -> Result<Option<String>, Error> {
        match obj.get(f) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::invalid_field(format!("'{f}' must be a string"))),
        }
    };
    let mut opts =
        ResolveOptions::new(text(&obj, "app")?.as_deref(), text(&obj, "env")?.as_deref());
    if let Some(v) = obj.get("expiring_within").filter(|v| !v.is_null()) {
        let secs = v
            .as_f64()
            .ok_or_else(|| Error::invalid_field("'expiring_within' must be a number of seconds"))?;
        opts.expiring_within = Some(seconds_to_duration("expiring_within", secs)?);
    }
    Ok((config, opts))
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
    #[pyo3(signature = (access_key=None, url=None, timeout=None, max_retries=None))]
    fn new(
        access_key: Option<&str>,
        url: Option<&str>,
        timeout: Option<f64>,
        max_retries: Option<u32>,
    ) -> PyResult<Self> {
        let mut config = Config::resolve(url, access_key).py()?;
        if let Some(t) = timeout {
            config = config.timeout(seconds_to_duration("timeout", t).py()?);
        }
        if let Some(n) = max_retries {
            config = config.max_retries(n);
        }
        let client = Ductape::new(config).py()?;
        Ok(NativeClient {
            inner: Mutex::new(PerProcess {
                pid: std::process::id(),
                client,
            }),
        })
    }

    /// Runs an operation to completion without holding the GIL, waking every 50 ms so that
    /// Ctrl-C (or any signal handler raising) interrupts it promptly.
    #[pyo3(signature = (name, args=None, key=None))]
    fn call(
        &self,
        py: Python<'_>,
        name: &str,
        args: Option<&Bound<'_, PyAny>>,
        key: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let op = self.op(name, args, key)?;
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
    #[pyo3(signature = (name, args=None, key=None))]
    fn call_async<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        args: Option<&Bound<'py, PyAny>>,
        key: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = self.op(name, args, key)?;
        runtime::into_awaitable(py, async move { op.await.py() })
    }

    /// Safe to show: the URL and the access key's public id.
    fn describe<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.client()?;
        let d = PyDict::new(py);
        d.set_item("url", c.config().url())?;
        d.set_item("access_key_id", c.config().access_key().id())?;
        d.set_item("initialized", c.is_initialized())?;
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
    m.add_class::<NativeClient>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
