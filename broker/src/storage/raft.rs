//! The metadata quorum's raft log and state (cluster mode): opaque values (the cluster module
//! serializes them) under big-endian index keys, in their own column family. Every write is
//! fsynced: raft may only answer once its log and vote are durable.

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{CF_RAFT, StorageError, Store};

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
    }
}

impl Store {
    /// Appends log entries `(index, bytes)`.
    pub fn raft_append<'a>(
        &self,
        entries: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> Result<(), StorageError> {
        let cf = self.cf(CF_RAFT);
        let mut wb = WriteBatch::default();
        for (index, bytes) in entries {
            wb.put_cf(cf, entry_key(index), bytes);
        }
        self.write_synced(wb)
    }

    /// Entries with index in `[from, to)`, in order.
    pub fn raft_entries(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        let start = entry_key(from);
        let iter = self.db.iterator_cf(
            self.cf(CF_RAFT),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            match entry_index(&k) {
                Some(i) if i < to => out.push((i, v.to_vec())),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The entry with the highest index, if any.
    pub fn raft_last_entry(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let end = entry_key(u64::MAX);
        let mut iter = self.db.iterator_cf(
            self.cf(CF_RAFT),
            IteratorMode::From(&end, Direction::Reverse),
        );
        match iter.next().transpose()? {
            Some((k, v)) => Ok(entry_index(&k).map(|i| (i, v.to_vec()))),
            None => Ok(None),
        }
    }

    /// Deletes the entries from `index` on (a conflicting tail).
    pub fn raft_truncate(&self, index: u64) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        let cf = self.cf(CF_RAFT);
        wb.delete_range_cf(cf, entry_key(index), entry_key(u64::MAX));
        wb.delete_cf(cf, entry_key(u64::MAX));
        self.write_synced(wb)
    }

    /// Deletes the entries up to `index` (inclusive) and records what was purged, atomically.
    pub fn raft_purge(&self, index: u64, purged: &[u8]) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        let cf = self.cf(CF_RAFT);
        wb.delete_range_cf(cf, entry_key(0), entry_key(index.saturating_add(1)));
        wb.put_cf(cf, value_key(RaftValue::Purged), purged);
        self.write_synced(wb)
    }

    pub fn raft_put(&self, what: RaftValue, bytes: &[u8]) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_RAFT), value_key(what), bytes);
        self.write_synced(wb)
    }

    pub fn raft_get(&self, what: RaftValue) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(CF_RAFT), value_key(what))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SyncMode;

    #[test]
    fn the_log_appends_reads_truncates_and_purges() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), SyncMode::Never).unwrap();
        assert_eq!(s.raft_last_entry().unwrap(), None);
        let data: Vec<(u64, Vec<u8>)> = (1..=5).map(|i| (i, vec![i as u8; 3])).collect();
        s.raft_append(data.iter().map(|(i, b)| (*i, b.as_slice())))
            .unwrap();
        s.raft_put(RaftValue::Vote, b"v1").unwrap();
        assert_eq!(s.raft_entries(2, 4).unwrap(), data[1..3]);
        assert_eq!(s.raft_entries(0, u64::MAX).unwrap(), data);
        assert_eq!(s.raft_last_entry().unwrap(), Some((5, vec![5; 3])));
        // Values never show up as entries.
        s.raft_truncate(4).unwrap();
        assert_eq!(s.raft_last_entry().unwrap(), Some((3, vec![3; 3])));
        s.raft_purge(2, b"p2").unwrap();
        assert_eq!(s.raft_entries(0, u64::MAX).unwrap(), data[2..3]);
        assert_eq!(s.raft_get(RaftValue::Purged).unwrap().unwrap(), b"p2");
        assert_eq!(s.raft_get(RaftValue::Vote).unwrap().unwrap(), b"v1");
        assert_eq!(s.raft_get(RaftValue::Snapshot).unwrap(), None);
        // Everything survives a reopen.
        drop(s);
        let s = Store::open(dir.path(), SyncMode::Never).unwrap();
        assert_eq!(s.raft_last_entry().unwrap(), Some((3, vec![3; 3])));
        assert_eq!(s.raft_get(RaftValue::Vote).unwrap().unwrap(), b"v1");
    }
}
