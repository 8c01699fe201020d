//! Python arguments → the Rust SDK's configs and records, shared by the blocking classes and
//! `weir.aio` so both accept exactly the same arguments.

use std::borrow::Cow;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::errors::InvalidArgument;

/// `Client.create_topic`'s arguments.
pub(crate) fn new_topic(
    name: String,
    partitions: u32,
    retention_ms: Option<i64>,
    retention_bytes: Option<i64>,
    replication_factor: Option<u32>,
    min_insync_replicas: Option<u32>,
) -> weir::NewTopic {
    let mut t = weir::NewTopic::new(name, partitions);
    if let Some(n) = replication_factor {
        t = t.replication_factor(n);
    }
    if let Some(n) = min_insync_replicas {
        t = t.min_insync_replicas(n);
    }
    if let Some(ms) = retention_ms {
        t = t.retention_ms(ms);
    }
    if let Some(b) = retention_bytes {
        t = t.retention_bytes(b);
    }
    t
}

/// `Client.producer`'s arguments (`None`: the Rust SDK's default).
pub(crate) struct ProducerArgs<'a> {
    pub linger_ms: u64,
    pub batch_bytes: Option<usize>,
    pub buffer_bytes: Option<usize>,
    pub compression: Option<&'a str>,
    pub delivery_timeout_ms: Option<u64>,
    pub idempotent: bool,
    /// `"all"` / `-1` or `1` / `"leader"`, as Kafka spells them.
    pub acks: Option<String>,
}

impl ProducerArgs<'_> {
    pub(crate) fn config(self) -> PyResult<weir::ProducerConfig> {
        let defaults = weir::ProducerConfig::default();
        let compression = match self.compression {
            None => defaults.compression,
            Some(c) => c.parse().map_err(|e: String| InvalidArgument::new_err(e))?,
        };
        Ok(weir::ProducerConfig {
            linger: Duration::from_millis(self.linger_ms),
            batch_bytes: self.batch_bytes.unwrap_or(defaults.batch_bytes),
            buffer_bytes: self.buffer_bytes.unwrap_or(defaults.buffer_bytes),
            delivery_timeout: self
                .delivery_timeout_ms
                .map_or(defaults.delivery_timeout, Duration::from_millis),
            compression,
            idempotent: self.idempotent,
            acks: match self.acks {
                None => defaults.acks,
                Some(a) => a.parse().map_err(|e: String| InvalidArgument::new_err(e))?,
            },
            ..defaults
        })
    }
}

/// A plugin of a consume-time chain: its name and JSON-able params (or None).
pub(crate) type PluginArg<'py> = (String, Option<Bound<'py, PyAny>>);

/// `Client.consumer`'s arguments (but the topic and the idle timeout).
pub(crate) struct ConsumerArgs<'a, 'py> {
    pub group: Option<String>,
    pub start: Option<&'a Bound<'py, PyAny>>,
    pub plugins: Option<Vec<PluginArg<'py>>>,
    pub partitions: Option<Vec<u32>>,
    pub auto_commit: bool,
    pub session_timeout_ms: Option<u64>,
}

impl ConsumerArgs<'_, '_> {
    pub(crate) fn config(self, py: Python<'_>) -> PyResult<weir::ConsumerConfig> {
        let mut config = weir::ConsumerConfig::default()
            .start(start_from(self.start)?)
            .auto_commit(self.auto_commit);
        if let Some(g) = self.group {
            config = config.group(g);
        }
        if let Some(p) = self.partitions {
            config = config.partitions(p);
        }
        if let Some(ms) = self.session_timeout_ms {
            config = config.session_timeout(Duration::from_millis(ms));
        }
        for (name, params) in chain(py, self.plugins.unwrap_or_default())? {
            config = config.plugin(name, params.as_deref());
        }
        Ok(config)
    }
}

