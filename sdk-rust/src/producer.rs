//! The batching producer.
//!
//! [`Producer::send`] hands a record to a background *accumulator* task, which picks its
//! partition (explicit, key hash, or a sticky partition for keyless records), appends it to
//! that partition's open batch, and seals the batch when it reaches `batch_bytes` or has
//! lingered `linger`. Each partition has at most one produce request in flight, so records of
//! a partition are written in the order they were sent. Memory is bounded: `send` waits while
//! `buffer_bytes` of records are waiting or in flight.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use weir_common::batch::{BatchBuilder, TimestampType};
use weir_common::limits::{DEFAULT_MAX_RECORD_BYTES, MAX_BATCH_BYTES, MAX_RECORDS_PER_BATCH};
use weir_common::partitioner::partition_for_key;
use weir_common::record::{Header, now_ms, payload_len};
use weir_proto::v1 as pb;

use crate::client::Client;
use crate::error::{Error, Result};

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How long a batch waits for more records before it is sent.
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes.
    pub batch_bytes: usize,
    /// Most bytes of records buffered or in flight; `send` waits beyond this.
    pub buffer_bytes: usize,
    /// Largest record accepted (key + value + headers); checked before sending. Keep it at
    /// or below the broker's `--max-record-bytes`.
    pub max_record_bytes: usize,
    /// How long one produce request may take.
    pub request_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            linger: Duration::from_millis(5),
            batch_bytes: 1024 * 1024,
            buffer_bytes: 64 * 1024 * 1024,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
    /// `None`: chosen from the key hash, or spread if there is no key.
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<Header>,
    /// Unix ms; `None`: the broker stamps the time it appends the record.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
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

    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: value.into(),
        });
        self
    }

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

type Ack = oneshot::Sender<Result<(u32, u64)>>;

struct Pending {
    record: ProducerRecord,
    ack: Ack,
    permit: OwnedSemaphorePermit,
}

enum Command {
    Send(Pending),
    Flush(oneshot::Sender<Result<()>>),
}

/// Resolves to `(partition, offset)` once the broker acknowledged the record.
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<(u32, u64)>>,
}

impl Future for DeliveryFuture {
    type Output = Result<(u32, u64)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::ProducerClosed)))
    }
}

/// A batching producer. Cheap to clone; clones share batches and the buffer.
#[derive(Clone)]
pub struct Producer {
    tx: mpsc::UnboundedSender<Command>,
    buffer: Arc<Semaphore>,
    config: Arc<ProducerConfig>,
}

impl Producer {
    pub(crate) fn new(client: Client, mut config: ProducerConfig) -> Self {
        // A batch must stay within what the broker accepts in one piece.
        config.batch_bytes = config.batch_bytes.clamp(1, MAX_BATCH_BYTES / 2);
        config.buffer_bytes = config.buffer_bytes.max(1);
        let (tx, rx) = mpsc::unbounded_channel();
        let config = Arc::new(config);
        let buffer = Arc::new(Semaphore::new(
            config.buffer_bytes.min(Semaphore::MAX_PERMITS),
        ));
        tokio::spawn(Accumulator::new(client, Arc::clone(&config)).run(rx));
        Self { tx, buffer, config }
    }

    /// Sends a record and waits for the broker's acknowledgement: `(partition, offset)`.
    pub async fn send(&self, record: ProducerRecord) -> Result<(u32, u64)> {
        self.enqueue(record).await?.await
    }

    /// Queues a record (waiting while the buffer is full) and returns a future of its
    /// acknowledgement. Dropping the future is fine: failures then surface in [`flush`].
    ///
    /// [`flush`]: Producer::flush
    pub async fn enqueue(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let size = record.payload_len();
        if size > self.config.max_record_bytes {
            return Err(Error::InvalidArgument {
                message: format!(
                    "record is {size} bytes; the limit is {} bytes",
                    self.config.max_record_bytes
                ),
            });
        }
        let cost = record.encoded_len().clamp(1, self.config.buffer_bytes) as u32;
        let permit = Arc::clone(&self.buffer)
            .acquire_many_owned(cost)
            .await
            .map_err(|_| Error::ProducerClosed)?;
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Command::Send(Pending {
                record,
                ack,
                permit,
            }))
            .map_err(|_| Error::ProducerClosed)?;
        Ok(DeliveryFuture { rx })
    }

    /// Sends everything buffered and waits until the broker acknowledged it. Returns the
    /// first error since the previous flush, if any record failed.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Flush(tx))
            .map_err(|_| Error::ProducerClosed)?;
        rx.await.map_err(|_| Error::ProducerClosed)?
    }

    /// Flushes and shuts the producer down (buffered records are sent, not dropped).
    pub async fn close(self) -> Result<()> {
        self.flush().await
    }
}

