//! Value encodings of the storage column families (segments, producer state, committed
//! offsets, plugins, pipeline progress, leader epochs). The key layout is
//! `weir_codec::keys`, re-exported here so `storage/` keeps one place to look.

pub use weir_codec::keys::*;

use crate::groups::Committed;
use crate::log::producers::{PRODUCER_DEDUPE_WINDOW, ProducerBatch, ProducerState};
use crate::pipelines::PipelineProgress;
use crate::plugins::{PluginKind, PluginLimits, StoredPlugin};
use crate::types::{EpochStart, SegmentMeta};

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

/// `last_used_ms i64 LE`, then per remembered batch (oldest first): first_seq u32, last_seq
/// u32, base_offset u64, record_count u32, log_append_time i64 (all LE).
pub fn encode_producer(s: &ProducerState) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + s.recent.len() * PRODUCER_BATCH_LEN);
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

/// `offset u64 LE | commit_time i64 LE | metadata (UTF-8)`.
pub fn encode_committed(c: &Committed) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + c.metadata.len());
    v.extend_from_slice(&c.offset.to_le_bytes());
    v.extend_from_slice(&c.commit_time.to_le_bytes());
    v.extend_from_slice(c.metadata.as_bytes());
    v
}

pub fn decode_committed(v: &[u8]) -> Option<Committed> {
    let (head, metadata) = v.split_at_checked(16)?;
    Some(Committed {
        offset: u64::from_le_bytes(head[..8].try_into().ok()?),
        commit_time: i64::from_le_bytes(head[8..].try_into().ok()?),
        metadata: std::str::from_utf8(metadata).ok()?.to_string(),
    })
}

/// First byte of a plugin record with limits (version 1 records start with the kind, 1..=5).
const PLUGIN_RECORD_V2: u8 = 0x80;

/// `0x80 | kind u8 | created_ms i64 | memory u64 | call timeout ms u64 | output u64 | wasm`
/// (integers LE). Version 1 (`kind u8 | created_ms i64 | wasm`) still decodes, with the
/// default limits.
pub fn encode_plugin(p: &StoredPlugin) -> Vec<u8> {
    let mut v = Vec::with_capacity(34 + p.wasm.len());
    v.push(PLUGIN_RECORD_V2);
    v.push(p.kind.code());
    v.extend_from_slice(&p.created_ms.to_le_bytes());
    v.extend_from_slice(&(p.limits.memory_bytes as u64).to_le_bytes());
    v.extend_from_slice(&p.limits.call_timeout_ms.to_le_bytes());
    v.extend_from_slice(&(p.limits.output_bytes as u64).to_le_bytes());
    v.extend_from_slice(&p.wasm);
    v
}

pub fn decode_plugin(v: &[u8]) -> Option<StoredPlugin> {
    let u64_at = |b: &[u8], i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
    };
    let (&first, rest) = v.split_first()?;
    if first != PLUGIN_RECORD_V2 {
        let (created, wasm) = rest.split_at_checked(8)?;
        return Some(StoredPlugin {
            kind: PluginKind::from_code(i32::from(first))?,
            created_ms: i64::from_le_bytes(created.try_into().ok()?),
            limits: PluginLimits::default(),
            wasm: wasm.to_vec(),
        });
    }
    let (&kind, rest) = rest.split_first()?;
    let (head, wasm) = rest.split_at_checked(32)?;
    Some(StoredPlugin {
        kind: PluginKind::from_code(i32::from(kind))?,
        created_ms: u64_at(head, 0)? as i64,
        limits: PluginLimits {
            memory_bytes: usize::try_from(u64_at(head, 8)?).ok()?,
            call_timeout_ms: u64_at(head, 16)?,
            output_bytes: usize::try_from(u64_at(head, 24)?).ok()?,
        },
        wasm: wasm.to_vec(),
    })
}

/// `source topic id u32 | next offset u64 | records in u64 | records out u64 | state count u32 |
/// (len u32 | state)*`, all LE.
pub fn encode_progress(p: &PipelineProgress) -> Vec<u8> {
    let states: usize = p.states.iter().map(|s| 4 + s.len()).sum();
    let mut v = Vec::with_capacity(32 + states);
    v.extend_from_slice(&p.source_topic.to_le_bytes());
    v.extend_from_slice(&p.next_offset.to_le_bytes());
    v.extend_from_slice(&p.records_in.to_le_bytes());
    v.extend_from_slice(&p.records_out.to_le_bytes());
    v.extend_from_slice(&(p.states.len() as u32).to_le_bytes());
    for s in &p.states {
        v.extend_from_slice(&(s.len() as u32).to_le_bytes());
        v.extend_from_slice(s);
    }
    v
}

