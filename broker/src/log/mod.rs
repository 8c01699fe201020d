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
pub mod layout;
pub mod producers;
pub mod retention;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;
use weir_common::batch::{self, TimestampType, ValidBatch};

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
            e @ LogError::OutOfOrderSequence { .. } => BrokerError::OutOfOrderSequence {
                topic: topic.to_string(),
                partition,
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

    /// The leader-epoch history, oldest first.
    pub fn epochs(&self) -> Vec<EpochStart> {
        self.lock().epochs.clone()
    }

    /// The latest epoch of the history, if any (lock-free).
    pub fn latest_epoch(&self) -> Option<u32> {
        match self.latest_epoch.load(Ordering::Acquire) {
            NO_EPOCH => None,
            e => Some(e as u32),
        }
    }

    fn set_epochs(&self, state: &mut LogState, epochs: Vec<EpochStart>) {
        let latest = epochs.last().map_or(NO_EPOCH, |e| u64::from(e.epoch));
        state.epochs = epochs;
        self.latest_epoch.store(latest, Ordering::Release);
    }

    /// A leader about to append in `epoch`: records that the epoch starts at the log end,
    /// unless the history already has it (or a newer one: then this leader is stale, and its
    /// appends fail the leadership check anyway).
    pub fn ensure_epoch(&self, epoch: u32) -> Result<(), LogError> {
        let mut state = self.lock();
        if state.epochs.last().is_some_and(|e| e.epoch >= epoch) {
            return Ok(());
        }
        let mut epochs = state.epochs.clone();
        epochs.push(EpochStart {
            epoch,
            start_offset: state.log_end(),
        });
        layout::put_epochs(&self.store, self.key, &epochs)?;
        self.set_epochs(&mut state, epochs);
        Ok(())
    }

    /// A follower: takes the leader's history for the part of the log it has copied (its log
    /// is a prefix of the leader's).
    pub fn follow_epochs(&self, leader: &[EpochStart]) -> Result<(), LogError> {
        let mut state = self.lock();
        let end = state.log_end();
        let epochs: Vec<EpochStart> = leader
            .iter()
            .copied()
            .filter(|e| e.start_offset < end)
            .collect();
        if epochs != state.epochs {
            layout::put_epochs(&self.store, self.key, &epochs)?;
            self.set_epochs(&mut state, epochs);
        }
        Ok(())
    }

    /// The latest epoch in the history at or before `epoch`, and where it ends here (the next
    /// epoch's start, or the log end): Kafka's OffsetsForLeaderEpoch. `None` when the history
    /// has no such epoch.
    pub fn end_of_epoch(&self, epoch: u32) -> Option<(u32, u64)> {
        let state = self.lock();
        end_of_epoch(&state.epochs, epoch, state.log_end())
    }

    /// A leader: whether a follower at `fetch_offset` whose history ends with `last_epoch`
    /// disagrees with this log, and from where (Kafka's fetch validation against the
    /// follower's last fetched epoch).
    pub fn diverging(&self, fetch_offset: u64, last_epoch: Option<u32>) -> Option<Diverging> {
        let state = self.lock();
        let log_end = state.log_end();
        let Some(epoch) = last_epoch else {
            // No history: only a log longer than this one is known to diverge.
            return (fetch_offset > log_end).then_some(Diverging {
                epoch: 0,
                end_offset: log_end,
            });
        };
        match end_of_epoch(&state.epochs, epoch, log_end) {
            Some((e, end)) if e == epoch && end >= fetch_offset => None,
            Some((e, end)) => Some(Diverging {
                epoch: e,
                end_offset: end,
            }),
            // This history starts after that epoch: the logs agree up to where it starts.
            None => Some(Diverging {
                epoch,
                end_offset: state.epochs.first().map_or(log_end, |e| e.start_offset),
            }),
        }
    }

    /// Cuts the log at `offset` (a follower dropping a tail its new leader does not have):
    /// records, segments, time-index entries, producer batches and leader epochs from there
    /// on go, in one write; the high watermark stays at or below the new end. `offset` is
    /// rounded down to the start of the batch holding it. Returns the new log end.
    pub fn truncate_to(&self, offset: u64) -> Result<u64, LogError> {
        let mut state = self.lock();
        if self.is_closed() {
            return Err(LogError::Closed);
        }
        let end = state.log_end();
        let earliest = state.earliest();
        if offset >= end {
            return Ok(end);
        }
        if offset < earliest {
            return Err(LogError::OffsetOutOfRange {
                offset,
                earliest,
                latest: end,
            });
        }
        let i = state
            .segments
            .iter()
            .rposition(|s| s.base_offset <= offset)
            .expect("earliest <= offset, so some segment starts at or before it");
        let (offset, keep, last) = if state.segments[i].base_offset == offset && i > 0 {
            (offset, i, state.segments[i - 1])
        } else {
            let prev_running = i
                .checked_sub(1)
                .map_or(i64::MIN, |p| state.segments[p].running_max_timestamp);
            let (offset, cut) = self.cut_segment(&state.segments[i], offset, prev_running)?;
            (offset, i + 1, cut)
        };
        let dropped: Vec<u64> = state
            .segments
            .iter()
            .skip(keep)
            .map(|s| s.base_offset)
            .collect();
        let producers: Vec<(u64, Option<ProducerState>)> = state
            .producers
            .iter()
            .filter(|(_, p)| p.recent.iter().any(|b| b.base_offset >= offset))
            .map(|(id, p)| {
                let mut kept = p.clone();
                kept.recent.retain(|b| b.base_offset < offset);
                (*id, (!kept.recent.is_empty()).then_some(kept))
            })
            .collect();
        let epochs: Vec<EpochStart> = state
            .epochs
            .iter()
            .copied()
            .filter(|e| e.start_offset < offset)
            .collect();
        layout::truncate(
            &self.store,
            self.key,
            &Truncation {
                offset,
                dropped: &dropped,
                last: &last,
                producers: &producers,
                epochs: &epochs,
            },
        )?;
        state.segments.truncate(keep);
        if let Some(l) = state.segments.back_mut() {
            *l = last;
        }
        for (id, p) in producers {
            match p {
                Some(p) => state.producers.insert(id, p),
                None => state.producers.remove(&id),
            };
        }
        self.set_epochs(&mut state, epochs);
        state.high_watermark = state.high_watermark.min(offset);
        self.publish(&state);
        Ok(offset)
    }

    /// `seg` ending at `offset` (or at the start of the batch holding it): that offset and the
    /// segment's new metadata, from the batches it keeps.
    fn cut_segment(
        &self,
        seg: &SegmentMeta,
        offset: u64,
        prev_running_max: i64,
    ) -> Result<(u64, SegmentMeta), LogError> {
        let batches =
            layout::read_batches(&self.store, self.key, seg.base_offset, offset, usize::MAX)?;
        let mut cut = SegmentMeta {
            next_offset: seg.base_offset,
            size_bytes: 0,
            max_timestamp: i64::MIN,
            running_max_timestamp: prev_running_max,
            ..*seg
        };
        for bytes in &batches {
            let corrupt = |e: batch::BatchError| LogError::Corrupt {
                offset: cut.next_offset,
                reason: e.to_string(),
            };
            let valid =
                batch::validate(bytes, weir_common::limits::MAX_BATCH_BYTES).map_err(corrupt)?;
            let header = &valid.header;
            if header.next_offset() > offset {
                break;
            }
            let max_ts = match header.timestamp_type() {
                TimestampType::LogAppendTime => header.max_timestamp,
                TimestampType::CreateTime => valid.max_timestamp,
            };
            cut.next_offset = header.next_offset();
            cut.size_bytes += bytes.len() as u64;
            cut.max_timestamp = cut.max_timestamp.max(max_ts);
            cut.running_max_timestamp = cut.running_max_timestamp.max(max_ts);
        }
        Ok((cut.next_offset, cut))
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
            let mut bytes = pending.bytes.to_vec();
            let (max_ts, stamp) = match (placing, header.timestamp_type()) {
                (Placing::AsGiven, _) if header.base_offset != base => {
                    return Err(LogError::NotContiguous {
                        expected: base,
                        got: header.base_offset,
                    });
                }
                (Placing::AsGiven, TimestampType::LogAppendTime) => {
                    (header.max_timestamp, header.max_timestamp)
                }
                (Placing::Assign, TimestampType::LogAppendTime) => {
                    batch::set_base_offset(&mut bytes, base);
                    batch::set_log_append_time(&mut bytes, now_ms);
                    (now_ms, now_ms)
                }
                (Placing::Assign, TimestampType::CreateTime) => {
                    batch::set_base_offset(&mut bytes, base);
                    (pending.valid.max_timestamp, 0)
                }
                (Placing::AsGiven, TimestampType::CreateTime) => (pending.valid.max_timestamp, 0),
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
            if let Some(extra) = extra.filter(|e| !e.is_empty()) {
                self.store.write(extra, Durability::Configured)?;
            }
            return Ok(out);
        }
        write.segments = tail.clone();
        write.producers = touched.into_iter().collect();
        let mut set = extra.unwrap_or_else(|| self.store.write_set());
        layout::put_append(&mut set, self.key, &write);
        self.store.write(set, Durability::Configured)?;
        // Durable: now make it visible.
        state.producers.extend(write.producers);
        state.segments.pop_back();
        state.segments.extend(tail);
        if state.hw_follows_end {
            state.high_watermark = state.log_end();
        }
        self.publish(&state);
        Ok(out)
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
        Ok(ReadResult { batches, bounds })
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
    /// [`PRODUCER_STATE_EXPIRY_MS`]). Returns how many segments were dropped.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut state = self.lock();
        let expired: Vec<u64> = state
            .producers
            .iter()
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

/// See [`PartitionLog::end_of_epoch`].
fn end_of_epoch(epochs: &[EpochStart], epoch: u32, log_end: u64) -> Option<(u32, u64)> {
    let i = epochs.iter().rposition(|e| e.epoch <= epoch)?;
    let end = epochs.get(i + 1).map_or(log_end, |next| next.start_offset);
    Some((epochs[i].epoch, end))
}

#[cfg(test)]
mod tests {
    use weir_common::batch::{BatchBuilder, set_producer};
    use weir_common::limits::DEFAULT_MAX_RECORD_BYTES;

    use super::*;
    use crate::storage::SyncMode;

    fn log(dir: &std::path::Path) -> PartitionLog {
        let store = Store::open(dir, SyncMode::Never).expect("open store");
        let config = TopicConfig {
            partitions: 1,
            retention_ms: None,
            retention_bytes: None,
            segment_bytes: 100,
            segment_ms: i64::MAX,
        };
        let key = PartitionKey {
            topic: 1,
            partition: 0,
        };
        PartitionLog::new(
            store,
            key,
            config,
            vec![SegmentMeta::empty_at(0, 0, i64::MIN)],
            vec![],
            vec![],
        )
    }

    fn pending(ts: TimestampType, values: &[&str], producer: Option<(u64, u32)>) -> PendingBatch {
        let mut b = BatchBuilder::with_capacity(ts, 256);
        for (i, v) in values.iter().enumerate() {
            b.push(1000 + i as i64, None, v.as_bytes(), std::iter::empty());
        }
        let bytes: Bytes = b.finish();
        let bytes = match producer {
            None => bytes,
            Some((id, seq)) => {
                let mut buf = bytes.to_vec();
                set_producer(&mut buf, id, seq);
                Bytes::from(buf)
            }
        };
        let valid = batch::validate(&bytes, DEFAULT_MAX_RECORD_BYTES).expect("valid");
        PendingBatch { bytes, valid }
    }

    /// What a follower receives: the leader's stored batches.
    fn as_fetched(batches: Vec<Bytes>) -> Vec<PendingBatch> {
        batches
            .into_iter()
            .map(|bytes| {
                let valid = batch::validate(&bytes, DEFAULT_MAX_RECORD_BYTES).expect("valid");
                PendingBatch { bytes, valid }
            })
            .collect()
    }

    #[test]
    fn a_replica_copy_holds_the_leaders_batches_byte_for_byte_and_its_producer_state() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (leader, follower) = (log(d1.path()), log(d2.path()));
        let group = [
            pending(TimestampType::CreateTime, &["a", "b", "c"], Some((7, 0))),
            pending(TimestampType::LogAppendTime, &["d"], None),
            pending(TimestampType::CreateTime, &["e", "f"], Some((7, 3))),
        ];
        for r in leader.append_group(&group, 5_000).unwrap() {
            r.unwrap();
        }
        let stored = leader
            .read_from(0, usize::MAX, ReadUpTo::LogEnd)
            .unwrap()
            .batches;
        assert_eq!(stored.len(), 3);
        // Fetched in two rounds, the follower applies them at the leader's offsets, later.
        let fetched = as_fetched(stored.clone());
        follower.append_replica(&fetched[..1], 9_000).unwrap();
        follower.append_replica(&fetched[1..], 9_000).unwrap();
        assert_eq!(
            follower
                .read_from(0, usize::MAX, ReadUpTo::LogEnd)
                .unwrap()
                .batches,
            stored
        );
        assert_eq!(follower.bounds().latest, 6);
        assert!(
            follower.bounds().segments > 1,
            "rolls segments by its own config"
        );
        // A retry of producer 7's last batch is recognised on the copy (it may become leader).
        let retry = pending(TimestampType::CreateTime, &["e", "f"], Some((7, 3)));
        let again = follower.append_group(&[retry], 10_000).unwrap();
        assert_eq!(again[0].as_ref().unwrap().base_offset, 4);
        assert_eq!(follower.bounds().latest, 6);
    }

    #[test]
    fn a_replica_copy_refuses_a_gap_or_an_overlap_and_writes_nothing() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (leader, follower) = (log(d1.path()), log(d2.path()));
        let group = [
            pending(TimestampType::CreateTime, &["a", "b"], None),
            pending(TimestampType::CreateTime, &["c"], None),
        ];
        leader.append_group(&group, 5_000).unwrap();
        let fetched = as_fetched(
            leader
                .read_from(0, usize::MAX, ReadUpTo::LogEnd)
                .unwrap()
                .batches,
        );
        let gap = follower.append_replica(&fetched[1..], 9_000).unwrap_err();
        assert!(
            matches!(
                gap,
                LogError::NotContiguous {
                    expected: 0,
                    got: 2
                }
            ),
            "{gap:?}"
        );
        follower.append_replica(&fetched[..1], 9_000).unwrap();
        let overlap = follower.append_replica(&fetched, 9_000).unwrap_err();
        assert!(
            matches!(
                overlap,
                LogError::NotContiguous {
                    expected: 2,
                    got: 0
                }
            ),
            "{overlap:?}"
        );
        assert_eq!(follower.bounds().latest, 2);
    }

    #[test]
    fn readers_see_only_what_is_below_the_high_watermark() {
        let d = tempfile::tempdir().unwrap();
        let log = log(d.path());
        log.append_group(&[pending(TimestampType::CreateTime, &["a", "b"], None)], 1)
            .unwrap();
        assert_eq!(
            (log.bounds().latest, log.bounds().log_end),
            (2, 2),
            "standalone"
        );
        // A leader with followers in sync: appends no longer move the high watermark.
        log.set_hw_follows_end(false);
        log.append_group(&[pending(TimestampType::CreateTime, &["c"], None)], 1)
            .unwrap();
        log.append_group(&[pending(TimestampType::CreateTime, &["d", "e"], None)], 1)
            .unwrap();
        let b = log.bounds();
        assert_eq!((b.latest, b.log_end), (2, 5));
        let visible = log
            .read_from(0, usize::MAX, ReadUpTo::HighWatermark)
            .unwrap();
        assert_eq!(visible.batches.len(), 1);
        assert!(
            log.read_from(2, usize::MAX, ReadUpTo::HighWatermark)
                .unwrap()
                .batches
                .is_empty()
        );
        assert_eq!(
            log.read_from(2, usize::MAX, ReadUpTo::LogEnd)
                .unwrap()
                .batches
                .len(),
            2
        );
        // Standing past the high watermark (up to the log end) is fine; past the end is not.
        assert!(log.read_from(5, 1, ReadUpTo::HighWatermark).is_ok());
        assert!(matches!(
            log.read_from(6, 1, ReadUpTo::HighWatermark),
            Err(LogError::OffsetOutOfRange { latest: 5, .. })
        ));
        let mut watch = log.watch();
        watch.borrow_and_update();
        log.set_high_watermark(3);
        assert!(watch.has_changed().unwrap(), "readers wake when it moves");
        assert_eq!(log.bounds().latest, 3);
        log.set_high_watermark(99);
        assert_eq!(log.bounds().latest, 5, "never past the log end");
        log.set_high_watermark(0);
        log.set_hw_follows_end(true);
        assert_eq!(
            log.bounds().latest,
            5,
            "a sole in-sync replica sees all it has"
        );
    }

    #[test]
    fn truncation_cuts_records_segments_index_producers_and_epochs_and_survives_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let l = log(d.path());
        l.ensure_epoch(1).unwrap();
        // Small segments (100 bytes): every batch or two rolls one.
        let vals: Vec<String> = (0..12).map(|i| format!("value-{i:02}")).collect();
        for (i, pair) in vals.chunks(2).enumerate() {
            if i == 3 {
                l.ensure_epoch(2).unwrap();
            }
            let v: Vec<&str> = pair.iter().map(String::as_str).collect();
            let b = pending(TimestampType::CreateTime, &v, Some((9, (i * 2) as u32)));
            l.append_group(&[b], 5_000).unwrap()[0].as_ref().unwrap();
        }
        let before = l.bounds();
        assert_eq!(before.log_end, 12);
        assert!(before.segments > 2);
        assert_eq!(l.end_of_epoch(1), Some((1, 6)));
        assert_eq!(l.end_of_epoch(2), Some((2, 12)));
        assert_eq!(l.end_of_epoch(7), Some((2, 12)));
        assert_eq!(l.end_of_epoch(0), None);

        // An offset inside a batch rounds down to its start.
        assert_eq!(l.truncate_to(7).unwrap(), 6);
        let b = l.bounds();
        assert_eq!((b.log_end, b.latest), (6, 6));
        assert_eq!(
            l.epochs(),
            vec![EpochStart {
                epoch: 1,
                start_offset: 0
            }]
        );
        let read = l
            .read_from(0, usize::MAX, ReadUpTo::LogEnd)
            .unwrap()
            .batches;
        assert_eq!(batch::next_offset_after(&read).unwrap(), Some(6));
        assert_eq!(
            read.iter().map(|b| b.len() as u64).sum::<u64>(),
            b.size_bytes,
            "segment sizes match the data kept"
        );
        // The producer's later batches are forgotten: its next sequence continues at 6.
        let next = pending(TimestampType::CreateTime, &["x"], Some((9, 6)));
        let a = l.append_group(&[next], 6_000).unwrap();
        assert_eq!(a[0].as_ref().unwrap().base_offset, 6);
        // Nothing of the cut tail is found by timestamp.
        assert_eq!(l.offset_for_timestamp(1_001).unwrap(), 1);

        // Reopened: the same log, history and producer state.
        let (segs, epochs) = (l.bounds(), l.epochs());
        drop(l);
        let store = Store::open(d.path(), SyncMode::Never).unwrap();
        let key = PartitionKey {
            topic: 1,
            partition: 0,
        };
        let mut loaded: Vec<SegmentMeta> = layout::load_segments(&store, 1)
            .unwrap()
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        loaded.sort_by_key(|s| s.base_offset);
        assert_eq!(loaded.last().unwrap().next_offset, 7);
        assert_eq!(layout::load_epochs(&store, key).unwrap(), epochs);
        let producers = layout::load_producers(&store, key).unwrap();
        let again = PartitionLog::new(
            store,
            key,
            TopicConfig {
                partitions: 1,
                retention_ms: None,
                retention_bytes: None,
                segment_bytes: 100,
                segment_ms: i64::MAX,
            },
            loaded,
            producers,
            epochs,
        );
        assert_eq!(again.bounds(), segs);
        let retry = pending(TimestampType::CreateTime, &["x"], Some((9, 6)));
        let a = again.append_group(&[retry], 7_000).unwrap();
        assert_eq!(
            a[0].as_ref().unwrap().base_offset,
            6,
            "a retry, not a new record"
        );
        // Cutting at a segment boundary, and everything.
        assert_eq!(again.truncate_to(2).unwrap(), 2);
        assert_eq!(again.truncate_to(0).unwrap(), 0);
        assert_eq!(again.bounds().size_bytes, 0);
        assert!(again.epochs().is_empty());
    }

    #[test]
    fn a_follower_takes_the_leaders_epochs_for_what_it_has() {
        let d = tempfile::tempdir().unwrap();
        let l = log(d.path());
        l.append_group(&[pending(TimestampType::CreateTime, &["a", "b"], None)], 1)
            .unwrap();
        let leader = [
            EpochStart {
                epoch: 0,
                start_offset: 0,
            },
            EpochStart {
                epoch: 3,
                start_offset: 2,
            },
            EpochStart {
                epoch: 4,
                start_offset: 5,
            },
        ];
        l.follow_epochs(&leader).unwrap();
        assert_eq!(l.epochs(), leader[..1]);
        assert_eq!(l.end_of_epoch(3), Some((0, 2)));
        l.append_group(&[pending(TimestampType::CreateTime, &["c"], None)], 1)
            .unwrap();
        l.follow_epochs(&leader).unwrap();
        assert_eq!(l.epochs(), leader[..2]);
    }

    #[test]
    fn a_leader_finds_where_a_followers_log_diverges() {
        let d = tempfile::tempdir().unwrap();
        let l = log(d.path());
        // Epoch 1 wrote 0..4, epoch 3 wrote 4..6.
        l.ensure_epoch(1).unwrap();
        l.append_group(
            &[pending(
                TimestampType::CreateTime,
                &["a", "b", "c", "d"],
                None,
            )],
            1,
        )
        .unwrap();
        l.ensure_epoch(3).unwrap();
        l.append_group(&[pending(TimestampType::CreateTime, &["e", "f"], None)], 1)
            .unwrap();
        // In step: a follower of epoch 3 anywhere up to the end, or of epoch 1 up to 4.
        assert_eq!(l.diverging(6, Some(3)), None);
        assert_eq!(l.diverging(2, Some(1)), None);
        assert_eq!(l.diverging(4, Some(1)), None);
        // An old leader of epoch 1 that wrote on past 4: cut back to 4.
        let cut = |epoch, end_offset| Some(Diverging { epoch, end_offset });
        assert_eq!(l.diverging(5, Some(1)), cut(1, 4));
        // A leader of epoch 2 this log never saw: epoch 1 ends at 4 here.
        assert_eq!(l.diverging(5, Some(2)), cut(1, 4));
        // No history: only a longer log diverges.
        assert_eq!(l.diverging(6, None), None);
        assert_eq!(l.diverging(9, None), cut(0, 6));
        // An epoch before this history: the logs agree up to where it starts.
        assert_eq!(l.diverging(3, Some(0)), cut(0, 0));
    }
}
