//! Where a partition's data lives in storage: its keys (`weir_codec::keys`: partition +
//! offset, partition + timestamp + offset), the value encodings of segments, producer state
//! and leader-epoch histories, and the writes an append, a truncation or retention makes.
//!
//! Column families: [`Cf::Records`] (the batches as produced), [`Cf::Segments`],
//! [`Cf::TimeIndex`], [`Cf::Producers`], [`Cf::Epochs`], and the producer-id counter and the
//! high-watermark checkpoint in [`Cf::Meta`].

use bytes::Bytes;
use weir_codec::keys::{
    HIGH_WATERMARKS_KEY, NEXT_PRODUCER_ID_KEY, OFFSET_KEY_LEN, TIME_KEY_LEN, decode_offset_key,
    decode_partition, decode_time_key, offset_key, partition_prefix, time_key, topic_range,
};

use super::producers::{PRODUCER_DEDUPE_WINDOW, ProducerBatch, ProducerState};
use crate::storage::{Cf, Durability, StorageError, Store, WriteSet};
use crate::types::{EpochStart, PartitionKey, SegmentMeta, TopicId};

/// The column families holding a topic's partitions, cleared whole when it is deleted.
const PARTITION_CFS: [Cf; 5] = [
    Cf::Records,
    Cf::Segments,
    Cf::TimeIndex,
    Cf::Producers,
    Cf::Epochs,
];

/// One atomic append to a partition: record batches, touched segments, time-index entries
/// and the new state of the idempotent producers that wrote.
#[derive(Debug, Default)]
pub struct AppendWrite {
    /// Stored batches by base offset (a replica's as fetched, shared, not copied).
    pub batches: Vec<(u64, Bytes)>,
    pub segments: Vec<SegmentMeta>,
    pub time_entries: Vec<(i64, u64)>,
    pub producers: Vec<(u64, ProducerState)>,
}

impl AppendWrite {
    /// About how many bytes [`put_append`] adds to a write set (RocksDB's framing of each
    /// entry included), to size the set once.
    pub fn encoded_len(&self) -> usize {
        /// A RocksDB write batch's header, and an entry's framing beyond its key and value:
        /// type, column family and two lengths (varints).
        const BATCH_HEADER: usize = 12;
        const ENTRY_FRAMING: usize = 1 + 5 + 5 + 5;
        let offset_entry = ENTRY_FRAMING + OFFSET_KEY_LEN;
        let batches: usize = self
            .batches
            .iter()
            .map(|(_, b)| offset_entry + b.len())
            .sum();
        let producers: usize = self
            .producers
            .iter()
            .map(|(_, s)| offset_entry + producer_value_len(s))
            .sum();
        BATCH_HEADER
            + batches
            + producers
            + self.segments.len() * (offset_entry + SEGMENT_VALUE_LEN)
            + self.time_entries.len() * (ENTRY_FRAMING + TIME_KEY_LEN)
    }
}

/// What cutting a partition's log at `offset` writes (see [`truncate`]).
#[derive(Debug)]
pub struct Truncation<'a> {
    pub offset: u64,
    /// Base offsets of the segments that go whole.
    pub dropped: &'a [u64],
    /// The segment the log now ends in.
    pub last: &'a SegmentMeta,
    pub producers: &'a [(u64, Option<ProducerState>)],
    pub epochs: &'a [EpochStart],
}

/// Adds an append's changes to `set`.
pub fn put_append(set: &mut WriteSet, pk: PartitionKey, w: &AppendWrite) {
    for (base, batch) in &w.batches {
        set.put(Cf::Records, offset_key(pk, *base), batch);
    }
    for s in &w.segments {
        set.put(
            Cf::Segments,
            offset_key(pk, s.base_offset),
            encode_segment(s),
        );
    }
    for (ts, base) in &w.time_entries {
        set.put(Cf::TimeIndex, time_key(pk, *ts as u64, *base), []);
    }
    for (id, state) in &w.producers {
        set.put(Cf::Producers, offset_key(pk, *id), encode_producer(state));
    }
}

