//! `weir.v1.Replication`: a partition leader's side of replication. Followers fetch from
//! their log end offset; the answer carries stored batches unchanged (docs/cluster.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tonic::{Request, Response, Status};
use weir_proto::v1 as pb;

use super::log::request_error;
use crate::broker::Broker;
use crate::config::MAX_REPLICA_FETCH_WAIT_MS;
use crate::error::BrokerError;
use crate::log::{Bounds, Diverging, ReadUpTo};
use crate::metrics::{self, Stage};
use crate::topics::any_changed;
use crate::types::EpochStart;

/// Longest a follower's fetch waits here for new records (`--replica-fetch-wait-ms`'s cap).
pub const MAX_REPLICA_WAIT: Duration = Duration::from_millis(MAX_REPLICA_FETCH_WAIT_MS);

/// What a fetch of one partition finds.
enum Fetched {
    /// The follower's log disagrees from there on: it truncates first.
    Diverging(Diverging, Bounds),
    /// Batches past the follower's offset (maybe none), with the leader's epoch history
    /// when there are some.
    Batches(Vec<bytes::Bytes>, Bounds, Vec<EpochStart>),
}

pub struct ReplicationService {
    broker: Arc<Broker>,
    /// Set when the broker stops: a waiting fetch answers at once.
    shutdown: watch::Receiver<bool>,
}

impl ReplicationService {
    pub fn new(broker: Arc<Broker>, shutdown: watch::Receiver<bool>) -> Self {
        Self { broker, shutdown }
    }

    /// One round over every asked partition, within `budget` bytes in all.
    async fn read_round(
        &self,
        follower: u64,
        positions: &[pb::ReplicaPosition],
        budget: usize,
    ) -> Vec<pb::ReplicaData> {
        let mut budget = budget;
        let mut out = Vec::with_capacity(positions.len());
        for p in positions {
            let mut data = pb::ReplicaData {
                topic: p.topic.clone(),
                partition: p.partition,
                ..Default::default()
            };
            match self.read_one(follower, p, budget).await {
                Ok(Fetched::Diverging(d, bounds)) => {
                    data.diverging = Some(pb::DivergingEpoch {
                        epoch: d.epoch,
                        end_offset: d.end_offset,
                    });
                    data.log_end = bounds.log_end;
                    data.high_watermark = bounds.latest;
                }
                Ok(Fetched::Batches(batches, bounds, epochs)) => {
                    budget = budget.saturating_sub(batches.iter().map(|b| b.len()).sum());
                    data.batches = batches;
                    data.log_end = bounds.log_end;
                    data.high_watermark = bounds.latest;
                    data.epochs = epochs
                        .into_iter()
                        .map(|e| pb::EpochStart {
                            epoch: e.epoch,
                            start_offset: e.start_offset,
                        })
                        .collect();
                }
                Err(e) => data.error = Some(request_error(e)),
            }
            out.push(data);
        }
        out
    }

    /// Counts the follower's position (high watermark, ISR), then reads past it.
    async fn read_one(
        &self,
        follower: u64,
        p: &pb::ReplicaPosition,
        budget: usize,
    ) -> Result<Fetched, BrokerError> {
        let topic = self.broker.topic(&p.topic)?;
        if let Some(d) = self.broker.on_replica_fetch(
            &p.topic,
            p.partition,
            follower,
            p.fetch_offset,
            p.leader_epoch,
            p.last_epoch,
        )? {
            return Ok(Fetched::Diverging(d, topic.bounds(p.partition)?));
        }
        let bounds = topic.bounds(p.partition)?;
        if budget == 0 || p.fetch_offset == bounds.log_end {
            return Ok(Fetched::Batches(Vec::new(), bounds, Vec::new()));
        }
        let r = self
            .broker
            .read(
                &topic,
                p.partition,
                p.fetch_offset,
                budget,
                ReadUpTo::LogEnd,
            )
            .await?;
        let epochs = if r.batches.is_empty() {
            Vec::new()
        } else {
            topic.epochs(p.partition)?
        };
        Ok(Fetched::Batches(r.batches, r.bounds, epochs))
    }
}

#[tonic::async_trait]
impl pb::replication_server::Replication for ReplicationService {
    async fn replica_fetch(
        &self,
        req: Request<pb::ReplicaFetchRequest>,
    ) -> Result<Response<pb::ReplicaFetchResponse>, Status> {
        let req = req.into_inner();
        let budget = Broker::fetch_budget(req.max_bytes);
        let wait = Duration::from_millis(u64::from(req.max_wait_ms)).min(MAX_REPLICA_WAIT);
        // Watch the partitions first, so a write between the read and the wait is not missed.
        let mut watches: Vec<_> = req
            .partitions
            .iter()
            .filter_map(|p| self.broker.topic(&p.topic).ok().map(|t| (t, p.partition)))
            .filter_map(|(t, p)| t.watch(p).ok())
            .collect();
        let partitions = self.read_round(req.follower, &req.partitions, budget).await;
        let idle = partitions
            .iter()
            .all(|d| d.batches.is_empty() && d.error.is_none());
        if !idle || watches.is_empty() || wait.is_zero() {
            return Ok(Response::new(pb::ReplicaFetchResponse { partitions }));
        }
        let waited = Instant::now();
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = any_changed(&mut watches) => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        metrics::global().stage(Stage::FetchWait, waited.elapsed());
        let partitions = self.read_round(req.follower, &req.partitions, budget).await;
        Ok(Response::new(pb::ReplicaFetchResponse { partitions }))
    }

    async fn put_plugin_module(
        &self,
        req: Request<pb::PluginModule>,
    ) -> Result<Response<pb::PutPluginModuleResponse>, Status> {
        let m = req.into_inner();
        self.broker
            .put_plugin_module(m.sha256, m.wasm)
            .await
            .map_err(super::status_of)?;
        Ok(Response::new(pb::PutPluginModuleResponse {}))
    }

    async fn pipeline_sequence(
        &self,
        req: Request<pb::PipelineSequenceRequest>,
    ) -> Result<Response<pb::PipelineSequenceResponse>, Status> {
        let r = req.into_inner();
        let expected_sequence = self
            .broker
            .pipeline_sequence(&r.topic, r.partition, r.producer_id)
            .await
            .map_err(super::status_of)?;
        Ok(Response::new(pb::PipelineSequenceResponse {
            expected_sequence,
        }))
    }

    async fn pipeline_produce(
        &self,
        req: Request<pb::PipelineProduceRequest>,
    ) -> Result<Response<pb::PipelineProduceResponse>, Status> {
        let r = req.into_inner();
        let expected_sequence = self
            .broker
            .pipeline_produce(&r.topic, r.partition, r.batches)
            .await
            .map_err(super::status_of)?;
        Ok(Response::new(pb::PipelineProduceResponse {
            expected_sequence,
        }))
    }

    async fn get_plugin_module(
        &self,
        req: Request<pb::GetPluginModuleRequest>,
    ) -> Result<Response<pb::PluginModule>, Status> {
        let sha256 = req.into_inner().sha256;
        match self
            .broker
            .plugin_module(sha256.clone())
            .await
            .map_err(super::status_of)?
        {
            Some(wasm) => Ok(Response::new(pb::PluginModule {
                sha256,
                wasm: wasm.into(),
            })),
            None => Err(Status::not_found(format!(
                "this broker does not hold plugin module {sha256}"
            ))),
        }
    }
}
