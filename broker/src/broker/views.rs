//! Views through the facade (docs/views.md): create, list, describe, delete (standalone in
//! the topic registry, in a cluster through the metadata), and reads of a view: the source
//! partition's batches through the view's chain.

use std::sync::Arc;

use weir_common::TopicName;
use weir_common::limits::{MAX_PLUGIN_CHAIN, MAX_PLUGIN_PARAMS_BYTES};

use super::Broker;
use crate::blocking::blocking;
use crate::cluster::state::{Command, Outcome};
use crate::error::BrokerError;
use crate::groups::offsets::INTERNAL_PREFIX;
use crate::log::ReadResult;
use crate::plugins::{Chain, PluginKind};
use crate::topics::views::{self, View, ViewDef, ViewPlugin};
use crate::types::now_ms;

impl Broker {
    /// Creates view `name` of topic `source` through `plugins` (1 to [`MAX_PLUGIN_CHAIN`],
    /// each registered, stateless, and accepting its params: the chain is instantiated once
    /// here so a bad one fails now).
    pub async fn create_view(
        self: &Arc<Self>,
        name: &str,
        source: &str,
        plugins: Vec<ViewPlugin>,
    ) -> Result<ViewDef, BrokerError> {
        let name = TopicName::new(name)?;
        if name.as_str().starts_with(INTERNAL_PREFIX) || source.starts_with(INTERNAL_PREFIX) {
            return Err(BrokerError::InvalidArgument(format!(
                "names starting with {INTERNAL_PREFIX:?} are the broker's own"
            )));
        }
        if plugins.is_empty() || plugins.len() > MAX_PLUGIN_CHAIN {
            return Err(BrokerError::InvalidArgument(format!(
                "a view runs 1 to {MAX_PLUGIN_CHAIN} plugins, got {}",
                plugins.len()
            )));
        }
        for p in &plugins {
            if p.params.len() > MAX_PLUGIN_PARAMS_BYTES {
                return Err(BrokerError::InvalidArgument(format!(
                    "params of plugin {:?} are {} bytes; the limit is {MAX_PLUGIN_PARAMS_BYTES}",
                    p.name,
                    p.params.len()
                )));
            }
        }
        if self.topics.name_taken(name.as_str()) {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        self.topics.get_topic(source, "a view reads a topic")?;
        let def = ViewDef {
            name: name.to_string(),
            source: source.to_string(),
            plugins,
            created_ms: now_ms(),
            id: 0,
        };
        drop(self.build_chain(&def).await?);
        let Some(cluster) = self.cluster() else {
            let this = Arc::clone(self);
            return blocking(move || this.topics.create_view(def)).await;
        };
        match cluster
            .propose(Command::CreateView { def: def.clone() })
            .await?
        {
            Outcome::Done => {}
            Outcome::TopicExists => return Err(BrokerError::TopicExists(def.name)),
            Outcome::TopicNotFound => return Err(BrokerError::TopicNotFound(def.source)),
            other => return Err(BrokerError::ClusterUnavailable(format!("{other:?}"))),
        }
        let n = def.name.clone();
        self.await_metadata(|m, b| m.views.contains_key(&n) && b.topics.get(&n).is_ok())
            .await;
        Ok(def)
    }

    /// Every view, by name.
    pub fn list_views(&self) -> Vec<ViewDef> {
        self.topics.views()
    }

    pub fn describe_view(&self, name: &str) -> Result<ViewDef, BrokerError> {
        self.topics
            .views()
            .into_iter()
            .find(|v| v.name == name)
            .ok_or_else(|| BrokerError::ViewNotFound(name.to_string()))
    }

    /// Deletes a view (its source and its readers' committed offsets stay).
    pub async fn delete_view(self: &Arc<Self>, name: &str) -> Result<(), BrokerError> {
        let Some(cluster) = self.cluster() else {
            let this = Arc::clone(self);
            let name = name.to_string();
            return blocking(move || {
                let id = this.topics.delete_view(&name)?;
                this.groups.forget_topic(&name, id)
            })
            .await;
        };
        let cmd = Command::DeleteView {
            name: name.to_string(),
        };
        match cluster.propose(cmd).await? {
            Outcome::Done => {}
            Outcome::ViewNotFound => return Err(BrokerError::ViewNotFound(name.to_string())),
            other => return Err(BrokerError::ClusterUnavailable(format!("{other:?}"))),
        }
        self.await_metadata(|m, b| !m.views.contains_key(name) && b.topics.get(name).is_err())
            .await;
        Ok(())
    }

    /// Resolves and instantiates a view's chain (refusing plugins that keep state: a view's
    /// record at an offset is the same for every reader).
    async fn build_chain(&self, def: &ViewDef) -> Result<Chain, BrokerError> {
        let mut uses = Vec::with_capacity(def.plugins.len());
        for p in &def.plugins {
            let plugin = self.plugin(&p.name).await?;
            if matches!(plugin.kind, PluginKind::Aggregate | PluginKind::Route) {
                return Err(BrokerError::InvalidArgument(format!(
                    "plugin {:?} is {}: a view runs filter, map, filter_map and flat_map plugins (aggregates and routes need a pipeline)",
                    p.name,
                    plugin.kind.as_str()
                )));
            }
            uses.push((plugin, p.params.clone().into_bytes()));
        }
        tokio::task::spawn_blocking(move || Chain::new(uses, 0))
            .await
            .map_err(|e| BrokerError::Storage(format!("plugin task failed: {e}")))?
            .map_err(BrokerError::from)
    }

    /// A read of a view's source partition `partition` at `offset` through the view's chain
    /// (on the blocking pool). The read ends where the source's did, whatever the chain kept.
    pub(super) async fn read_view(
        &self,
        view: &Arc<View>,
        partition: u32,
        offset: u64,
        read: ReadResult,
    ) -> Result<ReadResult, BrokerError> {
        let end = weir_common::batch::next_offset_after(&read.batches)
            .map_err(|e| BrokerError::Storage(format!("stored batch: {e}")))?;
        let generation = *self.plugins.changes().borrow();
        let mut chain = match view.take_chain(generation) {
            Some(c) => c,
            None => self.build_chain(&view.def).await?,
        };
        let batches = read.batches;
        let (chain, out) = tokio::task::spawn_blocking(move || {
            let out = views::apply(&mut chain, batches, offset);
            (chain, out)
        })
        .await
        .map_err(|e| BrokerError::Storage(format!("plugin task failed: {e}")))?;
        let batches = out.map_err(|e| {
            tracing::warn!(view = %view.def.name, plugin = e.plugin().unwrap_or(""), partition, offset = e.offset(), error = %e, "a view's plugin failed");
            BrokerError::PluginFailed(format!("view {:?}: {e}", view.def.name))
        })?;
        view.give_chain(chain, generation);
        Ok(ReadResult {
            batches,
            bounds: read.bounds,
            end,
        })
    }
}
