//! Plugins and pipelines through the facade.

use std::sync::Arc;

use bytes::Bytes;

use super::Broker;
use crate::blocking::blocking;
use crate::error::BrokerError;
use crate::metrics;
use crate::pipelines::{PipelineDef, PipelineEnv, PipelineView, Start};
use crate::plugins::{Plugin, PluginInfo, PluginLimits};

impl Broker {
    /// Validates, compiles and stores a plugin module (on the blocking pool: compiling takes
    /// a while).
    pub async fn register_plugin(
        self: &Arc<Self>,
        name: String,
        wasm: Bytes,
        replace: bool,
        limits: PluginLimits,
    ) -> Result<PluginInfo, BrokerError> {
        let this = Arc::clone(self);
        blocking(move || this.plugins.register(&name, &wasm, replace, limits)).await
    }

    pub fn list_plugins(&self) -> Vec<PluginInfo> {
        self.plugins.list()
    }

    pub fn plugin(&self, name: &str) -> Result<Plugin, BrokerError> {
        self.plugins.get(name)
    }

    /// Deletes a plugin unless a pipeline uses it.
    pub async fn delete_plugin(self: &Arc<Self>, name: String) -> Result<(), BrokerError> {
        let this = Arc::clone(self);
        let n = name.clone();
        self.pipelines
            .unless_plugin_used(&name, blocking(move || this.plugins.delete(&n)))
            .await?;
        metrics::global().forget_plugin(&name);
        Ok(())
    }

    pub(super) fn deps(&self) -> PipelineEnv<'_> {
        PipelineEnv {
            topics: &self.topics,
            plugins: &self.plugins,
            max_record_bytes: self.max_record_bytes,
        }
    }

    pub async fn create_pipeline(
        &self,
        def: PipelineDef,
        start: Start,
    ) -> Result<PipelineView, BrokerError> {
        self.check_pipelines_here()?;
        self.pipelines.create(&self.deps(), def, start).await
    }

    /// Pipelines append to their destination partitions directly, which only a standalone
    /// broker may do: in a cluster only a partition's leader appends, and a pipeline's
    /// source and destination partitions may be led by different brokers.
    pub(super) fn check_pipelines_here(&self) -> Result<(), BrokerError> {
        if self.in_cluster() {
            return Err(BrokerError::InvalidArgument(
                "pipelines run on standalone brokers only; in a cluster, run the plugins at consume time or with a group consumer that produces (docs/cluster.md)".into(),
            ));
        }
        Ok(())
    }

    pub async fn list_pipelines(&self) -> Vec<PipelineView> {
        self.pipelines.list(&self.topics).await
    }

    pub async fn describe_pipeline(&self, name: &str) -> Result<PipelineView, BrokerError> {
        self.pipelines.describe(name, &self.topics).await
    }

    pub async fn delete_pipeline(&self, name: &str) -> Result<(), BrokerError> {
        self.pipelines.delete(name).await
    }

    pub async fn resume_pipeline(&self, name: &str) -> Result<PipelineView, BrokerError> {
        self.check_pipelines_here()?;
        self.pipelines.resume(name, &self.deps()).await
    }
}
