//! Consumer groups through the facade (standalone: the coordinator here; cluster mode:
//! `coordination.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Broker;
use crate::blocking::blocking;
use crate::error::BrokerError;
use crate::groups::classic::Classic;
use crate::groups::{
    ClassicAssignment, ClassicJoin, CommitArgs, CommittedView, GroupSummary, GroupView, Heartbeat,
    HeartbeatArgs, JoinResult, ResetTo,
};

/// How often a waiting JoinGroup or SyncGroup looks at its group again even without a change
/// (a safety net: every change wakes it at once).
const CLASSIC_WAIT_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

impl Broker {
    /// Join, heartbeat or leave a group (in memory: no blocking work).
    pub fn group_heartbeat(&self, args: HeartbeatArgs) -> Result<Option<Heartbeat>, BrokerError> {
        self.check_coordinator(&args.group)?;
        self.groups
            .heartbeat(args, &self.topics, std::time::Instant::now())
    }

    /// Removes group members whose session or rebalance timeout passed.
    pub fn expire_group_members(&self) {
        self.groups.expire(&self.topics, std::time::Instant::now());
    }

    /// The coordinator (for subscriptions that check ownership).
    /// Whether `member` of `group` holds `topic`'s partition `partition` (standalone: a
    /// member's subscription is fenced by it).
    pub fn group_owns(&self, group: &str, member: &str, topic: &str, partition: u32) -> bool {
        self.groups.owns(group, member, topic, partition)
    }

    /// Moves on every change of any group's membership or assignment.
    pub fn group_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.groups.watch_changes()
    }

    /// A Kafka-protocol JoinGroup, answered once the group's rebalance completed: when every
    /// member has joined, or at the rebalance timeout without those that did not.
    pub async fn join_classic(&self, join: ClassicJoin) -> Result<JoinResult, BrokerError> {
        self.check_coordinator(&join.group)?;
        let group = join.group.clone();
        let mut changes = self.groups.watch_changes();
        let (member, waits_for) = self.groups.classic_join(join, std::time::Instant::now())?;
        loop {
            if let Some(result) = self.groups.classic_join_result(&group, &member, waits_for) {
                return result;
            }
            if let Ok(Err(_)) = tokio::time::timeout(CLASSIC_WAIT_RECHECK, changes.changed()).await
            {
                return Err(BrokerError::ShuttingDown);
            }
        }
    }

    /// A Kafka-protocol SyncGroup, answered with the member's assignment once the leader's
    /// SyncGroup brought it.
    pub async fn sync_classic(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        assignments: Vec<ClassicAssignment>,
    ) -> Result<bytes::Bytes, BrokerError> {
        self.check_coordinator(group)?;
        let mut changes = self.groups.watch_changes();
        self.groups.classic_sync(
            group,
            member,
            generation,
            assignments,
            std::time::Instant::now(),
        )?;
        loop {
            if let Some(result) = self.groups.classic_sync_result(group, member, generation) {
                return result;
            }
            if let Ok(Err(_)) = tokio::time::timeout(CLASSIC_WAIT_RECHECK, changes.changed()).await
            {
                return Err(BrokerError::ShuttingDown);
            }
        }
    }

    /// A Kafka-protocol Heartbeat.
    pub fn heartbeat_classic(
        &self,
        group: &str,
        member: &str,
        generation: i32,
    ) -> Result<(), BrokerError> {
        self.check_coordinator(group)?;
        self.groups
            .classic_heartbeat(group, member, generation, std::time::Instant::now())
    }

    /// A Kafka-protocol LeaveGroup of one member.
    pub fn leave_classic(&self, group: &str, member: &str) -> Result<(), BrokerError> {
        self.check_coordinator(group)?;
        self.groups
            .classic_leave(group, member, std::time::Instant::now())
    }

    /// A group's Kafka-protocol state and members (`None`: no such group).
    pub fn classic_group(&self, group: &str) -> Option<Classic> {
        self.groups.classic_view(group)
    }

    pub async fn commit_offsets(
        self: &Arc<Self>,
        group: String,
        member_id: String,
        member_epoch: i64,
        offsets: Vec<CommitArgs>,
    ) -> Result<(), BrokerError> {
        if self.cluster().is_some() {
            return self
                .commit_replicated(&group, &member_id, member_epoch, offsets)
                .await;
        }
        let this = Arc::clone(self);
        blocking(move || {
            this.groups
                .commit(&group, &member_id, member_epoch, offsets, &this.topics)
        })
        .await
    }

    pub async fn fetch_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Vec<CommittedView>, BrokerError> {
        self.check_coordinator(group)?;
        let t = self.topics.get(topic)?;
        let all: Vec<u32> = match partitions.is_empty() {
            true => (0..t.meta.config.partitions).collect(),
            false => partitions.to_vec(),
        };
        // Unknown partitions are reported by the coordinator below.
        let known: Vec<u32> = all
            .iter()
            .copied()
            .filter(|&p| t.partition(p).is_ok())
            .collect();
        let bounds = self.partition_bounds(topic, &known).await?;
        self.groups
            .fetch_offsets(group, topic, &all, &self.topics, &|p| {
                Ok(bounds.get(&p).copied().unwrap_or((0, 0)))
            })
    }

    pub fn list_groups(&self) -> Vec<GroupSummary> {
        self.groups.list()
    }

    pub async fn describe_group(&self, group: &str) -> Result<GroupView, BrokerError> {
        self.check_coordinator(group)?;
        let mut ends: BTreeMap<(String, u32), u64> = BTreeMap::new();
        for name in self.groups.topics_of(group)? {
            let Ok(t) = self.topics.get(&name) else {
                continue;
            };
            let all: Vec<u32> = (0..t.meta.config.partitions).collect();
            for (p, (_, latest)) in self.partition_bounds(&name, &all).await? {
                ends.insert((name.clone(), p), latest);
            }
        }
        self.groups
            .describe(group, &self.topics, std::time::Instant::now(), &|t, p| {
                ends.get(&(t.to_string(), p)).copied()
            })
    }

    pub async fn reset_group(
        self: &Arc<Self>,
        group: String,
        topic: String,
        to: ResetTo,
    ) -> Result<Vec<(u32, u64)>, BrokerError> {
        if self.cluster().is_some() {
            return self.reset_replicated(&group, &topic, to).await;
        }
        let this = Arc::clone(self);
        blocking(move || this.groups.reset(&group, &topic, to, &this.topics)).await
    }

    pub async fn delete_group(self: &Arc<Self>, group: String) -> Result<(), BrokerError> {
        if self.cluster().is_some() {
            return self.delete_replicated(&group).await;
        }
        let this = Arc::clone(self);
        blocking(move || this.groups.delete(&group, &this.topics)).await
    }
}
