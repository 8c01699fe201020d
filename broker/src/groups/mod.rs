//! Consumer groups: members share a topic's partitions (each partition read by one member of
//! a group), and each group keeps its own committed offsets.
//!
//! - `assign`: balanced, sticky partition assignment (pure logic).
//! - `state`: one group's membership state machine: join, heartbeat, leave, expiry,
//!   hand-over of partitions, commit fencing (pure logic, time passed in).
//! - `offsets`: committed offsets as records of `__consumer_offsets` (cluster mode; pure).
//! - this module: the coordinator: every group behind its own lock, committed offsets in
//!   RocksDB (cached in memory), admin operations. In cluster mode it holds only the groups
//!   of the `__consumer_offsets` partitions this broker leads, loaded from those partitions
//!   when it takes one over, and commits go to those partitions instead (`broker/coordination.rs`
//!   does the I/O).
//!
//! Locking: the map lock is taken before a group's lock, never the other way round. A commit
//! holds its group's lock across the (fsynced) RocksDB write, so no rebalance can slip
//! between the ownership check and the write.

pub mod assign;
pub mod classic;
mod coordinated;
pub mod offsets;
pub mod state;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use weir_common::GroupName;
use weir_common::limits::{
    DEFAULT_REBALANCE_TIMEOUT_MS, DEFAULT_SESSION_TIMEOUT_MS, MAX_COMMIT_METADATA_BYTES,
    MAX_SESSION_TIMEOUT_MS, MAX_TOPICS_PER_MEMBER, MIN_SESSION_TIMEOUT_MS,
};

use crate::error::BrokerError;
use crate::storage::Store;
use crate::topics::{Topic, TopicRegistry};
use crate::types::{PartitionKey, TopicId, now_ms};
use classic::Classic;
pub use classic::{ClassicAssignment, ClassicJoin, JoinResult};
pub use state::{Committed, GroupState, Heartbeat, TopicPartition};
use state::{Group, Join};

/// A heartbeat as a member sends it (also how it joins and leaves).
#[derive(Debug, Clone, Default)]
pub struct HeartbeatArgs {
    pub group: String,
    /// Empty: join.
    pub member_id: String,
    /// The epoch the member last heard of; `LEAVE_EPOCH` to leave.
    pub member_epoch: i64,
    /// The subscription: required to join; empty afterwards means unchanged.
    pub topics: Vec<String>,
    /// 0: the default.
    pub session_timeout_ms: u32,
    /// 0: the default.
    pub rebalance_timeout_ms: u32,
    /// Partitions the member still holds (reads or has not yet committed and let go).
    pub owned: Vec<TopicPartition>,
    pub client_id: String,
}

/// `member_epoch` of a member that leaves the group.
pub const LEAVE_EPOCH: i64 = -1;

/// One offset to commit.
#[derive(Debug, Clone)]
pub struct CommitArgs {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: String,
}

/// A group in a listing.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub name: String,
    pub state: GroupState,
    pub members: usize,
    pub epoch: u64,
}

/// A member as `describe` shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub id: String,
    pub client_id: String,
    pub epoch: i64,
    pub topics: Vec<String>,
    pub assigned: Vec<TopicPartition>,
    pub revoking: Vec<TopicPartition>,
    pub session_timeout: Duration,
    pub since_heartbeat: Duration,
}

/// One partition's row in `describe`.
#[derive(Debug, Clone)]
pub struct PartitionView {
    pub topic: String,
    pub partition: u32,
    pub committed: Option<Committed>,
    pub end_offset: u64,
    /// `end_offset - committed` (None without a committed offset).
    pub lag: Option<u64>,
    /// The member reading it now, if any.
    pub member: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GroupView {
    pub summary: GroupSummary,
    pub members: Vec<MemberView>,
    pub partitions: Vec<PartitionView>,
}

/// A partition's committed offset and bounds (for a consumer picking up a partition).
#[derive(Debug, Clone)]
pub struct CommittedView {
    pub partition: u32,
    pub committed: Option<Committed>,
    pub earliest: u64,
    pub latest: u64,
}

/// Where `reset` moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(u64),
    /// First offset whose timestamp is `>=` this (unix ms).
    Timestamp(i64),
}

