//! `weir.aio`: the same API for asyncio. `AsyncClient`, `AsyncProducer` and `AsyncConsumer`
//! (re-exported by python/weir/aio.py as `Client`, `Producer`, `Consumer`).
//!
//! Waiting happens on the shared tokio runtime, never on a thread per call: a call that must
//! wait returns an asyncio future that a runtime task completes (pyo3-async-runtimes; cancelling
//! it drops the Rust future). A call whose answer is already there (a buffered record, room in
//! the producer's buffer) returns a [`Ready`] awaitable instead, with no cross-thread hop; every
//! [`YIELD_EVERY`]th of those still gives the event loop one turn, so a consumer that always
//! has records buffered cannot starve the loop's other tasks.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use pyo3::IntoPyObjectExt;
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::delivery::{self, DeliveryHandle, ServeAfter, SharedCallbacks};
use crate::errors::{WeirError, to_py};
use crate::options::{self, PluginArg};
use crate::record::Record;
use crate::{future_into_py, poll_now, runtime};

/// Answers given at once in a row before one is made to yield to the event loop.
const YIELD_EVERY: u32 = 128;

/// An awaitable whose result is already known: awaiting it returns (or raises) at once, after
/// yielding to the event loop first if asked to (a bare `yield`, as `asyncio.sleep(0)` does).
#[pyclass(module = "weir._weir")]
pub(crate) struct Ready {
    outcome: Option<PyResult<Py<PyAny>>>,
    yield_first: bool,
}

impl Ready {
    pub(crate) fn awaitable<'py>(
        py: Python<'py>,
        outcome: PyResult<Py<PyAny>>,
        yield_first: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ready = Ready {
            outcome: Some(outcome),
            yield_first,
        };
        Ok(Bound::new(py, ready)?.into_any())
    }
}

/// Whether this answer, counted in `turns`, is the one of [`YIELD_EVERY`] that yields.
fn yield_turn(turns: &AtomicU32) -> bool {
    turns.fetch_add(1, Ordering::Relaxed) % YIELD_EVERY == YIELD_EVERY - 1
}

#[pymethods]
impl Ready {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if std::mem::take(&mut self.yield_first) {
            return Ok(py.None());
        }
        match self.outcome.take() {
            Some(Ok(value)) => Err(PyStopIteration::new_err((value,))),
            Some(Err(e)) => Err(e),
            None => Err(PyRuntimeError::new_err("cannot reuse an awaited result")),
        }
    }
}

/// A connection to a Weir broker, for asyncio: `await weir.aio.Client.connect(addr)`.
#[pyclass(module = "weir._weir", name = "AsyncClient", frozen)]
pub(crate) struct AsyncClient {
    pub(crate) inner: weir::Client,
}

