//! Group coordination in cluster mode (docs/cluster.md, "Group coordinators"), as Kafka: a
//! group's coordinator is the leader of its `__consumer_offsets` partition, its commits are
//! records appended there with `acks=all`, and a broker that becomes leader of such a
//! partition reads it to the end before serving its groups. Membership is not replicated:
//! members of a group whose coordinator moved join the new one.
//!
//! Time retention drops old segments of `__consumer_offsets`; every live offset stays
//! readable because each coordinator writes them all again (a checkpoint) once it has loaded
//! a partition and every `CHECKPOINT_INTERVAL` after that.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_common::GroupName;
use weir_common::batch::next_offset_after;

use super::{Acks, Broker};
use crate::blocking::blocking;
use crate::cluster::state::{Command, Metadata, Outcome};
use crate::error::BrokerError;
use crate::groups::offsets::{
    self, CHECKPOINT_INTERVAL, OFFSETS_TOPIC, OFFSETS_TOPIC_REPLICATION, OffsetRecord,
    OffsetsByGroup,
};
use crate::groups::{Coordinating, ResetTo};
use crate::log::ReadUpTo;
use crate::types::{OffsetQuery, PartitionOffsets};

/// How much of an offsets partition one read takes while loading it.
const LOAD_READ_BYTES: usize = 4 * 1024 * 1024;
/// How often coordinators look for checkpoints due.
const CHECKPOINT_TICK: Duration = Duration::from_secs(60);
/// How long a broker waits for another broker's answer about partition offsets.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

impl Broker {
    /// The broker that coordinates `group`: `(node id, address)`, `(0, "")` standalone.
    /// In a cluster the first call creates `__consumer_offsets`.
    pub async fn find_coordinator(
        self: &Arc<Self>,
        group: &str,
    ) -> Result<(u64, String), BrokerError> {
        GroupName::new(group)?;
        let Some(c) = self.cluster() else {
            return Ok((0, String::new()));
        };
        if !c.metadata().borrow().topics.contains_key(OFFSETS_TOPIC) {
            self.create_offsets_topic().await?;
        }
        let m = Arc::clone(&c.metadata().borrow());
        let leader = m
            .partition(OFFSETS_TOPIC, offsets::partition_of(group))
            .and_then(|p| p.leader)
            .and_then(|id| m.brokers.get(&id).map(|b| (id, b.addr.clone())));
        leader.ok_or_else(|| BrokerError::CoordinatorNotAvailable {
            group: group.to_string(),
            why: "its offsets partition has no leader right now",
        })
    }

