//! Views: read-only virtual topics, a topic's records through a chain of stateless plugins
//! at the topic's offsets. Consumers read a view by its name as they read a topic.

use weir_proto::v1 as pb;

use crate::admin::{Admin, PartitionInfo, partition_of};
use crate::consumer::{PluginUse, plugins_pb};
use crate::error::Result;

/// A view's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewInfo {
    /// Its name (taken among topics' names).
    pub name: String,
    /// The topic it reads.
    pub source: String,
    /// Its chain, in order.
    pub plugins: Vec<PluginUse>,
    /// When it was created (unix ms).
    pub created_ms: i64,
}

/// A view and its source's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewDescription {
    /// Its definition.
    pub view: ViewInfo,
    /// The source's offsets and sizes, by partition number.
    pub partitions: Vec<PartitionInfo>,
}

fn view_of(v: pb::ViewInfo) -> ViewInfo {
    ViewInfo {
        name: v.name,
        source: v.source,
        plugins: v
            .plugins
            .into_iter()
            .map(|p| PluginUse {
                name: p.name,
                params: Some(p.params).filter(|p| !p.is_empty()),
            })
            .collect(),
        created_ms: v.created_ms,
    }
}

impl Admin {
    /// Creates view `name` of topic `source` through `plugins` (registered filter, map,
    /// filter_map or flat_map plugins, 1 to 16). Fails with
    /// [`Error::TopicExists`](crate::Error::TopicExists) when the name is taken,
    /// [`Error::TopicNotFound`](crate::Error::TopicNotFound) /
    /// [`Error::PluginNotFound`](crate::Error::PluginNotFound), or
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    pub async fn create_view(
        &self,
        name: &str,
        source: &str,
        plugins: &[PluginUse],
    ) -> Result<ViewInfo> {
        let req = pb::CreateViewRequest {
            name: name.to_string(),
            source: source.to_string(),
            plugins: plugins_pb(plugins),
        };
        let resp = self
            .on_topics(|mut rpc| {
                let req = req.clone();
                async move { rpc.create_view(req).await }
            })
            .await?;
        Ok(view_of(resp.view.unwrap_or_default()))
    }

    /// Every view, sorted by name.
    pub async fn list_views(&self) -> Result<Vec<ViewInfo>> {
        let resp = self
            .on_topics(|mut rpc| async move { rpc.list_views(pb::ListViewsRequest {}).await })
            .await?;
        Ok(resp.views.into_iter().map(view_of).collect())
    }

    /// A view's definition and its source's partitions.
    pub async fn describe_view(&self, name: &str) -> Result<ViewDescription> {
        let req = pb::DescribeViewRequest {
            name: name.to_string(),
        };
        let resp = self
            .on_topics(|mut rpc| {
                let req = req.clone();
                async move { rpc.describe_view(req).await }
            })
            .await?;
        Ok(ViewDescription {
            view: view_of(resp.view.unwrap_or_default()),
            partitions: resp.partitions.iter().map(partition_of).collect(),
        })
    }

    /// Deletes a view (its source keeps every record).
    pub async fn delete_view(&self, name: &str) -> Result<()> {
        let req = pb::DeleteViewRequest {
            name: name.to_string(),
        };
        self.on_topics(|mut rpc| {
            let req = req.clone();
            async move { rpc.delete_view(req).await }
        })
        .await?;
        Ok(())
    }
}
