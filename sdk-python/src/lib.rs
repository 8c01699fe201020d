//! `weir._weir`: the Python SDK's native core, a thin layer over the Rust SDK (crate `weir`).
//! Protocol, batching, idempotence, partitioner and groups are the Rust SDK's; this crate only
//! converts arguments, results and errors.
//!
//! Layout:
//! - `blocking`: `Client`, `Producer`, `Consumer`; waits release the GIL, Ctrl-C interrupts.
//! - `aio`: `AsyncClient`, `AsyncProducer`, `AsyncConsumer` for asyncio (python/weir/aio.py).
//! - `admin`: every admin call, written once, as a method of both clients.
//! - `delivery`: `DeliveryHandle`, `RecordMetadata` and the `on_delivery` callbacks.
//! - `options`: Python arguments → SDK configs and records, shared by both APIs.
//! - `info`: what admin calls answer (`TopicDescription`, `PluginInfo`, ...).
//! - `record`: `Record`, one consumed record.
//! - `errors`: `WeirError` and its subclasses; the one mapping from `weir::Error`.
//!
//! Both APIs run every network call on one shared tokio runtime ([`runtime`]). asyncio
//! futures go through [`SdkRuntime`], which counts the tasks that may still touch Python, so
//! interpreter exit waits for them ([`drain_at_exit`]): before Python 3.13, a thread that
//! takes the GIL while the interpreter finalizes crashes the process.

mod admin;
mod aio;
mod blocking;
mod delivery;
mod errors;
mod info;
mod options;
mod record;

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use pyo3::prelude::*;

/// Worker threads of the shared runtime (network I/O and batching, not Python code).
const RUNTIME_THREADS: usize = 2;

/// The runtime every SDK future runs on, for both APIs.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("weir-sdk")
            .enable_all()
            .build()
            .expect("the SDK cannot start its tokio runtime")
    })
}

/// Tasks [`SdkRuntime`] started that have not ended (they may take the GIL to hand a result
/// to asyncio).
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Longest interpreter exit waits for them (a future nobody cancels may never end).
const EXIT_DRAIN_MAX: Duration = Duration::from_secs(2);

/// Counts one task in [`IN_FLIGHT`] while alive.
struct InFlight;

impl InFlight {
    fn start() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

tokio::task_local! {
    static TASK_LOCALS: OnceCell<pyo3_async_runtimes::TaskLocals>;
}

/// pyo3-async-runtimes' hooks over the shared runtime: its tokio glue, plus the count of
/// tasks in flight (the ones that set asyncio results take the GIL on a blocking thread).
struct SdkRuntime;

impl pyo3_async_runtimes::generic::Runtime for SdkRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let counted = InFlight::start();
        runtime().spawn(async move {
            let _counted = counted;
            fut.await;
        })
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        let counted = InFlight::start();
        runtime().spawn_blocking(move || {
            let _counted = counted;
            f();
        })
    }
}

impl pyo3_async_runtimes::generic::ContextExt for SdkRuntime {
    fn scope<F, R>(
        locals: pyo3_async_runtimes::TaskLocals,
        fut: F,
    ) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<pyo3_async_runtimes::TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// An asyncio future of `fut`, run on the shared runtime (counted in [`IN_FLIGHT`]).
fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    pyo3_async_runtimes::generic::future_into_py::<SdkRuntime, F, T>(py, fut)
}

/// Registered with `atexit`: waits (without the GIL) until no task may still hand a result to
/// asyncio, for at most [`EXIT_DRAIN_MAX`].
#[pyfunction]
fn drain_at_exit(py: Python<'_>) {
    py.detach(|| {
        let deadline = Instant::now() + EXIT_DRAIN_MAX;
        while IN_FLIGHT.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    });
}

/// Polls `fut` once, inside the runtime (timers and spawns need it): the answer if it is
/// already there. The hot paths (room in the producer's buffer, a buffered record) end here,
/// without a thread hop or a GIL release.
fn poll_now<F: Future + Unpin>(fut: F) -> Option<F::Output> {
    let _runtime = runtime().enter();
    fut.now_or_never()
}

/// `value` as a new Python object that the cycle collector does not track. For the objects
/// made per record (`Record`, `DeliveryHandle`, `RecordMetadata`): pyo3 makes every class a
/// GC type, and a million tracked objects alive (a list of handles, of records) made the
/// collector's passes over them cost more than everything else (1.5 µs a handle, measured).
/// They hold only bytes, strings and a headers dict, so they take part in no cycle the program
/// does not build itself (a record put into its own headers would then be leaked, not freed).
pub(crate) fn untracked<T: pyo3::PyClass>(
    py: Python<'_>,
    value: impl Into<pyo3::PyClassInitializer<T>>,
) -> PyResult<Py<T>> {
    let obj = Py::new(py, value)?;
    // SAFETY: `obj` is a live object of a GC type (every pyclass is); untracking it only
    // removes it from the collector's lists, and pyo3's dealloc untracks again harmlessly.
    unsafe { pyo3::ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) };
    Ok(obj)
}

/// The key partitioner every Weir client shares (murmur2, as Kafka's).
#[pyfunction]
fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    weir::partition_for_key(key, partitions)
}

#[pymodule]
fn _weir(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let drain = wrap_pyfunction!(drain_at_exit, m)?;
    m.py()
        .import("atexit")?
        .call_method1("register", (drain,))?;
    m.add_class::<blocking::Client>()?;
    m.add_class::<blocking::Producer>()?;
    m.add_class::<blocking::Consumer>()?;
    m.add_class::<aio::AsyncClient>()?;
    m.add_class::<aio::AsyncProducer>()?;
    m.add_class::<aio::AsyncConsumer>()?;
    m.add_class::<record::Record>()?;
    m.add_class::<delivery::DeliveryHandle>()?;
    m.add_class::<delivery::RecordMetadata>()?;
    info::register(m)?;
    m.add_function(wrap_pyfunction!(partition_for_key, m)?)?;
    errors::register(m)
}
