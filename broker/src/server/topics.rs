//! `weir.v1.Topics`: create, list, describe, delete; views (create, list, describe, delete).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_proto::v1 as pb;

use super::{Guarded, principal, status_of};
use crate::broker::{Broker, NewTopic};
use crate::log::Bounds;
use crate::security::{Operation, Resource};
use crate::topics::Topic;
use crate::topics::views::{ViewDef, ViewPlugin};
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
        view_of: t.view.as_ref().map(|v| v.source.meta.name.clone()),
    }
}

fn view_info(v: ViewDef) -> pb::ViewInfo {
    pb::ViewInfo {
        name: v.name,
        source: v.source,
        plugins: v
            .plugins
            .into_iter()
            .map(|p| pb::PluginUse {
                name: p.name,
                params: p.params,
            })
            .collect(),
        created_ms: v.created_ms,
    }
}

/// Each partition's offsets and (in a cluster) placement: a view's are its source's.
fn partitions_of(broker: &Broker, topic: &Topic, bounds: &[Bounds]) -> Vec<pb::PartitionInfo> {
    let placement = broker.placement(topic.source_name()).unwrap_or_default();
    bounds
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
        .collect()
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
                view_of: None,
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
            .list_topics_and_views()
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
        let partitions = partitions_of(&self.broker, &topic, &bounds);
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

    async fn create_view(
        &self,
        req: Request<pb::CreateViewRequest>,
    ) -> Result<Response<pb::CreateViewResponse>, Status> {
        let who = principal(&req);
        let req = req.into_inner();
        // Whoever may read the view reads what its creator could read of the source.
        self.allow(&who, Resource::topic(&req.name), Operation::Admin)?;
        self.allow(&who, Resource::topic(&req.source), Operation::Read)?;
        for p in &req.plugins {
            self.allow(&who, Resource::plugin(&p.name), Operation::Read)?;
        }
        let plugins = req
            .plugins
            .into_iter()
            .map(|p| ViewPlugin {
                name: p.name,
                params: p.params,
            })
            .collect();
        let view = self
            .broker
            .create_view(&req.name, &req.source, plugins)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::CreateViewResponse {
            view: Some(view_info(view)),
        }))
    }

    async fn list_views(
        &self,
        req: Request<pb::ListViewsRequest>,
    ) -> Result<Response<pb::ListViewsResponse>, Status> {
        let who = principal(&req);
        let security = self.broker.security();
        let views = self
            .broker
            .list_views()
            .into_iter()
            .filter(|v| security.visible(&who, Resource::topic(&v.name)))
            .map(view_info)
            .collect();
        Ok(Response::new(pb::ListViewsResponse { views }))
    }

    async fn describe_view(
        &self,
        req: Request<pb::DescribeViewRequest>,
    ) -> Result<Response<pb::DescribeViewResponse>, Status> {
        let who = principal(&req);
        let name = req.into_inner().name;
        self.allow_any(&who, Resource::topic(&name))?;
        let view = self.broker.describe_view(&name).map_err(status_of)?;
        let (topic, bounds) = self.broker.describe_topic(&name).map_err(status_of)?;
        Ok(Response::new(pb::DescribeViewResponse {
            view: Some(view_info(view)),
            partitions: partitions_of(&self.broker, &topic, &bounds),
        }))
    }

    async fn delete_view(
        &self,
        req: Request<pb::DeleteViewRequest>,
    ) -> Result<Response<pb::DeleteViewResponse>, Status> {
        let who = principal(&req);
        let name = req.into_inner().name;
        self.allow(&who, Resource::topic(&name), Operation::Admin)?;
        self.broker.delete_view(&name).await.map_err(status_of)?;
        Ok(Response::new(pb::DeleteViewResponse {}))
    }
}