pub fn decode_progress(v: &[u8]) -> Option<PipelineProgress> {
    fn take<'a>(v: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = v.split_at_checked(n)?;
        *v = rest;
        Some(head)
    }
    let mut v = v;
    let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
    let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let source_topic = u32_of(take(&mut v, 4)?);
    let next_offset = u64_of(take(&mut v, 8)?);
    let records_in = u64_of(take(&mut v, 8)?);
    let records_out = u64_of(take(&mut v, 8)?);
    let count = u32_of(take(&mut v, 4)?) as usize;
    let mut states = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let len = u32_of(take(&mut v, 4)?) as usize;
        states.push(take(&mut v, len)?.to_vec());
    }
    if !v.is_empty() {
        return None;
    }
    Some(PipelineProgress {
        source_topic,
        next_offset,
        records_in,
        records_out,
        states,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: PartitionKey = PartitionKey {
        topic: 7,
        partition: 3,
    };

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

    #[test]
    fn committed_offsets_round_trip_and_group_keys_do_not_collide() {
        let c = Committed {
            offset: 42,
            metadata: "ünïcode".into(),
            commit_time: 1_700_000_000_000,
        };
        assert_eq!(decode_committed(&encode_committed(&c)), Some(c));
        assert_eq!(decode_committed(&[0; 15]), None);
        let k = group_offset_key("billing", PK);
        assert_eq!(decode_group_offset_key(&k), Some(("billing".into(), PK)));
        // A group name that is a prefix of another never shares its key range.
        let short = group_offset_key("a", PK);
        let long = group_offset_key("ab", PK);
        assert_ne!(short[..3], long[..3]);
        assert_eq!(decode_group_offset_key(&k[..k.len() - 1]), None);
    }

    #[test]
    fn pipeline_progress_round_trips_and_keys_stay_in_their_range() {
        let p = PipelineProgress {
            source_topic: 9,
            next_offset: 1234,
            records_in: 1000,
            records_out: 2500,
            states: vec![vec![], b"{\"a\":3}".to_vec()],
        };
        let v = encode_progress(&p);
        assert_eq!(decode_progress(&v), Some(p));
        assert_eq!(decode_progress(&v[..v.len() - 1]), None);
        let mut long = v.clone();
        long.push(0);
        assert_eq!(decode_progress(&long), None);

        let k = pipeline_progress_key("etl", 7);
        assert_eq!(decode_pipeline_progress_key("etl", &k), Some(7));
        assert_eq!(decode_pipeline_progress_key("et", &k), None);
        let (start, end) = pipeline_progress_range("etl");
        for part in [0, 7, u32::MAX] {
            let k = pipeline_progress_key("etl", part);
            assert!(start <= k && k < end);
        }
        // A pipeline whose name extends this one's is outside the range.
        let other = pipeline_progress_key("etl2", 0);
        assert!(other < start || other >= end);
        assert!(pipeline_def_key("etl").starts_with(PIPELINE_DEF_PREFIX));
    }

    #[test]
    fn plugin_records_round_trip_and_version_1_still_decodes() {
        let p = StoredPlugin {
            kind: PluginKind::Aggregate,
            created_ms: 1_700_000_000_000,
            limits: PluginLimits {
                memory_bytes: 8 << 20,
                call_timeout_ms: 100,
                output_bytes: 1 << 20,
            },
            wasm: b"\0asm\x01\0\0\0".to_vec(),
        };
        let back = decode_plugin(&encode_plugin(&p)).unwrap();
        assert_eq!(
            (back.kind, back.created_ms, back.limits, back.wasm.clone()),
            (p.kind, p.created_ms, p.limits, p.wasm.clone())
        );
        let mut v1 = vec![PluginKind::Map.code()];
        v1.extend_from_slice(&42i64.to_le_bytes());
        v1.extend_from_slice(b"wasm");
        let old = decode_plugin(&v1).unwrap();
        assert_eq!(old.kind, PluginKind::Map);
        assert_eq!(old.limits, PluginLimits::default());
        assert_eq!(old.wasm, b"wasm");
        assert!(decode_plugin(&encode_plugin(&p)[..20]).is_none());
    }
}
