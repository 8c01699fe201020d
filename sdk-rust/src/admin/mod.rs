//! Administration through the bootstrap broker: topics, offset look-ups and cluster status
//! here; consumer groups in `groups.rs`, plugins in `plugins.rs`.

mod groups;
mod plugins;

pub use groups::{GroupDescription, GroupMember, GroupPartition, GroupSummary};
pub use plugins::{PluginInfo, PluginLimits};

use std::collections::HashMap;

use crate::client::Channel;
use weir_proto::v1 as pb;
use weir_proto::v1::groups_client::GroupsClient;
use weir_proto::v1::topics_client::TopicsClient;

use crate::client::{Client, log_rpc, topics_rpc};
use crate::error::{Error, Result};
use crate::start::StartFrom;

/// Settings for a new topic; unset fields take the broker's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name: 1-249 of `[A-Za-z0-9._-]`.
    pub name: String,
    /// Number of partitions, 1..=10000.
    pub partitions: u32,
    /// -1: keep forever.
    pub retention_ms: Option<i64>,
    /// -1: no size limit.
    pub retention_bytes: Option<i64>,
    /// Roll a new segment once the active one holds this many bytes.
    pub segment_bytes: Option<u64>,
    /// Roll a new segment once the active one is this old.
    pub segment_ms: Option<i64>,
    /// Copies of each partition on different brokers (cluster mode; default 1).
    pub replication_factor: Option<u32>,
    /// In-sync replicas an `acks=all` produce needs (Kafka's `min.insync.replicas`; default
    /// 1, at most the replication factor). With fewer in sync, `acks=all` produces fail
    /// (retriable, `not_enough_replicas`) and write nothing.
    pub min_insync_replicas: Option<u32>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and the broker's default settings.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
            retention_ms: None,
            retention_bytes: None,
            segment_bytes: None,
            segment_ms: None,
            replication_factor: None,
            min_insync_replicas: None,
        }
    }

    /// `acks=all` produces need this many in-sync replicas (1..=the replication factor).
    pub fn min_insync_replicas(mut self, n: u32) -> Self {
        self.min_insync_replicas = Some(n);
        self
    }

    /// Keep `n` copies of each partition, on different brokers (at most the cluster's size).
    pub fn replication_factor(mut self, n: u32) -> Self {
        self.replication_factor = Some(n);
        self
    }

    /// Drop segments whose newest record is older than this (-1: keep forever).
    pub fn retention_ms(mut self, ms: i64) -> Self {
        self.retention_ms = Some(ms);
        self
    }

    /// Drop the oldest segments while a partition is bigger than this (-1: no limit).
    pub fn retention_bytes(mut self, bytes: i64) -> Self {
        self.retention_bytes = Some(bytes);
        self
    }

    /// Segment size at which a partition rolls to a new segment.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = Some(bytes);
        self
    }

    /// Segment age at which a partition rolls to a new segment.
    pub fn segment_ms(mut self, ms: i64) -> Self {
        self.segment_ms = Some(ms);
        self
    }
}

/// One cluster member as [`Admin::cluster_status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The member's `--node-id` (0: a standalone broker).
    pub node_id: u64,
    /// Its `HOST:PORT`.
    pub addr: String,
    /// `controller`, `follower`, `candidate`, `learner`, `standalone`, or `unreachable`.
    pub role: String,
    /// The controller this member knows of.
    pub controller: Option<u64>,
    /// Raft term of the metadata quorum.
    pub term: u64,
    /// The last metadata log index the member applied.
    pub applied_index: u64,
    /// The id of the cluster the member belongs to (`None` before it founded or joined one,
    /// and on a standalone broker).
    pub cluster_id: Option<String>,
    /// What the member runs, `VERSION (COMMIT)` (`None` when it did not answer or is too old
    /// to say).
    pub version: Option<String>,
}

/// A backup a broker wrote ([`Admin::backup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// Where, on the broker's host.
    pub path: String,
    /// Files written.
    pub files: u64,
    /// Their bytes (hard-linked table files counted at full size).
    pub bytes: u64,
    /// How long the broker took to write it.
    pub duration: std::time::Duration,
    /// The broker that wrote it (0: a standalone broker).
    pub node_id: u64,
}

