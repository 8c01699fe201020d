//! `weir.v1.Groups`: membership heartbeats, committed offsets, group administration.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_proto::v1 as pb;

use super::{Guarded, principal, status_of};
use crate::broker::Broker;
use crate::groups::{CommitArgs, GroupSummary, HeartbeatArgs, ResetTo, TopicPartition};
use crate::security::{Operation, Resource};

pub struct GroupsService {
    broker: Arc<Broker>,
}

impl GroupsService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

/// Groups partitions by topic, in order.
fn by_topic<'a>(tps: impl IntoIterator<Item = &'a TopicPartition>) -> Vec<pb::TopicPartitions> {
    let mut m: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (t, p) in tps {
        m.entry(t.as_str()).or_default().push(*p);
    }
    m.into_iter()
        .map(|(topic, partitions)| pb::TopicPartitions {
            topic: topic.to_string(),
            partitions,
        })
        .collect()
}

fn summary_pb(s: &GroupSummary) -> pb::GroupSummary {
    pb::GroupSummary {
        name: s.name.clone(),
        state: s.state.as_str().to_string(),
        members: s.members as u32,
        epoch: s.epoch,
    }
}

impl Guarded for GroupsService {
    fn broker(&self) -> &Broker {
        &self.broker
    }
}

#[tonic::async_trait]
impl pb::groups_server::Groups for GroupsService {
    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let who = principal(&req);
        let r = req.into_inner();
        self.allow(&who, Resource::group(&r.group), Operation::Read)?;
        for topic in &r.topics {
            self.allow(&who, Resource::topic(topic), Operation::Read)?;
        }
        let args = HeartbeatArgs {
            group: r.group,
            member_id: r.member_id,
            member_epoch: r.member_epoch,
            topics: r.topics,
            session_timeout_ms: r.session_timeout_ms,
            rebalance_timeout_ms: r.rebalance_timeout_ms,
            owned: r
                .owned
                .into_iter()
                .flat_map(|tp| {
                    let topic = tp.topic;
                    tp.partitions.into_iter().map(move |p| (topic.clone(), p))
                })
                .collect(),
            client_id: r.client_id,
        };
        let member_id = args.member_id.clone();
        let resp = match self.broker.group_heartbeat(args).map_err(status_of)? {
            Some(hb) => pb::HeartbeatResponse {
                member_id: hb.member_id,
                member_epoch: hb.member_epoch,
                heartbeat_interval_ms: hb.interval.as_millis() as u32,
                assignment: by_topic(&hb.assignment),
            },
            // Left the group.
            None => pb::HeartbeatResponse {
                member_id,
                member_epoch: crate::groups::LEAVE_EPOCH,
                heartbeat_interval_ms: 0,
                assignment: Vec::new(),
            },
        };
        Ok(Response::new(resp))
    }

    async fn commit_offsets(
        &self,
        req: Request<pb::CommitOffsetsRequest>,
    ) -> Result<Response<pb::CommitOffsetsResponse>, Status> {
        let who = principal(&req);
        let r = req.into_inner();
        self.allow(&who, Resource::group(&r.group), Operation::Read)?;
        for o in &r.offsets {
            self.allow(&who, Resource::topic(&o.topic), Operation::Read)?;
        }
        let offsets = r
            .offsets
            .into_iter()
            .map(|o| CommitArgs {
                topic: o.topic,
                partition: o.partition,
                offset: o.offset,
                metadata: o.metadata,
            })
            .collect();
        self.broker
            .commit_offsets(r.group, r.member_id, r.member_epoch, offsets)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::CommitOffsetsResponse {}))
    }

    async fn fetch_offsets(
        &self,
        req: Request<pb::FetchOffsetsRequest>,
    ) -> Result<Response<pb::FetchOffsetsResponse>, Status> {
        let who = principal(&req);
        let r = req.into_inner();
        self.allow(&who, Resource::group(&r.group), Operation::Read)?;
        let views = self
            .broker
            .fetch_offsets(&r.group, &r.topic, &r.partitions)
            .await
            .map_err(status_of)?;
        let offsets = views
            .into_iter()
            .map(|v| pb::CommittedOffset {
                partition: v.partition,
                offset: v.committed.as_ref().map(|c| c.offset),
                metadata: v
                    .committed
                    .as_ref()
                    .map(|c| c.metadata.clone())
                    .unwrap_or_default(),
                commit_time: v.committed.as_ref().map_or(0, |c| c.commit_time),
                earliest_offset: v.earliest,
                latest_offset: v.latest,
            })
            .collect();
        Ok(Response::new(pb::FetchOffsetsResponse { offsets }))
    }

    async fn list_groups(
        &self,
        req: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let who = principal(&req);
        let security = self.broker.security();
        let groups = self
            .broker
            .list_groups()
            .iter()
            .filter(|g| security.visible(&who, Resource::group(&g.name)))
            .map(summary_pb)
            .collect();
        Ok(Response::new(pb::ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        req: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::DescribeGroupResponse>, Status> {
        let who = principal(&req);
        let group = req.into_inner().group;
        self.allow(&who, Resource::group(&group), Operation::Read)?;
        let v = self
            .broker
            .describe_group(&group)
            .await
            .map_err(status_of)?;
        let members = v
            .members
            .iter()
            .map(|m| pb::MemberInfo {
                member_id: m.id.clone(),
                client_id: m.client_id.clone(),
                member_epoch: m.epoch,
                topics: m.topics.clone(),
                assignment: by_topic(&m.assigned),
                revoking: by_topic(&m.revoking),
                session_timeout_ms: m.session_timeout.as_millis() as u32,
                since_heartbeat_ms: m.since_heartbeat.as_millis() as u64,
            })
            .collect();
        let partitions = v
            .partitions
            .into_iter()
            .map(|p| pb::GroupPartition {
                committed_offset: p.committed.as_ref().map(|c| c.offset),
                metadata: p.committed.map(|c| c.metadata).unwrap_or_default(),
                topic: p.topic,
                partition: p.partition,
                end_offset: p.end_offset,
                lag: p.lag,
                member_id: p.member.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::DescribeGroupResponse {
            group: Some(summary_pb(&v.summary)),
            members,
            partitions,
        }))
    }

    async fn reset_offsets(
        &self,
        req: Request<pb::ResetOffsetsRequest>,
    ) -> Result<Response<pb::ResetOffsetsResponse>, Status> {
        let who = principal(&req);
        let r = req.into_inner();
        self.allow(&who, Resource::group(&r.group), Operation::Admin)?;
        let to = match pb::ResetTo::try_from(r.to) {
            Ok(pb::ResetTo::Earliest) => ResetTo::Earliest,
            Ok(pb::ResetTo::Latest) => ResetTo::Latest,
            Ok(pb::ResetTo::Offset) => ResetTo::Offset(r.offset),
            Ok(pb::ResetTo::Timestamp) => ResetTo::Timestamp(r.timestamp),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown reset target {}",
                    r.to
                )));
            }
        };
        let offsets = self
            .broker
            .reset_group(r.group, r.topic, to)
            .await
            .map_err(status_of)?
            .into_iter()
            .map(|(partition, offset)| pb::PartitionOffsetValue { partition, offset })
            .collect();
        Ok(Response::new(pb::ResetOffsetsResponse { offsets }))
    }

    async fn delete_group(
        &self,
        req: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let who = principal(&req);
        let group = req.into_inner().group;
        self.allow(&who, Resource::group(&group), Operation::Admin)?;
        self.broker.delete_group(group).await.map_err(status_of)?;
        Ok(Response::new(pb::DeleteGroupResponse {}))
    }

    async fn find_coordinator(
        &self,
        req: Request<pb::FindCoordinatorRequest>,
    ) -> Result<Response<pb::FindCoordinatorResponse>, Status> {
        let who = principal(&req);
        let group = req.into_inner().group;
        self.allow(&who, Resource::group(&group), Operation::Read)?;
        let (node_id, addr) = self
            .broker
            .find_coordinator(&group)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::FindCoordinatorResponse { node_id, addr }))
    }
}