/// A batch being filled.
struct OpenBatch {
    builder: BatchBuilder,
    acks: Vec<(Ack, OwnedSemaphorePermit)>,
    deadline: Instant,
}

/// A sealed batch waiting for its turn.
struct Sealed {
    bytes: Bytes,
    acks: Vec<(Ack, OwnedSemaphorePermit)>,
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    sealed: VecDeque<Sealed>,
    in_flight: bool,
}

struct TopicState {
    name: Arc<str>,
    partitions: Vec<PartitionQueue>,
    /// Partition that keyless records currently go to (moves on when its batch is sealed).
    sticky: u32,
}

struct Done {
    topic: Arc<str>,
    partition: u32,
    error: Option<Error>,
}

struct Accumulator {
    client: Client,
    config: Arc<ProducerConfig>,
    topics: HashMap<String, TopicState>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    flush_waiters: Vec<oneshot::Sender<Result<()>>>,
    first_error: Option<Error>,
}

impl Accumulator {
    fn new(client: Client, config: Arc<ProducerConfig>) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            client,
            config,
            topics: HashMap::new(),
            done_tx,
            done_rx,
            flush_waiters: Vec::new(),
            first_error: None,
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut closing = false;
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                cmd = rx.recv(), if !closing => match cmd {
                    Some(Command::Send(p)) => self.add(p).await,
                    Some(Command::Flush(w)) => {
                        self.seal_all();
                        self.flush_waiters.push(w);
                    }
                    None => {
                        closing = true;
                        self.seal_all();
                    }
                },
                Some(done) = self.done_rx.recv() => self.complete(done),
                _ = sleep_until(deadline), if deadline.is_some() => self.seal_expired(),
            }
            self.dispatch_ready();
            if self.is_idle() {
                let result = match self.first_error.take() {
                    Some(e) => Err(e),
                    None => Ok(()),
                };
                for w in self.flush_waiters.drain(..) {
                    let _ = w.send(result.clone());
                }
                if closing {
                    return;
                }
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.topics.values().all(|t| {
            t.partitions
                .iter()
                .all(|p| p.open.is_none() && p.sealed.is_empty() && !p.in_flight)
        })
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter_map(|p| p.open.as_ref().map(|b| b.deadline))
            })
            .min()
    }

    async fn topic(&mut self, name: &str) -> Result<&mut TopicState> {
        if !self.topics.contains_key(name) {
            let desc = self.client.admin().describe_topic(name).await?;
            let n = desc.topic.partitions.max(1);
            let state = TopicState {
                name: Arc::from(name),
                partitions: (0..n).map(|_| PartitionQueue::default()).collect(),
                sticky: (now_ms() as u32) % n,
            };
            self.topics.insert(name.to_string(), state);
        }
        Ok(self.topics.get_mut(name).expect("inserted above"))
    }

    async fn add(&mut self, p: Pending) {
        let config = Arc::clone(&self.config);
        let topic = match self.topic(&p.record.topic).await {
            Ok(t) => t,
            Err(e) => {
                let _ = p.ack.send(Err(e));
                return;
            }
        };
        let n = topic.partitions.len() as u32;
        let partition = match (p.record.partition, &p.record.key) {
            (Some(part), _) if part >= n => {
                let message = format!(
                    "topic {:?} has no partition {part} (it has {n})",
                    p.record.topic
                );
                let _ = p.ack.send(Err(Error::PartitionNotFound(message)));
                return;
            }
            (Some(part), _) => part,
            (None, Some(key)) => partition_for_key(key, n),
            (None, None) => topic.sticky,
        };
        let record_len = p.record.encoded_len();
        let ts_type = match p.record.timestamp {
            Some(_) => TimestampType::CreateTime,
            None => TimestampType::LogAppendTime,
        };
        let queue = &mut topic.partitions[partition as usize];
        // Seal the open batch first if the record does not fit or needs the other timestamp type.
        let must_seal = queue.open.as_ref().is_some_and(|b| {
            !b.builder.is_empty()
                && (b.builder.len_bytes() + record_len > config.batch_bytes
                    || b.builder.timestamp_type() != ts_type
                    || b.builder.record_count() >= MAX_RECORDS_PER_BATCH)
        });
        let mut sealed_sticky = false;
        if must_seal {
            seal(queue);
            sealed_sticky = p.record.key.is_none() && p.record.partition.is_none();
        }
        let open = queue.open.get_or_insert_with(|| OpenBatch {
            builder: BatchBuilder::with_capacity(ts_type, config.batch_bytes.min(record_len * 64)),
            acks: Vec::new(),
            deadline: Instant::now() + config.linger,
        });
        let r = &p.record;
        open.builder.push(
            r.timestamp.unwrap_or(0),
            r.key.as_deref(),
            &r.value,
            header_refs(&r.headers),
        );
        open.acks.push((p.ack, p.permit));
        if open.builder.len_bytes() >= config.batch_bytes {
            seal(queue);
            sealed_sticky |=
                p.record.key.is_none() && p.record.partition.is_none() && partition == topic.sticky;
        }
        if sealed_sticky {
            topic.sticky = (topic.sticky + 1) % n;
        }
    }

    fn seal_all(&mut self) {
        for t in self.topics.values_mut() {
            for q in &mut t.partitions {
                seal(q);
            }
        }
    }

    fn seal_expired(&mut self) {
        let now = Instant::now();
        for t in self.topics.values_mut() {
            let n = t.partitions.len() as u32;
            for (i, q) in t.partitions.iter_mut().enumerate() {
                if q.open.as_ref().is_some_and(|b| b.deadline <= now) {
                    seal(q);
                    if i as u32 == t.sticky {
                        t.sticky = (t.sticky + 1) % n;
                    }
                }
            }
        }
    }

    /// Starts a produce request for every partition that has a sealed batch and none in flight.
    fn dispatch_ready(&mut self) {
        for t in self.topics.values_mut() {
            for (i, q) in t.partitions.iter_mut().enumerate() {
                if q.in_flight {
                    continue;
                }
                let Some(batch) = q.sealed.pop_front() else {
                    continue;
                };
                q.in_flight = true;
                let client = self.client.clone();
                let done = self.done_tx.clone();
                let topic = Arc::clone(&t.name);
                let timeout = self.config.request_timeout;
                tokio::spawn(send_batch(client, topic, i as u32, batch, timeout, done));
            }
        }
    }

    fn complete(&mut self, done: Done) {
        if let Some(e) = done.error {
            self.first_error.get_or_insert(e);
        }
        if let Some(q) = self
            .topics
            .get_mut(&*done.topic)
            .and_then(|t| t.partitions.get_mut(done.partition as usize))
        {
            q.in_flight = false;
        }
    }
}

