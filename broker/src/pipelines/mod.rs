//! Continuous pipelines: a chain of plugins run inside the broker from a source topic to a
//! destination topic, one worker task per source partition (see `worker`).
//!
//! Exactly-once: each round of a worker reads up to [`PIPELINE_READ_MAX_BYTES`] of its source
//! partition, runs the chain once per stage, and writes the outputs, the source offset reached,
//! the counters and every stage's aggregate state in **one** RocksDB write (the destination
//! partition's append, `PartitionLog::append_group_with`, with the progress as its extra
//! write: `store::put_progress`). A crash before that write redoes the round from the previous
//! progress with the previous state; after it, nothing is redone.
//!
//! Output of source partition `p` goes to destination partition `p % N` (N: the destination's
//! partition count): one atomic write touches one destination partition, and with equal
//! partition counts every key stays in the partition the producer's partitioner chose.
//!
//! A failure (plugin trap or limit, malformed output, a topic deleted, a storage error) stops
//! every worker of the pipeline and records status `failed` with the error (persisted, so it
//! survives restarts). `resume` starts it again from its last write.
//!
//! Invariants:
//! - At most one worker per (pipeline, source partition) at a time: a new run starts only after
//!   every task of the previous run has finished (admin operations await them).
//! - Progress keys of a pipeline exist only while its definition does.
//!
//! [`PIPELINE_READ_MAX_BYTES`]: weir_common::limits::PIPELINE_READ_MAX_BYTES

pub mod replicated;
pub mod sequence;
pub mod store;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_common::PipelineName;
use weir_common::limits::{
    MAX_PIPELINE_OUTPUTS, MAX_PIPELINES, MAX_PLUGIN_CHAIN, MAX_PLUGIN_PARAMS_BYTES,
};

use crate::error::BrokerError;
use crate::plugins::{PluginRegistry, chain};
use crate::storage::Store;
use crate::topics::{Topic, TopicRegistry};
use crate::types::{TopicId, now_ms};
use worker::WorkerCtx;

/// One plugin of a pipeline's chain, with its params (JSON; empty: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginUseDef {
    pub plugin: String,
    pub params: String,
}

/// Where a new pipeline starts reading its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Earliest,
    Latest,
}

/// Why a pipeline stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub error: String,
    pub at_ms: i64,
}

/// A pipeline as persisted (JSON in the `pipelines` column family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineDef {
    pub name: String,
    pub from_topic: String,
    /// Output 0.
    pub to_topic: String,
    /// Outputs 1, 2, … (where a `route` stage sends records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_to: Vec<String>,
    pub plugins: Vec<PluginUseDef>,
    pub created_ms: i64,
    /// Set when it failed; cleared by resume.
    #[serde(default)]
    pub failure: Option<Failure>,
}

impl PipelineDef {
    /// Its output topics, output 0 first.
    pub fn outputs(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.to_topic.as_str()).chain(self.extra_to.iter().map(String::as_str))
    }

    /// The outputs against the limits: at most [`MAX_PIPELINE_OUTPUTS`], all distinct, none
    /// the source.
    pub fn check_outputs(&self) -> Result<(), BrokerError> {
        let outputs: Vec<&str> = self.outputs().collect();
        if outputs.len() > MAX_PIPELINE_OUTPUTS {
            return Err(BrokerError::InvalidArgument(format!(
                "{} output topics; a pipeline writes to at most {MAX_PIPELINE_OUTPUTS}",
                outputs.len()
            )));
        }
        if outputs.contains(&self.from_topic.as_str()) {
            return Err(BrokerError::InvalidArgument(format!(
                "a pipeline cannot write to its own source topic {:?}",
                self.from_topic
            )));
        }
        if let Some((i, t)) = outputs
            .iter()
            .enumerate()
            .find(|(i, t)| outputs[..*i].contains(t))
        {
            return Err(BrokerError::InvalidArgument(format!(
                "output {i} repeats topic {t:?}: each output is another topic"
            )));
        }
        Ok(())
    }
}

/// A pipeline's durable position on one source partition, written atomically with the output
/// it produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PipelineProgress {
    /// Id of the source topic this progress belongs to (a topic deleted and created again
    /// under the same name starts over).
    pub source_topic: TopicId,
    /// Next source offset to process.
    pub next_offset: u64,
    pub records_in: u64,
    pub records_out: u64,
    /// Each stage's aggregate state (empty for other kinds), in chain order.
    pub states: Vec<Vec<u8>>,
}

