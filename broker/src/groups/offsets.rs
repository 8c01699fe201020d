//! Committed offsets as records of the internal topic `__consumer_offsets` (cluster mode;
//! docs/cluster.md, "Group coordinators"). Pure: encoding, decoding and folding a partition's
//! records into the groups' offsets.
//!
//! A group's offsets live in partition `murmur2(group) % OFFSETS_TOPIC_PARTITIONS`, and that
//! partition's leader is the group's coordinator. Each commit is one record:
//! - key: `[version u8][group len u16][group][topic len u16][topic][partition u32]`;
//! - value: `[version u8][offset u64][commit time i64][metadata len u32][metadata]`, or empty
//!   for a deletion (a tombstone).
//!
//! All integers big-endian. Later records of a key replace earlier ones, so folding the
//! partition from its start gives each group's offsets. Instead of compaction the coordinator
//! writes a checkpoint (every live offset again) when it takes a partition over and every
//! [`CHECKPOINT_INTERVAL`], so time retention may drop anything older than that.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use weir_common::batch::{BatchBuilder, TimestampType, record_refs};
use weir_common::partitioner::partition_for_key;

use super::state::{Committed, TopicPartition};
use crate::types::TopicConfig;

/// The internal topic holding committed offsets (Kafka's name).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Its partition count: how many coordinators groups are spread over.
pub const OFFSETS_TOPIC_PARTITIONS: u32 = 12;
/// Its replication factor, capped by the number of brokers.
pub const OFFSETS_TOPIC_REPLICATION: u32 = 3;
/// How often a coordinator writes every live offset again.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// How long the topic keeps records: well past a checkpoint interval, so every live offset
/// always has a copy left.
const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Segments roll hourly so retention can drop them.
const SEGMENT_AGE: Duration = Duration::from_secs(3600);
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Records per batch written at once (a checkpoint of many offsets is split).
pub const RECORDS_PER_BATCH: usize = 1000;

const VERSION: u8 = 1;

/// Topics whose name starts with this are the broker's own.
pub const INTERNAL_PREFIX: &str = "__";

/// The internal topic's settings.
pub fn topic_config() -> TopicConfig {
    TopicConfig {
        partitions: OFFSETS_TOPIC_PARTITIONS,
        retention_ms: Some(RETENTION.as_millis() as i64),
        retention_bytes: None,
        segment_bytes: SEGMENT_BYTES,
        segment_ms: SEGMENT_AGE.as_millis() as i64,
        min_insync_replicas: 1,
    }
}

/// The `__consumer_offsets` partition (and so the coordinator) of `group`.
pub fn partition_of(group: &str) -> u32 {
    partition_for_key(group.as_bytes(), OFFSETS_TOPIC_PARTITIONS)
}

/// One committed offset (`None`: deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRecord {
    pub group: String,
    pub tp: TopicPartition,
    pub committed: Option<Committed>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub fn encode_key(group: &str, tp: &TopicPartition) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + group.len() + tp.0.len());
    k.push(VERSION);
    put_str(&mut k, group);
    put_str(&mut k, &tp.0);
    k.extend_from_slice(&tp.1.to_be_bytes());
    k
}

pub fn encode_value(c: &Committed) -> Vec<u8> {
    let mut v = Vec::with_capacity(21 + c.metadata.len());
    v.push(VERSION);
    v.extend_from_slice(&c.offset.to_be_bytes());
    v.extend_from_slice(&c.commit_time.to_be_bytes());
    v.extend_from_slice(&(c.metadata.len() as u32).to_be_bytes());
    v.extend_from_slice(c.metadata.as_bytes());
    v
}

/// A cursor over a record's bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn string(&mut self, len: usize) -> Option<String> {
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

fn decode_key(key: &[u8]) -> Option<(String, TopicPartition)> {
    let mut r = Reader(key);
    if r.array::<1>()? != [VERSION] {
        return None;
    }
    let len = u16::from_be_bytes(r.array()?) as usize;
    let group = r.string(len)?;
    let len = u16::from_be_bytes(r.array()?) as usize;
    let topic = r.string(len)?;
    let partition = u32::from_be_bytes(r.array()?);
    r.0.is_empty().then_some((group, (topic, partition)))
}

fn decode_value(value: &[u8]) -> Option<Committed> {
    let mut r = Reader(value);
    if r.array::<1>()? != [VERSION] {
        return None;
    }
    let offset = u64::from_be_bytes(r.array()?);
    let commit_time = i64::from_be_bytes(r.array()?);
    let len = u32::from_be_bytes(r.array()?) as usize;
    let metadata = r.string(len)?;
    r.0.is_empty().then_some(Committed {
        offset,
        metadata,
        commit_time,
    })
}

/// Encodes entries as batches of at most [`RECORDS_PER_BATCH`] records stamped `now`.
pub fn encode(entries: &[OffsetRecord], now: i64) -> Vec<Bytes> {
    entries
        .chunks(RECORDS_PER_BATCH)
        .map(|chunk| {
            let mut b = BatchBuilder::new(TimestampType::LogAppendTime);
            for e in chunk {
                let key = encode_key(&e.group, &e.tp);
                let value = e.committed.as_ref().map(encode_value).unwrap_or_default();
                b.push(now, Some(&key), &value, std::iter::empty());
            }
            b.finish()
        })
        .collect()
}