/// What the broker's `grpc.health.v1` service says about a service ([`Admin::health`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Taking requests.
    Serving,
    /// Up but not taking requests (e.g. shutting down).
    NotServing,
    /// The broker does not know that service name.
    UnknownService,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Serving => "SERVING",
            Health::NotServing => "NOT_SERVING",
            Health::UnknownService => "SERVICE_UNKNOWN",
        })
    }
}

/// A topic's effective settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// `None`: kept forever.
    pub retention_ms: Option<i64>,
    /// `None`: no size limit.
    pub retention_bytes: Option<u64>,
    /// Segment size that triggers a roll.
    pub segment_bytes: u64,
    /// Segment age that triggers a roll.
    pub segment_ms: i64,
    /// In-sync replicas an `acks=all` produce needs.
    pub min_insync_replicas: u32,
    /// A view's source topic (`None` for a topic); a view's settings are its source's.
    pub view_of: Option<String>,
}

/// One partition's offsets and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: u32,
    /// Oldest offset still kept.
    pub earliest_offset: u64,
    /// Next offset to be written.
    pub latest_offset: u64,
    /// Bytes of record batches kept.
    pub size_bytes: u64,
    /// Segments kept (the active one included).
    pub segments: u32,
}

/// A topic's settings and the state of each partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Effective settings.
    pub topic: TopicInfo,
    /// Offsets and sizes, by partition number.
    pub partitions: Vec<PartitionInfo>,
    /// Cluster mode: where each partition lives, by partition number (empty on a standalone
    /// broker).
    pub placement: Vec<PartitionPlacement>,
}

/// Where a partition lives in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlacement {
    /// The broker leading it (`None` while no in-sync replica is alive).
    pub leader: Option<u64>,
    /// Grows with every leader change.
    pub leader_epoch: u32,
    /// Every broker holding a replica, the preferred leader first.
    pub replicas: Vec<u64>,
    /// The replicas in sync with the leader.
    pub isr: Vec<u64>,
}

/// Which offset [`Admin::list_offset`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The oldest offset still kept.
    Earliest,
    /// The next offset to be written.
    Latest,
    /// First offset whose timestamp is `>=` this (unix ms); the latest offset if none.
    Timestamp(i64),
}

pub(crate) fn partition_of(p: &pb::PartitionInfo) -> PartitionInfo {
    PartitionInfo {
        partition: p.partition,
        earliest_offset: p.earliest_offset,
        latest_offset: p.latest_offset,
        size_bytes: p.size_bytes,
        segments: p.segments,
    }
}

fn info_of(t: pb::TopicInfo) -> TopicInfo {
    let c = t.config.unwrap_or_default();
    TopicInfo {
        name: t.name,
        partitions: c.partitions,
        retention_ms: c.retention_ms.filter(|&v| v >= 0),
        retention_bytes: c.retention_bytes.filter(|&v| v >= 0).map(|v| v as u64),
        segment_bytes: c.segment_bytes.unwrap_or_default(),
        segment_ms: c.segment_ms.unwrap_or_default(),
        // Brokers from before the setting: 1, what they behave as.
        min_insync_replicas: c.min_insync_replicas.unwrap_or(1),
        view_of: t.view_of,
    }
}

pub(crate) fn spec_to_pb(partition: u32, spec: OffsetSpec) -> pb::OffsetQuery {
    let (spec, timestamp) = match spec {
        OffsetSpec::Earliest => (pb::OffsetSpec::Earliest, 0),
        OffsetSpec::Latest => (pb::OffsetSpec::Latest, 0),
        OffsetSpec::Timestamp(ts) => (pb::OffsetSpec::Timestamp, ts),
    };
    pb::OffsetQuery {
        partition,
        spec: spec as i32,
        timestamp,
    }
}

