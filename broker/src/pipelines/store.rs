//! Pipelines in storage: [`Cf::Pipelines`] holds each definition (JSON, under `d` + name)
//! and its progress per source partition (under `p` + name + partition, valued by
//! [`encode_progress`]); keys from `weir_codec::keys`. Definitions are written fsynced;
//! progress goes with the round's output, in the destination partition's append
//! ([`put_progress`] adds it to that write).

use weir_codec::keys::{
    PIPELINE_DEF_PREFIX, decode_pipeline_progress_key, pipeline_def_key, pipeline_progress_key,
    pipeline_progress_range,
};

use super::{PipelineDef, PipelineProgress};
use crate::storage::{Cf, Durability, StorageError, Store, WriteSet};

/// Every pipeline definition.
pub fn load_pipelines(store: &Store) -> Result<Vec<PipelineDef>, StorageError> {
    let mut out = Vec::new();
    for item in store.scan_prefix(Cf::Pipelines, PIPELINE_DEF_PREFIX) {
        let (k, v) = item?;
        let def = serde_json::from_slice(&v)
            .map_err(|e| StorageError::corrupt(Cf::Pipelines, &k, e.to_string()))?;
        out.push(def);
    }
    Ok(out)
}

/// Updates a pipeline definition (its failure), fsynced.
pub fn put_pipeline(store: &Store, def: &PipelineDef) -> Result<(), StorageError> {
    let mut set = store.write_set();
    let json = serde_json::to_vec(def).expect("PipelineDef always serialises");
    set.put(Cf::Pipelines, pipeline_def_key(&def.name), json);
    store.write(set, Durability::Synced)
}

/// Writes a new pipeline's definition and initial progress in one fsynced write.
pub fn create_pipeline(
    store: &Store,
    def: &PipelineDef,
    progress: &[(u32, PipelineProgress)],
) -> Result<(), StorageError> {
    let mut set = store.write_set();
    let json = serde_json::to_vec(def).expect("PipelineDef always serialises");
    set.put(Cf::Pipelines, pipeline_def_key(&def.name), json);
    for (partition, p) in progress {
        put_progress(&mut set, &def.name, *partition, p);
    }
    store.write(set, Durability::Synced)
}

/// Forgets a pipeline's definition and progress in one fsynced write.
pub fn delete_pipeline(store: &Store, name: &str) -> Result<(), StorageError> {
    let mut set = store.write_set();
    set.delete(Cf::Pipelines, pipeline_def_key(name));
    let (start, end) = pipeline_progress_range(name);
    set.delete_range(Cf::Pipelines, start, end);
    store.write(set, Durability::Synced)
}

/// A pipeline's progress per source partition.
pub fn load_progress(
    store: &Store,
    name: &str,
) -> Result<Vec<(u32, PipelineProgress)>, StorageError> {
    let (start, end) = pipeline_progress_range(name);
    let mut out = Vec::new();
    for item in store.scan(Cf::Pipelines, &start, Some(&end)) {
        let (k, v) = item?;
        let corrupt = || StorageError::corrupt(Cf::Pipelines, &k, "bad pipeline progress");
        let partition = decode_pipeline_progress_key(name, &k).ok_or_else(corrupt)?;
        out.push((partition, decode_progress(&v).ok_or_else(corrupt)?));
    }
    Ok(out)
}

/// Adds a pipeline's progress on one source partition to `set`.
pub fn put_progress(
    set: &mut WriteSet,
    pipeline: &str,
    partition: u32,
    progress: &PipelineProgress,
) {
    set.put(
        Cf::Pipelines,
        pipeline_progress_key(pipeline, partition),
        encode_progress(progress),
    );
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
}
