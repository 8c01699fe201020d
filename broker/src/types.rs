//! Plain domain types shared by the broker's modules (no I/O, no encoding).

use serde::{Deserialize, Serialize};

pub use weir_codec::keys::{PartitionKey, TopicId};

/// Effective settings of a topic (defaults resolved at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub partitions: u32,
    /// `None`: keep forever.
    pub retention_ms: Option<i64>,
    /// `None`: no size limit.
    pub retention_bytes: Option<u64>,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// Cluster mode: in-sync replicas an `acks=all` produce needs (Kafka's
    /// `min.insync.replicas`), 1..=the replication factor. Topics stored before it existed: 1.
    #[serde(default = "one")]
    pub min_insync_replicas: u32,
}

fn one() -> u32 {
    1
}

/// A topic as persisted in the metadata column family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub id: TopicId,
    pub name: String,
    pub config: TopicConfig,
    pub created_ms: i64,
    /// A local copy of a cluster topic: it follows the cluster metadata, and goes when the
    /// metadata drops the topic (also if that happened while this broker was down).
    #[serde(default)]
    pub replica: bool,
}

/// One segment of a partition log: the contiguous offset range `[base_offset, next_offset)`.
///
/// Invariant: segments of a partition are contiguous (`next_offset` of one is `base_offset` of
/// the next); a batch never straddles two segments; only the last segment grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    pub base_offset: u64,
    pub next_offset: u64,
    pub size_bytes: u64,
    /// When the segment was opened (unix ms): drives time-based rolling.
    pub created_ms: i64,
    /// Largest record timestamp in this segment (`i64::MIN` when empty): drives time retention.
    pub max_timestamp: i64,
    /// Largest record timestamp in this segment *and all before it*: the time index holds an
    /// entry per increase of this running maximum, so dropping a segment drops index entries
    /// up to this value.
    pub running_max_timestamp: i64,
}

/// Where a leader epoch starts in a partition's log (Kafka's leader-epoch cache): records
/// from `start_offset` up to the next entry's start were written by that epoch's leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochStart {
    pub epoch: u32,
    pub start_offset: u64,
}

/// Where to look an offset up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    Earliest,
    Latest,
    /// First offset with a record timestamp `>=` this (unix ms).
    Timestamp(i64),
}

/// A partition's answer to an [`OffsetQuery`], with its bounds at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The offset asked for.
    pub offset: u64,
    pub earliest: u64,
    /// The high watermark: the offset the next readable record will get.
    pub latest: u64,
}

impl SegmentMeta {
    pub fn empty_at(offset: u64, now_ms: i64, running_max_timestamp: i64) -> Self {
        Self {
            base_offset: offset,
            next_offset: offset,
            size_bytes: 0,
            created_ms: now_ms,
            max_timestamp: i64::MIN,
            running_max_timestamp,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.next_offset == self.base_offset
    }
}

pub use weir_common::record::now_ms;
