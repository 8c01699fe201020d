//! Cluster mode pipelines (docs/pipelines.md, "In a cluster"): definitions, ids and
//! per-partition checkpoints live in the replicated metadata; each member runs the worker of
//! every source partition it leads ([`Broker::follow_pipelines`]), which writes through the
//! destination partitions' leaders as the worker's idempotent producer ([`MemberSink`]).
//! A leader that moves stops its workers and the new leader's start from the last
//! checkpoint; the destination's producer sequence tells them what it already holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_common::PipelineName;
use weir_common::limits::{MAX_PIPELINE_CHECKPOINT_BYTES, MAX_PIPELINES};

use super::leadership::leader_epoch_of;
use super::records::await_replicated;
use super::{Acks, Admission, Broker, MAX_REPLICATION_WAIT};
use crate::blocking::blocking;
use crate::cluster::Cluster;
use crate::cluster::network::calls::CallError;
use crate::cluster::state::{Command, Metadata, Outcome, PipelineState};
use crate::error::BrokerError;
use crate::pipelines::replicated::{self, ClusterSink, ReplicatedCtx, SinkError};
use crate::pipelines::{
    Checkpoint, Failure, PartitionView, PipelineDef, PipelineView, Start, check_params, check_uses,
};
use crate::topics::views::not_a_topic;
use crate::types::{OffsetQuery, now_ms};

/// How long a worker's call to a destination leader on another member may take: an acks=all
/// write waits up to [`MAX_REPLICATION_WAIT`] for the in-sync replicas.
const PIPELINE_CALL_TIMEOUT: Duration = Duration::from_secs(MAX_REPLICATION_WAIT.as_secs() + 5);
/// How often a member looks again at which workers it should run, besides at each metadata
/// change (a worker that ended on its own is started again).
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before a worker tries again to load its plugins.
const WORKER_RETRY: Duration = Duration::from_secs(1);

/// A worker running on this member.
pub(super) struct ClusterWorker {
    id: u32,
    leader_epoch: u32,
    modules: Vec<String>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Workers by (pipeline, source partition).
pub(super) type ClusterWorkers = BTreeMap<(String, u32), ClusterWorker>;

/// What should run here: (pipeline, partition) → (id, leader epoch, modules).
fn wanted(m: &Metadata, me: u64) -> BTreeMap<(String, u32), (u32, u32, Vec<String>)> {
    let mut out = BTreeMap::new();
    for (name, p) in &m.pipelines {
        if p.def.failure.is_some() {
            continue;
        }
        let modules: Option<Vec<String>> = p
            .def
            .plugins
            .iter()
            .map(|u| m.plugins.get(&u.plugin).map(|e| e.sha256.clone()))
            .collect();
        let Some(modules) = modules else { continue };
        for i in 0..p.checkpoints.len() as u32 {
            if let Some(epoch) = leader_epoch_of(m, &p.def.from_topic, i, me) {
                out.insert((name.clone(), i), (p.id, epoch, modules.clone()));
            }
        }
    }
    out
}

/// A sink error for the broker's error of a local write.
fn sink_error(e: BrokerError) -> SinkError {
    match e {
        BrokerError::OutOfOrderSequence { expected, .. } => SinkError::OutOfOrder { expected },
        BrokerError::NotLeader { .. }
        | BrokerError::StaleLeaderEpoch { .. }
        | BrokerError::NotEnoughReplicas(_)
        | BrokerError::Busy(_)
        | BrokerError::ClusterUnavailable(_)
        | BrokerError::ShuttingDown => SinkError::Retriable(e.to_string()),
        e => SinkError::Failed(e.to_string()),
    }
}

fn call_error(e: CallError) -> SinkError {
    match e {
        CallError::Transient(e) => SinkError::Retriable(e),
        CallError::Refused(e) => SinkError::Failed(e),
    }
}

/// Where a destination partition is led.
enum Led {
    Here,
    At(String),
}

/// A worker's outputs and checkpoints, through this member: the destination partition's
/// leader (this broker, or another over `Replication`) and the metadata quorum.
pub(super) struct MemberSink {
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
}

impl MemberSink {
    fn leader(&self, topic: &str, partition: u32) -> Result<Led, SinkError> {
        match self.broker.check_leader(topic, partition) {
            Ok(_) => Ok(Led::Here),
            Err(BrokerError::NotLeader {
                leader: Some(addr), ..
            }) => Ok(Led::At(addr)),
            Err(e) => Err(sink_error(e)),
        }
    }
}

impl ClusterSink for MemberSink {
    async fn expected_sequence(
        &self,
        topic: &str,
        partition: u32,
        producer_id: u64,
    ) -> Result<u32, SinkError> {
        match self.leader(topic, partition)? {
            Led::Here => self
                .broker
                .pipeline_sequence(topic, partition, producer_id)
                .await
                .map_err(sink_error),
            Led::At(addr) => self
                .cluster
                .peer_channels()
                .pipeline_sequence(&addr, topic, partition, producer_id, PIPELINE_CALL_TIMEOUT)
                .await
                .map_err(call_error),
        }
    }

