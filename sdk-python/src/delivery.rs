//! Delivery reports: what `Producer.send` returns (`DeliveryHandle`, resolving to a
//! `RecordMetadata`) and the `on_delivery` callbacks, which run on the caller's thread inside
//! `poll()`, `flush()` and `close()` — never on a runtime thread.
//!
//! A handle is the Rust SDK's `DeliveryFuture` (a reference to its batch's completion slot
//! and an index) plus the topic. Pending callbacks are kept per batch ([`Callbacks`]), so
//! `poll()` checks one slot per batch, not one per record.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyStopIteration, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::aio::Ready;
use crate::errors::to_py;
use crate::{blocking, future_into_py};

/// Where an acknowledged record was stored.
#[pyclass(module = "weir._weir", frozen, get_all)]
pub(crate) struct RecordMetadata {
    topic: Py<PyString>,
    partition: u32,
    offset: u64,
    /// Unix ms: the record's own timestamp, else the broker's at append.
    timestamp: i64,
}

#[pymethods]
impl RecordMetadata {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "RecordMetadata(topic={}, partition={}, offset={}, timestamp={})",
            self.topic
                .bind(py)
                .repr()
                .map_or_else(|_| "?".into(), |r| r.to_string()),
            self.partition,
            self.offset,
            self.timestamp
        )
    }
}

fn metadata(topic: Py<PyString>, d: weir::Delivery) -> RecordMetadata {
    RecordMetadata {
        topic,
        partition: d.partition,
        offset: d.offset,
        timestamp: d.timestamp,
    }
}

/// A sent record's acknowledgement to come: `result(timeout)` waits for it, `await` (in
/// asyncio) too; `done()` says whether it is there.
#[pyclass(module = "weir._weir", frozen)]
pub(crate) struct DeliveryHandle {
    topic: Py<PyString>,
    delivery: weir::DeliveryFuture,
}

impl DeliveryHandle {
    pub(crate) fn new(topic: Py<PyString>, delivery: weir::DeliveryFuture) -> Self {
        Self { topic, delivery }
    }

    /// The outcome, if the broker has answered, as Python sees it.
    fn outcome(&self, py: Python<'_>) -> Option<PyResult<Py<RecordMetadata>>> {
        let topic = self.topic.clone_ref(py);
        self.delivery.try_delivery().map(|r| {
            r.map_err(to_py)
                .and_then(|d| crate::untracked(py, metadata(topic, d)))
        })
    }
}

#[pymethods]
impl DeliveryHandle {
    /// Whether the broker acknowledged the record (or the producer gave up on it).
    fn done(&self) -> bool {
        self.delivery.try_delivery().is_some()
    }

    /// Waits for the acknowledgement (at most `timeout` seconds; None: as long as it takes,
    /// which the producer's `delivery_timeout_ms` bounds) and returns where the record went;
    /// raises the producer's error if it gave up, `TimeoutError` if `timeout` passed first.
    #[pyo3(signature = (timeout = None))]
    fn result(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<RecordMetadata>> {
        if let Some(outcome) = self.outcome(py) {
            return outcome;
        }
        let wait = self.delivery.clone().delivery();
        let delivered = match timeout {
            None => blocking::block_on(py, wait)?,
            Some(secs) => {
                let limit = crate::options::seconds(secs)?;
                blocking::block_on(py, async move { tokio::time::timeout(limit, wait).await })?
                    .map_err(|_| {
                        PyTimeoutError::new_err(format!("no acknowledgement within {secs} s"))
                    })?
            }
        };
        let topic = self.topic.clone_ref(py);
        crate::untracked(py, metadata(topic, delivered.map_err(to_py)?))
    }

    /// In asyncio: `meta = await handle`.
    fn __await__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        match this.outcome(py) {
            // Already acknowledged: a `Ready` is its own iterator.
            Some(outcome) => Ready::awaitable(py, outcome.map(Py::into_any), false),
            None => {
                let topic = this.topic.clone_ref(py);
                let wait = this.delivery.clone().delivery();
                future_into_py(py, async move {
                    let d = wait.await.map_err(to_py)?;
                    Ok(metadata(topic, d))
                })?
                .call_method0("__await__")
            }
        }
    }

    fn __repr__(&self) -> String {
        let state = match self.delivery.try_delivery() {
            None => "pending".to_string(),
            Some(Ok(d)) => format!("partition={}, offset={}", d.partition, d.offset),
            Some(Err(e)) => format!("failed: {e}"),
        };
        format!("DeliveryHandle({state})")
    }
}

/// One record's callback.
struct Pending {
    delivery: weir::DeliveryFuture,
    topic: Py<PyString>,
    callback: Py<PyAny>,
}

