//! openraft's log storage and state machine over the broker's RocksDB (`raft_log.rs`).
//! Entries, vote and state are serde JSON: metadata changes are rare and small, and JSON keeps
//! the data dir inspectable.
//!
//! The state machine is the whole [`Metadata`], kept in memory and written out after every
//! applied group of entries; a snapshot is the same document. Every change is published on a
//! watch channel, which is how the rest of the broker learns about leaders and replicas.
//!
//! RocksDB calls run on the async worker: metadata writes are a few per second at most, and
//! each is one small fsynced write.

// openraft's traits fix the error type (`StorageError`, 224 bytes); the helpers return it too.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::peers::NodeId;
use super::raft_log::{RaftLog, RaftValue};
use super::state::{Command, Metadata, Outcome};
use crate::storage::Store;

openraft::declare_raft_types!(
    /// The metadata quorum's types: commands in, outcomes out, brokers as nodes.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = BasicNode,
);

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

fn to_json<T: Serialize>(v: &T) -> std::result::Result<Vec<u8>, AnyError> {
    serde_json::to_vec(v).map_err(|e| AnyError::new(&e))
}

fn from_json<T: for<'a> Deserialize<'a>>(b: &[u8]) -> std::result::Result<T, AnyError> {
    serde_json::from_slice(b).map_err(|e| AnyError::new(&e))
}

/// The raft log in RocksDB.
#[derive(Clone)]
pub struct LogStore {
    store: RaftLog,
}

impl LogStore {
    pub fn new(store: Store) -> Self {
        Self {
            store: RaftLog::new(store),
        }
    }

    fn value<T: for<'a> Deserialize<'a>>(&self, what: RaftValue) -> Result<Option<T>> {
        let bytes = self.store.get(what).map_err(|e| StorageIOError::read(&e))?;
        bytes
            .map(|b| from_json(&b))
            .transpose()
            .map_err(|e| StorageIOError::read(e).into())
    }

