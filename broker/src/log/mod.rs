//! Partition logs: append batches, read from an offset, find an offset by timestamp, roll
//! segments and apply retention.
//!
//! A [`PartitionLog`] owns the in-memory view of one partition (its segments) and publishes its
//! bounds (earliest/latest offset) on a watch channel, which readers and subscriptions use
//! without taking the log's lock. All methods here block (RocksDB I/O): async callers run them
//! on the blocking pool.
//!
//! Architecture invariants:
//! - Offsets strictly increase: a batch gets `base = latest`, and `latest` grows by its count
//!   only after the write succeeded.
//! - Bounds are published only after the data they cover is durable in RocksDB, so a reader
//!   never sees an offset it cannot read.
//! - A batch never straddles segments; a partition always has at least one segment (the
//!   active one), so the log end offset survives retention and restarts.

pub mod appender;
mod epochs;
pub mod layout;
pub mod producers;
pub mod retention;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;
use weir_common::batch::{self, TimestampType, ValidBatch};
use weir_common::limits::PIPELINE_PRODUCER_ID_BIT;

use crate::error::BrokerError;
use crate::storage::{Durability, StorageError, Store, WriteSet};
use crate::types::{EpochStart, PartitionKey, SegmentMeta, TopicConfig};
use layout::{AppendWrite, Truncation};
use producers::{PRODUCER_STATE_EXPIRY_MS, ProducerBatch, ProducerState, SeqCheck};

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("offset {offset} is out of range: earliest is {earliest}, latest is {latest}")]
    OffsetOutOfRange {
        offset: u64,
        earliest: u64,
        latest: u64,
    },
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("partition is closed (its topic was deleted)")]
    Closed,
    #[error("stored batch at offset {offset} is corrupt: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("replicated batch starts at offset {got}; this copy's log ends at {expected}")]
    NotContiguous { expected: u64, got: u64 },
    #[error(
        "producer {producer_id} sent sequence {got} but the next expected is {expected} (an earlier batch is missing)"
    )]
    OutOfOrderSequence {
        producer_id: u64,
        expected: u32,
        got: u32,
    },
}

impl From<StorageError> for LogError {
    fn from(e: StorageError) -> Self {
        LogError::Storage(e.to_string())
    }
}

impl LogError {
    /// The broker's error for this failure of `topic`'s partition `partition`.
    pub fn in_partition(self, topic: &str, partition: u32) -> BrokerError {
        match self {
            LogError::OffsetOutOfRange {
                offset,
                earliest,
                latest,
            } => BrokerError::OffsetOutOfRange {
                topic: topic.to_string(),
                partition,
                offset,
                earliest,
                latest,
            },
            LogError::Storage(s) => BrokerError::Storage(s),
            LogError::Closed => BrokerError::TopicNotFound(topic.to_string()),
            e @ LogError::Corrupt { .. } => BrokerError::Storage(e.to_string()),
            e @ LogError::NotContiguous { .. } => {
                BrokerError::InvalidArgument(format!("topic {topic:?} partition {partition}: {e}"))
            }
            e @ LogError::OutOfOrderSequence { expected, .. } => BrokerError::OutOfOrderSequence {
                topic: topic.to_string(),
                partition,
                expected,
                reason: e.to_string(),
            },
        }
    }
}

/// Offsets and size of a partition at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bounds {
    /// Offset of the oldest record kept (== `latest` when empty).
    pub earliest: u64,
    /// The high watermark: readers see the records below it. Standalone (and on a leader
    /// whose only in-sync replica is itself) it is the log end; with followers in sync, the
    /// lowest log end among them (docs/cluster.md, "Replication").
    pub latest: u64,
    /// Next offset to be written (>= `latest`).
    pub log_end: u64,
    pub size_bytes: u64,
    pub segments: u32,
}

impl Bounds {
    /// Whether a reader may stand at `offset`: from the earliest record kept to the log end
    /// (past the high watermark it just sees nothing yet, as in Kafka after a failover).
    pub fn holds(&self, offset: u64) -> bool {
        (self.earliest..=self.log_end).contains(&offset)
    }
}

/// Where one appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    pub record_count: u32,
    /// The broker's stamp for log-append-time batches, else 0.
    pub log_append_time: i64,
}