/// Where a pipeline's worker on one source partition may restart from: everything before
/// `next_offset` is in the destination (acknowledged by every in-sync replica), and replaying
/// from here reproduces the same outputs with the same sequence numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The source partition's leader epoch of the worker that wrote it.
    pub leader_epoch: u32,
    /// Next source offset to process.
    pub next_offset: u64,
    pub records_in: u64,
    pub records_out: u64,
    /// Per (output, destination partition) the worker writes to: the sequence number of its
    /// next output record there.
    pub sequences: Vec<(u8, u32, u32)>,
    /// Each stage's aggregate state (empty for other kinds), in chain order.
    #[serde(with = "base64_states")]
    pub states: Vec<Vec<u8>>,
    /// Each stage's module (SHA-256) the outputs up to here came from.
    pub modules: Vec<String>,
}

/// Aggregate states as base64 strings (the metadata is JSON; an array of numbers would take
/// four times the bytes).
mod base64_states {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(states: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(states.iter().map(|v| STANDARD.encode(v)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| STANDARD.decode(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Counters of one source partition, as last written.
#[derive(Debug, Clone, Copy, Default)]
struct PartitionStats {
    position: u64,
    records_in: u64,
    records_out: u64,
}

/// One source partition of a pipeline, as described.
#[derive(Debug, Clone)]
pub struct PartitionView {
    pub partition: u32,
    pub position: u64,
    pub end_offset: u64,
    pub lag: u64,
    pub records_in: u64,
    pub records_out: u64,
    /// Cluster mode: the node id of the member whose worker processes the partition.
    pub worker: Option<u64>,
}

/// A pipeline as listed or described.
#[derive(Debug, Clone)]
pub struct PipelineView {
    pub def: PipelineDef,
    pub partitions: Vec<PartitionView>,
    pub lag: u64,
    pub records_in: u64,
    pub records_out: u64,
}

/// A running set of workers.
struct Run {
    stop: Arc<watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
}

pub struct Pipeline {
    def: Mutex<PipelineDef>,
    stats: Mutex<Vec<PartitionStats>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a plain assignment: a panic cannot leave them torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pipeline {
    fn def(&self) -> PipelineDef {
        lock(&self.def).clone()
    }

    fn set_stats(&self, partition: u32, p: &PipelineProgress) {
        let mut stats = lock(&self.stats);
        if let Some(s) = stats.get_mut(partition as usize) {
            *s = PartitionStats {
                position: p.next_offset,
                records_in: p.records_in,
                records_out: p.records_out,
            };
        }
    }

    /// Records the first failure of a run and persists it (blocking).
    fn mark_failed(&self, store: &Store, error: String) {
        let mut def = lock(&self.def);
        if def.failure.is_some() {
            return;
        }
        tracing::error!(pipeline = %def.name, %error, "pipeline failed");
        def.failure = Some(Failure {
            error,
            at_ms: now_ms(),
        });
        if let Err(e) = store::put_pipeline(store, &def) {
            tracing::error!(pipeline = %def.name, error = %e, "cannot persist the pipeline's failure");
        }
    }
}

/// A pipeline and its current run, if it runs.
struct Managed {
    pipeline: Arc<Pipeline>,
    run: Option<Run>,
}

/// What a pipeline run needs from the rest of the broker: the topic and plugin registries and
/// the record size limit its outputs are held to.
pub struct PipelineEnv<'a> {
    pub topics: &'a TopicRegistry,
    pub plugins: &'a PluginRegistry,
    pub max_record_bytes: usize,
}

pub struct PipelineManager {
    store: Store,
    /// Name → pipeline. Admin operations (create, delete, resume, and plugin deletion, which
    /// checks for users) hold this lock for their whole duration, including waiting for
    /// workers to stop, so they never interleave.
    entries: tokio::sync::Mutex<BTreeMap<String, Managed>>,
}

impl PipelineManager {
    /// Loads every pipeline and starts those not failed. Must run inside the tokio runtime.
    pub fn recover(store: Store, deps: &PipelineEnv<'_>) -> Result<Self, BrokerError> {
        let mut entries = BTreeMap::new();
        for def in store::load_pipelines(&store)? {
            let progress = store::load_progress(&store, &def.name)?;
            let name = def.name.clone();
            let failed = def.failure.is_some();
            let pipeline = Arc::new(Pipeline {
                def: Mutex::new(def),
                stats: Mutex::new(Vec::new()),
            });
            let mut entry = Managed {
                pipeline,
                run: None,
            };
            let source = deps.topics.get(&lock(&entry.pipeline.def).from_topic);
            init_stats(&entry.pipeline, source.ok().as_deref(), &progress);
            if !failed {
                match start(&store, &entry.pipeline, deps, progress) {
                    Ok(run) => entry.run = Some(run),
                    Err(e) => entry.pipeline.mark_failed(&store, e.to_string()),
                }
            }
            entries.insert(name, entry);
        }
        tracing::info!(pipelines = entries.len(), "loaded pipelines");
        Ok(Self {
            store,
            entries: tokio::sync::Mutex::new(entries),
        })
    }

    /// Validates, persists and starts a pipeline.
    pub async fn create(
        &self,
        deps: &PipelineEnv<'_>,
        def: PipelineDef,
        start_at: Start,
    ) -> Result<PipelineView, BrokerError> {
        let name = PipelineName::new(def.name.as_str())?;
        let mut entries = self.entries.lock().await;
        if entries.contains_key(name.as_str()) {
            return Err(BrokerError::PipelineExists(name.to_string()));
        }
        if entries.len() >= MAX_PIPELINES {
            return Err(BrokerError::InvalidArgument(format!(
                "the broker already runs {MAX_PIPELINES} pipelines (the limit)"
            )));
        }
        def.check_outputs()?;
        let source = deps
            .topics
            .get_topic(&def.from_topic, "pipelines read topics")?;
        for t in def.outputs() {
            deps.topics.get_topic(t, "pipelines write topics")?;
        }
        // Plugins exist and accept their params: fail now, not in the background.
        let uses = resolve_uses(deps.plugins, &def.plugins)?;
        tokio::task::spawn_blocking(move || check_params(uses))
            .await
            .map_err(|e| BrokerError::Storage(format!("plugin task failed: {e}")))??;

        let progress: Vec<(u32, PipelineProgress)> = source
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let b = p.log.bounds();
                let next_offset = match start_at {
                    Start::Earliest => b.earliest,
                    Start::Latest => b.latest,
                };
                let progress = PipelineProgress {
                    source_topic: source.meta.id,
                    next_offset,
                    states: vec![Vec::new(); def.plugins.len()],
                    ..Default::default()
                };
                (i as u32, progress)
            })
            .collect();
        let store = self.store.clone();
        let (d, p) = (def.clone(), progress.clone());
        tokio::task::spawn_blocking(move || store::create_pipeline(&store, &d, &p))
            .await
            .map_err(|e| BrokerError::Storage(format!("storage task failed: {e}")))??;
        let pipeline = Arc::new(Pipeline {
            def: Mutex::new(def),
            stats: Mutex::new(Vec::new()),
        });
        let run = match start(&self.store, &pipeline, deps, progress.clone()) {
            Ok(run) => Some(run),
            Err(e) => {
                init_stats(&pipeline, Some(&source), &progress);
                pipeline.mark_failed(&self.store, e.to_string());
                None
            }
        };
        tracing::info!(pipeline = %name, from = %source.meta.name, "created pipeline");
        let view = view_of(&pipeline, deps.topics, true);
        entries.insert(name.to_string(), Managed { pipeline, run });
        Ok(view)
    }

    pub async fn list(&self, topics: &TopicRegistry) -> Vec<PipelineView> {
        let entries = self.entries.lock().await;
        entries
            .values()
            .map(|e| view_of(&e.pipeline, topics, false))
            .collect()
    }

    pub async fn describe(
        &self,
        name: &str,
        topics: &TopicRegistry,
    ) -> Result<PipelineView, BrokerError> {
        let entries = self.entries.lock().await;
        let e = entries
            .get(name)
            .ok_or_else(|| BrokerError::PipelineNotFound(name.to_string()))?;
        Ok(view_of(&e.pipeline, topics, true))
    }

    /// Stops a pipeline's workers and forgets it and its progress.
    pub async fn delete(&self, name: &str) -> Result<(), BrokerError> {
        let mut entries = self.entries.lock().await;
        let entry = entries
            .get_mut(name)
            .ok_or_else(|| BrokerError::PipelineNotFound(name.to_string()))?;
        stop(entry.run.take()).await;
        let store = self.store.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || store::delete_pipeline(&store, &n))
            .await
            .map_err(|e| BrokerError::Storage(format!("storage task failed: {e}")))??;
        entries.remove(name);
        tracing::info!(pipeline = %name, "deleted pipeline");
        Ok(())
    }

    /// Starts a failed pipeline again from its last write; a running one is left alone.
    pub async fn resume(
        &self,
        name: &str,
        deps: &PipelineEnv<'_>,
    ) -> Result<PipelineView, BrokerError> {
        let mut entries = self.entries.lock().await;
        let entry = entries
            .get_mut(name)
            .ok_or_else(|| BrokerError::PipelineNotFound(name.to_string()))?;
        if entry.pipeline.def().failure.is_none() && entry.run.is_some() {
            return Ok(view_of(&entry.pipeline, deps.topics, true));
        }
        stop(entry.run.take()).await;
        let store = self.store.clone();
        let n = name.to_string();
        let progress = tokio::task::spawn_blocking(move || store::load_progress(&store, &n))
            .await
            .map_err(|e| BrokerError::Storage(format!("storage task failed: {e}")))??;
        // Resolve before clearing the failure: if the cause is still there, say so and stay
        // failed. Clear it before any worker starts, so that a worker failing at once records
        // its own failure (only the first failure of a run is kept).
        let prepared = prepare(&self.store, &entry.pipeline, deps, progress)?;
        let cleared = {
            let mut def = lock(&entry.pipeline.def);
            def.failure = None;
            def.clone()
        };
        let store = self.store.clone();
        let persisted =
            tokio::task::spawn_blocking(move || store::put_pipeline(&store, &cleared)).await;
        entry.run = Some(prepared.spawn());
        persisted.map_err(|e| BrokerError::Storage(format!("storage task failed: {e}")))??;
        tracing::info!(pipeline = %name, "resumed pipeline");
        Ok(view_of(&entry.pipeline, deps.topics, true))
    }

    /// Runs `f` unless a pipeline uses `plugin` (atomically with respect to pipeline creation).
    pub async fn unless_plugin_used<T>(
        &self,
        plugin: &str,
        f: impl Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        let entries = self.entries.lock().await;
        let user = entries.iter().find(|(_, e)| {
            lock(&e.pipeline.def)
                .plugins
                .iter()
                .any(|u| u.plugin == plugin)
        });
        if let Some((pipeline, _)) = user {
            return Err(BrokerError::PluginInUse {
                plugin: plugin.to_string(),
                pipeline: pipeline.clone(),
            });
        }
        let out = f.await;
        drop(entries);
        out
    }
}

/// Signals a run's workers to stop and waits for them.
async fn stop(run: Option<Run>) {
    let Some(run) = run else { return };
    let _ = run.stop.send(true);
    for t in run.tasks {
        let _ = t.await;
    }
}

fn resolve_uses(
    plugins: &PluginRegistry,
    uses: &[PluginUseDef],
) -> Result<Vec<(crate::plugins::Plugin, Vec<u8>)>, BrokerError> {
    check_uses(uses)?;
    uses.iter()
        .map(|u| Ok((plugins.get(&u.plugin)?, u.params.as_bytes().to_vec())))
        .collect()
}

/// A chain's shape against the limits: one plugin at least, [`MAX_PLUGIN_CHAIN`] at most,
/// params within [`MAX_PLUGIN_PARAMS_BYTES`].
pub fn check_uses(uses: &[PluginUseDef]) -> Result<(), BrokerError> {
    if uses.is_empty() {
        return Err(BrokerError::InvalidArgument(
            "a pipeline needs at least one plugin".into(),
        ));
    }
    if uses.len() > MAX_PLUGIN_CHAIN {
        return Err(BrokerError::InvalidArgument(format!(
            "{} plugins in one chain; the limit is {MAX_PLUGIN_CHAIN}",
            uses.len()
        )));
    }
    for u in uses {
        if u.params.len() > MAX_PLUGIN_PARAMS_BYTES {
            return Err(BrokerError::InvalidArgument(format!(
                "params of plugin {:?} are {} bytes; the limit is {MAX_PLUGIN_PARAMS_BYTES}",
                u.plugin,
                u.params.len()
            )));
        }
    }
    Ok(())
}

/// Fails when a plugin of the chain rejects its params (blocking: it instantiates them).
pub fn check_params(uses: Vec<(crate::plugins::Plugin, Vec<u8>)>) -> Result<(), BrokerError> {
    chain::Chain::new(uses, 0)?;
    Ok(())
}

/// Per-partition counters from stored progress (zero where there is none).
fn init_stats(pipeline: &Pipeline, source: Option<&Topic>, progress: &[(u32, PipelineProgress)]) {
    let n = source.map_or(0, |t| t.partitions.len());
    let n = n.max(
        progress
            .iter()
            .map(|(p, _)| *p as usize + 1)
            .max()
            .unwrap_or(0),
    );
    let mut stats = vec![PartitionStats::default(); n];
    for (p, pr) in progress {
        stats[*p as usize] = PartitionStats {
            position: pr.next_offset,
            records_in: pr.records_in,
            records_out: pr.records_out,
        };
    }
    *lock(&pipeline.stats) = stats;
}

/// Resolves the pipeline's topics and plugins and spawns one worker per source partition.
fn start(
    store: &Store,
    pipeline: &Arc<Pipeline>,
    deps: &PipelineEnv<'_>,
    progress: Vec<(u32, PipelineProgress)>,
) -> Result<Run, BrokerError> {
    Ok(prepare(store, pipeline, deps, progress)?.spawn())
}

/// A run resolved (topics, plugins, per-partition progress) but not started yet.
struct Prepared {
    ctx: Arc<WorkerCtx>,
    partitions: Vec<PipelineProgress>,
}

/// Resolves what a run needs; fails (starting nothing) when a topic or plugin is missing.
fn prepare(
    store: &Store,
    pipeline: &Arc<Pipeline>,
    deps: &PipelineEnv<'_>,
    progress: Vec<(u32, PipelineProgress)>,
) -> Result<Prepared, BrokerError> {
    let def = pipeline.def();
    let source = deps.topics.get(&def.from_topic)?;
    let dests = def
        .outputs()
        .map(|t| deps.topics.get(t))
        .collect::<Result<Vec<_>, _>>()?;
    let uses = resolve_uses(deps.plugins, &def.plugins)?;
    let mut by_partition: BTreeMap<u32, PipelineProgress> = progress.into_iter().collect();
    let (stop_tx, _) = watch::channel(false);
    let partitions = (0..source.meta.config.partitions)
        .map(|p| {
            let pr = by_partition.remove(&p).unwrap_or_default();
            if pr.source_topic == source.meta.id && pr.states.len() == def.plugins.len() {
                return pr;
            }
            if pr != PipelineProgress::default() {
                tracing::warn!(pipeline = %def.name, partition = p, "source topic was re-created: starting the partition over");
            }
            PipelineProgress {
                source_topic: source.meta.id,
                states: vec![Vec::new(); def.plugins.len()],
                ..Default::default()
            }
        })
        .collect();
    let ctx = Arc::new(WorkerCtx {
        name: def.name.clone(),
        pipeline: Arc::clone(pipeline),
        store: store.clone(),
        source,
        dests,
        uses,
        max_record_bytes: deps.max_record_bytes,
        stop: Arc::new(stop_tx),
    });
    Ok(Prepared { ctx, partitions })
}

impl Prepared {
    /// Starts one worker per source partition.
    fn spawn(self) -> Run {
        let pipeline = &self.ctx.pipeline;
        *lock(&pipeline.stats) = vec![PartitionStats::default(); self.partitions.len()];
        let mut tasks = Vec::with_capacity(self.partitions.len());
        for (p, pr) in (0u32..).zip(self.partitions) {
            pipeline.set_stats(p, &pr);
            tasks.push(tokio::spawn(worker::run_partition(
                Arc::clone(&self.ctx),
                p,
                pr,
            )));
        }
        Run {
            stop: Arc::clone(&self.ctx.stop),
            tasks,
        }
    }
}

fn view_of(pipeline: &Pipeline, topics: &TopicRegistry, per_partition: bool) -> PipelineView {
    let def = pipeline.def();
    let stats = lock(&pipeline.stats).clone();
    let source = topics.get(&def.from_topic).ok();
    let mut view = PipelineView {
        def,
        partitions: Vec::new(),
        lag: 0,
        records_in: 0,
        records_out: 0,
    };
    for (i, s) in stats.iter().enumerate() {
        let end = source
            .as_ref()
            .and_then(|t| t.partitions.get(i))
            .map_or(s.position, |p| p.log.bounds().latest);
        let lag = end.saturating_sub(s.position);
        view.lag += lag;
        view.records_in += s.records_in;
        view.records_out += s.records_out;
        if per_partition {
            view.partitions.push(PartitionView {
                partition: i as u32,
                position: s.position,
                end_offset: end,
                lag,
                records_in: s.records_in,
                records_out: s.records_out,
                worker: None,
            });
        }
    }
    view
}