/// Looks up one offset per `(partition, spec)` of `topic`, asking each partition's leader
/// once. Answers come by partition.
pub(crate) async fn list_offsets(
    client: &Client,
    topic: &str,
    queries: &[(u32, OffsetSpec)],
) -> Result<Vec<pb::PartitionOffset>> {
    let partitions: Vec<u32> = queries.iter().map(|q| q.0).collect();
    let spec_of: HashMap<u32, OffsetSpec> = queries.iter().copied().collect();
    let answers = client
        .on_leaders(topic, &partitions, |route, ps| {
            let req = pb::ListOffsetsRequest {
                topic: topic.to_string(),
                queries: ps
                    .iter()
                    .filter_map(|&p| spec_of.get(&p).map(|&spec| spec_to_pb(p, spec)))
                    .collect(),
            };
            async move {
                let resp = log_rpc(route.channel).list_offsets(req).await?;
                Ok(resp.into_inner().offsets)
            }
        })
        .await?;
    let mut out: Vec<pb::PartitionOffset> = answers.into_iter().flatten().collect();
    out.sort_by_key(|o| o.partition);
    Ok(out)
}

/// Admin operations. Get one with [`Client::admin`].
#[derive(Clone, Debug)]
pub struct Admin {
    pub(crate) client: Client,
}

impl Client {
    /// Administration: topics, offsets, groups, plugins, pipelines, users and ACLs.
    pub fn admin(&self) -> Admin {
        Admin::new(self.clone())
    }
}

impl Admin {
    pub(crate) fn new(client: Client) -> Self {
        Self { client }
    }

    /// Runs a topics call at the bootstrap broker; when that broker cannot be reached, once
    /// more at another one the metadata names (which becomes the bootstrap broker).
    pub(crate) async fn on_topics<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(TopicsClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        match call(self.client.topics_rpc()).await {
            Ok(r) => Ok(r.into_inner()),
            Err(s) => {
                let e = Error::from(s);
                if self.client.bootstrap_unreachable(&e).await {
                    Ok(call(self.client.topics_rpc()).await?.into_inner())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Creates a topic. Fails with [`Error::TopicExists`](crate::Error::TopicExists) or
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    pub async fn create_topic(&self, topic: NewTopic) -> Result<TopicInfo> {
        let req = pb::CreateTopicRequest {
            name: topic.name,
            config: Some(pb::TopicConfig {
                partitions: topic.partitions,
                retention_ms: topic.retention_ms,
                retention_bytes: topic.retention_bytes,
                segment_bytes: topic.segment_bytes,
                segment_ms: topic.segment_ms,
                min_insync_replicas: topic.min_insync_replicas,
            }),
            replication_factor: topic.replication_factor,
        };
        let resp = self
            .on_topics(|mut rpc| {
                let req = req.clone();
                async move { rpc.create_topic(req).await }
            })
            .await?;
        Ok(info_of(resp.topic.unwrap_or_default()))
    }

    /// The health of `service` on the bootstrap broker, by the standard gRPC health protocol
    /// (`grpc.health.v1.Health/Check`); `""` is the broker as a whole, else a service name
    /// such as `weir.v1.Log`.
    pub async fn health(&self, service: &str) -> Result<Health> {
        use tonic_health::pb::health_check_response::ServingStatus;
        let mut rpc =
            tonic_health::pb::health_client::HealthClient::new(self.client.bootstrap_channel());
        let req = tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        };
        match rpc.check(req).await {
            Ok(resp) => Ok(match resp.into_inner().status() {
                ServingStatus::Serving => Health::Serving,
                ServingStatus::ServiceUnknown => Health::UnknownService,
                ServingStatus::NotServing | ServingStatus::Unknown => Health::NotServing,
            }),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(Health::UnknownService),
            Err(s) => Err(s.into()),
        }
    }

    /// Every member of the cluster with its role, as the broker asked reaches them (a
    /// standalone broker: itself alone).
    pub async fn cluster_status(&self) -> Result<Vec<NodeStatus>> {
        let resp = self
            .client
            .cluster_rpc()
            .cluster_status(pb::ClusterStatusRequest {})
            .await?
            .into_inner();
        Ok(resp
            .nodes
            .into_iter()
            .map(|n| NodeStatus {
                node_id: n.node_id,
                addr: n.addr,
                role: n.role,
                controller: (n.controller != 0).then_some(n.controller),
                term: n.term,
                applied_index: n.applied_index,
                cluster_id: (!n.cluster_id.is_empty()).then_some(n.cluster_id),
                version: (!n.version.is_empty()).then_some(n.version),
            })
            .collect())
    }

    /// Asks the bootstrap broker to write a consistent copy of its data dir into `path`, an
    /// absolute path on the broker's host that does not exist yet (superusers only). A broker
    /// started with `--data-dir PATH` serves everything acknowledged before the call began.
    pub async fn backup(&self, path: &str) -> Result<BackupInfo> {
        let r = self
            .client
            .admin_rpc()
            .backup(pb::BackupRequest { path: path.into() })
            .await?
            .into_inner();
        Ok(BackupInfo {
            path: r.path,
            files: r.files,
            bytes: r.bytes,
            duration: std::time::Duration::from_millis(r.millis),
            node_id: r.node_id,
        })
    }

    /// Every topic, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let resp = self
            .on_topics(|mut rpc| async move { rpc.list_topics(pb::ListTopicsRequest {}).await })
            .await?;
        Ok(resp.topics.into_iter().map(info_of).collect())
    }

    /// A topic's settings and per-partition offsets and sizes.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let req = pb::DescribeTopicRequest {
            name: name.to_string(),
        };
        let resp = self
            .on_topics(|mut rpc| {
                let req = req.clone();
                async move { rpc.describe_topic(req).await }
            })
            .await?;
        let mut partitions: Vec<PartitionInfo> = resp.partitions.iter().map(partition_of).collect();
        self.bounds_from_leaders(&req, &resp.partitions, &mut partitions)
            .await;
        let placement = resp
            .partitions
            .into_iter()
            .filter(|p| !p.replicas.is_empty())
            .map(|p| PartitionPlacement {
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas,
                isr: p.isr,
            })
            .collect();
        Ok(TopicDescription {
            topic: info_of(resp.topic.unwrap_or_default()),
            partitions,
            placement,
        })
    }