#[pymethods]
impl AsyncClient {
    /// Connects (the awaitable raises `Unavailable` if the broker cannot be reached).
    #[staticmethod]
    #[pyo3(signature = (addr = weir::DEFAULT_BROKER.to_string(), *, tls_ca = None, tls_cert = None, tls_key = None, user = None, password = None, token = None), text_signature = "(addr='127.0.0.1:9292', *, tls_ca=None, tls_cert=None, tls_key=None, user=None, password=None, token=None)")]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn connect(
        py: Python<'_>,
        addr: String,
        tls_ca: Option<PathBuf>,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
        user: Option<String>,
        password: Option<String>,
        token: Option<String>,
    ) -> PyResult<Bound<'_, PyAny>> {
        let options = options::client_options(tls_ca, tls_cert, tls_key, user, password, token)?;
        future_into_py(py, async move {
            let inner = weir::Client::connect_with(addr, options)
                .await
                .map_err(to_py)?;
            Ok(AsyncClient { inner })
        })
    }

    /// The broker address this client talks to.
    #[getter]
    fn addr(&self) -> String {
        self.inner.addr()
    }

    /// A batching, idempotent producer (the Rust SDK's); `None` arguments take its defaults.
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    #[pyo3(signature = (linger_ms = 5, batch_bytes = None, buffer_bytes = None, compression = None, delivery_timeout_ms = None, idempotent = true, acks = None, on_delivery = None))]
    fn producer(
        &self,
        linger_ms: u64,
        batch_bytes: Option<usize>,
        buffer_bytes: Option<usize>,
        compression: Option<&str>,
        delivery_timeout_ms: Option<u64>,
        idempotent: bool,
        acks: Option<Bound<'_, PyAny>>,
        on_delivery: Option<Py<PyAny>>,
    ) -> PyResult<AsyncProducer> {
        let config = options::ProducerArgs {
            linger_ms,
            batch_bytes,
            buffer_bytes,
            compression,
            delivery_timeout_ms,
            idempotent,
            acks: acks.map(|a| a.str().map(|s| s.to_string())).transpose()?,
        }
        .config()?;
        // The producer spawns its sender task on the shared runtime.
        let _runtime = runtime().enter();
        Ok(AsyncProducer {
            inner: Mutex::new(Some(self.inner.producer(config))),
            turns: AtomicU32::new(0),
            on_delivery,
            callbacks: SharedCallbacks::default(),
        })
    }

    /// Opens on the first `__anext__`, or when awaited (`c = await client.consumer(...)`);
    /// opening errors such as an unknown topic are raised there.
    #[pyo3(signature = (topic, group = None, start = None, plugins = None, idle_timeout_ms = None, partitions = None, auto_commit = true, session_timeout_ms = None))]
    #[allow(clippy::too_many_arguments)]
    fn consumer(
        &self,
        py: Python<'_>,
        topic: String,
        group: Option<String>,
        start: Option<&Bound<'_, PyAny>>,
        plugins: Option<Vec<PluginArg<'_>>>,
        idle_timeout_ms: Option<u64>,
        partitions: Option<Vec<u32>>,
        auto_commit: bool,
        session_timeout_ms: Option<u64>,
    ) -> PyResult<AsyncConsumer> {
        let config = options::ConsumerArgs {
            group,
            start,
            plugins,
            partitions,
            auto_commit,
            session_timeout_ms,
        }
        .config(py)?;
        let group = config.group.clone();
        let state = ConsumerState::Unopened {
            client: self.inner.clone(),
            topic: topic.clone(),
            config,
        };
        Ok(AsyncConsumer {
            client: self.inner.clone(),
            topic,
            group,
            state: Arc::new(tokio::sync::Mutex::new(state)),
            idle_timeout: idle_timeout_ms.map(Duration::from_millis),
            turns: AtomicU32::new(0),
            failed: Arc::default(),
        })
    }
}

/// A batching producer for asyncio (`async with`: leaving the block flushes and closes it).
#[pyclass(module = "weir._weir", name = "AsyncProducer", frozen)]
pub(crate) struct AsyncProducer {
    /// `None` once closed.
    inner: Mutex<Option<weir::Producer>>,
    /// Sends answered at once (see [`YIELD_EVERY`]).
    turns: AtomicU32,
    /// Called for every record sent without its own `on_delivery`.
    on_delivery: Option<Py<PyAny>>,
    callbacks: SharedCallbacks,
}

impl AsyncProducer {
    fn get(&self) -> PyResult<weir::Producer> {
        lock(&self.inner)
            .clone()
            .ok_or_else(|| WeirError::new_err("the producer is closed"))
    }
}

