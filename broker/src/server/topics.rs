//! `weir.v1.Topics`: create, list, describe, delete.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_proto::v1 as pb;

use super::{Guarded, principal, status_of};
use crate::broker::{Broker, NewTopic};
use crate::security::{Operation, Resource};
use crate::topics::Topic;
use crate::types::TopicConfig;

pub struct TopicsService {
    broker: Arc<Broker>,
}

impl TopicsService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

fn config_to_pb(c: &TopicConfig) -> pb::TopicConfig {
    pb::TopicConfig {
        partitions: c.partitions,
        retention_ms: Some(c.retention_ms.unwrap_or(-1)),
        retention_bytes: Some(c.retention_bytes.map_or(-1, |b| b as i64)),
        segment_bytes: Some(c.segment_bytes),
        segment_ms: Some(c.segment_ms),
        min_insync_replicas: Some(c.min_insync_replicas),
    }
}

fn info_of(t: &Topic) -> pb::TopicInfo {
    pb::TopicInfo {
        name: t.meta.name.clone(),
        config: Some(config_to_pb(&t.meta.config)),
    }
}

impl Guarded for TopicsService {
    fn broker(&self) -> &Broker {
        &self.broker
    }
}

#[tonic::async_trait]
impl pb::topics_server::Topics for TopicsService {
    async fn create_topic(
        &self,
        req: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        self.allow(&who, Resource::topic(&req.name), Operation::Admin)?;
        let c = req.config.unwrap_or_default();
        let new = NewTopic {
            partitions: c.partitions,
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            segment_bytes: c.segment_bytes,
            segment_ms: c.segment_ms,
            replication_factor: req.replication_factor,
            min_insync_replicas: c.min_insync_replicas,
        };
        let topic = self
            .broker
            .create_topic(&req.name, new)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::CreateTopicResponse {
            topic: Some(pb::TopicInfo {
                name: topic.name,
                config: Some(config_to_pb(&topic.config)),
            }),
        }))
    }

    async fn list_topics(
        &self,
        req: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let who = principal(&req);
        let security = self.broker.security();
        let topics = self
            .broker
            .list_topics()
            .iter()
            .filter(|t| security.visible(&who, Resource::topic(&t.meta.name)))
            .map(|t| info_of(t))
            .collect();
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        req: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::DescribeTopicResponse>, Status> {
        let who = principal(&req);
        let name = req.into_inner().name;
        self.allow_any(&who, Resource::topic(&name))?;
        let (topic, bounds) = self.broker.describe_topic(&name).map_err(status_of)?;
        let placement = self.broker.placement(&name).unwrap_or_default();
        let partitions = bounds
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let place = placement.get(i);
                pb::PartitionInfo {
                    partition: i as u32,
                    earliest_offset: b.earliest,
                    latest_offset: b.latest,
                    size_bytes: b.size_bytes,
                    segments: b.segments,
                    leader: place.and_then(|p| p.leader),
                    leader_epoch: place.map_or(0, |p| p.leader_epoch),
                    replicas: place.map(|p| p.replicas.clone()).unwrap_or_default(),
                    isr: place.map(|p| p.isr.clone()).unwrap_or_default(),
                }
            })
            .collect();
        Ok(Response::new(pb::DescribeTopicResponse {
            topic: Some(info_of(&topic)),
            partitions,
        }))
    }

    async fn delete_topic(
        &self,
        req: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let who = principal(&req);
        let name = req.into_inner().name;
        self.allow(&who, Resource::topic(&name), Operation::Admin)?;
        self.broker.delete_topic(&name).await.map_err(status_of)?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }
}
