//! The batching, idempotent producer.
//!
//! Two halves share one lock-protected *accumulator* of open batches:
//!
//! - [`Producer::send`] / [`Producer::enqueue`] run on the caller's task: they reserve buffer
//!   space (waiting when `buffer_bytes` are taken — backpressure), pick the partition
//!   (explicit, key hash, or the sticky partition for keyless records), and append the record
//!   to that partition's open batch. The returned [`DeliveryFuture`] shares one completion slot
//!   per *batch*, so the per-record cost is a buffer copy and a reference count.
//! - A background *sender* task ([`sender`]) seals batches that lingered `linger`, compresses
//!   them, numbers them (producer id + per-partition sequence) and keeps up to
//!   [`MAX_IN_FLIGHT_BATCHES_PER_PARTITION`] produce requests in flight per partition. Transient
//!   failures are retried with backoff; the broker drops retried batches it already has, so a
//!   retry never duplicates a record and per-partition order is kept.

mod sender;
mod stream;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, TryAcquireError, mpsc, oneshot};
use tokio::time::Instant;
use weir_common::Compression;
use weir_common::batch::{BatchBuilder, TimestampType};
use weir_common::limits::{
    DEFAULT_MAX_RECORD_BYTES, MAX_BATCH_BYTES, MAX_IN_FLIGHT_BATCHES_PER_PARTITION,
    MAX_RECORDS_PER_BATCH,
};
use weir_common::partitioner::partition_for_key;
use weir_common::record::{Header, now_ms, payload_len};

use crate::client::Client;
use crate::error::{Error, Result};

/// Producer settings. Start from `ProducerConfig::default()` and override fields.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How long a batch waits for more records before it is sent (default 5 ms).
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes (default 1 MiB; at most 8 MiB).
    pub batch_bytes: usize,
    /// Most bytes of records buffered or in flight; `send` waits beyond this (default 64 MiB).
    pub buffer_bytes: usize,
    /// Largest record accepted (key + value + headers); checked before sending. Keep it at
    /// or below the broker's `--max-record-bytes`.
    pub max_record_bytes: usize,
    /// How long one produce request may take before it is abandoned and retried (default 30 s).
    pub request_timeout: Duration,
    /// How long a record may take from `send` to acknowledgement, retries included, before it
    /// fails with [`Error::Timeout`] (default 120 s). Covers a broker restart.
    pub delivery_timeout: Duration,
    /// First wait before retrying a failed request; doubles per attempt (default 100 ms).
    pub retry_backoff: Duration,
    /// Longest wait between retries (default 1 s).
    pub retry_backoff_max: Duration,
    /// Produce requests in flight per partition, 1..=10 (default 10; an idempotent producer
    /// also stays within the broker's dedupe window).
    pub max_in_flight: usize,
    /// Compression of each batch (default none).
    pub compression: Compression,
    /// Number batches so the broker drops retried duplicates (default true). Without it a
    /// retry after a lost acknowledgement may write a record twice.
    pub idempotent: bool,
    /// When the broker acknowledges a batch (default [`Acks::All`]).
    pub acks: Acks,
}

/// When a sent record counts as delivered (Kafka's `acks`). Against a standalone broker both
/// mean the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Once every in-sync replica of its partition has it: it survives the loss of the
    /// leader (Kafka's `acks=all`).
    #[default]
    All,
    /// Once the partition leader has it (`acks=1`): faster, but a record acknowledged just
    /// before the leader dies can be lost.
    Leader,
}

