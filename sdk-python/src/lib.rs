//! `weir._weir`: the Python SDK's native core, a thin layer over the Rust SDK (crate `weir`).
//!
//! Every network call runs on one shared tokio runtime; blocking calls release the GIL while
//! they wait and wake up every [`SIGNAL_CHECK`] to let Ctrl-C (a pending Python signal) through.
//! The pure-Python package `weir` (python/weir) re-exports these classes and adds `weir.aio`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// How often a blocking call looks for pending signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);
/// Worker threads of the shared runtime (network I/O and batching, not Python code).
const RUNTIME_THREADS: usize = 2;

create_exception!(weir, WeirError, PyException, "Base class of every error the SDK raises.");
create_exception!(weir, TopicNotFound, WeirError, "The topic does not exist.");
create_exception!(weir, TopicExists, WeirError, "A topic of that name already exists.");
create_exception!(weir, InvalidArgument, WeirError, "The request broke a rule or a limit.");
create_exception!(weir, OffsetOutOfRange, WeirError, "The offset asked for is not kept.");
create_exception!(weir, Unavailable, WeirError, "The broker cannot be reached: retry later.");
create_exception!(weir, PluginError, WeirError, "A plugin is missing, exists, or failed.");
create_exception!(weir, GroupError, WeirError, "A consumer-group operation was refused.");

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

/// The Python exception for a Rust SDK error (the broker's message kept).
fn to_py(e: weir::Error) -> PyErr {
    use weir::Error as E;
    let msg = e.to_string();
    match e {
        E::TopicNotFound(_) | E::PartitionNotFound(_) => TopicNotFound::new_err(msg),
        E::TopicExists(_) => TopicExists::new_err(msg),
        E::InvalidArgument { .. } => InvalidArgument::new_err(msg),
        E::OffsetOutOfRange { .. } => OffsetOutOfRange::new_err(msg),
        E::Unavailable(_) | E::Connect { .. } | E::Timeout(_) => Unavailable::new_err(msg),
        E::PluginExists(_) | E::PluginNotFound(_) | E::PluginFailed(_) | E::PluginInUse(_) => {
            PluginError::new_err(msg)
        }
        E::GroupNotFound(_) | E::Fenced(_) | E::GroupNotEmpty(_) => GroupError::new_err(msg),
        _ => WeirError::new_err(msg),
    }
}

/// Runs `fut` to completion on the shared runtime with the GIL released, checking for
/// signals every [`SIGNAL_CHECK`] (a `KeyboardInterrupt` drops the future).
fn block_on<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    let mut fut = std::pin::pin!(fut);
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

