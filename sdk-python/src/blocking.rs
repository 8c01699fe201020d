//! The blocking API: `weir.Client`, `weir.Producer`, `weir.Consumer`.
//!
//! Every call that waits runs its future on the shared runtime with the GIL released, waking
//! every [`SIGNAL_CHECK`] to let a pending signal (Ctrl-C) raise in the calling thread. Calls
//! whose answer is already there (a buffered record, room in the producer's buffer) are polled
//! once without releasing the GIL ([`block_on`]): that is the hot path, and it stays in Rust.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::delivery::{self, DeliveryHandle, SharedCallbacks};
use crate::errors::{WeirError, to_py};
use crate::options::{self, PluginArg};
use crate::record::Record;
use crate::{poll_now, runtime};

/// How often a blocking call looks for pending signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Runs `fut` to completion: an answer already there is taken at once, without releasing
/// the GIL (the hot path: room in the producer's buffer, a buffered record); otherwise it
/// runs on the shared runtime with the GIL released, checking for signals every
/// [`SIGNAL_CHECK`] (a `KeyboardInterrupt` drops the future).
pub(crate) fn block_on<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let mut fut = pin!(fut);
    if let Some(out) = poll_now(fut.as_mut()) {
        return Ok(out);
    }
    loop {
        let step = py.detach(|| {
            runtime().block_on(async { tokio::time::timeout(SIGNAL_CHECK, &mut fut).await.ok() })
        });
        match step {
            Some(out) => return Ok(out),
            None => py.check_signals()?,
        }
    }
}

/// A connection to a Weir broker.
#[pyclass(module = "weir._weir", frozen)]
pub(crate) struct Client {
    pub(crate) inner: weir::Client,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (addr = weir::DEFAULT_BROKER.to_string(), *, tls_ca = None, tls_cert = None, tls_key = None, user = None, password = None, token = None), text_signature = "(addr='127.0.0.1:9292', *, tls_ca=None, tls_cert=None, tls_key=None, user=None, password=None, token=None)")]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn new(
        py: Python<'_>,
        addr: String,
        tls_ca: Option<PathBuf>,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
        user: Option<String>,
        password: Option<String>,
        token: Option<String>,
    ) -> PyResult<Self> {
        let options = options::client_options(tls_ca, tls_cert, tls_key, user, password, token)?;
        let inner = block_on(py, weir::Client::connect_with(addr, options))?.map_err(to_py)?;
        Ok(Self { inner })
    }

    /// The broker address this client sends admin requests to (another one once the first
    /// stops answering).
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
    ) -> PyResult<Producer> {
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
        let _guard = runtime().enter();
        Ok(Producer {
            inner: Some(self.inner.producer(config)),
            on_delivery,
            callbacks: SharedCallbacks::default(),
        })
    }

    /// Records of `topic`, as an iterator. `start`: "earliest" (default), "latest", an offset or
    /// a datetime. `group`: read as a member of that consumer group. `plugins`: `[(name,
    /// params or None), ...]` applied by the broker. `idle_timeout_ms`: stop iterating after
    /// that long with nothing new (None: follow forever). `partitions`: read only these.
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
    ) -> PyResult<Consumer> {
        let config = options::ConsumerArgs {
            group,
            start,
            plugins,
            partitions,
            auto_commit,
            session_timeout_ms,
        }
        .config(py)?;
        let client = &self.inner;
        let group = config.group.clone();
        let inner = block_on(py, client.consumer(&topic, config))?.map_err(to_py)?;
        Ok(Consumer {
            inner: Mutex::new(Some(inner)),
            failed: Mutex::new(None),
            idle_timeout: idle_timeout_ms.map(Duration::from_millis),
            client: client.clone(),
            topic,
            group,
        })
    }
}

/// A batching producer (a context manager: leaving the block flushes and closes it).
#[pyclass(module = "weir._weir")]
pub(crate) struct Producer {
    /// `None` once closed.
    inner: Option<weir::Producer>,
    /// Called for every record sent without its own `on_delivery`.
    on_delivery: Option<Py<PyAny>>,
    callbacks: SharedCallbacks,
}

impl Producer {
    fn get(&self) -> PyResult<&weir::Producer> {
        self.inner
            .as_ref()
            .ok_or_else(|| WeirError::new_err("the producer is closed"))
    }
}