impl Acks {
    pub(crate) fn to_proto(self) -> i32 {
        match self {
            Acks::All => weir_proto::v1::Acks::All as i32,
            Acks::Leader => weir_proto::v1::Acks::Leader as i32,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;

    /// `all` (or `-1`) and `1` (or `leader`), as Kafka spells them.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "all" | "-1" => Ok(Acks::All),
            "1" | "leader" => Ok(Acks::Leader),
            other => Err(format!("acks must be all or 1, got {other:?}")),
        }
    }
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            linger: Duration::from_millis(5),
            batch_bytes: 1024 * 1024,
            buffer_bytes: 64 * 1024 * 1024,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            request_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            max_in_flight: MAX_IN_FLIGHT_BATCHES_PER_PARTITION,
            compression: Compression::None,
            idempotent: true,
            acks: Acks::All,
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Topic to write to.
    pub topic: String,
    /// `None`: chosen from the key hash, or spread if there is no key.
    pub partition: Option<u32>,
    /// Optional key; records with equal keys go to the same partition.
    pub key: Option<Bytes>,
    /// The payload.
    pub value: Bytes,
    /// Headers, in order; names need not be unique.
    pub headers: Vec<Header>,
    /// Unix ms; `None`: the broker stamps the time it appends the record.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and nothing else.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key: None,
            value: value.into(),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the key (and so, unless a partition is given, the partition).
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sends to this partition, whatever the key.
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Sets the record's timestamp (create time) instead of the broker's append time.
    pub fn timestamp(mut self, unix_ms: i64) -> Self {
        self.timestamp = Some(unix_ms);
        self
    }

    fn payload_len(&self) -> usize {
        payload_len(self.key.as_deref(), &self.value, &self.headers)
    }

    fn encoded_len(&self) -> usize {
        BatchBuilder::encoded_record_len(
            self.key.as_deref(),
            &self.value,
            header_refs(&self.headers),
        )
    }
}

fn header_refs(headers: &[Header]) -> impl Iterator<Item = (&str, &[u8])> + Clone {
    headers.iter().map(|h| (h.key.as_str(), h.value.as_ref()))
}

/// What the broker answered for one acknowledged batch.
#[derive(Debug, Clone, Copy)]
struct BatchAck {
    partition: u32,
    base_offset: u64,
    /// The broker's timestamp of a batch sent for log-append time (0 for create time).
    log_append_time: i64,
}

/// Completion slot of one batch, shared by the delivery futures of its records.
#[derive(Default)]
struct BatchHandle {
    /// Where the batch went, or why it failed.
    result: OnceLock<Result<BatchAck>>,
    wakers: Mutex<Vec<Waker>>,
}

