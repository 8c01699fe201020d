//! Records in and out: producer ids, produce (validated whole, queued on the partitions'
//! appenders in order, acknowledged per `Acks`), reads and offset look-ups.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, TryAcquireError};
use weir_common::batch;
use weir_common::limits::{
    DEFAULT_FETCH_MAX_BYTES, MAX_BATCH_BYTES, MAX_FETCH_MAX_BYTES, PRODUCER_ID_NODE_SHIFT,
};

use super::Broker;
use super::leadership::leader_epoch_of;
use super::topics::check_not_internal;
use crate::blocking::blocking;
use crate::cluster::Cluster;
use crate::error::BrokerError;
use crate::log::{Appended, Bounds, PartitionLog, PendingBatch, ReadResult, ReadUpTo};
use crate::metrics::{self, Stage};
use crate::topics::Topic;
use crate::types::OffsetQuery;

/// What a produce does when the produce budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Wait for room: an ordered produce stream, whose client HTTP/2 then holds back.
    Wait,
    /// Fail at once with [`BrokerError::Busy`] (a unary produce: the client retries).
    Refuse,
}

/// When a produce is acknowledged (see `weir.v1.Acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Once every in-sync replica has the batches.
    All,
    /// Once the leader has them.
    Leader,
}

/// Longest an `acks=all` produce waits for the in-sync replicas; then it fails as retriable
/// (`not_enough_replicas`), below the SDK's default 30 s request timeout. A dead follower
/// leaves the ISR within `--replica-lag-max-ms` (10 s), which lets the high watermark move.
pub const MAX_REPLICATION_WAIT: Duration = Duration::from_secs(25);

/// In-sync replicas of a partition as the metadata has it now (0: unknown).
fn in_sync(cluster: &Cluster, topic: &str, partition: u32) -> usize {
    cluster
        .metadata()
        .borrow()
        .partition(topic, partition)
        .map_or(0, |p| p.isr.len())
}

/// Fails with `not_enough_replicas` when fewer than `min` replicas of the partition are in
/// sync (`min.insync.replicas`); `what` says whether anything was written.
fn check_min_insync(
    cluster: &Cluster,
    topic: &str,
    partition: u32,
    min: u32,
    what: &str,
) -> Result<(), BrokerError> {
    let isr = in_sync(cluster, topic, partition);
    if isr < min as usize {
        return Err(BrokerError::NotEnoughReplicas(format!(
            "topic {topic:?} partition {partition} has {isr} in-sync replicas, fewer than its \
             min-insync-replicas {min}; {what}"
        )));
    }
    Ok(())
}

/// Waits until the high watermark of a partition this broker leads reaches `end`; fails when
/// the broker stops leading it (`not_leader`: the client retries at the new leader, and an
/// idempotent retry does not duplicate), at `deadline`, or when the high watermark passed
/// `end` with fewer than `min_insync` replicas in sync (written, not acknowledged: Kafka's
/// NOT_ENOUGH_REPLICAS_AFTER_APPEND).
pub(super) async fn await_replicated(
    cluster: &Cluster,
    topic: &str,
    partition: u32,
    log: &PartitionLog,
    end: u64,
    min_insync: u32,
    deadline: tokio::time::Instant,
) -> Result<(), BrokerError> {
    let mut bounds = log.watch();
    let mut metadata = cluster.metadata();
    let me = cluster.node_id();
    let epoch = leader_epoch_of(&metadata.borrow(), topic, partition, me);
    loop {
        if bounds.borrow_and_update().latest >= end {
            return check_min_insync(
                cluster,
                topic,
                partition,
                min_insync,
                "the batch was written but too few replicas have it; retry (an idempotent retry \
                 does not duplicate it)",
            );
        }
        if log.is_closed() {
            return Err(BrokerError::TopicNotFound(topic.to_string()));
        }
        let now = leader_epoch_of(&metadata.borrow_and_update(), topic, partition, me);
        if now.is_none() || now != epoch {
            return Err(BrokerError::NotLeader {
                topic: topic.to_string(),
                partition,
                leader: None,
            });
        }
        tokio::select! {
            r = bounds.changed() => if r.is_err() { return Err(BrokerError::ShuttingDown) },
            r = metadata.changed() => if r.is_err() { return Err(BrokerError::ShuttingDown) },
            _ = tokio::time::sleep_until(deadline) => {
                return Err(BrokerError::NotEnoughReplicas(format!(
                    "topic {topic:?} partition {partition}: the in-sync replicas did not all \
                     acknowledge offset {} within {} s; retry",
                    end - 1,
                    MAX_REPLICATION_WAIT.as_secs()
                )));
            }
        }
    }
}