#[pymethods]
impl Producer {
    /// Buffers one record and returns its `DeliveryHandle`; returns at once unless the buffer
    /// is full. `on_delivery(err, meta)` (else the producer's) runs in a later `poll()`,
    /// `flush()` or `close()` on this thread. Delivery errors also raise in the next `flush()`.
    #[pyo3(signature = (topic, value, key = None, headers = None, partition = None, timestamp_ms = None, on_delivery = None))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        topic: Bound<'_, PyString>,
        value: Cow<'_, [u8]>,
        key: Option<Cow<'_, [u8]>>,
        headers: Option<&Bound<'_, PyDict>>,
        partition: Option<u32>,
        timestamp_ms: Option<i64>,
        on_delivery: Option<Py<PyAny>>,
    ) -> PyResult<Py<DeliveryHandle>> {
        let record =
            options::producer_record(&topic, value, key, headers, partition, timestamp_ms)?;
        let producer = self.get()?;
        // Almost always ready at once; only a full buffer makes it wait.
        let delivery = block_on(py, producer.enqueue(record))?.map_err(to_py)?;
        let topic = topic.unbind();
        if let Some(callback) =
            on_delivery.or_else(|| self.on_delivery.as_ref().map(|c| c.clone_ref(py)))
        {
            delivery::register(&self.callbacks, &delivery, topic.clone_ref(py), callback);
        }
        crate::untracked(py, DeliveryHandle::new(topic, delivery))
    }

    /// Runs the `on_delivery` callbacks of records acknowledged (or failed) so far, waiting
    /// up to `timeout` seconds for the first one if none is ready; returns how many ran.
    #[pyo3(signature = (timeout = 0.0))]
    fn poll(&self, py: Python<'_>, timeout: f64) -> PyResult<usize> {
        let ran = delivery::serve(py, &self.callbacks)?;
        if ran > 0 || timeout <= 0.0 {
            return Ok(ran);
        }
        let Some(oldest) = delivery::oldest(&self.callbacks) else {
            return Ok(0);
        };
        let limit = options::seconds(timeout)?;
        // Its outcome is served below, error or not.
        let wait = oldest.delivery();
        let _ = block_on(py, async move { tokio::time::timeout(limit, wait).await })?;
        delivery::serve(py, &self.callbacks)
    }

    /// Sends everything buffered, waits for the acknowledgements and runs their callbacks;
    /// raises the first delivery error since the previous flush.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let producer = self.get()?;
        let flushed = block_on(py, producer.flush())?;
        delivery::serve(py, &self.callbacks)?;
        flushed.map_err(to_py)
    }

    /// Flushes (running the callbacks), then refuses further records.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        let closed = match self.inner.take() {
            None => Ok(()),
            Some(p) => block_on(py, p.close())?.map_err(to_py),
        };
        delivery::serve(py, &self.callbacks)?;
        closed
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        _ty: Option<Bound<'_, PyAny>>,
        _value: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}

/// Records of one topic, as an iterator (see `Client.consumer`).
#[pyclass(module = "weir._weir", frozen)]
pub(crate) struct Consumer {
    /// Used by one thread at a time (see [`Consumer::lock`]); `None` once closed.
    inner: Mutex<Option<weir::Consumer>>,
    /// An error met after `poll_batch` had records to return: raised by the next call.
    failed: Mutex<Option<weir::Error>>,
    idle_timeout: Option<Duration>,
    client: weir::Client,
    topic: String,
    group: Option<String>,
}

impl Consumer {
    /// The consumer, for one call. Another thread in the middle of a call gets an error rather
    /// than waiting: it would wait holding the GIL the first one needs to check for signals.
    fn lock(&self) -> PyResult<MutexGuard<'_, Option<weir::Consumer>>> {
        match self.inner.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(WeirError::new_err(
                "the consumer is in use by another thread (use one consumer per thread)",
            )),
        }
    }

    /// `f` of the open consumer; an error once closed.
    fn with_open<T>(&self, f: impl FnOnce(&mut weir::Consumer) -> PyResult<T>) -> PyResult<T> {
        let mut guard = self.lock()?;
        match guard.as_mut() {
            Some(c) => f(c),
            None => Err(WeirError::new_err("the consumer is closed")),
        }
    }

    fn take_failed(&self) -> PyResult<()> {
        match self.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(to_py(e)),
            None => Ok(()),
        }
    }
}

#[pymethods]
impl Consumer {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<Record>>> {
        self.take_failed()?;
        let idle = self.idle_timeout;
        let mut guard = self.lock()?;
        let Some(consumer) = guard.as_mut() else {
            return Ok(None);
        };
        match block_on(py, options::next_within(consumer, idle))? {
            None => Ok(None),
            Some(Ok(r)) => Record::py(py, r).map(Some),
            Some(Err(e)) => Err(to_py(e)),
        }
    }