/// Adds a new topic's partitions, each with its first (empty) segment, to `set`.
pub fn put_new_partitions(
    set: &mut WriteSet,
    topic: TopicId,
    partitions: u32,
    first: &SegmentMeta,
) {
    for partition in 0..partitions {
        let pk = PartitionKey { topic, partition };
        set.put(
            Cf::Segments,
            offset_key(pk, first.base_offset),
            encode_segment(first),
        );
    }
}

/// Adds the removal of every record, segment, index entry, producer and epoch of a topic's
/// partitions to `set` (range deletes: constant cost, space reclaimed by compaction).
pub fn delete_partitions(set: &mut WriteSet, topic: TopicId) {
    let (start, end) = topic_range(topic);
    for cf in PARTITION_CFS {
        set.delete_range(cf, start, end);
    }
}

/// Every segment of every partition of a topic, in key order (partition, base offset).
pub fn load_segments(
    store: &Store,
    topic: TopicId,
) -> Result<Vec<(u32, SegmentMeta)>, StorageError> {
    let (start, end) = topic_range(topic);
    let mut out = Vec::new();
    for item in store.scan(Cf::Segments, &start, Some(&end)) {
        let (k, v) = item?;
        let corrupt = |reason: &str| StorageError::corrupt(Cf::Segments, &k, reason);
        let (partition, _) = decode_partition(topic, &k).ok_or_else(|| corrupt("bad key"))?;
        let seg = decode_segment(&v).ok_or_else(|| corrupt("bad value"))?;
        out.push((partition, seg));
    }
    Ok(out)
}

/// Every idempotent producer's state on a partition.
pub fn load_producers(
    store: &Store,
    pk: PartitionKey,
) -> Result<Vec<(u64, ProducerState)>, StorageError> {
    let mut out = Vec::new();
    let end = offset_key(pk, u64::MAX);
    for item in store.scan(Cf::Producers, &offset_key(pk, 0), Some(&end)) {
        let (k, v) = item?;
        let corrupt = || StorageError::corrupt(Cf::Producers, &k, "bad producer state");
        let id = decode_offset_key(pk, &k).ok_or_else(corrupt)?;
        out.push((id, decode_producer(&v).ok_or_else(corrupt)?));
    }
    Ok(out)
}

/// Forgets expired producers of a partition.
pub fn delete_producers(store: &Store, pk: PartitionKey, ids: &[u64]) -> Result<(), StorageError> {
    let mut set = store.write_set();
    for id in ids {
        set.delete(Cf::Producers, offset_key(pk, *id));
    }
    store.write(set, Durability::Configured)
}

/// Reserves the next producer id (never handed out twice, even across crashes: the new
/// high-water mark is fsynced before the id is returned).
/// One entry of the high-watermark checkpoint: topic id, partition, high watermark.
const HIGH_WATERMARK_LEN: usize = 16;

/// Writes the high-watermark checkpoint: every given partition's, replacing the last one
/// whole (a deleted topic's entries go with the next checkpoint).
pub fn put_high_watermarks(
    store: &Store,
    entries: &[(PartitionKey, u64)],
) -> Result<(), StorageError> {
    let mut v = Vec::with_capacity(entries.len() * HIGH_WATERMARK_LEN);
    for (pk, hw) in entries {
        v.extend_from_slice(&pk.topic.to_be_bytes());
        v.extend_from_slice(&pk.partition.to_be_bytes());
        v.extend_from_slice(&hw.to_be_bytes());
    }
    let mut set = store.write_set();
    set.put(Cf::Meta, HIGH_WATERMARKS_KEY, v);
    store.write(set, Durability::Configured)
}