/// A connection to a Weir broker (or a cluster: a comma-separated bootstrap list).
#[pyclass(module = "weir._weir", frozen)]
struct Client {
    inner: weir::Client,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (addr = weir::DEFAULT_BROKER.to_string()))]
    fn new(py: Python<'_>, addr: String) -> PyResult<Self> {
        let inner = block_on(py, weir::Client::connect(addr))?.map_err(to_py)?;
        Ok(Self { inner })
    }

    /// The address this client talks to.
    #[getter]
    fn addr(&self) -> String {
        self.inner.addr().to_string()
    }

    /// Creates a topic; `retention_ms=-1` keeps records forever.
    #[pyo3(signature = (name, partitions = 1, retention_ms = None, retention_bytes = None))]
    fn create_topic(
        &self,
        py: Python<'_>,
        name: String,
        partitions: u32,
        retention_ms: Option<i64>,
        retention_bytes: Option<i64>,
    ) -> PyResult<()> {
        let mut t = weir::NewTopic::new(name, partitions);
        if let Some(ms) = retention_ms {
            t = t.retention_ms(ms);
        }
        if let Some(b) = retention_bytes {
            t = t.retention_bytes(b);
        }
        let admin = self.inner.admin();
        block_on(py, async move { admin.create_topic(t).await })?
            .map(drop)
            .map_err(to_py)
    }

    /// Names of all topics.
    fn list_topics(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let admin = self.inner.admin();
        let topics = block_on(py, async move { admin.list_topics().await })?.map_err(to_py)?;
        Ok(topics.into_iter().map(|t| t.name).collect())
    }

    /// Deletes a topic and its records.
    fn delete_topic(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let admin = self.inner.admin();
        block_on(py, async move { admin.delete_topic(&name).await })?.map_err(to_py)
    }

    /// A batching producer: `send` buffers, `flush` waits for the broker's acknowledgements.
    #[pyo3(signature = (linger_ms = 5, batch_bytes = None, compression = None))]
    fn producer(
        &self,
        linger_ms: u64,
        batch_bytes: Option<usize>,
        compression: Option<&str>,
    ) -> PyResult<Producer> {
        let mut config = weir::ProducerConfig {
            linger: Duration::from_millis(linger_ms),
            ..weir::ProducerConfig::default()
        };
        if let Some(b) = batch_bytes {
            config.batch_bytes = b;
        }
        if let Some(c) = compression {
            config.compression = c
                .parse()
                .map_err(|e: String| InvalidArgument::new_err(e))?;
        }
        let _guard = runtime().enter();
        Ok(Producer {
            inner: Some(self.inner.producer(config)),
        })
    }

    /// Records of `topic`, as an iterator. `start`: "earliest", "latest", an offset (int) or
    /// a `datetime`. `group`: read as a member of that consumer group (committed offsets).
    /// `plugins`: `[(name, params_dict_or_None), ...]` applied by the broker. `idle_timeout_ms`:
    /// stop iterating after that long with nothing new (None: follow forever).
    #[pyo3(signature = (topic, group = None, start = None, plugins = None, idle_timeout_ms = None, partitions = None))]
    #[allow(clippy::too_many_arguments)]
    fn consumer(
        &self,
        py: Python<'_>,
        topic: String,
        group: Option<String>,
        start: Option<&Bound<'_, PyAny>>,
        plugins: Option<Vec<(String, Option<Bound<'_, PyAny>>)>>,
        idle_timeout_ms: Option<u64>,
        partitions: Option<Vec<u32>>,
    ) -> PyResult<Consumer> {
        let mut config = weir::ConsumerConfig::default().start(start_from(start)?);
        if let Some(g) = group {
            config = config.group(g);
        }
        if let Some(p) = partitions {
            config = config.partitions(p);
        }
        for (name, params) in plugins.unwrap_or_default() {
            let params = match params {
                None => None,
                Some(p) if p.is_none() => None,
                Some(p) => Some(json_dumps(py, &p)?),
            };
            config = config.plugin(name, params.as_deref());
        }
        let client = self.inner.clone();
        let inner = block_on(py, async move { client.consumer(&topic, config).await })?
            .map_err(to_py)?;
        Ok(Consumer {
            inner: Mutex::new(Some(inner)),
            idle_timeout: idle_timeout_ms.map(Duration::from_millis),
        })
    }
}

