//! Storage key layout. Every log key starts with the big-endian topic id and partition, so
//! one partition's entries are contiguous and ordered by offset (or timestamp) in RocksDB.
//!
//! ```text
//! records    topic u32 | partition u32 | base_offset u64              → batch bytes
//! segments   topic u32 | partition u32 | base_offset u64              → SegmentMeta (48 B)
//! timeindex  topic u32 | partition u32 | timestamp u64 | base_offset u64 → ()
//! producers  topic u32 | partition u32 | producer_id u64              → ProducerState
//! epochs     topic u32 | partition u32                                 → leader-epoch history
//! meta       "topic/" name → TopicMeta (JSON);  "view/" name → ViewDef (JSON);
//!            "next_topic_id" → u32 BE;
//!            "next_producer_id" → u64 BE; "security" → users and ACLs (JSON)
//! offsets    group_len u16 | group | topic u32 | partition u32         → Committed
//! plugins    name                                   → 0x80 | kind u8 | created i64 | limits | wasm
//! pipelines  "d" name                                                  → PipelineDef (JSON)
//!            "p" name_len u16 | name | partition u32                    → PipelineProgress
//! ```
//!
//! Committed offsets are keyed by group first, so one group's offsets are contiguous. The
//! decoders take any bytes (a damaged store) and answer `None` for what is not theirs; they
//! are fuzzed (`fuzz/`). The values' encodings live with the broker's storage.

/// Internal numeric id of a topic. Record keys use it instead of the name, so a topic deleted
/// and created again under the same name never sees the old records.
pub type TopicId = u32;

/// One partition of one topic: the prefix of every storage key of its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub topic: TopicId,
    pub partition: u32,
}

pub const PARTITION_PREFIX_LEN: usize = 8;

pub const OFFSET_KEY_LEN: usize = 16;

pub const TIME_KEY_LEN: usize = 24;

pub const TOPIC_META_PREFIX: &[u8] = b"topic/";

/// `meta` CF, standalone: each view's definition (JSON) under this prefix + its name.
pub const VIEW_PREFIX: &[u8] = b"view/";

pub const NEXT_TOPIC_ID_KEY: &[u8] = b"next_topic_id";

pub const NEXT_PRODUCER_ID_KEY: &[u8] = b"next_producer_id";

/// `meta` CF, cluster mode: the high watermark of every local copy, checkpointed.
pub const HIGH_WATERMARKS_KEY: &[u8] = b"high_watermarks";

/// `meta` CF: users and ACLs, one JSON document (`security::State`).
pub const SECURITY_KEY: &[u8] = b"security";

pub fn partition_prefix(pk: PartitionKey) -> [u8; PARTITION_PREFIX_LEN] {
    let mut k = [0u8; PARTITION_PREFIX_LEN];
    k[..4].copy_from_slice(&pk.topic.to_be_bytes());
    k[4..].copy_from_slice(&pk.partition.to_be_bytes());
    k
}

/// First key of a topic (inclusive) and first key after it (exclusive), for range deletes.
pub fn topic_range(topic: TopicId) -> ([u8; 4], [u8; 4]) {
    let start = topic.to_be_bytes();
    // Every key of the topic starts with `start`; the next topic id is an exclusive bound
    // (ids never reach u32::MAX: creation refuses it).
    (start, (topic + 1).to_be_bytes())
}

pub fn offset_key(pk: PartitionKey, offset: u64) -> [u8; OFFSET_KEY_LEN] {
    let mut k = [0u8; OFFSET_KEY_LEN];
    k[..8].copy_from_slice(&partition_prefix(pk));
    k[8..].copy_from_slice(&offset.to_be_bytes());
    k
}