/// The last high-watermark checkpoint (empty if none was written).
pub fn load_high_watermarks(
    store: &Store,
) -> Result<std::collections::HashMap<PartitionKey, u64>, StorageError> {
    let Some(v) = store.get(Cf::Meta, HIGH_WATERMARKS_KEY)? else {
        return Ok(Default::default());
    };
    if v.len() % HIGH_WATERMARK_LEN != 0 {
        return Err(StorageError::Corrupt {
            key: String::from_utf8_lossy(HIGH_WATERMARKS_KEY).into_owned(),
            reason: format!("{} bytes, not a multiple of {HIGH_WATERMARK_LEN}", v.len()),
        });
    }
    Ok(v.chunks_exact(HIGH_WATERMARK_LEN)
        .map(|c| {
            let n =
                |r: std::ops::Range<usize>| c[r].iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
            (
                PartitionKey {
                    topic: n(0..4) as TopicId,
                    partition: n(4..8) as u32,
                },
                n(8..16),
            )
        })
        .collect())
}

pub fn allocate_producer_id(store: &Store) -> Result<u64, StorageError> {
    let next = match store.get(Cf::Meta, NEXT_PRODUCER_ID_KEY)? {
        None => 1,
        Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| {
            StorageError::corrupt(
                Cf::Meta,
                NEXT_PRODUCER_ID_KEY,
                format!("{} bytes, want 8", v.len()),
            )
        })?),
    };
    let mut set = store.write_set();
    set.put(Cf::Meta, NEXT_PRODUCER_ID_KEY, (next + 1).to_be_bytes());
    store.write(set, Durability::Synced)?;
    Ok(next)
}

/// Writes a new empty segment (a roll without data, before retention drops the old one).
pub fn put_segment(store: &Store, pk: PartitionKey, s: &SegmentMeta) -> Result<(), StorageError> {
    let mut set = store.write_set();
    set.put(
        Cf::Segments,
        offset_key(pk, s.base_offset),
        encode_segment(s),
    );
    store.write(set, Durability::Configured)
}

/// Drops whole segments `[first.base, last.next)`: their records, their metadata and the
/// time-index entries up to `index_upto_ts` (inclusive), in one write.
pub fn drop_segments(
    store: &Store,
    pk: PartitionKey,
    dropped: &[SegmentMeta],
    index_upto_ts: i64,
) -> Result<(), StorageError> {
    let (Some(first), Some(last)) = (dropped.first(), dropped.last()) else {
        return Ok(());
    };
    let mut set = store.write_set();
    set.delete_range(
        Cf::Records,
        offset_key(pk, first.base_offset),
        offset_key(pk, last.next_offset),
    );
    for s in dropped {
        set.delete(Cf::Segments, offset_key(pk, s.base_offset));
    }
    if index_upto_ts >= 0 {
        set.delete_range(
            Cf::TimeIndex,
            time_key(pk, 0, 0),
            time_key(pk, index_upto_ts as u64 + 1, 0),
        );
    }
    store.write(set, Durability::Configured)
}

/// Removes everything of a partition from `offset` on, in one write: its records, the
/// segments starting at or after it (`dropped`), the time-index entries of those records;
/// writes the segment it now ends in (`last`), the producers' trimmed states (`None`:
/// forgotten) and the leader-epoch history.
pub fn truncate(store: &Store, pk: PartitionKey, t: &Truncation<'_>) -> Result<(), StorageError> {
    let mut set = store.write_set();
    set.delete_range(
        Cf::Records,
        offset_key(pk, t.offset),
        offset_key(pk, u64::MAX),
    );
    for base in t.dropped {
        set.delete(Cf::Segments, offset_key(pk, *base));
    }
    set.put(
        Cf::Segments,
        offset_key(pk, t.last.base_offset),
        encode_segment(t.last),
    );
    // Index entries increase in both timestamp and offset: the ones to go are at the end.
    let mut it = store.cursor(Cf::TimeIndex, None);
    it.seek_for_prev(time_key(pk, u64::MAX, u64::MAX));
    while let Some((ts, base)) = it.key().and_then(|k| decode_time_key(pk, k)) {
        if base < t.offset {
            break;
        }
        set.delete(Cf::TimeIndex, time_key(pk, ts, base));
        it.prev();
    }
    it.status()?;
    for (id, state) in t.producers {
        match state {
            Some(s) => set.put(Cf::Producers, offset_key(pk, *id), encode_producer(s)),
            None => set.delete(Cf::Producers, offset_key(pk, *id)),
        }
    }
    set.put(Cf::Epochs, partition_prefix(pk), encode_epochs(t.epochs));
    store.write(set, Durability::Configured)
}