pub struct GroupCoordinator {
    store: Store,
    groups: Mutex<BTreeMap<String, Arc<Mutex<Group>>>>,
    /// Member ids are `m-<instance>-<n>`: unique within a broker run, and across runs and
    /// brokers (the instance is random, see [`instance_id`]).
    instance: u64,
    member_seq: AtomicU64,
    /// Ticks whenever some member may have lost partitions: group subscriptions re-check
    /// ownership then.
    changes: watch::Sender<u64>,
    /// Cluster mode: the `__consumer_offsets` partitions this broker coordinates.
    replicated: OnceLock<Replicated>,
    /// Cluster mode: one writer per offsets partition at a time, so its log order is the
    /// cache's order.
    writers: Mutex<BTreeMap<u32, Arc<tokio::sync::Mutex<()>>>>,
}

/// Cluster mode's bookkeeping: which offsets partitions are led here and whether their
/// groups are loaded yet.
#[derive(Default)]
struct Replicated {
    led: Mutex<BTreeMap<u32, Led>>,
    generations: AtomicU64,
}

/// An offsets partition this broker leads.
#[derive(Debug, Clone, Copy)]
struct Led {
    /// Changes every time leadership is gained, so a slow load of an earlier term is ignored.
    generation: u64,
    ready: bool,
    checkpointed: Option<Instant>,
}

/// Whether this broker coordinates a group now (cluster mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coordinating {
    Ready,
    /// Led here, but its groups are still being read from the log.
    Loading,
    No,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn partition_count(topics: &TopicRegistry) -> impl Fn(&str) -> u32 + '_ {
    |t| topics.get(t).map_or(0, |t| t.meta.config.partitions)
}

fn timeout(ms: u32, default: u32, what: &str) -> Result<Duration, BrokerError> {
    let ms = if ms == 0 { default } else { ms };
    if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&ms) {
        return Err(BrokerError::InvalidArgument(format!(
            "{what} must be between {MIN_SESSION_TIMEOUT_MS} and {MAX_SESSION_TIMEOUT_MS} ms, got {ms}"
        )));
    }
    Ok(Duration::from_millis(u64::from(ms)))
}

/// Checks a subscription: 1..=MAX_TOPICS_PER_MEMBER existing topics.
fn check_topics(
    topics: &[String],
    registry: &TopicRegistry,
) -> Result<BTreeSet<String>, BrokerError> {
    if topics.is_empty() {
        return Err(BrokerError::InvalidArgument(
            "a member must subscribe to at least one topic".into(),
        ));
    }
    if topics.len() > MAX_TOPICS_PER_MEMBER {
        return Err(BrokerError::InvalidArgument(format!(
            "a member may subscribe to at most {MAX_TOPICS_PER_MEMBER} topics, got {}",
            topics.len()
        )));
    }
    for t in topics {
        registry.get(t)?;
    }
    Ok(topics.iter().cloned().collect())
}

/// A random id for this coordinator's member ids. Member ids must differ across brokers: a
/// member that keeps its id when its group's coordinator moves must be unknown to the new
/// coordinator, never taken for another member. (It was the start time in ms, and the chaos
/// harness found two brokers started in the same millisecond handing out the same ids: two
/// consumers then heartbeated as one member and both owned its partitions.)
fn instance_id() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        // No randomness: the start time in ns and the process id, as unique as it gets.
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    }
}