impl BatchHandle {
    fn complete(&self, result: Result<BatchAck>) {
        let _ = self.result.set(result);
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for w in wakers {
            w.wake();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing in this module panics while holding a lock; tolerate poison anyway.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where an acknowledged record was stored (Kafka's `RecordMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The partition it went to.
    pub partition: u32,
    /// Its offset there.
    pub offset: u64,
    /// Its timestamp (unix ms): the one the record was sent with, else the broker's at
    /// append.
    pub timestamp: i64,
}

/// Resolves to `(partition, offset)` once the broker acknowledged the record, or to the error
/// that made the producer give up on it; [`delivery`](DeliveryFuture::delivery) adds the
/// timestamp. Clones resolve to the same outcome.
#[derive(Clone)]
pub struct DeliveryFuture {
    handle: Arc<BatchHandle>,
    index: u32,
    /// The record's own timestamp, if it was sent with one.
    timestamp: Option<i64>,
}

impl DeliveryFuture {
    /// The outcome if the broker has answered (or the producer gave up), without waiting.
    pub fn try_delivery(&self) -> Option<Result<Delivery>> {
        let index = u64::from(self.index);
        self.handle.result.get().map(|r| {
            r.clone().map(|ack| Delivery {
                partition: ack.partition,
                offset: ack.base_offset + index,
                timestamp: self.timestamp.unwrap_or(ack.log_append_time),
            })
        })
    }

    /// Whether both records travel in one batch, so they are acknowledged together: a
    /// caller tracking many deliveries checks one per batch.
    pub fn same_batch(&self, other: &DeliveryFuture) -> bool {
        Arc::ptr_eq(&self.handle, &other.handle)
    }

    /// The acknowledgement with the record's timestamp.
    pub async fn delivery(self) -> Result<Delivery> {
        std::future::poll_fn(|cx| self.poll_delivery(cx)).await
    }

    fn poll_delivery(&self, cx: &mut Context<'_>) -> Poll<Result<Delivery>> {
        if let Some(r) = self.try_delivery() {
            return Poll::Ready(r);
        }
        let mut wakers = lock(&self.handle.wakers);
        // Completion takes the wakers under this lock: check again now that we hold it.
        if let Some(r) = self.try_delivery() {
            return Poll::Ready(r);
        }
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Future for DeliveryFuture {
    type Output = Result<(u32, u64)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_delivery(cx)
            .map(|r| r.map(|d| (d.partition, d.offset)))
    }
}

/// A batch being filled.
struct OpenBatch {
    id: u64,
    builder: BatchBuilder,
    handle: Arc<BatchHandle>,
    /// Buffer bytes held by its records.
    cost: usize,
    created: Instant,
}

/// A batch closed for appends, on its way to the sender.
struct SealedBatch {
    id: u64,
    topic: Arc<str>,
    partition: u32,
    builder: BatchBuilder,
    handle: Arc<BatchHandle>,
    cost: usize,
    created: Instant,
}

struct TopicBatches {
    name: Arc<str>,
    open: Vec<Option<OpenBatch>>,
    /// Partition that keyless records currently go to (moves on when its batch is sealed).
    sticky: u32,
}

/// Open batches of every topic; shared by the producer handles and the sender.
struct Accumulator {
    topics: Vec<TopicBatches>,
    /// Index into `topics` by name.
    index: HashMap<String, usize>,
    /// The topic appended to last: most producers write to one topic at a time, and comparing
    /// its name is cheaper than hashing it for every record (measured: SipHash was 9% of a
    /// producing client's CPU).
    last: usize,
    next_batch_id: u64,
    closed: bool,
}

/// What the producer handles tell the sender.
enum Event {
    /// A batch was opened; seal it at `deadline` if it is still open then.
    Opened {
        topic: Arc<str>,
        partition: u32,
        id: u64,
        deadline: Instant,
    },
    Sealed(SealedBatch),
    /// Resolve once every batch up to this id is done.
    Flush(u64, oneshot::Sender<Result<()>>),
}

impl Accumulator {
    fn topic_mut(&mut self, name: &str) -> Option<&mut TopicBatches> {
        if self.topics.get(self.last).is_none_or(|t| &*t.name != name) {
            self.last = *self.index.get(name)?;
        }
        self.topics.get_mut(self.last)
    }

    fn seal(
        topic: &mut TopicBatches,
        partition: u32,
        events: &mpsc::UnboundedSender<Event>,
    ) -> bool {
        let Some(open) = topic.open[partition as usize].take() else {
            return false;
        };
        let n = topic.open.len() as u32;
        if partition == topic.sticky {
            topic.sticky = (topic.sticky + 1) % n;
        }
        let _ = events.send(Event::Sealed(SealedBatch {
            id: open.id,
            topic: Arc::clone(&topic.name),
            partition,
            builder: open.builder,
            handle: open.handle,
            cost: open.cost,
            created: open.created,
        }));
        true
    }

    fn seal_all(&mut self, events: &mpsc::UnboundedSender<Event>) {
        for t in &mut self.topics {
            for p in 0..t.open.len() as u32 {
                Self::seal(t, p, events);
            }
        }
    }
}

/// What every clone of a producer shares. Dropping the last clone seals what is buffered and
/// lets the sender finish it.
struct Shared {
    client: Client,
    config: Arc<ProducerConfig>,
    acc: Arc<Mutex<Accumulator>>,
    buffer: Arc<Semaphore>,
    events: mpsc::UnboundedSender<Event>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        lock(&self.acc).seal_all(&self.events);
    }
}

/// A batching producer. Cheap to clone; clones share batches, buffer and connection.
///
/// ```no_run
/// # async fn demo(client: weir::Client) -> weir::Result<()> {
/// use weir::{ProducerConfig, ProducerRecord};
/// let producer = client.producer(ProducerConfig::default());
/// let (partition, offset) = producer.send(ProducerRecord::new("orders", "hi").key("k1")).await?;
/// producer.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

impl Client {
    /// A batching producer (see [`ProducerConfig`]).
    pub fn producer(&self, config: ProducerConfig) -> Producer {
        Producer::new(self.clone(), config)
    }
}

impl Producer {
    pub(crate) fn new(client: Client, mut config: ProducerConfig) -> Self {
        // A batch must stay within what the broker accepts in one piece.
        config.batch_bytes = config.batch_bytes.clamp(1, MAX_BATCH_BYTES / 2);
        config.buffer_bytes = config.buffer_bytes.clamp(1, Semaphore::MAX_PERMITS);
        config.max_in_flight = config
            .max_in_flight
            .clamp(1, MAX_IN_FLIGHT_BATCHES_PER_PARTITION);
        let config = Arc::new(config);
        let acc = Arc::new(Mutex::new(Accumulator {
            topics: Vec::new(),
            index: HashMap::new(),
            last: 0,
            next_batch_id: 0,
            closed: false,
        }));
        let buffer = Arc::new(Semaphore::new(config.buffer_bytes));
        let (events, rx) = mpsc::unbounded_channel();
        tokio::spawn(
            sender::Sender::new(
                client.clone(),
                Arc::clone(&config),
                Arc::clone(&acc),
                Arc::clone(&buffer),
                events.clone().downgrade(),
            )
            .run(rx),
        );
        Self {
            shared: Arc::new(Shared {
                client,
                config,
                acc,
                buffer,
                events,
            }),
        }
    }

    /// Sends a record and waits for the broker's acknowledgement: `(partition, offset)`.
    ///
    /// One record at a time waits up to `linger` for company; to stream many records, call
    /// [`enqueue`](Producer::enqueue) and await the futures later (or just [`flush`]).
    ///
    /// [`flush`]: Producer::flush
    pub async fn send(&self, record: ProducerRecord) -> Result<(u32, u64)> {
        self.enqueue(record).await?.await
    }

    /// Buffers a record (waiting while the buffer is full) and returns a future of its
    /// acknowledgement. Dropping the future is fine: failures then surface in [`flush`].
    /// Errors that need no round trip (oversize record, unknown topic or partition, closed
    /// producer) are returned at once.
    ///
    /// [`flush`]: Producer::flush
    pub async fn enqueue(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let config = &self.shared.config;
        let size = record.payload_len();
        if size > config.max_record_bytes {
            return Err(Error::InvalidArgument {
                message: format!(
                    "record is {size} bytes; the limit is {} bytes",
                    config.max_record_bytes
                ),
            });
        }
        let record_len = record.encoded_len();
        let cost = record_len.clamp(1, config.buffer_bytes);
        self.reserve(cost).await?;
        let reservation = Reservation {
            buffer: &self.shared.buffer,
            cost,
        };
        let delivery = self.append(record, record_len, cost).await?;
        // The open batch owns the bytes now; its acknowledgement gives them back.
        std::mem::forget(reservation);
        Ok(delivery)
    }

    async fn reserve(&self, cost: usize) -> Result<()> {
        let buffer = &self.shared.buffer;
        // `cost <= buffer_bytes <= Semaphore::MAX_PERMITS < u32::MAX`.
        let n = cost as u32;
        match buffer.try_acquire_many(n) {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => buffer
                .acquire_many(n)
                .await
                .map_err(|_| Error::ProducerClosed)?
                .forget(),
            Err(TryAcquireError::Closed) => return Err(Error::ProducerClosed),
        }
        Ok(())
    }

    async fn append(
        &self,
        record: ProducerRecord,
        record_len: usize,
        cost: usize,
    ) -> Result<DeliveryFuture> {
        loop {
            {
                let mut acc = lock(&self.shared.acc);
                if acc.closed {
                    return Err(Error::ProducerClosed);
                }
                let mut next_batch_id = acc.next_batch_id;
                if let Some(topic) = acc.topic_mut(&record.topic) {
                    let delivery =
                        self.append_to(topic, &mut next_batch_id, &record, record_len, cost);
                    acc.next_batch_id = next_batch_id;
                    return delivery;
                }
            }
            let partitions = self.partition_count(&record.topic).await?;
            let mut acc = lock(&self.shared.acc);
            if !acc.index.contains_key(&record.topic) {
                let i = acc.topics.len();
                acc.topics.push(TopicBatches {
                    name: Arc::from(record.topic.as_str()),
                    open: (0..partitions).map(|_| None).collect(),
                    sticky: (now_ms() as u32) % partitions,
                });
                acc.index.insert(record.topic.clone(), i);
            }
        }
    }

    /// Partitions of a topic, asking the broker (retrying while it is unavailable).
    async fn partition_count(&self, topic: &str) -> Result<u32> {
        let config = &self.shared.config;
        let give_up = Instant::now() + config.delivery_timeout;
        let mut backoff = config.retry_backoff;
        loop {
            match self.shared.client.admin().describe_topic(topic).await {
                Ok(desc) => return Ok(desc.topic.partitions.max(1)),
                Err(e) if e.is_retriable() && Instant::now() + backoff < give_up => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(config.retry_backoff_max);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends to the partition's open batch (under the accumulator lock).
    fn append_to(
        &self,
        topic: &mut TopicBatches,
        next_batch_id: &mut u64,
        r: &ProducerRecord,
        record_len: usize,
        cost: usize,
    ) -> Result<DeliveryFuture> {
        let config = &self.shared.config;
        let events = &self.shared.events;
        let n = topic.open.len() as u32;
        let partition = match (r.partition, &r.key) {
            (Some(p), _) if p >= n => {
                return Err(Error::PartitionNotFound(format!(
                    "topic {:?} has no partition {p} (it has {n})",
                    r.topic
                )));
            }
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, n),
            (None, None) => topic.sticky,
        };
        let ts_type = match r.timestamp {
            Some(_) => TimestampType::CreateTime,
            None => TimestampType::LogAppendTime,
        };
        // Seal the open batch first if the record does not fit or needs the other timestamp type.
        let must_seal = topic.open[partition as usize].as_ref().is_some_and(|b| {
            b.builder.len_bytes() + record_len > config.batch_bytes
                || b.builder.timestamp_type() != ts_type
                || b.builder.record_count() >= MAX_RECORDS_PER_BATCH
        });
        if must_seal {
            Accumulator::seal(topic, partition, events);
        }
        let open = topic.open[partition as usize].get_or_insert_with(|| {
            let id = *next_batch_id;
            *next_batch_id += 1;
            let created = Instant::now();
            let _ = events.send(Event::Opened {
                topic: Arc::clone(&topic.name),
                partition,
                id,
                deadline: created + config.linger,
            });
            OpenBatch {
                id,
                builder: BatchBuilder::with_capacity(
                    ts_type,
                    config.batch_bytes.min(record_len.saturating_mul(64)),
                ),
                handle: Arc::new(BatchHandle::default()),
                cost: 0,
                created,
            }
        });
        open.builder.push(
            r.timestamp.unwrap_or(0),
            r.key.as_deref(),
            &r.value,
            header_refs(&r.headers),
        );
        open.cost += cost;
        let delivery = DeliveryFuture {
            handle: Arc::clone(&open.handle),
            index: open.builder.record_count() - 1,
            timestamp: r.timestamp,
        };
        if open.builder.len_bytes() >= config.batch_bytes {
            Accumulator::seal(topic, partition, events);
        }
        Ok(delivery)
    }

    /// Sends everything buffered and waits until the broker acknowledged it (or the producer
    /// gave up on it). Returns the first error since the previous flush, if any record failed.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        {
            let mut acc = lock(&self.shared.acc);
            acc.seal_all(&self.shared.events);
            let mark = acc.next_batch_id;
            // Sent under the lock: the sender sees every sealed batch before this.
            self.shared
                .events
                .send(Event::Flush(mark, tx))
                .map_err(|_| Error::ProducerClosed)?;
        }
        rx.await.map_err(|_| Error::ProducerClosed)?
    }

    /// Flushes, then refuses further records (on every clone). Buffered records are sent,
    /// not dropped.
    pub async fn close(self) -> Result<()> {
        let result = self.flush().await;
        lock(&self.shared.acc).closed = true;
        result
    }
}

/// Buffer bytes reserved for a record on its way into a batch. Dropping it gives them back:
/// the append failed, or the caller abandoned `enqueue` (a dropped future, Ctrl-C in Python)
/// while it waited for the topic's partition count.
struct Reservation<'a> {
    buffer: &'a Semaphore,
    cost: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.buffer.add_permits(self.cost);
    }
}