    async fn produce(
        &self,
        topic: &str,
        partition: u32,
        batches: Vec<Bytes>,
    ) -> Result<(), SinkError> {
        let refused = match self.leader(topic, partition)? {
            Led::Here => self
                .broker
                .pipeline_produce(topic, partition, batches)
                .await
                .map_err(sink_error)?,
            Led::At(addr) => self
                .cluster
                .peer_channels()
                .pipeline_produce(&addr, topic, partition, batches, PIPELINE_CALL_TIMEOUT)
                .await
                .map_err(call_error)?,
        };
        match refused {
            None => Ok(()),
            Some(expected) => Err(SinkError::OutOfOrder { expected }),
        }
    }

    async fn checkpoint(
        &self,
        pipeline: &str,
        id: u32,
        partition: u32,
        checkpoint: Checkpoint,
    ) -> Result<(), SinkError> {
        let size = serde_json::to_vec(&checkpoint).map_or(usize::MAX, |v| v.len());
        if size > MAX_PIPELINE_CHECKPOINT_BYTES {
            return Err(SinkError::Failed(format!(
                "partition {partition}: its checkpoint (position and aggregate states) is {size} \
                 bytes; the limit is {MAX_PIPELINE_CHECKPOINT_BYTES}"
            )));
        }
        let cmd = Command::PutPipelineCheckpoint {
            name: pipeline.to_string(),
            id,
            partition,
            checkpoint,
        };
        match self.cluster.propose(cmd).await {
            Ok(Outcome::Done) => Ok(()),
            Ok(
                Outcome::StaleCheckpoint { .. }
                | Outcome::PipelineNotFound
                | Outcome::PartitionNotFound,
            ) => Err(SinkError::Deposed),
            Ok(other) => Err(SinkError::Failed(format!(
                "the cluster did not take the checkpoint: {other:?}"
            ))),
            Err(e) => Err(SinkError::Retriable(e.to_string())),
        }
    }
}

impl Broker {
    /// On the leader of `topic`'s `partition`: the sequence the partition expects next from
    /// pipeline worker `producer_id`, once every in-sync replica holds all it wrote before
    /// (so a worker never leaves out output a failover could still lose).
    pub async fn pipeline_sequence(
        &self,
        topic: &str,
        partition: u32,
        producer_id: u64,
    ) -> Result<u32, BrokerError> {
        let cluster = self.cluster_only("pipeline workers' writes")?;
        self.check_leader(topic, partition)?;
        let t = self.topics.get(topic)?;
        let log = Arc::clone(&t.partition(partition)?.log);
        // The sequence first: what it counts lies below the log end read after it.
        let expected = log.expected_sequence(producer_id);
        let end = log.bounds().log_end;
        let deadline = tokio::time::Instant::now() + MAX_REPLICATION_WAIT;
        let min_insync = t.meta.config.min_insync_replicas;
        await_replicated(cluster, topic, partition, &log, end, min_insync, deadline).await?;
        Ok(expected)
    }

    /// On the leader of `topic`'s `partition`: appends a pipeline worker's batches with
    /// acks=all. `Some(expected)` when they were refused as out of order.
    pub async fn pipeline_produce(
        &self,
        topic: &str,
        partition: u32,
        batches: Vec<Bytes>,
    ) -> Result<Option<u32>, BrokerError> {
        self.cluster_only("pipeline workers' writes")?;
        let batches = batches.into_iter().map(|b| (partition, b)).collect();
        let written = self
            .produce_queued(topic, batches, Acks::All, Admission::Wait)
            .await?
            .await;
        match written {
            Ok(_) => Ok(None),
            Err(BrokerError::OutOfOrderSequence { expected, .. }) => Ok(Some(expected)),
            Err(e) => Err(e),
        }
    }

    fn cluster_only(&self, what: &str) -> Result<&Arc<Cluster>, BrokerError> {
        self.cluster().ok_or_else(|| {
            BrokerError::InvalidArgument(format!("{what} go through cluster members only"))
        })
    }

