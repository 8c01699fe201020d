//! Continuous pipelines: a chain of plugins the broker runs from one topic to another,
//! exactly once (see `proto/weir/v1/pipelines.proto`).

use std::fmt;

use weir_proto::v1 as pb;

use crate::admin::Admin;
use crate::consumer::{PluginUse, plugins_pb};
use crate::error::{Error, Result};

/// Where a new pipeline starts reading its source topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PipelineStart {
    /// Every record still in the source topic.
    #[default]
    Earliest,
    /// Only records produced after the pipeline was created.
    Latest,
}

/// A pipeline to create: `from` → chain of plugins → `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPipeline {
    /// Pipeline name: 1-249 of `[A-Za-z0-9._-]`.
    pub name: String,
    /// Source topic.
    pub from_topic: String,
    /// Destination topic, output 0 (output of source partition P goes to partition P mod its
    /// count).
    pub to_topic: String,
    /// Outputs 1, 2, … where a `route` stage sends records (at most 7).
    pub extra_to_topics: Vec<String>,
    /// The chain, applied in order; at least one plugin.
    pub plugins: Vec<PluginUse>,
    /// Where to start in the source.
    pub start: PipelineStart,
}

impl NewPipeline {
    /// A pipeline from `from_topic` to `to_topic` with no plugins yet (add them with
    /// [`plugin`](Self::plugin)), starting at the earliest record.
    pub fn new(
        name: impl Into<String>,
        from_topic: impl Into<String>,
        to_topic: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            from_topic: from_topic.into(),
            to_topic: to_topic.into(),
            extra_to_topics: Vec::new(),
            plugins: Vec::new(),
            start: PipelineStart::Earliest,
        }
    }

    /// Adds an output: the next output index a `route` stage may send records to.
    pub fn also_to(mut self, topic: impl Into<String>) -> Self {
        self.extra_to_topics.push(topic.into());
        self
    }

    /// Appends a plugin to the chain, with optional JSON params.
    pub fn plugin(mut self, name: impl Into<String>, params: Option<&str>) -> Self {
        self.plugins.push(PluginUse {
            name: name.into(),
            params: params.map(str::to_string),
        });
        self
    }

    /// Where to start reading the source.
    pub fn start(mut self, start: PipelineStart) -> Self {
        self.start = start;
        self
    }
}

/// Whether a pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineStatus {
    /// Processing (or waiting for) source records.
    Running,
    /// Stopped by an error ([`PipelineInfo::error`]); resume it once the cause is fixed.
    Failed,
}

impl fmt::Display for PipelineStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PipelineStatus::Running => "running",
            PipelineStatus::Failed => "failed",
        })
    }
}

/// One source partition of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelinePartition {
    /// Source partition.
    pub partition: u32,
    /// Next source offset to process.
    pub position: u64,
    /// The source partition's log end offset.
    pub end_offset: u64,
    /// `end_offset - position`.
    pub lag: u64,
    /// Source records processed.
    pub records_in: u64,
    /// Records written to the destination.
    pub records_out: u64,
    /// In a cluster: the node id of the member whose worker processes the partition (its
    /// leader); `None` standalone, or while no worker runs it.
    pub worker: Option<u64>,
}

/// A pipeline's definition, state and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineInfo {
    /// Its name.
    pub name: String,
    /// Source topic.
    pub from_topic: String,
    /// Destination topic.
    pub to_topic: String,
    /// Outputs 1, 2, … (a `route` stage's other outputs).
    pub extra_to_topics: Vec<String>,
    /// The chain.
    pub plugins: Vec<PluginUse>,
    /// Running or failed.
    pub status: PipelineStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was created (unix ms).
    pub created_ms: i64,
    /// Source records not processed yet, over all partitions.
    pub lag: u64,
    /// Source records processed, over all partitions.
    pub records_in: u64,
    /// Records written to the destination, over all partitions.
    pub records_out: u64,
    /// Per source partition ([`Admin::describe_pipeline`] only; empty in lists).
    pub partitions: Vec<PipelinePartition>,
}

