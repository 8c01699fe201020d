//! The blocking API: `weir.Client`, `weir.Producer`, `weir.Consumer`.
//!
//! Every call that waits runs its future on the shared runtime with the GIL released, waking
//! every [`SIGNAL_CHECK`] to let a pending signal (Ctrl-C) raise in the calling thread. Calls
//! whose answer is already there (a buffered record, room in the producer's buffer) are polled
//! once without releasing the GIL ([`block_on`]): that is the hot path, and it stays in Rust.

use std::borrow::Cow;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

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
fn block_on<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
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
    inner: weir::Client,
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

    /// Creates a topic; `retention_ms=-1` keeps records forever, None the broker default.
    /// In a cluster, `replication_factor` copies of each partition (None: 1), and
    /// `min_insync_replicas` of them in sync for an acks="all" produce (None: 1).
    #[pyo3(signature = (name, partitions = 1, retention_ms = None, retention_bytes = None, replication_factor = None, min_insync_replicas = None))]
    // One parameter per Python keyword argument.
    #[allow(clippy::too_many_arguments)]
    fn create_topic(
        &self,
        py: Python<'_>,
        name: String,
        partitions: u32,
        retention_ms: Option<i64>,
        retention_bytes: Option<i64>,
        replication_factor: Option<u32>,
        min_insync_replicas: Option<u32>,
    ) -> PyResult<()> {
        let topic = options::new_topic(
            name,
            partitions,
            retention_ms,
            retention_bytes,
            replication_factor,
            min_insync_replicas,
        );
        let admin = self.inner.admin();
        block_on(py, admin.create_topic(topic))?
            .map(drop)
            .map_err(to_py)
    }

    /// Names of all topics.
    fn list_topics(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let admin = self.inner.admin();
        let topics = block_on(py, admin.list_topics())?.map_err(to_py)?;
        Ok(topics.into_iter().map(|t| t.name).collect())
    }

    /// Deletes a topic and its records.
    fn delete_topic(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let admin = self.inner.admin();
        block_on(py, admin.delete_topic(&name))?.map_err(to_py)
    }

    /// A batching, idempotent producer (the Rust SDK's); `None` arguments take its defaults.
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    #[pyo3(signature = (linger_ms = 5, batch_bytes = None, buffer_bytes = None, compression = None, delivery_timeout_ms = None, idempotent = true, acks = None))]
    fn producer(
        &self,
        linger_ms: u64,
        batch_bytes: Option<usize>,
        buffer_bytes: Option<usize>,
        compression: Option<&str>,
        delivery_timeout_ms: Option<u64>,
        idempotent: bool,
        acks: Option<Bound<'_, PyAny>>,
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
        let inner = block_on(py, client.consumer(&topic, config))?.map_err(to_py)?;
        Ok(Consumer {
            inner: Mutex::new(Some(inner)),
            idle_timeout: idle_timeout_ms.map(Duration::from_millis),
        })
    }
}

/// A batching producer (a context manager: leaving the block flushes and closes it).
#[pyclass(module = "weir._weir")]
pub(crate) struct Producer {
    /// `None` once closed.
    inner: Option<weir::Producer>,
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
    /// Buffers one record; returns at once unless the buffer is full. Delivery errors raise
    /// in the next `flush()`.
    #[pyo3(signature = (topic, value, key = None, headers = None, partition = None, timestamp_ms = None))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        topic: String,
        value: Cow<'_, [u8]>,
        key: Option<Cow<'_, [u8]>>,
        headers: Option<&Bound<'_, PyDict>>,
        partition: Option<u32>,
        timestamp_ms: Option<i64>,
    ) -> PyResult<()> {
        let record = options::producer_record(topic, value, key, headers, partition, timestamp_ms)?;
        let producer = self.get()?;
        // Almost always ready at once; only a full buffer makes it wait.
        block_on(py, producer.enqueue(record))?
            .map(drop)
            .map_err(to_py)
    }

    /// Sends everything buffered and waits for the acknowledgements; raises the first
    /// delivery error since the previous flush.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let producer = self.get()?;
        block_on(py, producer.flush())?.map_err(to_py)
    }

    /// Flushes, then refuses further records.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        match self.inner.take() {
            None => Ok(()),
            Some(p) => block_on(py, p.close())?.map_err(to_py),
        }
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
    idle_timeout: Option<Duration>,
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
}

#[pymethods]
impl Consumer {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Record>> {
        let idle = self.idle_timeout;
        let mut guard = self.lock()?;
        let Some(consumer) = guard.as_mut() else {
            return Ok(None);
        };
        match block_on(py, options::next_within(consumer, idle))? {
            None => Ok(None),
            Some(Ok(r)) => Record::new(py, r).map(Some),
            Some(Err(e)) => Err(to_py(e)),
        }
    }

    /// Commits the positions reached (group consumers).
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        let mut guard = self.lock()?;
        let Some(consumer) = guard.as_mut() else {
            return Err(WeirError::new_err("the consumer is closed"));
        };
        block_on(py, consumer.commit())?.map_err(to_py)
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
