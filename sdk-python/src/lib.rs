//! `weir._weir`: the Python SDK's native core, a thin layer over the Rust SDK (crate `weir`).
//! Protocol, batching, idempotence, partitioner and groups are the Rust SDK's; this crate only
//! converts arguments, results and errors.
//!
//! Layout:
//! - `blocking`: `Client`, `Producer`, `Consumer`; waits release the GIL, Ctrl-C interrupts.
//! - `aio`: `AsyncClient`, `AsyncProducer`, `AsyncConsumer` for asyncio (python/weir/aio.py).
//! - `options`: Python arguments → SDK configs and records, shared by both APIs.
//! - `record`: `Record`, one consumed record.
//! - `errors`: `WeirError` and its subclasses; the one mapping from `weir::Error`.
//!
//! Both APIs run every network call on one shared tokio runtime ([`runtime`]).

mod aio;
mod blocking;
mod errors;
mod options;
mod record;

use std::sync::OnceLock;

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

/// Polls `fut` once, inside the runtime (timers and spawns need it): the answer if it is
/// already there. The hot paths (room in the producer's buffer, a buffered record) end here,
/// without a thread hop or a GIL release.
fn poll_now<F: Future + Unpin>(fut: F) -> Option<F::Output> {
    let _runtime = runtime().enter();
    fut.now_or_never()
}

/// The key partitioner every Weir client shares (murmur2, as Kafka's).
#[pyfunction]
fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    weir::partition_for_key(key, partitions)
}

#[pymodule]
fn _weir(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // weir.aio's futures run on the same runtime (an error means it is set already: fine).
    let _ = pyo3_async_runtimes::tokio::init_with_runtime(runtime());
    m.add_class::<blocking::Client>()?;
    m.add_class::<blocking::Producer>()?;
    m.add_class::<blocking::Consumer>()?;
    m.add_class::<aio::AsyncClient>()?;
    m.add_class::<aio::AsyncProducer>()?;
    m.add_class::<aio::AsyncConsumer>()?;
    m.add_class::<record::Record>()?;
    m.add_function(wrap_pyfunction!(partition_for_key, m)?)?;
    errors::register(m)
}