    fn put<T: Serialize>(&self, what: RaftValue, v: &T) -> Result<()> {
        let bytes = to_json(v).map_err(StorageIOError::write)?;
        self.store
            .put(what, &bytes)
            .map_err(|e| StorageIOError::write(&e).into())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        let raw = self
            .store
            .entries(from, to)
            .map_err(|e| StorageIOError::read_logs(&e))?;
        raw.iter()
            .map(|(i, b)| from_json(b).map_err(|e| StorageIOError::read_log_at_index(*i, e).into()))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.value(RaftValue::Purged)?;
        let last = self
            .store
            .last_entry()
            .map_err(|e| StorageIOError::read_logs(&e))?;
        let last_log_id = match last {
            Some((i, b)) => {
                let e: Entry<TypeConfig> =
                    from_json(&b).map_err(|e| StorageIOError::read_log_at_index(i, e))?;
                Some(e.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        self.put(RaftValue::Vote, vote)
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        self.value(RaftValue::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<()> {
        self.put(RaftValue::Committed, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>> {
        Ok(self.value(RaftValue::Committed)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|e| to_json(&e).map(|b| (e.log_id.index, b)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(StorageIOError::write_logs)?;
        let written = self
            .store
            .append(encoded.iter().map(|(i, b)| (*i, b.as_slice())));
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        self.store
            .truncate(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let purged = to_json(&log_id).map_err(StorageIOError::write_logs)?;
        self.store
            .purge(log_id.index, &purged)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

/// What the state machine has applied, as persisted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    metadata: Metadata,
}

/// A snapshot as persisted: its metadata and the applied state it holds.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The metadata state machine.
pub struct StateMachine {
    store: RaftLog,
    applied: Applied,
    published: watch::Sender<Arc<Metadata>>,
}

impl StateMachine {
    /// Loads the applied state (empty on a fresh data dir); `published` sees every change.
    pub fn open(
        store: Store,
    ) -> std::result::Result<(Self, watch::Receiver<Arc<Metadata>>), String> {
        let store = RaftLog::new(store);
        let applied: Applied = match store.get(RaftValue::Applied) {
            Ok(Some(b)) => serde_json::from_slice(&b).map_err(|e| e.to_string())?,
            Ok(None) => Applied::default(),
            Err(e) => return Err(e.to_string()),
        };
        let (published, rx) = watch::channel(Arc::new(applied.metadata.clone()));
        Ok((
            Self {
                store,
                applied,
                published,
            },
            rx,
        ))
    }

    fn save(&self) -> Result<()> {
        let bytes = to_json(&self.applied).map_err(StorageIOError::write_state_machine)?;
        self.store
            .put(RaftValue::Applied, &bytes)
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        self.published
            .send_replace(Arc::new(self.applied.metadata.clone()));
        Ok(())
    }
}

/// Keeps `meta` and `data` as the current snapshot.
fn save_snapshot(
    store: &RaftLog,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    data: &[u8],
) -> Result<()> {
    let failed = |e: AnyError| StorageIOError::write_snapshot(Some(meta.signature()), e);
    let stored = StoredSnapshot {
        meta: meta.clone(),
        data: data.to_vec(),
    };
    let bytes = to_json(&stored).map_err(failed)?;
    store
        .put(RaftValue::Snapshot, &bytes)
        .map_err(|e| failed(AnyError::new(&e)).into())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineSnapshot {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let a = &self.applied;
        let data = to_json(a).map_err(StorageIOError::read_state_machine)?;
        let meta = SnapshotMeta {
            last_log_id: a.last_applied,
            last_membership: a.membership.clone(),
            snapshot_id: match &a.last_applied {
                Some(l) => format!("{}-{}", l.leader_id, l.index),
                None => "empty".to_string(),
            },
        };
        save_snapshot(&self.store, &meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// The applied state at the moment a snapshot was asked for.
pub struct StateMachineSnapshot {
    store: RaftLog,
    applied: Applied,
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachineSnapshot;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for e in entries {
            self.applied.last_applied = Some(e.log_id);
            out.push(match e.payload {
                EntryPayload::Blank => Outcome::Done,
                EntryPayload::Normal(cmd) => self.applied.metadata.apply(cmd),
                EntryPayload::Membership(m) => {
                    // Members are brokers from the moment they join: topics created right
                    // after the first election can already be placed on all of them.
                    for (id, node) in m.nodes() {
                        self.applied.metadata.apply(Command::RegisterBroker {
                            id: *id,
                            addr: node.addr.clone(),
                        });
                    }
                    self.applied.membership = StoredMembership::new(Some(e.log_id), m);
                    Outcome::Done
                }
            });
        }
        self.save()?;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        StateMachineSnapshot {
            store: self.store.clone(),
            applied: self.applied.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let data = snapshot.into_inner();
        let applied: Applied = from_json(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), e))?;
        self.applied = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            metadata: applied.metadata,
        };
        self.save()?;
        save_snapshot(&self.store, meta, &data)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let bytes = self
            .store
            .get(RaftValue::Snapshot)
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let s: StoredSnapshot =
            from_json(&bytes).map_err(|e| StorageIOError::read_snapshot(None, e))?;
        Ok(Some(Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;
    use crate::storage::SyncMode;
    use crate::types::TopicConfig;

    fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    #[tokio::test]
    async fn a_snapshot_carries_the_metadata_to_another_member() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store_a = Store::open(a.path(), SyncMode::Never).unwrap();
        let (mut sm, _) = StateMachine::open(store_a.clone()).unwrap();
        let config = TopicConfig {
            partitions: 2,
            retention_ms: None,
            retention_bytes: None,
            segment_bytes: 1 << 20,
            segment_ms: 1000,
            min_insync_replicas: 1,
        };
        let out = sm
            .apply([
                entry(
                    1,
                    Command::RegisterBroker {
                        id: 1,
                        addr: "h:1".into(),
                    },
                ),
                entry(
                    2,
                    Command::CreateTopic {
                        name: "t".into(),
                        config,
                        replication_factor: 1,
                    },
                ),
            ])
            .await
            .unwrap();
        assert_eq!(out, [Outcome::Done, Outcome::Done]);
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2));
        // The builder kept it as the current snapshot.
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);

        let store_b = Store::open(b.path(), SyncMode::Never).unwrap();
        let (mut other, published) = StateMachine::open(store_b.clone()).unwrap();
        other
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        let m = published.borrow().clone();
        assert_eq!(m.topics["t"].partitions.len(), 2);
        assert_eq!(m.brokers[&1].addr, "h:1");
        let (applied, _) = other.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(2));
        // And it survives a reopen.
        drop(other);
        let (_, reopened) = StateMachine::open(store_b).unwrap();
        assert_eq!(*reopened.borrow(), published.borrow().clone());
    }
}