impl GroupCoordinator {
    /// Loads every committed offset (dropping those of topics that no longer exist).
    pub fn recover(store: Store, topics: &TopicRegistry) -> Result<Self, BrokerError> {
        // Views' offsets are stored under their own ids, as topics' are.
        let names: BTreeMap<TopicId, String> = topics
            .list()
            .iter()
            .map(|t| (t.meta.id, t.meta.name.clone()))
            .chain(topics.views().into_iter().map(|v| (v.id, v.name)))
            .collect();
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let mut orphans = Vec::new();
        for (group, pk, c) in store::load_offsets(&store)? {
            match names.get(&pk.topic) {
                Some(name) => {
                    groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(group))
                        .offsets
                        .insert((name.clone(), pk.partition), c);
                }
                None => orphans.push((group, pk)),
            }
        }
        if !orphans.is_empty() {
            let keys: Vec<(&str, PartitionKey)> =
                orphans.iter().map(|(g, pk)| (g.as_str(), *pk)).collect();
            store::delete_offsets(&store, &keys)?;
        }
        tracing::info!(groups = groups.len(), "recovered consumer group offsets");
        let instance = instance_id();
        Ok(Self {
            store,
            groups: Mutex::new(
                groups
                    .into_iter()
                    .map(|(k, g)| (k, Arc::new(Mutex::new(g))))
                    .collect(),
            ),
            instance,
            member_seq: AtomicU64::new(0),
            changes: watch::channel(0).0,
            replicated: OnceLock::new(),
            writers: Mutex::default(),
        })
    }

    fn get(&self, group: &str) -> Result<Arc<Mutex<Group>>, BrokerError> {
        lock(&self.groups)
            .get(group)
            .cloned()
            .ok_or_else(|| BrokerError::GroupNotFound(group.to_string()))
    }

    fn get_or_create(&self, group: &str) -> Result<Arc<Mutex<Group>>, BrokerError> {
        let name = GroupName::new(group)?;
        Ok(Arc::clone(
            lock(&self.groups)
                .entry(name.to_string())
                .or_insert_with(|| Arc::new(Mutex::new(Group::new(name.to_string())))),
        ))
    }

    /// Forgets a group that has neither members nor offsets.
    fn drop_if_idle(&self, group: &str) {
        let mut map = lock(&self.groups);
        if let Some(g) = map.get(group) {
            let g = lock(g);
            if !g.has_members() && g.offsets.is_empty() {
                drop(g);
                map.remove(group);
            }
        }
    }

    fn notify(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Ticks whenever a member may have lost partitions.
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Join (empty member id), heartbeat, or leave (`LEAVE_EPOCH`). `None` after leaving.
    pub fn heartbeat(
        &self,
        args: HeartbeatArgs,
        topics: &TopicRegistry,
        now: Instant,
    ) -> Result<Option<Heartbeat>, BrokerError> {
        let counts = partition_count(topics);
        if args.member_id.is_empty() {
            let session = timeout(
                args.session_timeout_ms,
                DEFAULT_SESSION_TIMEOUT_MS,
                "session timeout",
            )?;
            let rebalance = timeout(
                args.rebalance_timeout_ms,
                DEFAULT_REBALANCE_TIMEOUT_MS,
                "rebalance timeout",
            )?;
            let subscription = check_topics(&args.topics, topics)?;
            let group = self.get_or_create(&args.group)?;
            let id = format!(
                "m-{:x}-{}",
                self.instance,
                self.member_seq.fetch_add(1, Ordering::Relaxed) + 1
            );
            let join = Join {
                client_id: args.client_id,
                topics: subscription,
                session_timeout: session,
                rebalance_timeout: rebalance,
            };
            let hb = lock(&group).join(id, join, now, &counts)?;
            tracing::info!(group = %args.group, member = %hb.member_id, "member joined");
            return Ok(Some(hb));
        }
        // A coordinator that never heard of the group (it moved here, or this broker
        // restarted) does not know the member either: it joins again.
        let group = self
            .get(&args.group)
            .map_err(|_| BrokerError::UnknownMember {
                group: args.group.clone(),
                member: args.member_id.clone(),
            })?;
        if args.member_epoch == LEAVE_EPOCH {
            lock(&group).leave(&args.member_id, &counts)?;
            tracing::info!(group = %args.group, member = %args.member_id, "member left");
            self.notify();
            self.drop_if_idle(&args.group);
            return Ok(None);
        }
        let subscription = if args.topics.is_empty() {
            None
        } else {
            Some(check_topics(&args.topics, topics)?)
        };
        let owned: BTreeSet<TopicPartition> = args.owned.into_iter().collect();
        let (hb, released) = {
            let mut g = lock(&group);
            let before = g.held_count(&args.member_id);
            let hb = g.heartbeat(
                &args.member_id,
                args.member_epoch,
                subscription,
                Some(&owned),
                now,
                &counts,
            )?;
            (hb, g.held_count(&args.member_id) < before)
        };
        // The member let partitions go: its subscriptions of them must end.
        if released {
            self.notify();
        }
        Ok(Some(hb))
    }

    /// Removes members whose session or rebalance timeout passed.
    pub fn expire(&self, topics: &TopicRegistry, now: Instant) {
        let counts = partition_count(topics);
        let groups: Vec<(String, Arc<Mutex<Group>>)> = lock(&self.groups)
            .iter()
            .map(|(k, g)| (k.clone(), Arc::clone(g)))
            .collect();
        for (name, g) in groups {
            let classic_gone = {
                let mut g = lock(&g);
                let gone = g.classic.expire(now);
                for id in &gone {
                    tracing::info!(group = %name, member = %id, "Kafka-protocol member removed: no heartbeat within its session timeout, or it did not rejoin within the rebalance timeout");
                }
                !gone.is_empty()
            };
            if classic_gone {
                self.notify();
                self.drop_if_idle(&name);
            }
            let removed = lock(&g).expire(now, &counts);
            if removed.is_empty() {
                continue;
            }
            for m in &removed {
                tracing::info!(group = %name, member = %m.id, "member expired: no heartbeat within its session timeout, or it kept revoked partitions past its rebalance timeout");
            }
            self.notify();
            self.drop_if_idle(&name);
        }
    }

    /// A Kafka-protocol JoinGroup: adds or rejoins the member; returns its id and the
    /// generation its answer must be newer than ([`Self::classic_join_result`]).
    pub fn classic_join(
        &self,
        join: ClassicJoin,
        now: Instant,
    ) -> Result<(String, i32), BrokerError> {
        let group = self.get_or_create(&join.group)?;
        let name = join.group.clone();
        let new_id = format!(
            "{}-{:x}-{}",
            if join.client_id.is_empty() {
                "kafka"
            } else {
                join.client_id.as_str()
            },
            self.instance,
            self.member_seq.fetch_add(1, Ordering::Relaxed) + 1
        );
        let joined = {
            let mut g = lock(&group);
            if g.members().next().is_some() {
                return Err(BrokerError::InconsistentGroupProtocol {
                    group: name,
                    why: "its members are Weir consumers; a Kafka consumer may join once they \
                          have left (the two share committed offsets, not membership)"
                        .into(),
                });
            }
            g.classic.join(new_id, join, now)?
        };
        tracing::info!(group = %name, member = %joined.0, "Kafka-protocol member joined");
        self.notify();
        Ok(joined)
    }

    /// The answer to a JoinGroup once its rebalance completed (`None` until then).
    pub fn classic_join_result(
        &self,
        group: &str,
        member: &str,
        waits_for: i32,
    ) -> Option<Result<JoinResult, BrokerError>> {
        match self.get(group) {
            Ok(g) => lock(&g).classic.join_result(member, waits_for),
            Err(_) => Some(Err(BrokerError::UnknownMember {
                group: group.to_string(),
                member: member.to_string(),
            })),
        }
    }

    /// A SyncGroup (the leader's carries the assignments).
    pub fn classic_sync(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        assignments: Vec<ClassicAssignment>,
        now: Instant,
    ) -> Result<(), BrokerError> {
        let g = self.classic_group(group, member)?;
        lock(&g)
            .classic
            .sync(member, generation, assignments, now)?;
        self.notify();
        Ok(())
    }

    /// The answer to a SyncGroup once the leader's assignment is in (`None` until then).
    pub fn classic_sync_result(
        &self,
        group: &str,
        member: &str,
        generation: i32,
    ) -> Option<Result<bytes::Bytes, BrokerError>> {
        match self.classic_group(group, member) {
            Ok(g) => lock(&g).classic.sync_result(member, generation),
            Err(e) => Some(Err(e)),
        }
    }

    /// A Kafka-protocol Heartbeat.
    pub fn classic_heartbeat(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        now: Instant,
    ) -> Result<(), BrokerError> {
        let g = self.classic_group(group, member)?;
        lock(&g).classic.heartbeat(member, generation, now)
    }

    /// A Kafka-protocol LeaveGroup of one member.
    pub fn classic_leave(
        &self,
        group: &str,
        member: &str,
        now: Instant,
    ) -> Result<(), BrokerError> {
        let g = self.classic_group(group, member)?;
        lock(&g).classic.leave(member, now)?;
        tracing::info!(group, member, "Kafka-protocol member left");
        self.notify();
        self.drop_if_idle(group);
        Ok(())
    }

    /// A group's Kafka-protocol membership as it is now (for DescribeGroups).
    pub fn classic_view(&self, group: &str) -> Option<Classic> {
        let g = self.get(group).ok()?;
        let view = lock(&g).classic.clone();
        Some(view)
    }

    /// The group of a Kafka-protocol member (unknown member if there is no such group).
    fn classic_group(&self, group: &str, member: &str) -> Result<Arc<Mutex<Group>>, BrokerError> {
        self.get(group).map_err(|_| BrokerError::UnknownMember {
            group: group.to_string(),
            member: member.to_string(),
        })
    }

    /// Whether `member` of `group` may read `topic`/`partition` now.
    pub fn owns(&self, group: &str, member: &str, topic: &str, partition: u32) -> bool {
        self.get(group)
            .is_ok_and(|g| lock(&g).owns(member, &(topic.to_string(), partition)))
    }

    /// Commits offsets (blocking: one fsynced write). With a member id, the member must hold
    /// every partition at `member_epoch`; without one, the group must have no live members.
    pub fn commit(
        &self,
        group: &str,
        member_id: &str,
        member_epoch: i64,
        offsets: Vec<CommitArgs>,
        topics: &TopicRegistry,
    ) -> Result<(), BrokerError> {
        let g = self.group_for_commit(group, member_id)?;
        let mut g = lock(&g);
        let writes = self.commit_rows(&g, member_id, member_epoch, offsets, topics)?;
        let rows: Vec<(PartitionKey, Committed)> =
            writes.iter().map(|(_, pk, c)| (*pk, c.clone())).collect();
        store::commit_offsets(&self.store, group, &rows)?;
        for (tp, _, c) in writes {
            g.offsets.insert(tp, c);
        }
        Ok(())
    }

    /// The group a commit goes to: an admin commit (no member id) may create it.
    fn group_for_commit(
        &self,
        group: &str,
        member_id: &str,
    ) -> Result<Arc<Mutex<Group>>, BrokerError> {
        if member_id.is_empty() {
            self.get_or_create(group)
        } else {
            self.get(group)
        }
    }

    /// Checks a commit against the (locked) group and the limits; returns what to write.
    fn commit_rows(
        &self,
        g: &Group,
        member_id: &str,
        member_epoch: i64,
        offsets: Vec<CommitArgs>,
        topics: &TopicRegistry,
    ) -> Result<Vec<(TopicPartition, PartitionKey, Committed)>, BrokerError> {
        if offsets.is_empty() {
            return Err(BrokerError::InvalidArgument("no offsets to commit".into()));
        }
        if member_id.is_empty() {
            check_empty(g)?;
        }
        let now = now_ms();
        let mut writes = Vec::with_capacity(offsets.len());
        for c in offsets {
            let topic = topics.get(&c.topic)?;
            if self.is_replicated() {
                // The log end is the leader's to know; as Kafka, any offset of an existing
                // partition may be committed.
                topic.partition(c.partition)?;
            } else {
                check_committable(&topic, c.partition, c.offset)?;
            }
            if c.metadata.len() > MAX_COMMIT_METADATA_BYTES {
                return Err(BrokerError::InvalidArgument(format!(
                    "commit metadata is {} bytes; the limit is {MAX_COMMIT_METADATA_BYTES}",
                    c.metadata.len()
                )));
            }
            let tp = (c.topic, c.partition);
            if !member_id.is_empty() {
                g.check_commit(member_id, member_epoch, &tp)?;
            }
            let pk = PartitionKey {
                topic: topic.meta.id,
                partition: c.partition,
            };
            let committed = Committed {
                offset: c.offset,
                metadata: c.metadata,
                commit_time: now,
            };
            writes.push((tp, pk, committed));
        }
        Ok(writes)
    }

    /// A group's committed offsets for some partitions of a topic (all when `partitions` is
    /// empty), with each partition's bounds (`(earliest, latest)` from `bounds`).
    pub fn fetch_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[u32],
        topics: &TopicRegistry,
        bounds: &dyn Fn(u32) -> Result<(u64, u64), BrokerError>,
    ) -> Result<Vec<CommittedView>, BrokerError> {
        let g = self.get(group)?;
        let t = topics.get(topic)?;
        let all: Vec<u32>;
        let partitions = if partitions.is_empty() {
            all = (0..t.meta.config.partitions).collect();
            &all
        } else {
            partitions
        };
        let g = lock(&g);
        partitions
            .iter()
            .map(|&p| {
                t.partition(p)?;
                let (earliest, latest) = bounds(p)?;
                Ok(CommittedView {
                    partition: p,
                    committed: g.offsets.get(&(topic.to_string(), p)).cloned(),
                    earliest,
                    latest,
                })
            })
            .collect()
    }

    pub fn list(&self) -> Vec<GroupSummary> {
        let groups: Vec<Arc<Mutex<Group>>> = lock(&self.groups).values().cloned().collect();
        groups.iter().map(|g| summary(&lock(g))).collect()
    }

    /// Members, and per partition of every topic the group reads or has offsets for:
    /// committed offset, end offset, lag and owner.
    /// `end_of(topic, partition)`: the partition's end offset (high watermark).
    pub fn describe(
        &self,
        group: &str,
        topics: &TopicRegistry,
        now: Instant,
        end_of: &dyn Fn(&str, u32) -> Option<u64>,
    ) -> Result<GroupView, BrokerError> {
        let g = self.get(group)?;
        let g = lock(&g);
        let mut members: Vec<MemberView> = g
            .members()
            .map(|m| MemberView {
                id: m.id.clone(),
                client_id: m.client_id.clone(),
                epoch: m.epoch,
                topics: m.topics.iter().cloned().collect(),
                assigned: m.assigned.iter().cloned().collect(),
                revoking: m.revoking.iter().cloned().collect(),
                session_timeout: m.session_timeout,
                since_heartbeat: now.saturating_duration_since(m.last_seen),
            })
            .collect();
        // Kafka-protocol members: their epoch is the group's generation.
        members.extend(g.classic.members().map(|m| MemberView {
            id: m.id.clone(),
            client_id: m.client_id.clone(),
            epoch: i64::from(g.classic.generation),
            topics: m.topics.iter().cloned().collect(),
            assigned: m.assigned.iter().cloned().collect(),
            revoking: Vec::new(),
            session_timeout: m.session_timeout,
            since_heartbeat: now.saturating_duration_since(m.last_seen),
        }));
        let mut names = g.subscribed_topics();
        names.extend(g.offsets.keys().map(|(t, _)| t.clone()));
        let mut partitions = Vec::new();
        for name in names {
            let Ok(topic) = topics.get(&name) else {
                continue;
            };
            // A view's partitions are its source's (`partitions` of a view is empty).
            for p in 0..topic.meta.config.partitions as usize {
                let tp = (name.clone(), p as u32);
                let end = end_of(&name, p as u32).unwrap_or(0);
                let committed = g.offsets.get(&tp).cloned();
                partitions.push(PartitionView {
                    lag: committed.as_ref().map(|c| end.saturating_sub(c.offset)),
                    committed,
                    end_offset: end,
                    member: g.holder_id(&tp),
                    topic: name.clone(),
                    partition: p as u32,
                });
            }
        }
        Ok(GroupView {
            summary: summary(&g),
            members,
            partitions,
        })
    }

    /// Moves a group's committed offsets for every partition of `topic` (blocking). Only while
    /// the group has no live members.
    pub fn reset(
        &self,
        group: &str,
        topic: &str,
        to: ResetTo,
        topics: &TopicRegistry,
    ) -> Result<Vec<(u32, u64)>, BrokerError> {
        let g = self.get(group)?;
        let t = topics.get(topic)?;
        let mut g = lock(&g);
        check_empty(&g)?;
        let now = now_ms();
        let mut rows = Vec::new();
        for p in 0..t.meta.config.partitions {
            let part = t.partition(p)?;
            let b = part.log.bounds();
            let offset = match to {
                ResetTo::Earliest => b.earliest,
                ResetTo::Latest => b.latest,
                ResetTo::Offset(o) => {
                    check_committable(&t, p, o)?;
                    o
                }
                ResetTo::Timestamp(ts) => part
                    .log
                    .offset_for_timestamp(ts)
                    .map_err(|e| e.in_partition(topic, p))?,
            };
            let pk = PartitionKey {
                topic: t.meta.id,
                partition: p,
            };
            let c = Committed {
                offset,
                metadata: String::new(),
                commit_time: now,
            };
            rows.push((pk, c));
        }
        store::commit_offsets(&self.store, group, &rows)?;
        let mut out = Vec::with_capacity(rows.len());
        for (pk, c) in rows {
            out.push((pk.partition, c.offset));
            g.offsets.insert((topic.to_string(), pk.partition), c);
        }
        tracing::info!(group, topic, ?to, "reset group offsets");
        Ok(out)
    }

    /// Deletes a group and its committed offsets (blocking). Only without live members.
    pub fn delete(&self, group: &str, topics: &TopicRegistry) -> Result<(), BrokerError> {
        let mut map = lock(&self.groups);
        let g = map
            .get(group)
            .cloned()
            .ok_or_else(|| BrokerError::GroupNotFound(group.to_string()))?;
        let g = lock(&g);
        check_empty(&g)?;
        let keys: Vec<(&str, PartitionKey)> = g
            .offsets
            .keys()
            .filter_map(|(t, p)| {
                let id = topics.get(t).ok()?.meta.id;
                Some((
                    group,
                    PartitionKey {
                        topic: id,
                        partition: *p,
                    },
                ))
            })
            .collect();
        store::delete_offsets(&self.store, &keys)?;
        drop(g);
        map.remove(group);
        tracing::info!(group, "deleted group");
        Ok(())
    }

    /// Forgets every group's offsets of a deleted topic (blocking).
    pub fn forget_topic(&self, name: &str, id: TopicId) -> Result<(), BrokerError> {
        let groups: Vec<(String, Arc<Mutex<Group>>)> = lock(&self.groups)
            .iter()
            .map(|(k, g)| (k.clone(), Arc::clone(g)))
            .collect();
        for (group, g) in groups {
            let mut g = lock(&g);
            let gone: Vec<TopicPartition> = g
                .offsets
                .keys()
                .filter(|(t, _)| t == name)
                .cloned()
                .collect();
            if gone.is_empty() {
                continue;
            }
            let keys: Vec<(&str, PartitionKey)> = gone
                .iter()
                .map(|(_, p)| {
                    (
                        group.as_str(),
                        PartitionKey {
                            topic: id,
                            partition: *p,
                        },
                    )
                })
                .collect();
            store::delete_offsets(&self.store, &keys)?;
            for tp in gone {
                g.offsets.remove(&tp);
            }
            drop(g);
            self.drop_if_idle(&group);
        }
        Ok(())
    }
}

/// Fails unless the group has no live members (admin commits, resets, deletes).
fn check_empty(g: &Group) -> Result<(), BrokerError> {
    if g.has_members() {
        return Err(BrokerError::GroupNotEmpty {
            group: g.name.clone(),
            members: g.members().count(),
        });
    }
    Ok(())
}

fn summary(g: &Group) -> GroupSummary {
    GroupSummary {
        name: g.name.clone(),
        state: g.state(),
        members: g.members().count(),
        epoch: g.epoch,
    }
}

/// A committed offset must name an existing partition and not lie past its end.
fn check_committable(topic: &Topic, partition: u32, offset: u64) -> Result<(), BrokerError> {
    let latest = topic.partition(partition)?.log.bounds().latest;
    if offset > latest {
        return Err(BrokerError::InvalidArgument(format!(
            "offset {offset} is past the end of topic {:?} partition {partition} (latest {latest})",
            topic.meta.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod instance_tests {
    #[test]
    fn coordinators_started_together_hand_out_different_member_ids() {
        // Two brokers starting in the same millisecond used to share one.
        let ids: std::collections::HashSet<u64> = (0..100).map(|_| super::instance_id()).collect();
        assert_eq!(ids.len(), 100);
    }
}
