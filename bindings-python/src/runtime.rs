//! The tokio runtime behind every call, fork-aware.
//!
//! A forked child inherits the parent's memory but none of its threads: the parent's
//! runtime is a shell whose workers are gone, and blocking on it would hang forever. So the
//! runtime is tagged with the pid that built it; a process that finds another pid's runtime
//! builds its own. The old one is leaked on purpose: dropping it would try to join threads
//! that do not exist in this process. No lock is taken (a lock held by a parent thread at
//! fork time would stay locked forever in the child).

use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{ContextExt, Runtime as GenericRuntime};
use pyo3_async_runtimes::TaskLocals;
use std::cell::{OnceCell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

struct Tagged {
    pid: u32,
    rt: tokio::runtime::Runtime,
}

static CURRENT: AtomicPtr<Tagged> = AtomicPtr::new(ptr::null_mut());

/// This process's runtime, built on first use (and again in a forked child).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    let pid = std::process::id();
    loop {
        let cur = CURRENT.load(Ordering::Acquire);
        // SAFETY: installed runtimes are never freed, so the pointer stays valid.
        if let Some(t) = unsafe { cur.as_ref() } {
            if t.pid == pid {
                return &t.rt;
            }
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ductape-io")
            .enable_all()
            .build()
            .expect("cannot start the Ductape runtime");
        let new = Box::into_raw(Box::new(Tagged { pid, rt }));
        match CURRENT.compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire) {
            // The previous runtime (another pid's, or none) is leaked deliberately.
            // SAFETY: `new` is now installed and never freed.
            Ok(_) => return unsafe { &(*new).rt },
            Err(_) => {
                // Another thread installed one first: drop ours (built in this process, so its
                // threads exist and can be joined) and use theirs.
                // SAFETY: `new` was never shared.
                drop(unsafe { Box::from_raw(new) });
            }
        }
    }
}

thread_local! {
    /// This thread's runtime for synchronous calls, with the pid that built it.
    static CALLER: RefCell<Option<Tagged>> = const { RefCell::new(None) };
}

/// Runs `fut` to completion on this thread's current-thread runtime (built on first use, and
/// again in a forked child, the parent's leaked as above). A synchronous call so runs on
/// the thread that makes it, connection included: no hand-off to a worker and back, which
/// costs more than the rest of a loopback read (the core keeps such connections to their
/// thread). Nothing that must outlive the call may be spawned here: its tasks run only
/// while a call does ([`runtime`] is for those).
pub fn on_this_thread<F: Future>(fut: F) -> F::Output {
    let pid = std::process::id();
    CALLER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_some_and(|t| t.pid != pid) {
            std::mem::forget(slot.take());
        }
        let tagged = match slot.as_mut() {
            Some(t) => t,
            None => slot.insert(Tagged {
                pid,
                rt: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cannot start the Ductape runtime"),
            }),
        };
        tagged.rt.block_on(fut)
    })
}

/// pyo3-async-runtimes' generic interface over our runtime, so coroutines run on it too.
pub struct DuctapeRuntime;

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

impl GenericRuntime for DuctapeRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        runtime().spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        runtime().spawn_blocking(f)
    }
}

impl ContextExt for DuctapeRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// Turns a Rust future into a Python awaitable running on our runtime.
pub fn into_awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::generic::future_into_py::<DuctapeRuntime, F, T>(py, fut)
}