pub fn time_key(pk: PartitionKey, timestamp: u64, offset: u64) -> [u8; TIME_KEY_LEN] {
    let mut k = [0u8; TIME_KEY_LEN];
    k[..8].copy_from_slice(&partition_prefix(pk));
    k[8..16].copy_from_slice(&timestamp.to_be_bytes());
    k[16..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// Offset of an offset key, if `key` belongs to `pk`.
pub fn decode_offset_key(pk: PartitionKey, key: &[u8]) -> Option<u64> {
    if key.len() != OFFSET_KEY_LEN || key[..8] != partition_prefix(pk) {
        return None;
    }
    Some(u64::from_be_bytes(key[8..].try_into().ok()?))
}

/// (timestamp, base_offset) of a time-index key, if `key` belongs to `pk`.
pub fn decode_time_key(pk: PartitionKey, key: &[u8]) -> Option<(u64, u64)> {
    if key.len() != TIME_KEY_LEN || key[..8] != partition_prefix(pk) {
        return None;
    }
    let ts = u64::from_be_bytes(key[8..16].try_into().ok()?);
    let off = u64::from_be_bytes(key[16..].try_into().ok()?);
    Some((ts, off))
}

/// Partition of an offset key of `topic` (used when recovering segments).
pub fn decode_partition(topic: TopicId, key: &[u8]) -> Option<(u32, u64)> {
    if key.len() != OFFSET_KEY_LEN || key[..4] != topic.to_be_bytes() {
        return None;
    }
    let p = u32::from_be_bytes(key[4..8].try_into().ok()?);
    let o = u64::from_be_bytes(key[8..].try_into().ok()?);
    Some((p, o))
}

pub fn view_key(name: &str) -> Vec<u8> {
    let mut k = VIEW_PREFIX.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn topic_meta_key(name: &str) -> Vec<u8> {
    let mut k = TOPIC_META_PREFIX.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// Key of a group's committed offset for one partition.
pub fn group_offset_key(group: &str, pk: PartitionKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + group.len() + PARTITION_PREFIX_LEN);
    // Group names are at most MAX_NAME_LEN (249) bytes: the length always fits.
    k.extend_from_slice(&(group.len() as u16).to_be_bytes());
    k.extend_from_slice(group.as_bytes());
    k.extend_from_slice(&partition_prefix(pk));
    k
}

/// (group, topic id, partition) of a committed-offset key.
pub fn decode_group_offset_key(key: &[u8]) -> Option<(String, PartitionKey)> {
    let (len, rest) = key.split_at_checked(2)?;
    let len = u16::from_be_bytes(len.try_into().ok()?) as usize;
    let (group, rest) = rest.split_at_checked(len)?;
    if rest.len() != PARTITION_PREFIX_LEN {
        return None;
    }
    let group = std::str::from_utf8(group).ok()?.to_string();
    let topic = u32::from_be_bytes(rest[..4].try_into().ok()?);
    let partition = u32::from_be_bytes(rest[4..].try_into().ok()?);
    Some((group, PartitionKey { topic, partition }))
}

/// Key of a pipeline's definition: `d | name`.
pub fn pipeline_def_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(b'd');
    k.extend_from_slice(name.as_bytes());
    k
}

/// Every pipeline-definition key starts with this.
pub const PIPELINE_DEF_PREFIX: &[u8] = b"d";

/// Prefix of a pipeline's progress keys: `p | name length u16 BE | name`.
fn pipeline_progress_prefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + name.len() + 4);
    k.push(b'p');
    // Pipeline names are at most MAX_NAME_LEN (249) bytes: the length always fits.
    k.extend_from_slice(&(name.len() as u16).to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

/// Key of a pipeline's progress on one source partition.
pub fn pipeline_progress_key(name: &str, partition: u32) -> Vec<u8> {
    let mut k = pipeline_progress_prefix(name);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// `[start, end)` covering every progress key of one pipeline (and no other's).
pub fn pipeline_progress_range(name: &str) -> (Vec<u8>, Vec<u8>) {
    let start = pipeline_progress_key(name, 0);
    let mut end = pipeline_progress_prefix(name);
    end.extend_from_slice(&[0xFF; 5]);
    (start, end)
}

/// The source partition of a progress key of pipeline `name`.
pub fn decode_pipeline_progress_key(name: &str, key: &[u8]) -> Option<u32> {
    let prefix = pipeline_progress_prefix(name);
    let rest = key.strip_prefix(prefix.as_slice())?;
    Some(u32::from_be_bytes(rest.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: PartitionKey = PartitionKey {
        topic: 7,
        partition: 3,
    };

    #[test]
    fn offset_keys_sort_by_partition_then_offset() {
        let mut keys = [
            offset_key(
                PartitionKey {
                    topic: 7,
                    partition: 4,
                },
                0,
            ),
            offset_key(PK, 256),
            offset_key(PK, 1),
            offset_key(
                PartitionKey {
                    topic: 6,
                    partition: 9,
                },
                u64::MAX,
            ),
            offset_key(PK, 255),
        ];
        keys.sort();
        let decoded: Vec<_> = keys.iter().map(|k| decode_offset_key(PK, k)).collect();
        assert_eq!(decoded, vec![None, Some(1), Some(255), Some(256), None]);
    }

    #[test]
    fn time_keys_round_trip_and_sort_by_time() {
        let a = time_key(PK, 1_000, 50);
        let b = time_key(PK, 999, 60);
        assert!(b < a);
        assert_eq!(decode_time_key(PK, &a), Some((1_000, 50)));
        assert_eq!(
            decode_time_key(
                PartitionKey {
                    topic: 7,
                    partition: 2
                },
                &a
            ),
            None
        );
    }

    #[test]
    fn topic_range_covers_exactly_one_topic() {
        let (start, end) = topic_range(7);
        let inside = offset_key(
            PartitionKey {
                topic: 7,
                partition: u32::MAX,
            },
            u64::MAX,
        );
        let next = offset_key(
            PartitionKey {
                topic: 8,
                partition: 0,
            },
            0,
        );
        let prev = offset_key(
            PartitionKey {
                topic: 6,
                partition: u32::MAX,
            },
            u64::MAX,
        );
        assert!(start[..] <= inside[..] && inside[..] < end[..]);
        assert!(next[..] >= end[..]);
        assert!(prev[..] < start[..]);
    }
}