#[pymethods]
impl AsyncProducer {
    /// Buffers one record; completes at once unless the buffer is full, with the record's
    /// `DeliveryHandle` (`await` it for its `RecordMetadata`). `on_delivery(err, meta)` (else
    /// the producer's) runs in a later `poll()`, `flush()` or `close()` on the event loop's
    /// thread. Delivery errors also raise in the next `flush()`.
    #[pyo3(signature = (topic, value, key = None, headers = None, partition = None, timestamp_ms = None, on_delivery = None))]
    #[allow(clippy::too_many_arguments)]
    fn send<'py>(
        &self,
        py: Python<'py>,
        topic: Bound<'py, PyString>,
        value: Cow<'_, [u8]>,
        key: Option<Cow<'_, [u8]>>,
        headers: Option<&Bound<'_, PyDict>>,
        partition: Option<u32>,
        timestamp_ms: Option<i64>,
        on_delivery: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let record =
            options::producer_record(&topic, value, key, headers, partition, timestamp_ms)?;
        let producer = self.get()?;
        let callback = on_delivery
            .or_else(|| self.on_delivery.as_ref().map(|c| c.clone_ref(py)))
            .map(|c| (topic.clone().unbind(), c));
        let callbacks = Arc::clone(&self.callbacks);
        let topic = topic.unbind();
        let mut enqueue = Box::pin(async move {
            let delivery = producer.enqueue(record).await.map_err(to_py)?;
            if let Some((topic, callback)) = callback {
                delivery::register(&callbacks, &delivery, topic, callback);
            }
            Ok(DeliveryHandle::new(topic, delivery))
        });
        // Almost always ready at once; only a full buffer makes it wait.
        let ready = poll_now(enqueue.as_mut());
        match ready {
            Some(done) => {
                let handle = done.and_then(|h| Ok(crate::untracked(py, h)?.into_any()));
                Ready::awaitable(py, handle, yield_turn(&self.turns))
            }
            None => future_into_py(py, enqueue),
        }
    }

    /// Runs the `on_delivery` callbacks of records acknowledged (or failed) so far; returns
    /// how many ran (at once: `await flush()` to wait for the rest).
    fn poll(&self, py: Python<'_>) -> PyResult<usize> {
        delivery::serve(py, &self.callbacks)
    }

    /// Sends everything buffered, waits for the acknowledgements and runs their callbacks;
    /// raises the first delivery error since the previous flush.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let producer = self.get()?;
        let flushed = future_into_py(py, async move { producer.flush().await.map_err(to_py) })?;
        ServeAfter::awaitable(flushed, Arc::clone(&self.callbacks))
    }

    /// Flushes (running the callbacks), then refuses further records.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let taken = lock(&self.inner).take();
        let closed = future_into_py(py, async move {
            match taken {
                None => Ok(()),
                Some(p) => p.close().await.map_err(to_py),
            }
        })?;
        ServeAfter::awaitable(closed, Arc::clone(&self.callbacks))
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        Ready::awaitable(py, Ok(slf.clone().into_any().unbind()), false)
    }

    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _ty: Option<Bound<'py, PyAny>>,
        _value: Option<Bound<'py, PyAny>>,
        _tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.close(py)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where an [`AsyncConsumer`] is in its life.
enum ConsumerState {
    /// Not opened yet: opening (joining a group, resolving the start) awaits the broker.
    Unopened {
        client: weir::Client,
        topic: String,
        config: weir::ConsumerConfig,
    },
    Open(weir::Consumer),
    Closed,
}

impl ConsumerState {
    /// The consumer, opened if it was not yet; `None` once closed (or if opening failed).
    async fn open(&mut self) -> PyResult<Option<&mut weir::Consumer>> {
        if let ConsumerState::Unopened { .. } = self {
            let ConsumerState::Unopened {
                client,
                topic,
                config,
            } = std::mem::replace(self, ConsumerState::Closed)
            else {
                unreachable!("matched just above");
            };
            *self = ConsumerState::Open(client.consumer(&topic, config).await.map_err(to_py)?);
        }
        match self {
            ConsumerState::Open(c) => Ok(Some(c)),
            _ => Ok(None),
        }
    }
}

/// Records of one topic, as an async iterator (see `AsyncClient.consumer`).
#[pyclass(module = "weir._weir", name = "AsyncConsumer", frozen)]
pub(crate) struct AsyncConsumer {
    client: weir::Client,
    topic: String,
    group: Option<String>,
    /// Held by one call at a time, across its awaits.
    state: Arc<tokio::sync::Mutex<ConsumerState>>,
    idle_timeout: Option<Duration>,
    /// Records answered at once (see [`YIELD_EVERY`]).
    turns: AtomicU32,
    /// An error met after `poll_batch` had records to return: raised by the next call.
    failed: Arc<Mutex<Option<weir::Error>>>,
}

