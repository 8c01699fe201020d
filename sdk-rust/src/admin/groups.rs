//! Consumer groups: list, describe, committed offsets, reset, delete.

use super::*;

/// A consumer group in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// Group name.
    pub name: String,
    /// `empty` (no members), `stable`, or `reconciling` (partitions moving between members).
    pub state: String,
    /// Live members.
    pub members: u32,
    /// Bumped on every membership or subscription change.
    pub epoch: u64,
}

/// A live member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Id the broker gave it.
    pub member_id: String,
    /// Free text the client sent (e.g. `weir-cli`).
    pub client_id: String,
    /// Its current member epoch.
    pub member_epoch: i64,
    /// Topics it subscribes to.
    pub topics: Vec<String>,
    /// Partitions it reads now, as (topic, partition).
    pub assignment: Vec<(String, u32)>,
    /// Partitions it is handing over to another member.
    pub revoking: Vec<(String, u32)>,
    /// Its session timeout.
    pub session_timeout: std::time::Duration,
    /// Time since its last heartbeat.
    pub since_heartbeat: std::time::Duration,
}

/// One partition of a group's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// The group's committed offset (next to read), if any.
    pub committed_offset: Option<u64>,
    /// Next offset to be written.
    pub end_offset: u64,
    /// `end_offset - committed_offset`, if there is a committed offset.
    pub lag: Option<u64>,
    /// The member reading it now.
    pub member_id: Option<String>,
}

/// A group's members and, per partition, committed offset, end offset, lag and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Name, state, member count, epoch.
    pub group: GroupSummary,
    /// Live members.
    pub members: Vec<GroupMember>,
    /// Every partition of every topic the group reads or has offsets for.
    pub partitions: Vec<GroupPartition>,
}

fn summary_of(g: pb::GroupSummary) -> GroupSummary {
    GroupSummary {
        name: g.name,
        state: g.state,
        members: g.members,
        epoch: g.epoch,
    }
}

fn flatten(tps: Vec<pb::TopicPartitions>) -> Vec<(String, u32)> {
    tps.into_iter()
        .flat_map(|tp| {
            let topic = tp.topic;
            tp.partitions.into_iter().map(move |p| (topic.clone(), p))
        })
        .collect()
}

impl Admin {
    /// Every consumer group (live members or committed offsets), by name. In a cluster each
    /// broker lists the groups it coordinates, so every broker is asked.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let mut groups = Vec::new();
        for route in self.client.broker_routes().await? {
            let resp = GroupsClient::new(route.channel)
                .list_groups(pb::ListGroupsRequest {})
                .await?
                .into_inner();
            groups.extend(resp.groups.into_iter().map(summary_of));
        }
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups.dedup_by(|a, b| a.name == b.name);
        Ok(groups)
    }

    /// A group's members, committed offsets, lag and partition owners. Fails with
    /// [`Error::GroupNotFound`](crate::Error::GroupNotFound).
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let req = pb::DescribeGroupRequest {
            group: group.to_string(),
        };
        let resp = self
            .client
            .on_coordinator(group, |mut rpc| {
                let req = req.clone();
                async move { rpc.describe_group(req).await }
            })
            .await?;
        let members = resp
            .members
            .into_iter()
            .map(|m| GroupMember {
                member_id: m.member_id,
                client_id: m.client_id,
                member_epoch: m.member_epoch,
                topics: m.topics,
                assignment: flatten(m.assignment),
                revoking: flatten(m.revoking),
                session_timeout: std::time::Duration::from_millis(u64::from(m.session_timeout_ms)),
                since_heartbeat: std::time::Duration::from_millis(m.since_heartbeat_ms),
            })
            .collect();
        let partitions = resp
            .partitions
            .into_iter()
            .map(|p| GroupPartition {
                topic: p.topic,
                partition: p.partition,
                committed_offset: p.committed_offset,
                end_offset: p.end_offset,
                lag: p.lag,
                member_id: Some(p.member_id).filter(|m| !m.is_empty()),
            })
            .collect();
        Ok(GroupDescription {
            group: summary_of(resp.group.unwrap_or_default()),
            members,
            partitions,
        })
    }

    /// A group's committed offset per partition of `topic` (`None`: never committed).
    pub async fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<(u32, Option<u64>)>> {
        let req = pb::FetchOffsetsRequest {
            group: group.to_string(),
            topic: topic.to_string(),
            partitions: Vec::new(),
        };
        let resp = self
            .client
            .on_coordinator(group, |mut rpc| {
                let req = req.clone();
                async move { rpc.fetch_offsets(req).await }
            })
            .await?;
        Ok(resp
            .offsets
            .into_iter()
            .map(|o| (o.partition, o.offset))
            .collect())
    }

    /// Commits offsets for a group that has no live members (e.g. positions tracked outside
    /// a group consumer). Fails with [`Error::GroupNotEmpty`](crate::Error::GroupNotEmpty)
    /// while members are live.
    pub async fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(u32, u64)],
    ) -> Result<()> {
        let req = pb::CommitOffsetsRequest {
            group: group.to_string(),
            member_id: String::new(),
            member_epoch: 0,
            offsets: offsets
                .iter()
                .map(|&(partition, offset)| pb::OffsetCommit {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    metadata: String::new(),
                })
                .collect(),
        };
        self.client
            .on_coordinator(group, |mut rpc| {
                let req = req.clone();
                async move { rpc.commit_offsets(req).await }
            })
            .await?;
        Ok(())
    }

    /// Moves a group's committed offsets for every partition of `topic`; returns the new
    /// (partition, offset) pairs. Only while the group has no live members.
    pub async fn reset_group(
        &self,
        group: &str,
        topic: &str,
        to: StartFrom,
    ) -> Result<Vec<(u32, u64)>> {
        let (to, offset, timestamp) = match to {
            StartFrom::Earliest => (pb::ResetTo::Earliest, 0, 0),
            StartFrom::Latest => (pb::ResetTo::Latest, 0, 0),
            StartFrom::Offset(o) => (pb::ResetTo::Offset, o, 0),
            StartFrom::Timestamp(ts) => (pb::ResetTo::Timestamp, 0, ts),
        };
        let req = pb::ResetOffsetsRequest {
            group: group.to_string(),
            topic: topic.to_string(),
            to: to as i32,
            offset,
            timestamp,
        };
        let resp = self
            .client
            .on_coordinator(group, |mut rpc| {
                let req = req.clone();
                async move { rpc.reset_offsets(req).await }
            })
            .await?;
        Ok(resp
            .offsets
            .into_iter()
            .map(|o| (o.partition, o.offset))
            .collect())
    }

    /// Deletes a group and its committed offsets. Only while it has no live members.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let req = pb::DeleteGroupRequest {
            group: group.to_string(),
        };
        self.client
            .on_coordinator(group, |mut rpc| {
                let req = req.clone();
                async move { rpc.delete_group(req).await }
            })
            .await?;
        Ok(())
    }
}