fn json_dumps(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<String> {
    py.import("json")?.call_method1("dumps", (v,))?.extract()
}

fn start_from(start: Option<&Bound<'_, PyAny>>) -> PyResult<weir::StartFrom> {
    let Some(s) = start else {
        return Ok(weir::StartFrom::Earliest);
    };
    if let Ok(name) = s.extract::<String>() {
        return match name.as_str() {
            "earliest" => Ok(weir::StartFrom::Earliest),
            "latest" => Ok(weir::StartFrom::Latest),
            other => Err(InvalidArgument::new_err(format!(
                "start must be \"earliest\", \"latest\", an offset or a datetime, not {other:?}"
            ))),
        };
    }
    if let Ok(offset) = s.extract::<u64>() {
        return Ok(weir::StartFrom::Offset(offset));
    }
    if s.hasattr("timestamp")? {
        let secs: f64 = s.call_method0("timestamp")?.extract()?;
        return Ok(weir::StartFrom::Timestamp((secs * 1000.0) as i64));
    }
    Err(InvalidArgument::new_err(
        "start must be \"earliest\", \"latest\", an offset or a datetime",
    ))
}

/// A batching producer (use it as a context manager: leaving the block flushes).
#[pyclass(module = "weir._weir")]
struct Producer {
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
    /// Buffers one record (returns at once unless the buffer is full). Delivery errors are
    /// raised by the next `flush()`.
    #[pyo3(signature = (topic, value, key = None, headers = None, partition = None, timestamp_ms = None))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        topic: String,
        value: Vec<u8>,
        key: Option<Vec<u8>>,
        headers: Option<HashMap<String, Vec<u8>>>,
        partition: Option<u32>,
        timestamp_ms: Option<i64>,
    ) -> PyResult<()> {
        let mut r = weir::ProducerRecord::new(topic, value);
        if let Some(k) = key {
            r = r.key(k);
        }
        for (k, v) in headers.unwrap_or_default() {
            r = r.header(k, v);
        }
        if let Some(p) = partition {
            r = r.partition(p);
        }
        if let Some(t) = timestamp_ms {
            r = r.timestamp(t);
        }
        let producer = self.get()?;
        // Almost always ready at once: poll without leaving Python; wait only when full.
        let enqueued = match producer.enqueue(r.clone()).now_or_never() {
            Some(done) => done,
            None => {
                let p = producer.clone();
                block_on(py, async move { p.enqueue(r).await })?
            }
        };
        enqueued.map(drop).map_err(to_py)
    }

    /// Sends everything buffered and waits for the acknowledgements; raises the first delivery
    /// error since the previous flush.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let p = self.get()?.clone();
        block_on(py, async move { p.flush().await })?.map_err(to_py)
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

/// One consumed record.
#[pyclass(module = "weir._weir", frozen, get_all)]
struct Record {
    topic: String,
    partition: u32,
    offset: u64,
    /// Unix ms.
    timestamp: i64,
    key: Option<Py<PyBytes>>,
    value: Py<PyBytes>,
    headers: Py<PyDict>,
}

#[pymethods]
impl Record {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Record(topic={:?}, partition={}, offset={}, timestamp={}, key={}, value={})",
            self.topic,
            self.partition,
            self.offset,
            self.timestamp,
            self.key
                .as_ref()
                .map_or("None".to_string(), |k| k.bind(py).to_string()),
            self.value.bind(py),
        )
    }
}

fn record(py: Python<'_>, r: weir::ConsumerRecord) -> PyResult<Record> {
    let headers = PyDict::new(py);
    for h in &r.headers {
        headers.set_item(&h.key, PyBytes::new(py, &h.value))?;
    }
    Ok(Record {
        topic: r.topic.to_string(),
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key.map(|k| PyBytes::new(py, &k).unbind()),
        value: PyBytes::new(py, &r.value).unbind(),
        headers: headers.unbind(),
    })
}

/// Records of one topic, as an iterator (see `Client.consumer`).
#[pyclass(module = "weir._weir", frozen)]
struct Consumer {
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
        // A buffered record needs no waiting (and no GIL release).
        let polled = match consumer.next().now_or_never() {
            Some(r) => Some(r),
            None => {
                let deadline = idle.map(|d| Instant::now() + d);
                block_on(py, async {
                    match deadline {
                        None => Some(consumer.next().await),
                        Some(d) => tokio::time::timeout_at(d.into(), consumer.next()).await.ok(),
                    }
                })?
            }
        };
        match polled {
            // Idle for idle_timeout: the iteration ends.
            None | Some(None) => Ok(None),
            Some(Some(Ok(r))) => record(py, r).map(Some),
            Some(Some(Err(e))) => Err(to_py(e)),
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

    /// Next offset this consumer will yield from `partition` (None if it does not read it).
    fn position(&self, partition: u32) -> PyResult<Option<u64>> {
        Ok(self.lock()?.as_ref().and_then(|c| c.position(partition)))
    }

    /// Leaves the group (committing, with auto-commit) and ends the stream.
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

/// The key partitioner every Weir client shares (murmur2, as Kafka's).
#[pyfunction]
fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    weir::partition_for_key(key, partitions)
}

#[pymodule]
fn _weir(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Client>()?;
    m.add_class::<Producer>()?;
    m.add_class::<Consumer>()?;
    m.add_class::<Record>()?;
    m.add_function(wrap_pyfunction!(partition_for_key, m)?)?;
    m.add("WeirError", py.get_type::<WeirError>())?;
    m.add("TopicNotFound", py.get_type::<TopicNotFound>())?;
    m.add("TopicExists", py.get_type::<TopicExists>())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("OffsetOutOfRange", py.get_type::<OffsetOutOfRange>())?;
    m.add("Unavailable", py.get_type::<Unavailable>())?;
    m.add("PluginError", py.get_type::<PluginError>())?;
    m.add("GroupError", py.get_type::<GroupError>())?;
    Ok(())
}