/// A chain's plugins with their params as JSON text (None without params).
pub(crate) fn chain(
    py: Python<'_>,
    plugins: Vec<PluginArg<'_>>,
) -> PyResult<Vec<(String, Option<String>)>> {
    plugins
        .into_iter()
        .map(|(name, params)| {
            let params = match params {
                Some(p) if !p.is_none() => Some(json_dumps(py, &p)?),
                _ => None,
            };
            Ok((name, params))
        })
        .collect()
}

/// A time given as unix milliseconds (an int) or a `datetime` (its timestamp).
pub(crate) fn unix_ms(t: &Bound<'_, PyAny>) -> PyResult<i64> {
    if let Ok(ms) = t.extract::<i64>() {
        return Ok(ms);
    }
    if t.hasattr("timestamp")? {
        let secs: f64 = t.call_method0("timestamp")?.extract()?;
        return Ok((secs * 1000.0).round() as i64);
    }
    Err(InvalidArgument::new_err(
        "a time is unix milliseconds (an int) or a datetime",
    ))
}

fn json_dumps(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<String> {
    py.import("json")?.call_method1("dumps", (v,))?.extract()
}

/// `start`: "earliest" (the default), "latest", an offset or a `datetime` (its timestamp).
pub(crate) fn start_from(start: Option<&Bound<'_, PyAny>>) -> PyResult<weir::StartFrom> {
    const EXPECTED: &str = "start must be \"earliest\", \"latest\", an offset or a datetime";
    let Some(s) = start.filter(|s| !s.is_none()) else {
        return Ok(weir::StartFrom::Earliest);
    };
    if let Ok(name) = s.extract::<String>() {
        // The CLI's spelling too: an offset or `ts:` and unix milliseconds as text.
        return name
            .parse()
            .map_err(|_| InvalidArgument::new_err(format!("{EXPECTED}, not {name:?}")));
    }
    if let Ok(offset) = s.extract::<u64>() {
        return Ok(weir::StartFrom::Offset(offset));
    }
    if s.hasattr("timestamp")? {
        return Ok(weir::StartFrom::Timestamp(unix_ms(s)?));
    }
    Err(InvalidArgument::new_err(EXPECTED))
}

/// `Producer.send`'s arguments.
pub(crate) fn producer_record(
    topic: &Bound<'_, PyString>,
    value: Cow<'_, [u8]>,
    key: Option<Cow<'_, [u8]>>,
    headers: Option<&Bound<'_, PyDict>>,
    partition: Option<u32>,
    timestamp_ms: Option<i64>,
) -> PyResult<weir::ProducerRecord> {
    let mut r = weir::ProducerRecord::new(topic.to_cow()?.into_owned(), value.into_owned());
    if let Some(k) = key {
        r = r.key(k.into_owned());
    }
    for (k, v) in headers.into_iter().flatten() {
        let value: Cow<'_, [u8]> = v.extract()?;
        r = r.header(k.extract::<String>()?, value.into_owned());
    }
    if let Some(p) = partition {
        r = r.partition(p);
    }
    if let Some(t) = timestamp_ms {
        r = r.timestamp(t);
    }
    Ok(r)
}

/// The consumer's next record, or `None` when the stream ended or nothing new came for
/// `idle` (the iteration's end in both APIs).
pub(crate) async fn next_within(
    consumer: &mut weir::Consumer,
    idle: Option<Duration>,
) -> Option<weir::Result<weir::ConsumerRecord>> {
    // A buffered record: taken without arming the idle timer.
    if let Some(polled) = consumer.next().now_or_never() {
        return polled;
    }
    match idle {
        None => consumer.next().await,
        Some(d) => tokio::time::timeout(d, consumer.next())
            .await
            .ok()
            .flatten(),
    }
}

/// Connection options from the clients' keyword arguments: TLS trusting the CA file
/// `tls_ca`, presenting `tls_cert`/`tls_key` to brokers that ask for a client certificate;
/// `user` and `password`, or `token`, for brokers run with `--auth`.
pub(crate) fn client_options(
    tls_ca: Option<std::path::PathBuf>,
    tls_cert: Option<std::path::PathBuf>,
    tls_key: Option<std::path::PathBuf>,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
) -> PyResult<weir::ClientOptions> {
    let mut options = weir::ClientOptions::from_tls_files(
        tls_ca.as_deref(),
        tls_cert.as_deref(),
        tls_key.as_deref(),
    )
    .map_err(crate::errors::to_py)?;
    options.credentials = credentials(user, password, token)?;
    Ok(options)
}

/// Credentials from the `user`/`password` or `token` keyword arguments (brokers run with
/// `--auth`).
fn credentials(
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
) -> PyResult<Option<weir::Credentials>> {
    let invalid = |m: &str| Err(crate::errors::InvalidArgument::new_err(m.to_string()));
    match (user, password, token) {
        (None, None, None) => Ok(None),
        (Some(u), Some(p), None) => Ok(Some(weir::Credentials::password(u, p))),
        (None, None, Some(t)) => Ok(Some(weir::Credentials::token(t))),
        (Some(_), None, None) | (None, Some(_), None) => invalid("user and password go together"),
        _ => invalid("give user and password, or token, not both"),
    }
}

/// A timeout given in seconds (negative: none at all).
pub(crate) fn seconds(secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs.max(0.0)).map_err(|e| InvalidArgument::new_err(e.to_string()))
}