impl AsyncConsumer {
    /// `f` of the open consumer (`None` if not open). Fails while a call holds it: ask
    /// between records.
    fn with_open<T>(&self, f: impl FnOnce(&mut weir::Consumer) -> T) -> PyResult<Option<T>> {
        let mut state = self
            .state
            .try_lock()
            .map_err(|_| WeirError::new_err("the consumer is busy: ask between records"))?;
        Ok(match &mut *state {
            ConsumerState::Open(c) => Some(f(c)),
            _ => None,
        })
    }

    /// `f` of the open consumer, for calls that change it: an error before it opened
    /// (`await client.consumer(...)` opens it) and once closed.
    fn change<T>(&self, f: impl FnOnce(&mut weir::Consumer) -> weir::Result<T>) -> PyResult<T> {
        match self.with_open(f)? {
            Some(done) => done.map_err(to_py),
            None => Err(WeirError::new_err(
                "the consumer is not open (await client.consumer(...) opens it) or is closed",
            )),
        }
    }
}

/// `__anext__`'s answer for what the consumer yielded.
fn next_outcome(
    py: Python<'_>,
    polled: Option<weir::Result<weir::ConsumerRecord>>,
) -> PyResult<Py<Record>> {
    match polled {
        // The stream ended, or idle_timeout passed with nothing new.
        None => Err(PyStopAsyncIteration::new_err(())),
        Some(Ok(r)) => Record::py(py, r),
        Some(Err(e)) => Err(to_py(e)),
    }
}