/// A validated batch waiting to be appended.
#[derive(Debug, Clone)]
pub struct PendingBatch {
    pub bytes: Bytes,
    pub valid: ValidBatch,
}

/// Batches read from a partition, and its bounds when read.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub batches: Vec<Bytes>,
    pub bounds: Bounds,
    /// Where the next read continues, when the batches do not end there: a view's read, whose
    /// chain may have left out the records at the end (or all of them). `None`: after the
    /// last record of `batches`.
    pub end: Option<u64>,
}

/// Where appended batches go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placing {
    /// At the log end; idempotent producers' sequences checked (a leader, or standalone).
    Assign,
    /// At the offsets they carry, which must continue the log (a follower's copy).
    AsGiven,
}

/// Where a follower's log stops agreeing with its leader's (`weir.v1.DivergingEpoch`): the
/// latest leader epoch at or before the follower's, and where it ends in the leader's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diverging {
    pub epoch: u32,
    pub end_offset: u64,
}

/// What the log's lock guards.
struct LogState {
    segments: VecDeque<SegmentMeta>,
    /// Idempotent producers that wrote to this partition.
    producers: HashMap<u64, ProducerState>,
    /// Readers see the records below it; `<=` the log end, `>=` the earliest offset kept.
    high_watermark: u64,
    /// Whether every append moves the high watermark to the log end (standalone, or a leader
    /// whose in-sync replicas are itself alone); otherwise replication moves it.
    hw_follows_end: bool,
    /// Cluster mode: where each leader epoch starts, oldest first, all below the log end
    /// (a new leader's entry may sit at it until its first append).
    epochs: Vec<EpochStart>,
}

impl LogState {
    fn earliest(&self) -> u64 {
        self.segments
            .front()
            .expect("a partition always has a segment")
            .base_offset
    }

    fn log_end(&self) -> u64 {
        self.segments
            .back()
            .expect("a partition always has a segment")
            .next_offset
    }

    fn bounds(&self) -> Bounds {
        let first = self
            .segments
            .front()
            .expect("a partition always has a segment");
        Bounds {
            earliest: first.base_offset,
            latest: self.high_watermark,
            log_end: self.log_end(),
            size_bytes: self.segments.iter().map(|s| s.size_bytes).sum(),
            segments: self.segments.len() as u32,
        }
    }
}

/// Where each batch of a group lands, or why it does not.
type Placed = Vec<Result<Appended, LogError>>;

/// An append computed but not written yet (see `PartitionLog::prepare`).
struct Prepared {
    write: AppendWrite,
    /// The active segment and any rolled after it, as the append leaves them.
    tail: Vec<SegmentMeta>,
}

pub struct PartitionLog {
    key: PartitionKey,
    store: Store,
    config: TopicConfig,
    state: Mutex<LogState>,
    bounds: watch::Sender<Bounds>,
    closed: AtomicBool,
    /// The history's latest epoch ([`NO_EPOCH`]: none), readable without the lock.
    latest_epoch: AtomicU64,
}

const NO_EPOCH: u64 = u64::MAX;

/// Which records a read may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadUpTo {
    /// Below the high watermark: what consumers see.
    HighWatermark,
    /// Up to the log end: what a follower copies.
    LogEnd,
}

impl PartitionLog {
    /// A log over recovered (or freshly created) segments, in offset order, at least one,
    /// and the recovered idempotent-producer states.
    pub fn new(
        store: Store,
        key: PartitionKey,
        config: TopicConfig,
        segments: Vec<SegmentMeta>,
        producers: Vec<(u64, ProducerState)>,
        epochs: Vec<EpochStart>,
    ) -> Self {
        assert!(!segments.is_empty(), "a partition always has a segment");
        debug_assert!(
            segments
                .windows(2)
                .all(|w| w[0].next_offset == w[1].base_offset)
        );
        let segments: VecDeque<_> = segments.into();
        let end = segments.back().map_or(0, |s| s.next_offset);
        let state = LogState {
            segments,
            producers: producers.into_iter().collect(),
            high_watermark: end,
            hw_follows_end: true,
            epochs,
        };
        let (bounds, _) = watch::channel(state.bounds());
        let latest_epoch = state.epochs.last().map_or(NO_EPOCH, |e| u64::from(e.epoch));
        Self {
            key,
            store,
            config,
            state: Mutex::new(state),
            bounds,
            closed: AtomicBool::new(false),
            latest_epoch: AtomicU64::new(latest_epoch),
        }
    }