/// What `poll_batch` took: records, and the error that ended the taking, if any.
pub(crate) struct Batch {
    pub records: Vec<weir::ConsumerRecord>,
    pub error: Option<weir::Error>,
}

/// Up to `max` records: waits up to `wait` (None: for ever) for the first one, then takes
/// only what is already fetched (one wait per batch, not per record).
pub(crate) async fn next_batch(
    consumer: &mut weir::Consumer,
    max: usize,
    wait: Option<Duration>,
) -> Batch {
    let mut batch = Batch {
        records: Vec::with_capacity(max.min(4096)),
        error: None,
    };
    if max == 0 {
        return batch;
    }
    match next_within(consumer, wait).await {
        None => return batch,
        Some(Err(e)) => {
            batch.error = Some(e);
            return batch;
        }
        Some(Ok(r)) => batch.records.push(r),
    }
    while batch.records.len() < max {
        match consumer.next().now_or_never() {
            Some(Some(Ok(r))) => batch.records.push(r),
            Some(Some(Err(e))) => {
                batch.error = Some(e);
                break;
            }
            Some(None) | None => break,
        }
    }
    batch
}

/// Where `seek` moves a partition.
pub(crate) enum OffsetOrTime {
    Offset(u64),
    /// The first record at or after this time (unix ms).
    Time(i64),
}

/// `seek`'s target: an int is an offset, a datetime a time.
pub(crate) fn offset_or_time(v: &Bound<'_, PyAny>) -> PyResult<OffsetOrTime> {
    if let Ok(o) = v.extract::<u64>() {
        return Ok(OffsetOrTime::Offset(o));
    }
    if v.hasattr("timestamp")? {
        return Ok(OffsetOrTime::Time(unix_ms(v)?));
    }
    Err(InvalidArgument::new_err(
        "seek to an offset (an int >= 0) or a datetime",
    ))
}

/// `offsets_for_times`' argument as look-ups.
pub(crate) fn time_queries(
    timestamps: &std::collections::BTreeMap<u32, Bound<'_, PyAny>>,
) -> PyResult<Vec<(u32, weir::OffsetSpec)>> {
    timestamps
        .iter()
        .map(|(&p, t)| Ok((p, weir::OffsetSpec::Timestamp(unix_ms(t)?))))
        .collect()
}

/// The consumer's group, for calls that need one.
pub(crate) fn group_of(group: Option<&str>) -> PyResult<&str> {
    group.ok_or_else(|| {
        InvalidArgument::new_err("committed offsets belong to a group: this consumer has none")
    })
}