    /// Up to `max_records` records as a list: waits up to `timeout` seconds (None: the
    /// consumer's `idle_timeout_ms`, else for ever) for the first, then takes those already
    /// fetched. An empty list when none came (or the consumer ended).
    #[pyo3(signature = (max_records = 500, timeout = None))]
    fn poll_batch(
        &self,
        py: Python<'_>,
        max_records: usize,
        timeout: Option<f64>,
    ) -> PyResult<Vec<Py<Record>>> {
        self.take_failed()?;
        let wait = match timeout {
            None => self.idle_timeout,
            Some(secs) => Some(options::seconds(secs)?),
        };
        let mut guard = self.lock()?;
        let Some(consumer) = guard.as_mut() else {
            return Ok(Vec::new());
        };
        let batch = block_on(py, options::next_batch(consumer, max_records, wait))?;
        let records = batch
            .records
            .into_iter()
            .map(|r| Record::py(py, r))
            .collect::<PyResult<Vec<_>>>()?;
        match batch.error {
            Some(e) if records.is_empty() => Err(to_py(e)),
            Some(e) => {
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Ok(records)
            }
            None => Ok(records),
        }
    }

    /// Moves `partition` so the next record read from it is at `offset` (an int), or the first
    /// at or after a time (a datetime); records of it already fetched are dropped.
    fn seek(&self, py: Python<'_>, partition: u32, offset: Bound<'_, PyAny>) -> PyResult<()> {
        let to = options::offset_or_time(&offset)?;
        self.with_open(|c| match to {
            options::OffsetOrTime::Offset(o) => c.seek(partition, o).map_err(to_py),
            options::OffsetOrTime::Time(ms) => {
                block_on(py, c.seek_to_time(partition, ms))?.map_err(to_py)
            }
        })
    }

    /// Stops fetching these partitions (their position is kept) until `resume`.
    fn pause(&self, partitions: Vec<u32>) -> PyResult<()> {
        self.with_open(|c| c.pause(&partitions).map_err(to_py))
    }

    /// Fetches these paused partitions again, from where they were paused.
    fn resume(&self, partitions: Vec<u32>) -> PyResult<()> {
        self.with_open(|c| c.resume(&partitions).map_err(to_py))
    }

    /// The partitions paused now.
    fn paused(&self) -> PyResult<Vec<u32>> {
        self.with_open(|c| Ok(c.paused()))
    }

    /// Per partition, the first offset at or after the time given for it (unix ms or a
    /// datetime), or the log end if there is none: `{partition: offset}`.
    fn offsets_for_times(
        &self,
        py: Python<'_>,
        timestamps: BTreeMap<u32, Bound<'_, PyAny>>,
    ) -> PyResult<BTreeMap<u32, u64>> {
        let queries = options::time_queries(&timestamps)?;
        let admin = self.client.admin();
        let found = block_on(py, admin.list_offsets(&self.topic, &queries))?.map_err(to_py)?;
        Ok(found.into_iter().collect())
    }

    /// The group's committed offsets of this topic, `{partition: offset or None}` (a group
    /// consumer only).
    fn committed(&self, py: Python<'_>) -> PyResult<BTreeMap<u32, Option<u64>>> {
        let group = options::group_of(self.group.as_deref())?;
        let admin = self.client.admin();
        let offsets = block_on(py, admin.committed_offsets(group, &self.topic))?.map_err(to_py)?;
        Ok(offsets.into_iter().collect())
    }

    /// Commits the positions reached, or `offsets` (`{partition: next offset to read}`) when
    /// given (group consumers).
    #[pyo3(signature = (offsets = None))]
    fn commit(&self, py: Python<'_>, offsets: Option<BTreeMap<u32, u64>>) -> PyResult<()> {
        self.with_open(|c| match offsets {
            None => block_on(py, c.commit())?.map_err(to_py),
            Some(o) => block_on(py, c.commit_offsets(o))?.map_err(to_py),
        })
    }

    /// The next offset this consumer yields from `partition` (None if it does not read it).
    fn position(&self, partition: u32) -> PyResult<Option<u64>> {
        Ok(self.lock()?.as_ref().and_then(|c| c.position(partition)))
    }

    /// The partitions this consumer reads now (a group member: its current assignment).
    fn assignment(&self) -> PyResult<Vec<u32>> {
        Ok(self
            .lock()?
            .as_ref()
            .map(|c| c.assignment())
            .unwrap_or_default())
    }

    /// Leaves the group (committing, with auto-commit) and ends the iteration.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.lock()?.take();
        match taken {
            None => Ok(()),
            Some(c) => block_on(py, c.close())?.map_err(to_py),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _ty: Option<Bound<'_, PyAny>>,
        _value: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}