/// A partition's leader-epoch history, oldest first (empty when it has none).
pub fn load_epochs(store: &Store, pk: PartitionKey) -> Result<Vec<EpochStart>, StorageError> {
    let key = partition_prefix(pk);
    match store.get(Cf::Epochs, key)? {
        None => Ok(Vec::new()),
        Some(v) => decode_epochs(&v)
            .ok_or_else(|| StorageError::corrupt(Cf::Epochs, &key, "bad leader-epoch history")),
    }
}

/// Replaces a partition's leader-epoch history.
pub fn put_epochs(
    store: &Store,
    pk: PartitionKey,
    epochs: &[EpochStart],
) -> Result<(), StorageError> {
    let mut set = store.write_set();
    set.put(Cf::Epochs, partition_prefix(pk), encode_epochs(epochs));
    store.write(set, Durability::Configured)
}

/// Whole batches holding offsets `>= from` and `< end`, up to `max_bytes` (at least one
/// batch when there is one). The first batch may start before `from`.
pub fn read_batches(
    store: &Store,
    pk: PartitionKey,
    from: u64,
    end: u64,
    max_bytes: usize,
) -> Result<Vec<Bytes>, StorageError> {
    let mut out = Vec::new();
    if from >= end {
        return Ok(out);
    }
    let start = offset_key(pk, from);
    let mut it = store.cursor(Cf::Records, Some(offset_key(pk, end).to_vec()));
    // The batch holding `from` is the last one whose base offset is <= from.
    it.seek_for_prev(start);
    let holds_from = match (it.key(), it.value()) {
        (Some(k), Some(v)) => {
            decode_offset_key(pk, k).is_some()
                && weir_common::BatchHeader::parse(v).is_ok_and(|h| h.next_offset() > from)
        }
        _ => false,
    };
    if !holds_from {
        it.seek(start);
    }
    let mut total = 0usize;
    while let Some(v) = it.value() {
        total += v.len();
        out.push(Bytes::copy_from_slice(v));
        if total >= max_bytes {
            break;
        }
        it.next();
    }
    it.status()?;
    Ok(out)
}

/// The stored batch whose base offset is exactly `base`.
pub fn batch_at(store: &Store, pk: PartitionKey, base: u64) -> Result<Option<Bytes>, StorageError> {
    store.get_bytes(Cf::Records, offset_key(pk, base))
}

/// Base offset of the first batch whose running max timestamp is `>= ts`, if any.
pub fn seek_time_index(
    store: &Store,
    pk: PartitionKey,
    ts: i64,
) -> Result<Option<u64>, StorageError> {
    let mut it = store.cursor(Cf::TimeIndex, None);
    it.seek(time_key(pk, ts.max(0) as u64, 0));
    let found = it
        .key()
        .and_then(|k| decode_time_key(pk, k))
        .map(|(_, off)| off);
    it.status()?;
    Ok(found)
}

/// A leader-epoch history: per entry, u32 epoch then u64 start offset (little-endian).
pub fn encode_epochs(epochs: &[EpochStart]) -> Vec<u8> {
    let mut v = Vec::with_capacity(epochs.len() * 12);
    for e in epochs {
        v.extend_from_slice(&e.epoch.to_le_bytes());
        v.extend_from_slice(&e.start_offset.to_le_bytes());
    }
    v
}

pub fn decode_epochs(v: &[u8]) -> Option<Vec<EpochStart>> {
    if !v.len().is_multiple_of(12) {
        return None;
    }
    v.chunks_exact(12)
        .map(|c| {
            Some(EpochStart {
                epoch: u32::from_le_bytes(c[..4].try_into().ok()?),
                start_offset: u64::from_le_bytes(c[4..].try_into().ok()?),
            })
        })
        .collect()
}

pub const SEGMENT_VALUE_LEN: usize = 48;