/// Every group's offsets, as folded from a partition's records in log order.
pub type OffsetsByGroup = BTreeMap<String, BTreeMap<TopicPartition, Committed>>;

/// Folds stored batches into `into` (later records replace earlier ones; tombstones remove).
/// Returns how many records were not offset commits (skipped; only a foreign writer or a
/// newer broker version makes them).
pub fn fold(into: &mut OffsetsByGroup, batches: &[Bytes]) -> usize {
    let mut skipped = 0;
    for batch in batches {
        let Ok(records) = record_refs(batch) else {
            skipped += 1;
            continue;
        };
        for r in records {
            let Ok(r) = r else {
                skipped += 1;
                break;
            };
            let Some((group, tp)) = r.key.and_then(decode_key) else {
                skipped += 1;
                continue;
            };
            if r.value.is_empty() {
                if let Some(g) = into.get_mut(&group) {
                    g.remove(&tp);
                    if g.is_empty() {
                        into.remove(&group);
                    }
                }
                continue;
            }
            match decode_value(r.value) {
                Some(c) => {
                    into.entry(group).or_default().insert(tp, c);
                }
                None => skipped += 1,
            }
        }
    }
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(offset: u64, metadata: &str) -> Committed {
        Committed {
            offset,
            metadata: metadata.into(),
            commit_time: 1_700_000_000_000 + offset as i64,
        }
    }

    fn entry(group: &str, topic: &str, p: u32, committed: Option<Committed>) -> OffsetRecord {
        OffsetRecord {
            group: group.into(),
            tp: (topic.into(), p),
            committed,
        }
    }

    #[test]
    fn keys_and_values_round_trip() {
        let tp = ("orders".to_string(), 7);
        assert_eq!(
            decode_key(&encode_key("g-1", &tp)),
            Some(("g-1".into(), tp))
        );
        let v = c(42, "note é");
        assert_eq!(decode_value(&encode_value(&v)), Some(v));
        // Truncated, trailing bytes, other versions: rejected.
        let k = encode_key("g", &("t".into(), 1));
        assert_eq!(decode_key(&k[..k.len() - 1]), None);
        let mut longer = k.clone();
        longer.push(0);
        assert_eq!(decode_key(&longer), None);
        let mut other = k;
        other[0] = 2;
        assert_eq!(decode_key(&other), None);
    }

    #[test]
    fn folding_keeps_the_last_value_per_key_and_applies_tombstones() {
        let first = encode(
            &[
                entry("a", "t", 0, Some(c(5, ""))),
                entry("a", "t", 1, Some(c(7, "m"))),
                entry("b", "t", 0, Some(c(1, ""))),
            ],
            1,
        );
        let second = encode(
            &[
                entry("a", "t", 0, Some(c(9, ""))),
                entry("b", "t", 0, None),
                entry("c", "u", 3, None),
            ],
            2,
        );
        let mut f = OffsetsByGroup::new();
        assert_eq!(fold(&mut f, &first) + fold(&mut f, &second), 0);
        let a = &f["a"];
        assert_eq!(a[&("t".into(), 0)], c(9, ""));
        assert_eq!(a[&("t".into(), 1)], c(7, "m"));
        assert!(!f.contains_key("b"), "its only offset was deleted");
        assert!(!f.contains_key("c"), "a tombstone alone creates nothing");
    }

    #[test]
    fn a_checkpoint_is_split_into_bounded_batches() {
        let entries: Vec<OffsetRecord> = (0..2500)
            .map(|i| entry("g", "t", i, Some(c(u64::from(i), ""))))
            .collect();
        let batches = encode(&entries, 3);
        assert_eq!(batches.len(), 3);
        let mut f = OffsetsByGroup::new();
        assert_eq!(fold(&mut f, &batches), 0);
        assert_eq!(f["g"].len(), 2500);
    }

    #[test]
    fn records_that_are_not_offsets_are_skipped_and_counted() {
        let mut b = BatchBuilder::new(TimestampType::LogAppendTime);
        b.push(1, Some(b"junk"), b"value", std::iter::empty());
        b.push(1, None, b"value", std::iter::empty());
        let key = encode_key("g", &("t".into(), 0));
        b.push(1, Some(&key), b"\x01short", std::iter::empty());
        b.push(1, Some(&key), &encode_value(&c(3, "")), std::iter::empty());
        let mut f = OffsetsByGroup::new();
        assert_eq!(fold(&mut f, &[b.finish()]), 3);
        assert_eq!(
            f["g"][&("t".into(), 0)],
            c(3, ""),
            "the good record still counts"
        );
    }

    #[test]
    fn groups_spread_over_the_partitions() {
        let used: std::collections::BTreeSet<u32> = (0..200)
            .map(|i| partition_of(&format!("group-{i}")))
            .collect();
        assert_eq!(used.len() as u32, OFFSETS_TOPIC_PARTITIONS);
        // By Kafka's partitioner (murmur2), so a group's offsets never move between
        // partitions of the offsets topic across versions.
        assert_eq!(partition_of("orders"), 0);
        assert_eq!(partition_of("billing"), 9);
    }
}