fn info_of(p: Option<pb::PipelineInfo>) -> Result<PipelineInfo> {
    let p = p.ok_or_else(|| Error::Protocol("the broker sent no pipeline".into()))?;
    let status = match pb::PipelineStatus::try_from(p.status) {
        Ok(pb::PipelineStatus::Running) => PipelineStatus::Running,
        Ok(pb::PipelineStatus::Failed) => PipelineStatus::Failed,
        Err(_) => {
            return Err(Error::Protocol(format!(
                "unknown pipeline status {}",
                p.status
            )));
        }
    };
    Ok(PipelineInfo {
        name: p.name,
        from_topic: p.from_topic,
        to_topic: p.to_topic,
        extra_to_topics: p.extra_to_topics,
        plugins: p
            .plugins
            .into_iter()
            .map(|u| PluginUse {
                name: u.name,
                params: (!u.params.is_empty()).then_some(u.params),
            })
            .collect(),
        status,
        error: (!p.error.is_empty()).then_some(p.error),
        created_ms: p.created_ms,
        lag: p.lag,
        records_in: p.records_in,
        records_out: p.records_out,
        partitions: p
            .partitions
            .into_iter()
            .map(|q| PipelinePartition {
                partition: q.partition,
                position: q.position,
                end_offset: q.end_offset,
                lag: q.lag,
                records_in: q.records_in,
                records_out: q.records_out,
                worker: q.worker,
            })
            .collect(),
    })
}

impl Admin {
    /// Creates and starts a pipeline. Fails with
    /// [`Error::PipelineExists`], [`Error::TopicNotFound`], [`Error::PluginNotFound`],
    /// [`Error::PluginFailed`] (a plugin rejected its params) or
    /// [`Error::InvalidArgument`].
    pub async fn create_pipeline(&self, new: NewPipeline) -> Result<PipelineInfo> {
        let start = match new.start {
            PipelineStart::Earliest => pb::PipelineStart::Earliest,
            PipelineStart::Latest => pb::PipelineStart::Latest,
        };
        let req = pb::CreatePipelineRequest {
            name: new.name,
            from_topic: new.from_topic,
            to_topic: new.to_topic,
            extra_to_topics: new.extra_to_topics,
            plugins: plugins_pb(&new.plugins),
            start: start as i32,
        };
        let resp = self
            .client
            .pipelines_rpc()
            .create_pipeline(req)
            .await?
            .into_inner();
        info_of(resp.pipeline)
    }

    /// Every pipeline, by name, with totals (no per-partition detail).
    pub async fn list_pipelines(&self) -> Result<Vec<PipelineInfo>> {
        let resp = self
            .client
            .pipelines_rpc()
            .list_pipelines(pb::ListPipelinesRequest {})
            .await?
            .into_inner();
        resp.pipelines
            .into_iter()
            .map(|p| info_of(Some(p)))
            .collect()
    }

    /// A pipeline with per-partition positions, lag and counters.
    pub async fn describe_pipeline(&self, name: &str) -> Result<PipelineInfo> {
        let req = pb::DescribePipelineRequest {
            name: name.to_string(),
        };
        let resp = self
            .client
            .pipelines_rpc()
            .describe_pipeline(req)
            .await?
            .into_inner();
        info_of(resp.pipeline)
    }

    /// Stops and deletes a pipeline (what it already wrote stays in the destination).
    pub async fn delete_pipeline(&self, name: &str) -> Result<()> {
        let req = pb::DeletePipelineRequest {
            name: name.to_string(),
        };
        self.client.pipelines_rpc().delete_pipeline(req).await?;
        Ok(())
    }

    /// Restarts a failed pipeline from where it stopped (a running one is left alone).
    pub async fn resume_pipeline(&self, name: &str) -> Result<PipelineInfo> {
        let req = pb::ResumePipelineRequest {
            name: name.to_string(),
        };
        let resp = self
            .client
            .pipelines_rpc()
            .resume_pipeline(req)
            .await?
            .into_inner();
        info_of(resp.pipeline)
    }
}