    /// Cluster mode: runs the workers of the source partitions led here as the metadata
    /// changes, and every [`FOLLOW_INTERVAL`].
    pub(super) fn spawn_pipeline_workers(self: &Arc<Self>, cluster: &Arc<Cluster>) {
        let this = Arc::clone(self);
        let mut metadata = cluster.metadata();
        self.spawn_background(async move {
            loop {
                let m = Arc::clone(&metadata.borrow_and_update());
                this.follow_pipelines(&m);
                tokio::select! {
                    r = metadata.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
                }
            }
        });
    }

    fn cluster_workers(&self) -> std::sync::MutexGuard<'_, ClusterWorkers> {
        // Plain map updates: a panic under the lock leaves nothing half-done.
        self.cluster_workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the workers that should not run here any more (the partition's leadership
    /// moved, the pipeline failed or is gone, a plugin was replaced, the worker ended) and
    /// starts those that should; a new worker of a partition waits for the previous one to
    /// end (and checkpoint) first.
    fn follow_pipelines(self: &Arc<Self>, m: &Metadata) {
        let Some(me) = self.node_id() else { return };
        let wanted = wanted(m, me);
        let mut workers = self.cluster_workers();
        let mut previous = BTreeMap::new();
        let stale: Vec<(String, u32)> = workers
            .iter()
            .filter(|(k, w)| {
                w.task.is_finished()
                    || wanted.get(*k).is_none_or(|(id, epoch, modules)| {
                        (w.id, w.leader_epoch, &w.modules) != (*id, *epoch, modules)
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(w) = workers.remove(&k) {
                w.stop.send_replace(true);
                previous.insert(k, w.task);
            }
        }
        for (k, (id, leader_epoch, modules)) in wanted {
            if workers.contains_key(&k) {
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            let (name, partition) = k.clone();
            let before = previous.remove(&k);
            let task = tokio::spawn(Arc::clone(self).run_cluster_worker(
                name,
                partition,
                id,
                leader_epoch,
                before,
                stopped,
            ));
            let w = ClusterWorker {
                id,
                leader_epoch,
                modules,
                stop,
                task,
            };
            workers.insert(k, w);
        }
    }

    /// Stops every worker of this member (at shutdown).
    pub(super) fn stop_cluster_workers(&self) {
        for (_, w) in std::mem::take(&mut *self.cluster_workers()) {
            w.stop.send_replace(true);
            w.task.abort();
        }
    }

    /// One worker: after its predecessor ended, from the partition's checkpoint as the
    /// metadata has it then, until stopped; a failure stops the pipeline on every member.
    async fn run_cluster_worker(
        self: Arc<Self>,
        name: String,
        partition: u32,
        id: u32,
        leader_epoch: u32,
        before: Option<JoinHandle<()>>,
        stop: watch::Receiver<bool>,
    ) {
        if let Some(t) = before {
            let _ = t.await;
        }
        let Some(cluster) = self.cluster().cloned() else {
            return;
        };
        let ctx = loop {
            if *stop.borrow() {
                return;
            }
            match self.worker_ctx(&cluster, &name, partition, id).await {
                Ok(Some(ctx)) => break ctx,
                Ok(None) => return,
                Err(e) => {
                    tracing::info!(pipeline = %name, partition, error = %e, "pipeline worker cannot start yet; retrying");
                    tokio::time::sleep(WORKER_RETRY).await;
                }
            }
        };
        let (ctx, checkpoint) = ctx;
        tracing::info!(pipeline = %name, partition, leader_epoch, from = checkpoint.next_offset, "pipeline worker started");
        let ended = replicated::run(Arc::new(ctx), partition, leader_epoch, checkpoint, stop).await;
        let Err(error) = ended else {
            tracing::info!(pipeline = %name, partition, "pipeline worker stopped");
            return;
        };
        tracing::error!(pipeline = %name, partition, %error, "pipeline failed");
        let cmd = Command::SetPipelineFailure {
            name: name.clone(),
            id,
            failure: Some(Failure {
                error,
                at_ms: now_ms(),
            }),
        };
        if let Err(e) = cluster.propose(cmd).await {
            // Not recorded: the next check here starts the worker again, which fails again.
            tracing::warn!(pipeline = %name, error = %e, "cannot record the pipeline's failure");
        }
    }

    /// What worker `(name, partition)` of pipeline `id` runs on, from the metadata now
    /// (`None`: it should not run any more); an error while its plugins are not here yet.
    async fn worker_ctx(
        self: &Arc<Self>,
        cluster: &Arc<Cluster>,
        name: &str,
        partition: u32,
        id: u32,
    ) -> Result<Option<(ReplicatedCtx<MemberSink>, Checkpoint)>, BrokerError> {
        let m = Arc::clone(&cluster.metadata().borrow());
        let Some(p) = m
            .pipelines
            .get(name)
            .filter(|p| p.id == id && p.def.failure.is_none())
        else {
            return Ok(None);
        };
        let Some(checkpoint) = p.checkpoints.get(partition as usize).cloned() else {
            return Ok(None);
        };
        let mut dests = Vec::new();
        for t in p.def.outputs() {
            let Some(dest) = m.topics.get(t) else {
                return Ok(None);
            };
            dests.push((t.to_string(), dest.partitions.len() as u32));
        }
        let source = self.topics.get(&p.def.from_topic)?;
        let mut uses = Vec::with_capacity(p.def.plugins.len());
        let mut modules = Vec::with_capacity(p.def.plugins.len());
        for u in &p.def.plugins {
            let plugin = self.plugin(&u.plugin).await?;
            modules.push(
                m.plugins
                    .get(&u.plugin)
                    .map(|e| e.sha256.clone())
                    .unwrap_or_default(),
            );
            uses.push((plugin, u.params.as_bytes().to_vec()));
        }
        let ctx = ReplicatedCtx {
            name: name.to_string(),
            id,
            source,
            dests,
            uses,
            modules,
            max_record_bytes: self.max_record_bytes,
            sink: MemberSink {
                broker: Arc::clone(self),
                cluster: Arc::clone(cluster),
            },
        };
        Ok(Some((ctx, checkpoint)))
    }

    /// Cluster mode [`Broker::create_pipeline`]: checks the chain here, asks the source
    /// partitions' leaders where to start, and proposes the pipeline.
    pub(super) async fn create_pipeline_in_cluster(
        self: &Arc<Self>,
        cluster: &Arc<Cluster>,
        def: PipelineDef,
        start: Start,
    ) -> Result<PipelineView, BrokerError> {
        let name = PipelineName::new(def.name.as_str())?.to_string();
        def.check_outputs()?;
        check_uses(&def.plugins)?;
        let partitions = {
            let m = cluster.metadata().borrow().clone();
            if m.pipelines.contains_key(&name) {
                return Err(BrokerError::PipelineExists(name));
            }
            if m.pipelines.len() >= MAX_PIPELINES {
                return Err(BrokerError::InvalidArgument(format!(
                    "the cluster already runs {MAX_PIPELINES} pipelines (the limit)"
                )));
            }
            let missing = |t: &str| match m.views.contains_key(t) {
                true => not_a_topic(t, "pipelines read and write topics"),
                false => BrokerError::TopicNotFound(t.to_string()),
            };
            let source = m
                .topics
                .get(&def.from_topic)
                .ok_or_else(|| missing(&def.from_topic))?;
            if let Some(t) = def.outputs().find(|t| !m.topics.contains_key(*t)) {
                return Err(missing(t));
            }
            source.partitions.len() as u32
        };
        self.check_chain(&def).await?;
        let query = match start {
            Start::Earliest => OffsetQuery::Earliest,
            Start::Latest => OffsetQuery::Latest,
        };
        let all: Vec<u32> = (0..partitions).collect();
        let offsets = self.leader_offsets(&def.from_topic, &all, query).await?;
        let starts = all
            .iter()
            .map(|p| {
                offsets.get(p).map(|o| o.offset).ok_or_else(|| {
                    BrokerError::ClusterUnavailable(format!(
                        "no offset for source partition {p}; try again"
                    ))
                })
            })
            .collect::<Result<Vec<u64>, _>>()?;
        let cmd = Command::CreatePipeline {
            def: def.clone(),
            starts,
        };
        match cluster.propose(cmd).await? {
            Outcome::PipelineCreated { id } => {
                tracing::info!(pipeline = %name, id, from = %def.from_topic, "created pipeline (cluster)");
            }
            Outcome::PipelineExists => return Err(BrokerError::PipelineExists(name)),
            Outcome::TopicNotFound => return Err(BrokerError::TopicNotFound(def.from_topic)),
            Outcome::PluginNotFound => {
                let first = def.plugins.first().map(|u| u.plugin.clone());
                return Err(BrokerError::PluginNotFound(first.unwrap_or_default()));
            }
            Outcome::Invalid(why) => return Err(BrokerError::InvalidArgument(why)),
            other => {
                return Err(BrokerError::Storage(format!(
                    "the cluster did not create the pipeline: {other:?}"
                )));
            }
        }
        self.await_metadata(|m, _| m.pipelines.contains_key(&name))
            .await;
        self.describe_pipeline(&name).await
    }

    /// The chain's plugins exist here and accept their params.
    async fn check_chain(&self, def: &PipelineDef) -> Result<(), BrokerError> {
        let mut uses = Vec::with_capacity(def.plugins.len());
        for u in &def.plugins {
            uses.push((self.plugin(&u.plugin).await?, u.params.as_bytes().to_vec()));
        }
        blocking(move || check_params(uses)).await
    }

    pub(super) async fn delete_pipeline_in_cluster(
        &self,
        cluster: &Arc<Cluster>,
        name: &str,
    ) -> Result<(), BrokerError> {
        let cmd = Command::DeletePipeline {
            name: name.to_string(),
        };
        match cluster.propose(cmd).await? {
            Outcome::Done => {}
            Outcome::PipelineNotFound => {
                return Err(BrokerError::PipelineNotFound(name.to_string()));
            }
            other => {
                return Err(BrokerError::Storage(format!(
                    "the cluster did not delete the pipeline: {other:?}"
                )));
            }
        }
        self.await_metadata(|m, _| !m.pipelines.contains_key(name))
            .await;
        tracing::info!(pipeline = %name, "deleted pipeline (cluster)");
        Ok(())
    }

    /// Clears a failed pipeline's failure (after checking its chain again), so the leaders
    /// of its source partitions start their workers from the last checkpoints.
    pub(super) async fn resume_pipeline_in_cluster(
        &self,
        cluster: &Arc<Cluster>,
        name: &str,
    ) -> Result<PipelineView, BrokerError> {
        let p = cluster
            .metadata()
            .borrow()
            .pipelines
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::PipelineNotFound(name.to_string()))?;
        if p.def.failure.is_none() {
            return self.describe_pipeline(name).await;
        }
        self.check_chain(&p.def).await?;
        let cmd = Command::SetPipelineFailure {
            name: name.to_string(),
            id: p.id,
            failure: None,
        };
        match cluster.propose(cmd).await? {
            Outcome::Done => {}
            Outcome::PipelineNotFound => {
                return Err(BrokerError::PipelineNotFound(name.to_string()));
            }
            Outcome::TopicNotFound => {
                return Err(BrokerError::InvalidArgument(format!(
                    "pipeline {name:?} cannot resume: topic {:?} or {:?} is gone",
                    p.def.from_topic, p.def.to_topic
                )));
            }
            Outcome::Invalid(why) => return Err(BrokerError::InvalidArgument(why)),
            other => {
                return Err(BrokerError::Storage(format!(
                    "the cluster did not resume the pipeline: {other:?}"
                )));
            }
        }
        self.await_metadata(|m, _| {
            m.pipelines
                .get(name)
                .is_some_and(|p| p.def.failure.is_none())
        })
        .await;
        tracing::info!(pipeline = %name, "resumed pipeline (cluster)");
        self.describe_pipeline(name).await
    }

    /// A pipeline as the metadata has it, with the source partitions' end offsets from
    /// their leaders (this member's copies when a leader does not answer).
    pub(super) async fn pipeline_view_in_cluster(
        &self,
        m: &Metadata,
        p: &PipelineState,
        per_partition: bool,
    ) -> PipelineView {
        let from = &p.def.from_topic;
        let all: Vec<u32> = (0..p.checkpoints.len() as u32).collect();
        let ends: BTreeMap<u32, u64> = match self.partition_bounds(from, &all).await {
            Ok(b) => b.into_iter().map(|(i, (_, latest))| (i, latest)).collect(),
            Err(_) => self
                .topics
                .get(from)
                .map(|t| {
                    (0u32..)
                        .zip(t.partitions.iter())
                        .map(|(i, x)| (i, x.log.bounds().latest))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let mut view = PipelineView {
            def: p.def.clone(),
            partitions: Vec::new(),
            lag: 0,
            records_in: 0,
            records_out: 0,
        };
        for (i, c) in (0u32..).zip(p.checkpoints.iter()) {
            let end = ends.get(&i).copied().unwrap_or(c.next_offset);
            let lag = end.saturating_sub(c.next_offset);
            view.lag += lag;
            view.records_in += c.records_in;
            view.records_out += c.records_out;
            if per_partition {
                let worker = match p.def.failure {
                    Some(_) => None,
                    None => m.partition(from, i).and_then(|s| s.leader),
                };
                view.partitions.push(PartitionView {
                    partition: i,
                    position: c.next_offset,
                    end_offset: end,
                    lag,
                    records_in: c.records_in,
                    records_out: c.records_out,
                    worker,
                });
            }
        }
        view
    }
}
