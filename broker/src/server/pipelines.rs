//! `weir.v1.Pipelines`: create, list, describe, delete and resume continuous pipelines.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_proto::v1 as pb;

use super::{Guarded, principal, status_of};
use crate::broker::Broker;
use crate::pipelines::{PipelineDef, PipelineView, PluginUseDef, Start};
use crate::security::{Operation, Resource};
use crate::types::now_ms;

pub struct PipelinesService {
    broker: Arc<Broker>,
}

impl PipelinesService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

fn info_pb(v: PipelineView) -> pb::PipelineInfo {
    let (status, error) = match v.def.failure {
        None => (pb::PipelineStatus::Running, String::new()),
        Some(f) => (pb::PipelineStatus::Failed, f.error),
    };
    pb::PipelineInfo {
        name: v.def.name,
        from_topic: v.def.from_topic,
        to_topic: v.def.to_topic,
        extra_to_topics: v.def.extra_to,
        plugins: v
            .def
            .plugins
            .into_iter()
            .map(|u| pb::PluginUse {
                name: u.plugin,
                params: u.params,
            })
            .collect(),
        status: status as i32,
        error,
        created_ms: v.def.created_ms,
        lag: v.lag,
        records_in: v.records_in,
        records_out: v.records_out,
        partitions: v
            .partitions
            .into_iter()
            .map(|p| pb::PipelinePartition {
                partition: p.partition,
                position: p.position,
                end_offset: p.end_offset,
                lag: p.lag,
                records_in: p.records_in,
                records_out: p.records_out,
                worker: p.worker,
            })
            .collect(),
    }
}

impl Guarded for PipelinesService {
    fn broker(&self) -> &Broker {
        &self.broker
    }
}

#[tonic::async_trait]
impl pb::pipelines_server::Pipelines for PipelinesService {
    async fn create_pipeline(
        &self,
        req: Request<pb::CreatePipelineRequest>,
    ) -> Result<Response<pb::CreatePipelineResponse>, Status> {
        let who = principal(&req);
        let r = req.into_inner();
        // A pipeline does only what its creator could do by hand.
        self.allow(&who, Resource::pipeline(&r.name), Operation::Admin)?;
        self.allow(&who, Resource::topic(&r.from_topic), Operation::Read)?;
        for t in std::iter::once(&r.to_topic).chain(&r.extra_to_topics) {
            self.allow(&who, Resource::topic(t), Operation::Write)?;
        }
        for u in &r.plugins {
            self.allow(&who, Resource::plugin(&u.name), Operation::Read)?;
        }
        let start = match pb::PipelineStart::try_from(r.start) {
            Ok(pb::PipelineStart::Earliest) => Start::Earliest,
            Ok(pb::PipelineStart::Latest) => Start::Latest,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown pipeline start {}",
                    r.start
                )));
            }
        };
        let def = PipelineDef {
            name: r.name,
            from_topic: r.from_topic,
            to_topic: r.to_topic,
            extra_to: r.extra_to_topics,
            plugins: r
                .plugins
                .into_iter()
                .map(|u| PluginUseDef {
                    plugin: u.name,
                    params: u.params,
                })
                .collect(),
            created_ms: now_ms(),
            failure: None,
        };
        let view = self
            .broker
            .create_pipeline(def, start)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::CreatePipelineResponse {
            pipeline: Some(info_pb(view)),
        }))
    }

    async fn list_pipelines(
        &self,
        req: Request<pb::ListPipelinesRequest>,
    ) -> Result<Response<pb::ListPipelinesResponse>, Status> {
        let who = principal(&req);
        let security = self.broker.security();
        let pipelines = self
            .broker
            .list_pipelines()
            .await
            .into_iter()
            .map(info_pb)
            .filter(|p| security.visible(&who, Resource::pipeline(&p.name)))
            .collect();
        Ok(Response::new(pb::ListPipelinesResponse { pipelines }))
    }

    async fn describe_pipeline(
        &self,
        req: Request<pb::DescribePipelineRequest>,
    ) -> Result<Response<pb::DescribePipelineResponse>, Status> {
        let who = principal(&req);
        let name = req.into_inner().name;
        self.allow(&who, Resource::pipeline(&name), Operation::Read)?;
        let view = self
            .broker
            .describe_pipeline(&name)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::DescribePipelineResponse {
            pipeline: Some(info_pb(view)),
        }))
    }

    async fn delete_pipeline(
        &self,
        req: Request<pb::DeletePipelineRequest>,
    ) -> Result<Response<pb::DeletePipelineResponse>, Status> {
        let who = principal(&req);
        let name = req.into_inner().name;
        self.allow(&who, Resource::pipeline(&name), Operation::Admin)?;
        self.broker
            .delete_pipeline(&name)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::DeletePipelineResponse {}))
    }

    async fn resume_pipeline(
        &self,
        req: Request<pb::ResumePipelineRequest>,
    ) -> Result<Response<pb::ResumePipelineResponse>, Status> {
        let who = principal(&req);
        let name = req.into_inner().name;
        self.allow(&who, Resource::pipeline(&name), Operation::Admin)?;
        let view = self
            .broker
            .resume_pipeline(&name)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::ResumePipelineResponse {
            pipeline: Some(info_pb(view)),
        }))
    }
}