impl Broker {
    /// Hands out a producer id that was never given before (for idempotent producers).
    pub async fn init_producer(self: &Arc<Self>) -> Result<u64, BrokerError> {
        let this = Arc::clone(self);
        blocking(move || {
            let _guard = this.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
            let local = crate::log::layout::allocate_producer_id(&this.store)?;
            // A cluster member's ids carry its node id, so a producer's id is unique across
            // the brokers that lead its partitions (Kafka hands out id blocks from the
            // controller instead; a fixed prefix needs no round trip).
            Ok(match this.cluster() {
                Some(c) => (c.node_id() << PRODUCER_ID_NODE_SHIFT) | local,
                None => local,
            })
        })
        .await
    }

    /// A client's produce, answered once written: [`Self::produce_queued`] refused with
    /// [`BrokerError::Busy`] when the produce budget is spent (a unary produce). Nothing is
    /// written if any batch is invalid.
    pub async fn produce(
        &self,
        topic: &str,
        batches: Vec<(u32, Bytes)>,
        acks: Acks,
    ) -> Result<Vec<(u32, Appended)>, BrokerError> {
        self.produce_queued(topic, batches, acks, Admission::Refuse)
            .await?
            .await
    }

    /// Takes `bytes` of the produce budget, held until the returned permit is dropped. A
    /// request larger than the whole budget takes all of it.
    pub(super) async fn admit(
        &self,
        bytes: usize,
        admission: Admission,
    ) -> Result<OwnedSemaphorePermit, BrokerError> {
        let want = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.produce_budget_bytes);
        let budget = Arc::clone(&self.produce_budget);
        match admission {
            Admission::Wait => budget
                .acquire_many_owned(want)
                .await
                .map_err(|_| BrokerError::ShuttingDown),
            Admission::Refuse => budget.try_acquire_many_owned(want).map_err(|e| match e {
                TryAcquireError::Closed => BrokerError::ShuttingDown,
                TryAcquireError::NoPermits => BrokerError::Busy(format!(
                    "{} bytes of produce requests are waiting to be written (--max-produce-bytes-in-flight)",
                    self.produce_budget_bytes
                )),
            }),
        }
    }

    /// A client's produce, queued: checks the topic is not the broker's own, takes the produce
    /// budget, then [`Self::enqueue`]s the batches; returns a future of where they landed.
    /// Requests queued one after another are appended in that order (the pipelined produce
    /// stream relies on it).
    ///
    /// With [`Acks::All`] in cluster mode the future also waits until every in-sync replica
    /// has the batches (the high watermark passed them), for at most [`MAX_REPLICATION_WAIT`].
    ///
    /// The batches hold part of the produce budget (`--max-produce-bytes-in-flight`) until
    /// they are written; `admission` says what happens when it is spent.
    pub async fn produce_queued(
        &self,
        topic: &str,
        batches: Vec<(u32, Bytes)>,
        acks: Acks,
        admission: Admission,
    ) -> Result<impl Future<Output = Result<Vec<(u32, Appended)>, BrokerError>> + use<>, BrokerError>
    {
        check_not_internal(topic, "written to by clients")?;
        let bytes: usize = batches.iter().map(|(_, b)| b.len()).sum();
        let permit = self.admit(bytes, admission).await?;
        let appended = self.enqueue(topic, batches, acks).await?;
        let topic = topic.to_string();
        Ok(async move {
            let appended = appended.await;
            // Written (or failed): the bytes are no longer held for the request.
            drop(permit);
            let appended = appended?;
            let records: u64 = appended
                .iter()
                .map(|(_, a)| u64::from(a.record_count))
                .sum();
            metrics::global().produced(&topic, records, bytes as u64);
            Ok(appended)
        })
    }

    /// The broker's own writes (group offsets to `__consumer_offsets`): [`Self::enqueue`]d
    /// and awaited, outside the produce budget.
    pub(super) async fn append_internal(
        &self,
        topic: &str,
        batches: Vec<(u32, Bytes)>,
        acks: Acks,
    ) -> Result<Vec<(u32, Appended)>, BrokerError> {
        self.enqueue(topic, batches, acks).await?.await
    }

    /// The one append path: checks leadership (a new leader records where its epoch starts),
    /// validates every batch before any is queued, queues each on its partition's appender in
    /// order, and returns a future of where they landed (with [`Acks::All`] in cluster mode,
    /// once the high watermark passed them).
    async fn enqueue(
        &self,
        topic: &str,
        batches: Vec<(u32, Bytes)>,
        acks: Acks,
    ) -> Result<impl Future<Output = Result<Vec<(u32, Appended)>, BrokerError>> + use<>, BrokerError>
    {
        let t = self.topics.get(topic)?;
        if let Some(v) = &t.view {
            return Err(BrokerError::ReadOnlyView {
                view: topic.to_string(),
                topic: v.source.meta.name.clone(),
            });
        }
        let min_insync = t.meta.config.min_insync_replicas;
        for (partition, _) in &batches {
            let led = self.check_leader(topic, *partition)?;
            if let (Acks::All, Some(c), Some(_)) = (acks, self.cluster(), led) {
                check_min_insync(c, topic, *partition, min_insync, "nothing was written")?;
            }
            if let Some(epoch) = led {
                // The first append of a new leader records where its epoch starts.
                let log = Arc::clone(&t.partition(*partition)?.log);
                if log.latest_epoch() < Some(epoch) {
                    let name = topic.to_string();
                    let p = *partition;
                    blocking(move || {
                        log.ensure_epoch(epoch)
                            .map_err(|e| e.in_partition(&name, p))
                    })
                    .await?;
                }
            }
        }
        if batches.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "produce request carries no batch".into(),
            ));
        }
        let mut pending = Vec::with_capacity(batches.len());
        for (partition, bytes) in batches {
            t.partition(partition)?;
            if bytes.len() > MAX_BATCH_BYTES {
                return Err(BrokerError::InvalidArgument(format!(
                    "batch for partition {partition} is {} bytes; the limit is {MAX_BATCH_BYTES} bytes",
                    bytes.len()
                )));
            }
            let valid = batch::validate(&bytes, self.max_record_bytes)
                .map_err(|source| BrokerError::InvalidBatch { partition, source })?;
            pending.push((partition, PendingBatch { bytes, valid }));
        }
        let mut queued = Vec::with_capacity(pending.len());
        for (partition, batch) in pending {
            let appender = &t.partition(partition)?.appender;
            let reply = appender
                .submit(batch)
                .await
                .map_err(|e| e.in_partition(topic, partition))?;
            queued.push((partition, reply));
        }
        let name = t.meta.name.clone();
        let in_cluster = self.in_cluster();
        let replicated = match acks {
            Acks::All => self.cluster().cloned(),
            Acks::Leader => None,
        };
        let queued_at = Instant::now();
        Ok(async move {
            let mut out = Vec::with_capacity(queued.len());
            for (partition, reply) in queued {
                let a = reply.await.map_err(|e| e.in_partition(&name, partition))?;
                out.push((partition, a));
            }
            let written_at = Instant::now();
            if in_cluster {
                metrics::global().stage(Stage::LeaderAppend, written_at - queued_at);
            }
            if let Some(cluster) = replicated {
                let deadline = tokio::time::Instant::now() + MAX_REPLICATION_WAIT;
                for (partition, a) in &out {
                    let end = a.base_offset + u64::from(a.record_count);
                    let log = &t.partition(*partition)?.log;
                    await_replicated(&cluster, &name, *partition, log, end, min_insync, deadline)
                        .await?;
                }
                metrics::global().stage(Stage::AwaitIsr, written_at.elapsed());
            }
            Ok(out)
        })
    }

    /// Clamps a client's `max_bytes` (0 = default) to the broker's limits.
    pub fn fetch_budget(max_bytes: u32) -> usize {
        match max_bytes {
            0 => DEFAULT_FETCH_MAX_BYTES as usize,
            n => n.min(MAX_FETCH_MAX_BYTES) as usize,
        }
    }

    /// Reads batches from one partition at `offset`, up to `max_bytes`: below the high
    /// watermark for consumers, up to the log end for a follower.
    pub async fn read(
        &self,
        topic: &Arc<Topic>,
        partition: u32,
        offset: u64,
        max_bytes: usize,
        upto: ReadUpTo,
    ) -> Result<ReadResult, BrokerError> {
        self.check_leader(&topic.meta.name, partition)?;
        let log = Arc::clone(&topic.partition(partition)?.log);
        let name = topic.meta.name.clone();
        let read = blocking(move || {
            log.read_from(offset, max_bytes, upto)
                .map_err(|e| e.in_partition(&name, partition))
        })
        .await?;
        match &topic.view {
            Some(v) if !read.batches.is_empty() => {
                self.read_view(&v.view, partition, offset, read).await
            }
            _ => Ok(read),
        }
    }

    /// Resolves an offset query on one partition.
    pub async fn list_offset(
        &self,
        topic: &Arc<Topic>,
        partition: u32,
        query: OffsetQuery,
    ) -> Result<(u64, Bounds), BrokerError> {
        self.check_leader(&topic.meta.name, partition)?;
        let log = Arc::clone(&topic.partition(partition)?.log);
        let bounds = log.bounds();
        match query {
            OffsetQuery::Earliest => Ok((bounds.earliest, bounds)),
            OffsetQuery::Latest => Ok((bounds.latest, bounds)),
            OffsetQuery::Timestamp(ts) => {
                let name = topic.meta.name.clone();
                let off = blocking(move || {
                    log.offset_for_timestamp(ts)
                        .map_err(|e| e.in_partition(&name, partition))
                })
                .await?;
                Ok((off, bounds))
            }
        }
    }
}