    /// Cluster mode: takes each partition's offsets and sizes from its leader (the broker
    /// asked first answered from its own copy, which may lag or hold no replica). A leader
    /// that does not answer leaves that copy's numbers.
    async fn bounds_from_leaders(
        &self,
        req: &pb::DescribeTopicRequest,
        placed: &[pb::PartitionInfo],
        out: &mut [PartitionInfo],
    ) {
        let mut leaders: Vec<u64> = placed.iter().filter_map(|p| p.leader).collect();
        leaders.sort_unstable();
        leaders.dedup();
        if leaders.is_empty() {
            return;
        }
        if leaders
            .iter()
            .any(|&l| self.client.route_to_node(l).is_none())
        {
            let _ = self
                .client
                .refresh_routes(self.client.routes_version())
                .await;
        }
        for leader in leaders {
            let Some(route) = self.client.route_to_node(leader) else {
                continue;
            };
            if *route.addr == *self.client.addr() {
                continue;
            }
            let answer = topics_rpc(route.channel).describe_topic(req.clone()).await;
            let Ok(answer) = answer else {
                continue;
            };
            for p in answer.into_inner().partitions {
                if p.leader != Some(leader) {
                    continue;
                }
                if let Some(slot) = out.get_mut(p.partition as usize) {
                    slot.earliest_offset = p.earliest_offset;
                    slot.latest_offset = p.latest_offset;
                    slot.size_bytes = p.size_bytes;
                    slot.segments = p.segments;
                }
            }
        }
    }

    /// Deletes a topic and all its records; its subscriptions end.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let req = pb::DeleteTopicRequest {
            name: name.to_string(),
        };
        self.on_topics(|mut rpc| {
            let req = req.clone();
            async move { rpc.delete_topic(req).await }
        })
        .await?;
        Ok(())
    }

    /// Looks up an offset of one partition.
    pub async fn list_offset(&self, topic: &str, partition: u32, spec: OffsetSpec) -> Result<u64> {
        list_offsets(&self.client, topic, &[(partition, spec)])
            .await?
            .first()
            .map(|o| o.offset)
            .ok_or_else(|| crate::Error::Protocol("empty list-offsets response".into()))
    }

    /// Looks up one offset per `(partition, spec)` of `topic` in one round trip per leader
    /// (Kafka's `offsetsForTimes` with [`OffsetSpec::Timestamp`]): `(partition, offset)`
    /// by partition.
    pub async fn list_offsets(
        &self,
        topic: &str,
        queries: &[(u32, OffsetSpec)],
    ) -> Result<Vec<(u32, u64)>> {
        Ok(list_offsets(&self.client, topic, queries)
            .await?
            .into_iter()
            .map(|o| (o.partition, o.offset))
            .collect())
    }
}
