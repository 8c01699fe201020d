//! Committed offsets in storage (standalone mode): [`Cf::Offsets`], keyed by group and
//! partition (`weir_codec::keys::group_offset_key`), valued by [`encode_committed`]. Every
//! write is fsynced whatever `--fsync` says: a commit, once acknowledged, is never lost.

use weir_codec::keys::{decode_group_offset_key, group_offset_key};

use super::state::Committed;
use crate::storage::{Cf, Durability, StorageError, Store};
use crate::types::PartitionKey;

/// Every committed offset: (group, partition, offset).
pub fn load_offsets(store: &Store) -> Result<Vec<(String, PartitionKey, Committed)>, StorageError> {
    let mut out = Vec::new();
    for item in store.scan(Cf::Offsets, &[], None) {
        let (k, v) = item?;
        let corrupt = || StorageError::corrupt(Cf::Offsets, &k, "bad committed offset");
        let (group, pk) = decode_group_offset_key(&k).ok_or_else(corrupt)?;
        out.push((group, pk, decode_committed(&v).ok_or_else(corrupt)?));
    }
    Ok(out)
}

/// Writes a group's committed offsets (all or none), fsynced.
pub fn commit_offsets(
    store: &Store,
    group: &str,
    offsets: &[(PartitionKey, Committed)],
) -> Result<(), StorageError> {
    let mut set = store.write_set();
    for (pk, c) in offsets {
        set.put(
            Cf::Offsets,
            group_offset_key(group, *pk),
            encode_committed(c),
        );
    }
    store.write(set, Durability::Synced)
}

/// Forgets committed offsets (group deleted, or its topic deleted).
pub fn delete_offsets(store: &Store, keys: &[(&str, PartitionKey)]) -> Result<(), StorageError> {
    let mut set = store.write_set();
    for (group, pk) in keys {
        set.delete(Cf::Offsets, group_offset_key(group, *pk));
    }
    store.write(set, Durability::Synced)
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

#[cfg(test)]
mod tests {
    use super::*;

    const PK: PartitionKey = PartitionKey {
        topic: 7,
        partition: 3,
    };

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
}