#[pymethods]
impl AsyncConsumer {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// `await client.consumer(...)` opens the consumer now (joins its group, resolves the
    /// start, raises opening errors here) and returns it; `async for` alone opens it lazily.
    fn __await__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let state = slf.get().state.clone();
        let this = slf.clone().unbind();
        let opened = future_into_py(py, async move {
            state.lock().await.open().await?;
            Ok(this)
        })?;
        opened.call_method0("__await__")
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(e) = lock(&self.failed).take() {
            return Ready::awaitable(py, Err(to_py(e)), false);
        }
        if let Ok(mut state) = self.state.try_lock()
            && let ConsumerState::Open(consumer) = &mut *state
        {
            let ready = poll_now(consumer.next());
            if let Some(polled) = ready {
                let outcome = next_outcome(py, polled).and_then(|r| r.into_py_any(py));
                return Ready::awaitable(py, outcome, yield_turn(&self.turns));
            }
        }
        let state = self.state.clone();
        let idle = self.idle_timeout;
        future_into_py(py, async move {
            let mut state = state.lock().await;
            let polled = match state.open().await? {
                None => None,
                Some(consumer) => options::next_within(consumer, idle).await,
            };
            Python::attach(|py| next_outcome(py, polled))
        })
    }

    /// Up to `max_records` records as a list: waits up to `timeout` seconds (None: the
    /// consumer's `idle_timeout_ms`, else for ever) for the first, then takes those already
    /// fetched. An empty list when none came (or the consumer ended).
    #[pyo3(signature = (max_records = 500, timeout = None))]
    fn poll_batch<'py>(
        &self,
        py: Python<'py>,
        max_records: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let wait = match timeout {
            None => self.idle_timeout,
            Some(secs) => Some(options::seconds(secs)?),
        };
        let state = self.state.clone();
        let failed = Arc::clone(&self.failed);
        future_into_py(py, async move {
            if let Some(e) = lock(&failed).take() {
                return Err(to_py(e));
            }
            let mut state = state.lock().await;
            let batch = match state.open().await? {
                None => return Ok(Vec::new()),
                Some(consumer) => options::next_batch(consumer, max_records, wait).await,
            };
            match batch.error {
                Some(e) if batch.records.is_empty() => return Err(to_py(e)),
                // Raised by the next call: the records go out first.
                Some(e) => *lock(&failed) = Some(e),
                None => {}
            }
            Python::attach(|py| {
                batch
                    .records
                    .into_iter()
                    .map(|r| Record::py(py, r))
                    .collect::<PyResult<Vec<_>>>()
            })
        })
    }

    /// Moves `partition` so the next record read from it is at `offset` (an int), or the first
    /// at or after a time (a datetime).
    fn seek<'py>(
        &self,
        py: Python<'py>,
        partition: u32,
        offset: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let to = options::offset_or_time(&offset)?;
        let state = self.state.clone();
        future_into_py(py, async move {
            let mut state = state.lock().await;
            let Some(c) = state.open().await? else {
                return Err(WeirError::new_err("the consumer is closed"));
            };
            match to {
                options::OffsetOrTime::Offset(o) => c.seek(partition, o),
                options::OffsetOrTime::Time(ms) => c.seek_to_time(partition, ms).await,
            }
            .map_err(to_py)
        })
    }

    /// Stops fetching these partitions (their position is kept) until `resume`.
    fn pause(&self, partitions: Vec<u32>) -> PyResult<()> {
        self.change(|c| c.pause(&partitions))
    }

    /// Fetches these paused partitions again, from where they were paused.
    fn resume(&self, partitions: Vec<u32>) -> PyResult<()> {
        self.change(|c| c.resume(&partitions))
    }

    /// The partitions paused now.
    fn paused(&self) -> PyResult<Vec<u32>> {
        Ok(self.with_open(|c| c.paused())?.unwrap_or_default())
    }

    /// Per partition, the first offset at or after the time given for it (unix ms or a
    /// datetime), or the log end if there is none: `{partition: offset}`.
    fn offsets_for_times<'py>(
        &self,
        py: Python<'py>,
        timestamps: BTreeMap<u32, Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let queries = options::time_queries(&timestamps)?;
        let admin = self.client.admin();
        let topic = self.topic.clone();
        future_into_py(py, async move {
            let found = admin.list_offsets(&topic, &queries).await.map_err(to_py)?;
            Ok(found.into_iter().collect::<BTreeMap<u32, u64>>())
        })
    }

    /// The group's committed offsets of this topic, `{partition: offset or None}` (a group
    /// consumer only).
    fn committed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let group = options::group_of(self.group.as_deref())?.to_string();
        let admin = self.client.admin();
        let topic = self.topic.clone();
        future_into_py(py, async move {
            let offsets = admin
                .committed_offsets(&group, &topic)
                .await
                .map_err(to_py)?;
            Ok(offsets.into_iter().collect::<BTreeMap<u32, Option<u64>>>())
        })
    }

    /// Commits the positions reached, or `offsets` (`{partition: next offset to read}`) when
    /// given (group consumers).
    #[pyo3(signature = (offsets = None))]
    fn commit<'py>(
        &self,
        py: Python<'py>,
        offsets: Option<BTreeMap<u32, u64>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state.clone();
        future_into_py(py, async move {
            match &mut *state.lock().await {
                ConsumerState::Open(c) => match offsets {
                    None => c.commit().await,
                    Some(o) => c.commit_offsets(o).await,
                }
                .map_err(to_py),
                // Nothing read yet: nothing to commit.
                ConsumerState::Unopened { .. } => Ok(()),
                ConsumerState::Closed => Err(WeirError::new_err("the consumer is closed")),
            }
        })
    }

    /// The next offset this consumer yields from `partition` (None if it does not read it).
    fn position(&self, partition: u32) -> PyResult<Option<u64>> {
        Ok(self.with_open(|c| c.position(partition))?.flatten())
    }

    /// The partitions this consumer reads now (a group member: its current assignment).
    fn assignment(&self) -> PyResult<Vec<u32>> {
        Ok(self.with_open(|c| c.assignment())?.unwrap_or_default())
    }

    /// Leaves the group (committing, with auto-commit) and ends the iteration.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state.clone();
        future_into_py(py, async move {
            let previous = std::mem::replace(&mut *state.lock().await, ConsumerState::Closed);
            match previous {
                ConsumerState::Open(c) => c.close().await.map_err(to_py),
                _ => Ok(()),
            }
        })
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        Ready::awaitable(py, Ok(slf.clone().into_any().unbind()), false)
    }

    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _ty: Option<Bound<'py, PyAny>>,
        _value: Option<Bound<'py, PyAny>>,
        _tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.close(py)
    }
}