pub fn encode_segment(s: &SegmentMeta) -> [u8; SEGMENT_VALUE_LEN] {
    let mut v = [0u8; SEGMENT_VALUE_LEN];
    v[0..8].copy_from_slice(&s.base_offset.to_le_bytes());
    v[8..16].copy_from_slice(&s.next_offset.to_le_bytes());
    v[16..24].copy_from_slice(&s.size_bytes.to_le_bytes());
    v[24..32].copy_from_slice(&s.created_ms.to_le_bytes());
    v[32..40].copy_from_slice(&s.max_timestamp.to_le_bytes());
    v[40..48].copy_from_slice(&s.running_max_timestamp.to_le_bytes());
    v
}

pub fn decode_segment(v: &[u8]) -> Option<SegmentMeta> {
    if v.len() != SEGMENT_VALUE_LEN {
        return None;
    }
    let u = |i: usize| u64::from_le_bytes(v[i..i + 8].try_into().unwrap_or_default());
    Some(SegmentMeta {
        base_offset: u(0),
        next_offset: u(8),
        size_bytes: u(16),
        created_ms: u(24) as i64,
        max_timestamp: u(32) as i64,
        running_max_timestamp: u(40) as i64,
    })
}

const PRODUCER_BATCH_LEN: usize = 28;

/// The length of [`encode_producer`]'s value for `s`.
fn producer_value_len(s: &ProducerState) -> usize {
    8 + s.recent.len() * PRODUCER_BATCH_LEN
}

/// `last_used_ms i64 LE`, then per remembered batch (oldest first): first_seq u32, last_seq
/// u32, base_offset u64, record_count u32, log_append_time i64 (all LE).
pub fn encode_producer(s: &ProducerState) -> Vec<u8> {
    let mut v = Vec::with_capacity(producer_value_len(s));
    v.extend_from_slice(&s.last_used_ms.to_le_bytes());
    for b in &s.recent {
        v.extend_from_slice(&b.first_seq.to_le_bytes());
        v.extend_from_slice(&b.last_seq.to_le_bytes());
        v.extend_from_slice(&b.base_offset.to_le_bytes());
        v.extend_from_slice(&b.record_count.to_le_bytes());
        v.extend_from_slice(&b.log_append_time.to_le_bytes());
    }
    v
}

pub fn decode_producer(v: &[u8]) -> Option<ProducerState> {
    let (head, rest) = v.split_at_checked(8)?;
    if rest.len() % PRODUCER_BATCH_LEN != 0
        || rest.len() / PRODUCER_BATCH_LEN > PRODUCER_DEDUPE_WINDOW
    {
        return None;
    }
    let u32_at =
        |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
    let u64_at =
        |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
    let recent = rest
        .chunks_exact(PRODUCER_BATCH_LEN)
        .map(|b| ProducerBatch {
            first_seq: u32_at(b, 0),
            last_seq: u32_at(b, 4),
            base_offset: u64_at(b, 8),
            record_count: u32_at(b, 16),
            log_append_time: u64_at(b, 20) as i64,
        })
        .collect();
    Some(ProducerState {
        recent,
        last_used_ms: u64_at(head, 0) as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_meta_round_trips() {
        let s = SegmentMeta {
            base_offset: 10,
            next_offset: 20,
            size_bytes: 12345,
            created_ms: 1_700_000_000_000,
            max_timestamp: i64::MIN,
            running_max_timestamp: -1,
        };
        assert_eq!(decode_segment(&encode_segment(&s)), Some(s));
        assert_eq!(decode_segment(&[0u8; 3]), None);
    }

    #[test]
    fn producer_state_round_trips() {
        let mut s = ProducerState::default();
        for i in 0..7u32 {
            s.push(
                ProducerBatch {
                    first_seq: i * 3,
                    last_seq: i * 3 + 2,
                    base_offset: u64::from(i) << 40,
                    record_count: 3,
                    log_append_time: -i64::from(i),
                },
                1_700_000_000_000 + i64::from(i),
            );
        }
        assert_eq!(decode_producer(&encode_producer(&s)), Some(s));
        assert_eq!(decode_producer(&[1, 2, 3]), None);
        assert_eq!(decode_producer(&[0; 8 + 27]), None);
    }
}
