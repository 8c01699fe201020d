//! The metadata quorum's raft log and state in storage: opaque values (`store.rs` serializes
//! them) under big-endian index keys, in [`Cf::Raft`]. Every write is fsynced: raft may only
//! answer once its log and vote are durable.

use crate::storage::{Cf, Durability, StorageError, Store};

/// Single values kept next to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftValue {
    Vote,
    Committed,
    /// The last purged log id.
    Purged,
    /// The applied state machine.
    Applied,
    /// The current snapshot (metadata and data).
    Snapshot,
    /// The id of the cluster this data dir belongs to (`identity.rs`).
    ClusterId,
}

/// Log entries live under `L` + index; values under `V` + a name (`value_key`), so the two
/// never interleave.
const ENTRY_PREFIX: u8 = b'L';

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = ENTRY_PREFIX;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn entry_index(key: &[u8]) -> Option<u64> {
    match key {
        [ENTRY_PREFIX, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

fn value_key(v: RaftValue) -> &'static [u8] {
    match v {
        RaftValue::Vote => b"Vvote",
        RaftValue::Committed => b"Vcommitted",
        RaftValue::Purged => b"Vpurged",
        RaftValue::Applied => b"Vapplied",
        RaftValue::Snapshot => b"Vsnapshot",
        RaftValue::ClusterId => b"Vcluster_id",
    }
}

/// The raft log and values over the broker's store. Cheap to clone.
#[derive(Clone)]
pub struct RaftLog {
    store: Store,
}

impl RaftLog {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Appends log entries `(index, bytes)`.
    pub fn append<'a>(
        &self,
        entries: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> Result<(), StorageError> {
        let mut set = self.store.write_set();
        for (index, bytes) in entries {
            set.put(Cf::Raft, entry_key(index), bytes);
        }
        self.store.write(set, Durability::Synced)
    }

    /// Entries with index in `[from, to)`, in order.
    pub fn entries(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        for item in self.store.scan(Cf::Raft, &entry_key(from), None) {
            let (k, v) = item?;
            match entry_index(&k) {
                Some(i) if i < to => out.push((i, v.to_vec())),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The entry with the highest index, if any.
    pub fn last_entry(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let mut it = self.store.cursor(Cf::Raft, None);
        it.seek_for_prev(entry_key(u64::MAX));
        let last = match (it.key(), it.value()) {
            (Some(k), Some(v)) => entry_index(k).map(|i| (i, v.to_vec())),
            _ => None,
        };
        it.status()?;
        Ok(last)
    }

    /// Deletes the entries from `index` on (a conflicting tail).
    pub fn truncate(&self, index: u64) -> Result<(), StorageError> {
        let mut set = self.store.write_set();
        set.delete_range(Cf::Raft, entry_key(index), entry_key(u64::MAX));
        set.delete(Cf::Raft, entry_key(u64::MAX));
        self.store.write(set, Durability::Synced)
    }

    /// Deletes the entries up to `index` (inclusive) and records what was purged, atomically.
    pub fn purge(&self, index: u64, purged: &[u8]) -> Result<(), StorageError> {
        let mut set = self.store.write_set();
        set.delete_range(Cf::Raft, entry_key(0), entry_key(index.saturating_add(1)));
        set.put(Cf::Raft, value_key(RaftValue::Purged), purged);
        self.store.write(set, Durability::Synced)
    }

    pub fn put(&self, what: RaftValue, bytes: &[u8]) -> Result<(), StorageError> {
        let mut set = self.store.write_set();
        set.put(Cf::Raft, value_key(what), bytes);
        self.store.write(set, Durability::Synced)
    }

    pub fn get(&self, what: RaftValue) -> Result<Option<Vec<u8>>, StorageError> {
        self.store.get(Cf::Raft, value_key(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SyncMode;

    #[test]
    fn the_log_appends_reads_truncates_and_purges() {
        let dir = tempfile::tempdir().unwrap();
        let s = RaftLog::new(Store::open(dir.path(), SyncMode::Never).unwrap());
        assert_eq!(s.last_entry().unwrap(), None);
        let data: Vec<(u64, Vec<u8>)> = (1..=5).map(|i| (i, vec![i as u8; 3])).collect();
        s.append(data.iter().map(|(i, b)| (*i, b.as_slice())))
            .unwrap();
        s.put(RaftValue::Vote, b"v1").unwrap();
        assert_eq!(s.entries(2, 4).unwrap(), data[1..3]);
        assert_eq!(s.entries(0, u64::MAX).unwrap(), data);
        assert_eq!(s.last_entry().unwrap(), Some((5, vec![5; 3])));
        // Values never show up as entries.
        s.truncate(4).unwrap();
        assert_eq!(s.last_entry().unwrap(), Some((3, vec![3; 3])));
        s.purge(2, b"p2").unwrap();
        assert_eq!(s.entries(0, u64::MAX).unwrap(), data[2..3]);
        assert_eq!(s.get(RaftValue::Purged).unwrap().unwrap(), b"p2");
        assert_eq!(s.get(RaftValue::Vote).unwrap().unwrap(), b"v1");
        assert_eq!(s.get(RaftValue::Snapshot).unwrap(), None);
        // Everything survives a reopen.
        drop(s);
        let s = RaftLog::new(Store::open(dir.path(), SyncMode::Never).unwrap());
        assert_eq!(s.last_entry().unwrap(), Some((3, vec![3; 3])));
        assert_eq!(s.get(RaftValue::Vote).unwrap().unwrap(), b"v1");
    }
}