    /// Creates `__consumer_offsets` through the quorum (replicated on up to three brokers).
    async fn create_offsets_topic(self: &Arc<Self>) -> Result<(), BrokerError> {
        let Some(c) = self.cluster() else {
            return Ok(());
        };
        let brokers = c.metadata().borrow().brokers.len() as u32;
        let cmd = Command::CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            config: offsets::topic_config(),
            replication_factor: OFFSETS_TOPIC_REPLICATION.min(brokers.max(1)),
        };
        match c.propose(cmd).await? {
            Outcome::Done => {
                tracing::info!(topic = OFFSETS_TOPIC, "created the group offsets topic")
            }
            Outcome::TopicExists => {}
            other => return Err(BrokerError::ClusterUnavailable(format!("{other:?}"))),
        }
        self.await_metadata(|m, b| {
            m.topics.contains_key(OFFSETS_TOPIC) && b.topics.get(OFFSETS_TOPIC).is_ok()
        })
        .await;
        Ok(())
    }

    /// Fails unless this broker coordinates `group` and has loaded its offsets (always fine
    /// standalone).
    pub fn check_coordinator(&self, group: &str) -> Result<(), BrokerError> {
        let Some(c) = self.cluster() else {
            return Ok(());
        };
        let p = offsets::partition_of(group);
        match self.groups.coordinating(p) {
            Coordinating::Ready => Ok(()),
            Coordinating::Loading => Err(BrokerError::CoordinatorNotAvailable {
                group: group.to_string(),
                why: "its coordinator is loading the group's offsets",
            }),
            Coordinating::No => {
                let m = c.metadata();
                let m = m.borrow();
                let coordinator = m
                    .partition(OFFSETS_TOPIC, p)
                    .and_then(|s| s.leader)
                    .and_then(|id| m.brokers.get(&id))
                    .map(|b| b.addr.clone());
                Err(BrokerError::NotCoordinator {
                    group: group.to_string(),
                    coordinator,
                })
            }
        }
    }

    /// Follows which offsets partitions this broker leads: forgets the groups of those it
    /// lost and loads those it gained (in the background).
    pub(super) fn follow_coordination(self: &Arc<Self>, m: &Metadata) {
        let Some(me) = self.cluster().map(|c| c.node_id()) else {
            return;
        };
        let led: BTreeSet<u32> = m
            .topics
            .get(OFFSETS_TOPIC)
            .filter(|_| self.topics.get(OFFSETS_TOPIC).is_ok())
            .map(|t| {
                (0..t.partitions.len() as u32)
                    .filter(|&i| t.partitions[i as usize].leader == Some(me))
                    .collect()
            })
            .unwrap_or_default();
        for (p, generation) in self.groups.follow(&led) {
            let this = Arc::clone(self);
            tokio::spawn(async move { this.load_offsets(p, generation).await });
        }
    }

    /// Reads offsets partition `p` to its end and starts coordinating its groups.
    async fn load_offsets(self: Arc<Self>, p: u32, generation: u64) {
        let started = Instant::now();
        let this = Arc::clone(&self);
        match blocking(move || this.read_offsets(p)).await {
            Ok((folded, skipped)) => {
                if skipped > 0 {
                    tracing::warn!(
                        partition = p,
                        skipped,
                        "records that are not offset commits were skipped"
                    );
                }
                if self.groups.install(p, generation, folded, &self.topics) {
                    tracing::info!(
                        partition = p,
                        took_ms = started.elapsed().as_millis() as u64,
                        "loaded an offsets partition"
                    );
                }
            }
            Err(e) => {
                tracing::error!(partition = p, error = %e, "cannot load an offsets partition; its groups stay unavailable")
            }
        }
    }

    /// Every group's offsets in offsets partition `p`, and how many records were skipped.
    fn read_offsets(&self, p: u32) -> Result<(OffsetsByGroup, usize), BrokerError> {
        let log = Arc::clone(&self.topics.get(OFFSETS_TOPIC)?.partition(p)?.log);
        let mut folded = OffsetsByGroup::new();
        let mut skipped = 0;
        let mut offset = log.bounds().earliest;
        while offset < log.bounds().log_end {
            let read = log
                .read_from(offset, LOAD_READ_BYTES, ReadUpTo::LogEnd)
                .map_err(|e| e.in_partition(OFFSETS_TOPIC, p))?;
            let next = next_offset_after(&read.batches)
                .map_err(|e| BrokerError::Storage(format!("offsets partition {p}: {e}")))?;
            let Some(next) = next else { break };
            skipped += offsets::fold(&mut folded, &read.batches);
            offset = next;
        }
        Ok((folded, skipped))
    }

    /// Appends `entries` to offsets partition `p` and waits until every in-sync replica has
    /// them. Losing the partition's leadership meanwhile makes it `not_coordinator`.
    async fn write_offsets(
        &self,
        group: &str,
        p: u32,
        entries: &[OffsetRecord],
    ) -> Result<(), BrokerError> {
        if entries.is_empty() {
            return Ok(());
        }
        let batches: Vec<(u32, Bytes)> = offsets::encode(entries, weir_common::record::now_ms())
            .into_iter()
            .map(|b| (p, b))
            .collect();
        match self
            .append_internal(OFFSETS_TOPIC, batches, Acks::All)
            .await
        {
            Ok(_) => Ok(()),
            Err(BrokerError::NotLeader { leader, .. }) => Err(BrokerError::NotCoordinator {
                group: group.to_string(),
                coordinator: leader,
            }),
            Err(e) => Err(e),
        }
    }

    /// Cluster mode's commit: checked, appended to the group's offsets partition, then
    /// applied to the cache, one write per partition at a time.
    pub(super) async fn commit_replicated(
        &self,
        group: &str,
        member_id: &str,
        member_epoch: i64,
        commits: Vec<crate::groups::CommitArgs>,
    ) -> Result<(), BrokerError> {
        let p = offsets::partition_of(group);
        let writer = self.groups.writer(p);
        let _one = writer.lock().await;
        self.check_coordinator(group)?;
        let entries =
            self.groups
                .prepare_commit(group, member_id, member_epoch, commits, &self.topics)?;
        self.write_offsets(group, p, &entries).await?;
        self.groups.apply(&entries);
        Ok(())
    }

    /// Cluster mode's reset: target offsets from the partitions' leaders.
    pub(super) async fn reset_replicated(
        &self,
        group: &str,
        topic: &str,
        to: ResetTo,
    ) -> Result<Vec<(u32, u64)>, BrokerError> {
        self.check_coordinator(group)?;
        let t = self.topics.get(topic)?;
        let all: Vec<u32> = (0..t.meta.config.partitions).collect();
        let targets: Vec<(u32, u64)> = match to {
            ResetTo::Offset(o) => {
                let bounds = self
                    .leader_offsets(topic, &all, OffsetQuery::Latest)
                    .await?;
                for (p, PartitionOffsets { latest, .. }) in &bounds {
                    if o > *latest {
                        return Err(BrokerError::InvalidArgument(format!(
                            "offset {o} is past the end of topic {topic:?} partition {p} (latest {latest})"
                        )));
                    }
                }
                all.iter().map(|&p| (p, o)).collect()
            }
            other => {
                let query = match other {
                    ResetTo::Earliest => OffsetQuery::Earliest,
                    ResetTo::Timestamp(ts) => OffsetQuery::Timestamp(ts),
                    _ => OffsetQuery::Latest,
                };
                self.leader_offsets(topic, &all, query)
                    .await?
                    .into_iter()
                    .map(|(p, o)| (p, o.offset))
                    .collect()
            }
        };
        let p = offsets::partition_of(group);
        let writer = self.groups.writer(p);
        let _one = writer.lock().await;
        self.check_coordinator(group)?;
        let entries = self.groups.prepare_reset(group, topic, &targets)?;
        self.write_offsets(group, p, &entries).await?;
        self.groups.apply(&entries);
        tracing::info!(group, topic, ?to, "reset group offsets");
        Ok(targets)
    }

    /// Cluster mode's delete: tombstones for every offset of the group.
    pub(super) async fn delete_replicated(&self, group: &str) -> Result<(), BrokerError> {
        let p = offsets::partition_of(group);
        let writer = self.groups.writer(p);
        let _one = writer.lock().await;
        self.check_coordinator(group)?;
        let entries = self.groups.prepare_delete(group)?;
        if entries.is_empty() {
            return self.groups.forget_group(group);
        }
        self.write_offsets(group, p, &entries).await?;
        self.groups.apply(&entries);
        tracing::info!(group, "deleted group");
        Ok(())
    }

    /// Writes a checkpoint (every live offset again) of each led offsets partition that is
    /// due one, every minute, for as long as the broker runs.
    pub(super) fn spawn_checkpoints(self: &Arc<Self>) {
        let this = Arc::clone(self);
        self.spawn_background(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for (p, generation) in this
                    .groups
                    .checkpoints_due(Instant::now(), CHECKPOINT_INTERVAL)
                {
                    if let Err(e) = this.checkpoint(p, generation).await {
                        tracing::warn!(partition = p, error = %e, "offsets checkpoint failed; retrying in a minute");
                    }
                }
            }
        });
    }

    async fn checkpoint(&self, p: u32, generation: u64) -> Result<(), BrokerError> {
        let writer = self.groups.writer(p);
        let _one = writer.lock().await;
        if self.groups.coordinating(p) != Coordinating::Ready {
            return Ok(());
        }
        let entries = self.groups.live_offsets(p);
        self.write_offsets("(checkpoint)", p, &entries).await?;
        self.groups.checkpointed(p, generation, Instant::now());
        tracing::debug!(
            partition = p,
            offsets = entries.len(),
            "wrote an offsets checkpoint"
        );
        Ok(())
    }

    /// Answers `query` for `partitions` of `topic` where each is led: here, or at its leader
    /// over gRPC. Returns `(offset, earliest, latest)` per partition.
    pub(super) async fn leader_offsets(
        &self,
        topic: &str,
        partitions: &[u32],
        query: OffsetQuery,
    ) -> Result<BTreeMap<u32, PartitionOffsets>, BrokerError> {
        let t = self.topics.get(topic)?;
        let mut out = BTreeMap::new();
        let mut remote: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for &p in partitions {
            match self.check_leader(topic, p) {
                Ok(_) => {
                    let (o, b) = self.list_offset(&t, p, query).await?;
                    let offsets = PartitionOffsets {
                        offset: o,
                        earliest: b.earliest,
                        latest: b.latest,
                    };
                    out.insert(p, offsets);
                }
                Err(BrokerError::NotLeader {
                    leader: Some(addr), ..
                }) => remote.entry(addr).or_default().push(p),
                Err(e) => return Err(e),
            }
        }
        let Some(cluster) = self.cluster() else {
            return Ok(out);
        };
        for (addr, ps) in remote {
            let answers = cluster
                .peer_channels()
                .list_offsets(&addr, topic, &ps, query, PEER_TIMEOUT)
                .await
                .map_err(|why| BrokerError::ClusterUnavailable(format!("broker {addr}: {why}")))?;
            out.extend(answers);
        }
        Ok(out)
    }

    /// `(earliest, latest)` of each of `partitions` (from their leaders in a cluster).
    pub(super) async fn partition_bounds(
        &self,
        topic: &str,
        partitions: &[u32],
    ) -> Result<BTreeMap<u32, (u64, u64)>, BrokerError> {
        if self.cluster().is_none() {
            let t = self.topics.get(topic)?;
            return partitions
                .iter()
                .map(|&p| {
                    let b = t.partition(p)?.log.bounds();
                    Ok((p, (b.earliest, b.latest)))
                })
                .collect();
        }
        Ok(self
            .leader_offsets(topic, partitions, OffsetQuery::Latest)
            .await?
            .into_iter()
            .map(|(p, o)| (p, (o.earliest, o.latest)))
            .collect())
    }
}
