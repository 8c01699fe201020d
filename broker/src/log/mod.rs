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
pub mod retention;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;
use weir_common::batch::{self, TimestampType, ValidBatch};

use crate::storage::{AppendWrite, StorageError, Store};
use crate::types::{PartitionKey, SegmentMeta, TopicConfig};

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
}

impl From<StorageError> for LogError {
    fn from(e: StorageError) -> Self {
        LogError::Storage(e.to_string())
    }
}

/// Offsets and size of a partition at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bounds {
    /// Offset of the oldest record kept (== `latest` when empty).
    pub earliest: u64,
    /// Next offset to be written.
    pub latest: u64,
    pub size_bytes: u64,
    pub segments: u32,
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

pub struct PartitionLog {
    key: PartitionKey,
    store: Store,
    config: TopicConfig,
    segments: Mutex<VecDeque<SegmentMeta>>,
    bounds: watch::Sender<Bounds>,
    closed: AtomicBool,
}

fn bounds_of(segments: &VecDeque<SegmentMeta>) -> Bounds {
    let first = segments.front().expect("a partition always has a segment");
    let last = segments.back().expect("a partition always has a segment");
    Bounds {
        earliest: first.base_offset,
        latest: last.next_offset,
        size_bytes: segments.iter().map(|s| s.size_bytes).sum(),
        segments: segments.len() as u32,
    }
}

impl PartitionLog {
    /// A log over recovered (or freshly created) segments, in offset order, at least one.
    pub fn new(
        store: Store,
        key: PartitionKey,
        config: TopicConfig,
        segments: Vec<SegmentMeta>,
    ) -> Self {
        assert!(!segments.is_empty(), "a partition always has a segment");
        debug_assert!(
            segments
                .windows(2)
                .all(|w| w[0].next_offset == w[1].base_offset)
        );
        let segments: VecDeque<_> = segments.into();
        let (bounds, _) = watch::channel(bounds_of(&segments));
        Self {
            key,
            store,
            config,
            segments: Mutex::new(segments),
            bounds,
            closed: AtomicBool::new(false),
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

    fn lock(&self) -> MutexGuard<'_, VecDeque<SegmentMeta>> {
        // A panic while holding this lock cannot leave the deque half-updated (mutations are
        // applied after the write succeeded), so a poisoned lock is still consistent.
        self.segments.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, segments: &VecDeque<SegmentMeta>) {
        self.bounds.send_replace(bounds_of(segments));
    }

    /// Appends a group of validated batches in one RocksDB write (group commit), rolling
    /// segments as needed. Returns where each batch landed, in order.
    pub fn append_group(
        &self,
        group: &[PendingBatch],
        now_ms: i64,
    ) -> Result<Vec<Appended>, LogError> {
        let mut segments = self.lock();
        if self.is_closed() {
            return Err(LogError::Closed);
        }
        let active = *segments.back().expect("a partition always has a segment");
        let mut tail: Vec<SegmentMeta> = vec![active];
        let mut write = AppendWrite::default();
        let mut out = Vec::with_capacity(group.len());
        for pending in group {
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
            batch::set_base_offset(&mut bytes, base);
            let (max_ts, stamp) = match pending.valid.header.timestamp_type() {
                TimestampType::LogAppendTime => {
                    batch::set_log_append_time(&mut bytes, now_ms);
                    (now_ms, now_ms)
                }
                TimestampType::CreateTime => (pending.valid.max_timestamp, 0),
            };
            let count = pending.valid.header.record_count;
            seg.next_offset += u64::from(count);
            seg.size_bytes += len;
            seg.max_timestamp = seg.max_timestamp.max(max_ts);
            if max_ts > seg.running_max_timestamp {
                seg.running_max_timestamp = max_ts;
                write.time_entries.push((max_ts, base));
            }
            write.batches.push((base, bytes));
            out.push(Appended {
                base_offset: base,
                record_count: count,
                log_append_time: stamp,
            });
        }
        write.segments = tail.clone();
        self.store.append(self.key, &write)?;
        // Durable: now make it visible.
        segments.pop_back();
        segments.extend(tail);
        self.publish(&segments);
        Ok(out)
    }

    /// Whole batches from `offset` on, up to `max_bytes` (at least one batch if any).
    pub fn read_from(&self, offset: u64, max_bytes: usize) -> Result<ReadResult, LogError> {
        let bounds = self.bounds();
        if offset < bounds.earliest || offset > bounds.latest {
            return Err(LogError::OffsetOutOfRange {
                offset,
                earliest: bounds.earliest,
                latest: bounds.latest,
            });
        }
        let batches = self
            .store
            .read_batches(self.key, offset, bounds.latest, max_bytes)?;
        Ok(ReadResult { batches, bounds })
    }

    /// First offset whose record timestamp is `>= ts`; the latest offset if there is none.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<u64, LogError> {
        let bounds = self.bounds();
        let Some(base) = self.store.seek_time_index(self.key, ts)? else {
            return Ok(bounds.latest);
        };
        if base < bounds.earliest {
            return Ok(bounds.earliest);
        }
        let Some(bytes) = self.store.batch_at(self.key, base)? else {
            // Dropped by retention between the two reads.
            return Ok(self.bounds().earliest);
        };
        let (_, records) = batch::decode(&bytes).map_err(|e| LogError::Corrupt {
            offset: base,
            reason: e.to_string(),
        })?;
        let hit = records.iter().find(|r| r.timestamp >= ts).map(|r| r.offset);
        Ok(hit.unwrap_or(bounds.latest).max(bounds.earliest))
    }

    /// Applies retention now. Returns how many segments were dropped.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut segments = self.lock();
        let plan = retention::plan(segments.make_contiguous(), &self.config, now_ms);
        if plan.drop_count == 0 {
            return Ok(0);
        }
        if plan.roll_active {
            let last = *segments.back().expect("a partition always has a segment");
            let fresh = SegmentMeta::empty_at(last.next_offset, now_ms, last.running_max_timestamp);
            self.store.put_segment(self.key, &fresh)?;
            segments.push_back(fresh);
        }
        let dropped: Vec<SegmentMeta> = segments.iter().take(plan.drop_count).copied().collect();
        let index_upto = dropped.last().map_or(-1, |s| s.running_max_timestamp);
        self.store.drop_segments(self.key, &dropped, index_upto)?;
        segments.drain(..plan.drop_count);
        self.publish(&segments);
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
        // Under the segments lock: once this returns, no append is running or can start.
        let _segments = self.lock();
        self.closed.store(true, Ordering::Release);
        self.bounds.send_modify(|_| {});
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