    pub fn key(&self) -> PartitionKey {
        self.key
    }

    pub fn bounds(&self) -> Bounds {
        *self.bounds.borrow()
    }

    /// A receiver that wakes whenever the bounds change (new data, retention).
    pub fn watch(&self) -> watch::Receiver<Bounds> {
        self.bounds.subscribe()
    }

    /// The sequence number producer `producer_id`'s next batch must start at here (0 for a
    /// producer this partition has not seen). On a leader it counts appended batches the
    /// in-sync replicas may not have yet; a pipeline worker asks it before a replay.
    pub fn expected_sequence(&self, producer_id: u64) -> u32 {
        self.lock()
            .producers
            .get(&producer_id)
            .map_or(0, ProducerState::expected)
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A panic while holding this lock cannot leave the state half-updated (mutations are
        // applied after the write succeeded), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, state: &LogState) {
        self.bounds.send_replace(state.bounds());
    }

    /// Sets the high watermark (clamped to the earliest offset kept and the log end); wakes
    /// readers when it moves. Replication calls it: a leader as its in-sync followers catch
    /// up, a follower with what its leader reports.
    pub fn set_high_watermark(&self, hw: u64) {
        let mut state = self.lock();
        let earliest = state.earliest();
        let hw = hw.min(state.log_end()).max(earliest);
        if hw != state.high_watermark {
            state.high_watermark = hw;
            self.publish(&state);
        }
    }

    /// Moves the high watermark up to `hw` (a leader's never moves back); see
    /// [`Self::set_high_watermark`].
    pub fn raise_high_watermark(&self, hw: u64) {
        let mut state = self.lock();
        let hw = hw.min(state.log_end());
        if hw > state.high_watermark {
            state.high_watermark = hw;
            self.publish(&state);
        }
    }

    /// A cluster copy opened after a restart: its high watermark starts where it was last
    /// checkpointed (`None`: at the earliest offset), never above the log end, and only
    /// replication moves it from there. A restarted leader then shows its consumers nothing
    /// its followers were not known to have, until they fetch again (docs/cluster.md).
    pub fn recover_high_watermark(&self, checkpoint: Option<u64>) {
        let mut state = self.lock();
        state.hw_follows_end = false;
        let earliest = state.earliest();
        state.high_watermark = checkpoint
            .unwrap_or(earliest)
            .min(state.log_end())
            .max(earliest);
        self.publish(&state);
    }

    /// The high watermark to checkpoint, and the partition it belongs to.
    pub fn high_watermark(&self) -> (PartitionKey, u64) {
        (self.key, self.lock().high_watermark)
    }

    /// Whether appends move the high watermark to the log end by themselves (true: a
    /// standalone partition, or a leader with no other in-sync replica; it moves there at
    /// once). False: replication moves it.
    pub fn set_hw_follows_end(&self, follows: bool) {
        let mut state = self.lock();
        state.hw_follows_end = follows;
        if follows && state.high_watermark != state.log_end() {
            state.high_watermark = state.log_end();
            self.publish(&state);
        }
    }

    /// Appends a group of validated batches in one RocksDB write (group commit), rolling
    /// segments as needed. Returns, in order, where each batch landed — or, for a batch of an
    /// idempotent producer, its original placement (a retry: nothing written) or
    /// [`LogError::OutOfOrderSequence`] (refused: nothing written). The outer error is a
    /// failure of the whole write.
    pub fn append_group(
        &self,
        group: &[PendingBatch],
        now_ms: i64,
    ) -> Result<Vec<Result<Appended, LogError>>, LogError> {
        self.append(group, now_ms, None, Placing::Assign)
    }

    /// [`Self::append_group`], applying `extra` (say, a pipeline's position on its source
    /// partition) in the same atomic RocksDB write — even when `group` is empty.
    pub fn append_group_with(
        &self,
        group: &[PendingBatch],
        now_ms: i64,
        extra: WriteSet,
    ) -> Result<Vec<Result<Appended, LogError>>, LogError> {
        self.append(group, now_ms, Some(extra), Placing::Assign)
    }

    /// A follower's copy: appends batches fetched from the partition's leader unchanged, at
    /// the offsets the leader gave them (stamps included), in one RocksDB write, and rebuilds
    /// the idempotent producers' state from them (so a new leader deduplicates retries). The
    /// first batch must start at this copy's log end offset and each continue the previous
    /// one ([`LogError::NotContiguous`] otherwise: nothing written).
    pub fn append_replica(&self, group: &[PendingBatch], now_ms: i64) -> Result<(), LogError> {
        self.append(group, now_ms, None, Placing::AsGiven)?;
        Ok(())
    }

    fn append(
        &self,
        group: &[PendingBatch],
        now_ms: i64,
        extra: Option<WriteSet>,
        placing: Placing,
    ) -> Result<Vec<Result<Appended, LogError>>, LogError> {
        let mut state = self.lock();
        if self.is_closed() {
            return Err(LogError::Closed);
        }
        let (out, prepared) = self.prepare(&state, group, now_ms, placing)?;
        let Some(prepared) = prepared else {
            if let Some(extra) = extra.filter(|e| !e.is_empty()) {
                self.store.write(extra, Durability::Configured)?;
            }
            return Ok(out);
        };
        let mut set = extra.unwrap_or_else(|| {
            self.store
                .write_set_with_capacity(prepared.write.encoded_len())
        });
        layout::put_append(&mut set, self.key, &prepared.write);
        self.store.write(set, Durability::Configured)?;
        self.apply(&mut state, prepared);
        Ok(out)
    }

    /// Appends groups of validated batches to several partitions and applies `extra` in one
    /// atomic RocksDB write (a pipeline's outputs to several topics with its progress): all
    /// or nothing. Each group as [`Self::append_group`]; the logs are locked in key order
    /// for the write (no two may be the same partition).
    pub fn append_groups_with(
        groups: &[(&PartitionLog, &[PendingBatch])],
        now_ms: i64,
        extra: WriteSet,
    ) -> Result<Vec<Vec<Result<Appended, LogError>>>, LogError> {
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by_key(|&i| (groups[i].0.key.topic, groups[i].0.key.partition));
        let mut locked: Vec<(usize, MutexGuard<'_, LogState>)> = Vec::with_capacity(groups.len());
        for i in order {
            let log = groups[i].0;
            let state = log.lock();
            if log.is_closed() {
                return Err(LogError::Closed);
            }
            locked.push((i, state));
        }
        let mut set = extra;
        let mut outs: Vec<Vec<Result<Appended, LogError>>> = vec![Vec::new(); groups.len()];
        let mut prepared = Vec::with_capacity(groups.len());
        for (i, state) in &locked {
            let (log, group) = groups[*i];
            let (out, p) = log.prepare(state, group, now_ms, Placing::Assign)?;
            outs[*i] = out;
            if let Some(p) = p {
                layout::put_append(&mut set, log.key, &p.write);
                prepared.push((*i, p));
            }
        }
        if !set.is_empty() {
            // Any log's store: a broker's partitions share one.
            if let Some((log, _)) = groups.first() {
                log.store.write(set, Durability::Configured)?;
            }
        }
        for (i, p) in prepared {
            if let Some((_, state)) = locked.iter_mut().find(|(j, _)| *j == i) {
                groups[i].0.apply(state, p);
            }
        }
        Ok(outs)
    }

    /// Makes a written append visible: producer states, segments, high watermark.
    fn apply(&self, state: &mut LogState, p: Prepared) {
        state.producers.extend(p.write.producers);
        state.segments.pop_back();
        state.segments.extend(p.tail);
        if state.hw_follows_end {
            state.high_watermark = state.log_end();
        }
        self.publish(state);
    }

    /// What appending `group` would write, without writing it: where each batch lands (or why
    /// it does not), and the write (`None`: nothing to write).
    fn prepare(
        &self,
        state: &LogState,
        group: &[PendingBatch],
        now_ms: i64,
        placing: Placing,
    ) -> Result<(Placed, Option<Prepared>), LogError> {
        let active = *state
            .segments
            .back()
            .expect("a partition always has a segment");
        let mut tail: Vec<SegmentMeta> = vec![active];
        let mut write = AppendWrite::default();
        // Producer states as this group changes them; merged after the write succeeded.
        let mut touched: HashMap<u64, ProducerState> = HashMap::new();
        let mut out = Vec::with_capacity(group.len());
        for pending in group {
            let header = &pending.valid.header;
            let producer = header.producer_id;
            if producer != 0 && placing == Placing::Assign {
                let known = touched
                    .get(&producer)
                    .or_else(|| state.producers.get(&producer));
                match producers::check(known, header.base_sequence, header.last_sequence()) {
                    SeqCheck::Append => {}
                    SeqCheck::Duplicate(b) => {
                        out.push(Ok(Appended {
                            base_offset: b.base_offset,
                            record_count: b.record_count,
                            log_append_time: b.log_append_time,
                        }));
                        continue;
                    }
                    SeqCheck::OutOfOrder { expected } => {
                        out.push(Err(LogError::OutOfOrderSequence {
                            producer_id: producer,
                            expected,
                            got: header.base_sequence,
                        }));
                        continue;
                    }
                }
            }
            let len = pending.bytes.len() as u64;
            let cur = *tail.last().expect("tail starts non-empty");
            let full = cur.size_bytes + len > self.config.segment_bytes;
            let old = now_ms.saturating_sub(cur.created_ms) >= self.config.segment_ms;
            if !cur.is_empty() && (full || old) {
                tail.push(SegmentMeta::empty_at(
                    cur.next_offset,
                    now_ms,
                    cur.running_max_timestamp,
                ));
            }
            let seg = tail.last_mut().expect("tail starts non-empty");
            let base = seg.next_offset;
            // A leader stamps the batch (a copy); a replica stores the leader's bytes as they are.
            let (bytes, max_ts, stamp) = match (placing, header.timestamp_type()) {
                (Placing::AsGiven, _) if header.base_offset != base => {
                    return Err(LogError::NotContiguous {
                        expected: base,
                        got: header.base_offset,
                    });
                }
                (Placing::AsGiven, TimestampType::LogAppendTime) => (
                    pending.bytes.clone(),
                    header.max_timestamp,
                    header.max_timestamp,
                ),
                (Placing::AsGiven, TimestampType::CreateTime) => {
                    (pending.bytes.clone(), pending.valid.max_timestamp, 0)
                }
                (Placing::Assign, TimestampType::LogAppendTime) => {
                    let mut bytes = pending.bytes.to_vec();
                    batch::set_base_offset(&mut bytes, base);
                    batch::set_log_append_time(&mut bytes, now_ms);
                    (Bytes::from(bytes), now_ms, now_ms)
                }
                (Placing::Assign, TimestampType::CreateTime) => {
                    let mut bytes = pending.bytes.to_vec();
                    batch::set_base_offset(&mut bytes, base);
                    (Bytes::from(bytes), pending.valid.max_timestamp, 0)
                }
            };
            let count = header.record_count;
            seg.next_offset += u64::from(count);
            seg.size_bytes += len;
            seg.max_timestamp = seg.max_timestamp.max(max_ts);
            if max_ts > seg.running_max_timestamp {
                seg.running_max_timestamp = max_ts;
                write.time_entries.push((max_ts, base));
            }
            write.batches.push((base, bytes));
            if producer != 0 {
                let entry = touched
                    .entry(producer)
                    .or_insert_with(|| state.producers.get(&producer).cloned().unwrap_or_default());
                entry.push(
                    ProducerBatch {
                        first_seq: header.base_sequence,
                        last_seq: header.last_sequence(),
                        base_offset: base,
                        record_count: count,
                        log_append_time: stamp,
                    },
                    now_ms,
                );
            }
            out.push(Ok(Appended {
                base_offset: base,
                record_count: count,
                log_append_time: stamp,
            }));
        }
        if write.batches.is_empty() {
            return Ok((out, None));
        }
        write.segments = tail.clone();
        write.producers = touched.into_iter().collect();
        Ok((out, Some(Prepared { write, tail })))
    }

    /// Whole batches from `offset` on, up to `max_bytes` (at least one batch if any), below
    /// the high watermark or the log end. `offset` may be anywhere from the earliest offset
    /// kept to the log end.
    pub fn read_from(
        &self,
        offset: u64,
        max_bytes: usize,
        upto: ReadUpTo,
    ) -> Result<ReadResult, LogError> {
        let bounds = self.bounds();
        if !bounds.holds(offset) {
            return Err(LogError::OffsetOutOfRange {
                offset,
                earliest: bounds.earliest,
                latest: bounds.log_end,
            });
        }
        let end = match upto {
            ReadUpTo::HighWatermark => bounds.latest,
            ReadUpTo::LogEnd => bounds.log_end,
        };
        let batches = layout::read_batches(&self.store, self.key, offset, end, max_bytes)?;
        Ok(ReadResult {
            batches,
            bounds,
            end: None,
        })
    }

    /// First offset whose record timestamp is `>= ts`; the latest offset if there is none.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<u64, LogError> {
        let bounds = self.bounds();
        let Some(base) = layout::seek_time_index(&self.store, self.key, ts)? else {
            return Ok(bounds.latest);
        };
        if base < bounds.earliest {
            return Ok(bounds.earliest);
        }
        let Some(bytes) = layout::batch_at(&self.store, self.key, base)? else {
            // Dropped by retention between the two reads.
            return Ok(self.bounds().earliest);
        };
        let (_, records) = batch::decode(&bytes).map_err(|e| LogError::Corrupt {
            offset: base,
            reason: e.to_string(),
        })?;
        let hit = records.iter().find(|r| r.timestamp >= ts).map(|r| r.offset);
        Ok(hit
            .unwrap_or(bounds.latest)
            .min(bounds.latest)
            .max(bounds.earliest))
    }

    /// Applies retention now (and forgets producers idle for
    /// [`PRODUCER_STATE_EXPIRY_MS`], except pipeline workers': a worker whose filter passes
    /// nothing for weeks must still find its sequence where it left it, or it could not tell
    /// what the partition holds). Returns how many segments were dropped.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut state = self.lock();
        let expired: Vec<u64> = state
            .producers
            .iter()
            .filter(|(id, _)| *id & PIPELINE_PRODUCER_ID_BIT == 0)
            .filter(|(_, p)| now_ms.saturating_sub(p.last_used_ms) > PRODUCER_STATE_EXPIRY_MS)
            .map(|(id, _)| *id)
            .collect();
        if !expired.is_empty() {
            layout::delete_producers(&self.store, self.key, &expired)?;
            for id in &expired {
                state.producers.remove(id);
            }
        }
        let hw = state.high_watermark;
        let segments = &mut state.segments;
        let plan = retention::plan(segments.make_contiguous(), &self.config, now_ms, hw);
        if plan.drop_count == 0 {
            return Ok(0);
        }
        if plan.roll_active {
            let last = *segments.back().expect("a partition always has a segment");
            let fresh = SegmentMeta::empty_at(last.next_offset, now_ms, last.running_max_timestamp);
            layout::put_segment(&self.store, self.key, &fresh)?;
            segments.push_back(fresh);
        }
        let dropped: Vec<SegmentMeta> = segments.iter().take(plan.drop_count).copied().collect();
        let index_upto = dropped.last().map_or(-1, |s| s.running_max_timestamp);
        layout::drop_segments(&self.store, self.key, &dropped, index_upto)?;
        segments.drain(..plan.drop_count);
        self.publish(&state);
        let segments = &state.segments;
        tracing::info!(
            topic = self.key.topic,
            partition = self.key.partition,
            dropped = plan.drop_count,
            earliest = segments.front().map(|s| s.base_offset),
            "retention dropped segments"
        );
        Ok(plan.drop_count)
    }

    /// Marks the log closed (its topic was deleted) and wakes every watcher, so
    /// subscriptions on it end instead of waiting forever.
    pub fn close(&self) {
        // Under the log's lock: once this returns, no append is running or can start.
        let _state = self.lock();
        self.closed.store(true, Ordering::Release);
        self.bounds.send_modify(|_| {});
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests;