fn seal(q: &mut PartitionQueue) {
    if let Some(open) = q.open.take().filter(|o| !o.builder.is_empty()) {
        q.sealed.push_back(Sealed {
            bytes: open.builder.finish(),
            acks: open.acks,
        });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn send_batch(
    client: Client,
    topic: Arc<str>,
    partition: u32,
    batch: Sealed,
    timeout: Duration,
    done: mpsc::UnboundedSender<Done>,
) {
    let req = pb::ProduceRequest {
        topic: topic.to_string(),
        batches: vec![pb::PartitionBatch {
            partition,
            batch: batch.bytes,
        }],
    };
    let mut rpc = client.log_rpc();
    let result = match tokio::time::timeout(timeout, rpc.produce(req)).await {
        Err(_) => Err(Error::Timeout(timeout)),
        Ok(Err(status)) => Err(Error::from(status)),
        Ok(Ok(resp)) => resp
            .into_inner()
            .appends
            .into_iter()
            .find(|a| a.partition == partition)
            .map(|a| a.base_offset)
            .ok_or_else(|| Error::Protocol("produce response lacks the partition".into())),
    };
    let error = match result {
        Ok(base) => {
            for (i, (ack, _permit)) in batch.acks.into_iter().enumerate() {
                let _ = ack.send(Ok((partition, base + i as u64)));
            }
            None
        }
        Err(e) => {
            for (ack, _permit) in batch.acks {
                let _ = ack.send(Err(e.clone()));
            }
            Some(e)
        }
    };
    let _ = done.send(Done {
        topic,
        partition,
        error,
    });
}