/// `on_delivery` callbacks not run yet, grouped by batch (records of one batch are
/// acknowledged together), in send order.
#[derive(Default)]
pub(crate) struct Callbacks {
    batches: VecDeque<Vec<Pending>>,
}

/// A producer's callbacks, shared with the futures that register them.
pub(crate) type SharedCallbacks = Arc<Mutex<Callbacks>>;

fn lock(c: &SharedCallbacks) -> std::sync::MutexGuard<'_, Callbacks> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers `callback` for the record `delivery` stands for.
pub(crate) fn register(
    callbacks: &SharedCallbacks,
    delivery: &weir::DeliveryFuture,
    topic: Py<PyString>,
    callback: Py<PyAny>,
) {
    let pending = Pending {
        delivery: delivery.clone(),
        topic,
        callback,
    };
    let mut c = lock(callbacks);
    match c.batches.back_mut() {
        Some(batch) if batch[0].delivery.same_batch(delivery) => batch.push(pending),
        _ => c.batches.push_back(vec![pending]),
    }
}

/// A future of the oldest pending record's acknowledgement (None when nothing waits).
pub(crate) fn oldest(callbacks: &SharedCallbacks) -> Option<weir::DeliveryFuture> {
    lock(callbacks)
        .batches
        .front()
        .map(|b| b[0].delivery.clone())
}

/// Runs the callbacks of every acknowledged (or failed) record, in send order within a
/// batch: `callback(err, meta)` with `err` None and `meta` a `RecordMetadata`, or `err` the
/// exception and `meta` None. Returns how many ran; an exception a callback raises is raised
/// after the others ran.
pub(crate) fn serve(py: Python<'_>, callbacks: &SharedCallbacks) -> PyResult<usize> {
    let ready: Vec<Vec<Pending>> = {
        let mut c = lock(callbacks);
        let mut ready = Vec::new();
        let mut waiting = VecDeque::with_capacity(c.batches.len());
        for batch in c.batches.drain(..) {
            if batch[0].delivery.try_delivery().is_some() {
                ready.push(batch);
            } else {
                waiting.push_back(batch);
            }
        }
        c.batches = waiting;
        ready
    };
    let mut ran = 0;
    let mut first_error = None;
    for p in ready.into_iter().flatten() {
        let Some(outcome) = p.delivery.try_delivery() else {
            continue;
        };
        let called = match outcome {
            Ok(d) => {
                let meta = crate::untracked(py, metadata(p.topic, d))?;
                p.callback.call1(py, (py.None(), meta))
            }
            Err(e) => {
                let err = to_py(e).into_value(py);
                p.callback.call1(py, (err, py.None()))
            }
        };
        ran += 1;
        if let Err(e) = called
            && first_error.is_none()
        {
            first_error = Some(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(ran),
    }
}

/// An awaitable that awaits `inner` (an asyncio future), then runs the producer's ready
/// callbacks on the event loop's thread before handing over `inner`'s outcome: `await
/// producer.flush()` returns after every report of what it flushed was delivered.
#[pyclass(module = "weir._weir")]
pub(crate) struct ServeAfter {
    /// `inner.__await__()`: the iterator asyncio drives.
    inner: Py<PyAny>,
    callbacks: SharedCallbacks,
}

impl ServeAfter {
    pub(crate) fn awaitable<'py>(
        inner: Bound<'py, PyAny>,
        callbacks: SharedCallbacks,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = inner.py();
        let iter = inner.call_method0("__await__")?.unbind();
        Ok(Bound::new(
            py,
            ServeAfter {
                inner: iter,
                callbacks,
            },
        )?
        .into_any())
    }

    /// `inner` stepped: at its end (a result or an error), the callbacks run first.
    fn after(&self, py: Python<'_>, step: PyResult<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        match step {
            Ok(yielded) => Ok(yielded),
            Err(end) => {
                serve(py, &self.callbacks)?;
                Err(end)
            }
        }
    }
}

#[pymethods]
impl ServeAfter {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let step = self.inner.call_method0(py, "__next__");
        self.after(py, step)
    }

    fn send(&self, py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let step = self.inner.call_method1(py, "send", (value,));
        self.after(py, step)
    }

    /// Cancellation and errors thrown in reach `inner` (so the flush is dropped).
    #[pyo3(signature = (*args))]
    fn throw(&self, py: Python<'_>, args: Bound<'_, pyo3::types::PyTuple>) -> PyResult<Py<PyAny>> {
        let step = self.inner.call_method1(py, "throw", args);
        match step {
            Err(e) if e.is_instance_of::<PyStopIteration>(py) => self.after(py, Err(e)),
            other => other,
        }
    }
}
