//! Topic administration and offset look-ups.

use crate::client::Channel;
use weir_proto::v1 as pb;
use weir_proto::v1::groups_client::GroupsClient;
use weir_proto::v1::topics_client::TopicsClient;

use crate::client::{Client, log_rpc, plugins_rpc, topics_rpc};
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
        }
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

fn info_of(t: pb::TopicInfo) -> TopicInfo {
    let c = t.config.unwrap_or_default();
    TopicInfo {
        name: t.name,
        partitions: c.partitions,
        retention_ms: c.retention_ms.filter(|&v| v >= 0),
        retention_bytes: c.retention_bytes.filter(|&v| v >= 0).map(|v| v as u64),
        segment_bytes: c.segment_bytes.unwrap_or_default(),
        segment_ms: c.segment_ms.unwrap_or_default(),
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

/// Looks up one offset in each of `partitions` of `topic`, asking each partition's leader
/// (every partition with the same `spec`). Answers come by partition.
pub(crate) async fn list_offsets(
    client: &Client,
    topic: &str,
    partitions: &[u32],
    spec: OffsetSpec,
) -> Result<Vec<pb::PartitionOffset>> {
    let answers = client
        .on_leaders(topic, partitions, |route, ps| {
            let req = pb::ListOffsetsRequest {
                topic: topic.to_string(),
                queries: ps.iter().map(|&p| spec_to_pb(p, spec)).collect(),
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
    async fn on_topics<T, F, Fut>(&self, call: F) -> Result<T>
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
            })
            .collect())
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
        let mut partitions: Vec<PartitionInfo> = resp
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                partition: p.partition,
                earliest_offset: p.earliest_offset,
                latest_offset: p.latest_offset,
                size_bytes: p.size_bytes,
                segments: p.segments,
            })
            .collect();
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
        list_offsets(&self.client, topic, &[partition], spec)
            .await?
            .first()
            .map(|o| o.offset)
            .ok_or_else(|| crate::Error::Protocol("empty list-offsets response".into()))
    }
}

/// A consumer group in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// Group name.
    pub name: String,
    /// `empty` (no members), `stable`, or `reconciling` (partitions moving between members).
    pub state: String,
    /// Live members.
    pub members: u32,
    /// Bumped on every membership or subscription change.
    pub epoch: u64,
}

/// A live member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Id the broker gave it.
    pub member_id: String,
    /// Free text the client sent (e.g. `weir-cli`).
    pub client_id: String,
    /// Its current member epoch.
    pub member_epoch: i64,
    /// Topics it subscribes to.
    pub topics: Vec<String>,
    /// Partitions it reads now, as (topic, partition).
    pub assignment: Vec<(String, u32)>,
    /// Partitions it is handing over to another member.
    pub revoking: Vec<(String, u32)>,
    /// Its session timeout.
    pub session_timeout: std::time::Duration,
    /// Time since its last heartbeat.
    pub since_heartbeat: std::time::Duration,
}

/// One partition of a group's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// The group's committed offset (next to read), if any.
    pub committed_offset: Option<u64>,
    /// Next offset to be written.
    pub end_offset: u64,
    /// `end_offset - committed_offset`, if there is a committed offset.
    pub lag: Option<u64>,
    /// The member reading it now.
    pub member_id: Option<String>,
}

/// A group's members and, per partition, committed offset, end offset, lag and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Name, state, member count, epoch.
    pub group: GroupSummary,
    /// Live members.
    pub members: Vec<GroupMember>,
    /// Every partition of every topic the group reads or has offsets for.
    pub partitions: Vec<GroupPartition>,
}

fn summary_of(g: pb::GroupSummary) -> GroupSummary {
    GroupSummary {
        name: g.name,
        state: g.state,
        members: g.members,
        epoch: g.epoch,
    }
}

fn flatten(tps: Vec<pb::TopicPartitions>) -> Vec<(String, u32)> {
    tps.into_iter()
        .flat_map(|tp| {
            let topic = tp.topic;
            tp.partitions.into_iter().map(move |p| (topic.clone(), p))
        })
        .collect()
}

impl Admin {
    /// Every consumer group (live members or committed offsets), by name. In a cluster each
    /// broker lists the groups it coordinates, so every broker is asked.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let mut groups = Vec::new();
        for route in self.client.broker_routes().await? {
            let resp = GroupsClient::new(route.channel)
                .list_groups(pb::ListGroupsRequest {})
                .await?
                .into_inner();
            groups.extend(resp.groups.into_iter().map(summary_of));
        }
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups.dedup_by(|a, b| a.name == b.name);
        Ok(groups)
    }

    /// A group's members, committed offsets, lag and partition owners. Fails with
    /// [`Error::GroupNotFound`](crate::Error::GroupNotFound).
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let req = pb::DescribeGroupRequest {
            group: group.to_string(),
        };
        let resp = self
            .client
            .on_coordinator(group, |mut rpc| {
                let req = req.clone();
                async move { rpc.describe_group(req).await }
            })
            .await?;
        let members = resp
            .members
            .into_iter()
            .map(|m| GroupMember {
                member_id: m.member_id,
                client_id: m.client_id,
                member_epoch: m.member_epoch,
                topics: m.topics,
                assignment: flatten(m.assignment),
                revoking: flatten(m.revoking),
                session_timeout: std::time::Duration::from_millis(u64::from(m.session_timeout_ms)),
                since_heartbeat: std::time::Duration::from_millis(m.since_heartbeat_ms),
            })
            .collect();
        let partitions = resp
            .partitions
            .into_iter()
            .map(|p| GroupPartition {
                topic: p.topic,
                partition: p.partition,
                committed_offset: p.committed_offset,
                end_offset: p.end_offset,
                lag: p.lag,
                member_id: Some(p.member_id).filter(|m| !m.is_empty()),
            })
            .collect();
        Ok(GroupDescription {
            group: summary_of(resp.group.unwrap_or_default()),
            members,
            partitions,
        })
    }

    /// A group's committed offset per partition of `topic` (`None`: never committed).
    pub async fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<(u32, Option<u64>)>> {
        let req = pb::FetchOffsetsRequest {
            group: group.to_string(),
            topic: topic.to_string(),
            partitions: Vec::new(),
        };
        let resp = self
            .client
            .on_coordinator(group, |mut rpc| {
                let req = req.clone();
                async move { rpc.fetch_offsets(req).await }
            })
            .await?;
        Ok(resp
            .offsets
            .into_iter()
            .map(|o| (o.partition, o.offset))
            .collect())
    }

    /// Commits offsets for a group that has no live members (e.g. positions tracked outside
    /// a group consumer). Fails with [`Error::GroupNotEmpty`](crate::Error::GroupNotEmpty)
    /// while members are live.
    pub async fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(u32, u64)],
    ) -> Result<()> {
        let req = pb::CommitOffsetsRequest {
            group: group.to_string(),
            member_id: String::new(),
            member_epoch: 0,
            offsets: offsets
                .iter()
                .map(|&(partition, offset)| pb::OffsetCommit {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    metadata: String::new(),
                })
                .collect(),
        };
        self.client
            .on_coordinator(group, |mut rpc| {
                let req = req.clone();
                async move { rpc.commit_offsets(req).await }
            })
            .await?;
        Ok(())
    }

    /// Moves a group's committed offsets for every partition of `topic`; returns the new
    /// (partition, offset) pairs. Only while the group has no live members.
    pub async fn reset_group(
        &self,
        group: &str,
        topic: &str,
        to: StartFrom,
    ) -> Result<Vec<(u32, u64)>> {
        let (to, offset, timestamp) = match to {
            StartFrom::Earliest => (pb::ResetTo::Earliest, 0, 0),
            StartFrom::Latest => (pb::ResetTo::Latest, 0, 0),
            StartFrom::Offset(o) => (pb::ResetTo::Offset, o, 0),
            StartFrom::Timestamp(ts) => (pb::ResetTo::Timestamp, 0, ts),
        };
        let req = pb::ResetOffsetsRequest {
            group: group.to_string(),
            topic: topic.to_string(),
            to: to as i32,
            offset,
            timestamp,
        };
        let resp = self
            .client
            .on_coordinator(group, |mut rpc| {
                let req = req.clone();
                async move { rpc.reset_offsets(req).await }
            })
            .await?;
        Ok(resp
            .offsets
            .into_iter()
            .map(|o| (o.partition, o.offset))
            .collect())
    }

    /// Deletes a group and its committed offsets. Only while it has no live members.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let req = pb::DeleteGroupRequest {
            group: group.to_string(),
        };
        self.client
            .on_coordinator(group, |mut rpc| {
                let req = req.clone();
                async move { rpc.delete_group(req).await }
            })
            .await?;
        Ok(())
    }
}

/// A registered WebAssembly plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Name it was registered under.
    pub name: String,
    /// `filter`, `map`, `filter_map`, `flat_map` or `aggregate`.
    pub kind: String,
    /// Size of the module.
    pub size_bytes: u64,
    /// When it was registered (unix ms).
    pub created_ms: i64,
    /// Linear memory one instance may use.
    pub memory_limit_bytes: u64,
    /// CPU budget of one call (one batch).
    pub call_timeout_ms: u64,
    /// Largest output of one call.
    pub max_output_bytes: u64,
}

/// Sandbox limits of a plugin, set when it is registered; `None` takes the broker's default
/// (64 MiB of memory, 2000 ms of CPU per batch, 64 MiB of output per call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginLimits {
    /// Linear memory one instance may grow to (at most 1 GiB).
    pub memory_bytes: Option<u64>,
    /// CPU (wall-clock) budget of one call, 10..=60000 ms.
    pub call_timeout_ms: Option<u64>,
    /// Largest output of one call (at most 64 MiB).
    pub max_output_bytes: Option<u64>,
}

fn plugin_of(p: pb::PluginInfo) -> PluginInfo {
    PluginInfo {
        name: p.name,
        kind: p.kind,
        size_bytes: p.size_bytes,
        created_ms: p.created_ms,
        memory_limit_bytes: p.memory_limit_bytes,
        call_timeout_ms: p.call_timeout_ms,
        max_output_bytes: p.max_output_bytes,
    }
}

impl Admin {
    /// Registers a WebAssembly plugin module (the bytes of a `.wasm` file). The broker
    /// validates and compiles it; fails with
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for invalid modules.
    pub async fn register_plugin(
        &self,
        name: &str,
        wasm: impl Into<bytes::Bytes>,
    ) -> Result<PluginInfo> {
        self.register_plugin_with(name, wasm, PluginLimits::default(), false)
            .await
    }

    /// Replaces the module of an existing plugin (fails with
    /// [`Error::PluginNotFound`](crate::Error::PluginNotFound) if there is none). Consumers
    /// already using it keep the old module; pipelines take the new one when they start or
    /// are resumed.
    pub async fn replace_plugin(
        &self,
        name: &str,
        wasm: impl Into<bytes::Bytes>,
    ) -> Result<PluginInfo> {
        self.register_plugin_with(name, wasm, PluginLimits::default(), true)
            .await
    }

    /// Registers (or, with `replace`, replaces) a plugin with its own sandbox limits.
    /// Limits out of range are [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    /// In a cluster the module goes to every broker (consume-time chains run at partition
    /// leaders); the bootstrap broker's answer decides, the others take the module whether
    /// or not they had the plugin. Deleting goes to every broker too.
    pub async fn register_plugin_with(
        &self,
        name: &str,
        wasm: impl Into<bytes::Bytes>,
        limits: PluginLimits,
        replace: bool,
    ) -> Result<PluginInfo> {
        let req = pb::RegisterPluginRequest {
            name: name.to_string(),
            wasm: wasm.into(),
            replace,
            memory_limit_bytes: limits.memory_bytes.unwrap_or(0),
            call_timeout_ms: limits.call_timeout_ms.unwrap_or(0),
            max_output_bytes: limits.max_output_bytes.unwrap_or(0),
        };
        // The bootstrap broker's answer (exists, not found, invalid) is the caller's.
        let resp = self
            .client
            .plugins_rpc()
            .register_plugin(req.clone())
            .await?
            .into_inner();
        // In a cluster every broker gets the module: consume-time chains run at partition
        // leaders. The others take it whether or not they had the plugin.
        for route in self.other_brokers().await? {
            let mut rpc = plugins_rpc(route.channel);
            let upsert = pb::RegisterPluginRequest {
                replace: true,
                ..req.clone()
            };
            let done = match rpc
                .register_plugin(upsert.clone())
                .await
                .map_err(Error::from)
            {
                Err(Error::PluginNotFound(_)) => rpc
                    .register_plugin(pb::RegisterPluginRequest {
                        replace: false,
                        ..upsert
                    })
                    .await
                    .map_err(Error::from),
                other => other,
            };
            done.map_err(|e| partly_done(&route.addr, "registered", e))?;
        }
        Ok(plugin_of(resp.plugin.unwrap_or_default()))
    }

    /// Cluster mode: every broker but the bootstrap one (none standalone).
    async fn other_brokers(&self) -> Result<Vec<crate::client::Route>> {
        let bootstrap = self.client.addr();
        Ok(self
            .client
            .broker_routes()
            .await?
            .into_iter()
            .filter(|r| *r.addr != *bootstrap)
            .collect())
    }

    /// Every registered plugin, by name.
    pub async fn list_plugins(&self) -> Result<Vec<PluginInfo>> {
        let resp = self
            .client
            .plugins_rpc()
            .list_plugins(pb::ListPluginsRequest {})
            .await?
            .into_inner();
        Ok(resp.plugins.into_iter().map(plugin_of).collect())
    }

    /// Deletes a plugin. Fails with [`Error::PluginInUse`](crate::Error::PluginInUse) while
    /// a pipeline uses it.
    pub async fn delete_plugin(&self, name: &str) -> Result<()> {
        let req = pb::DeletePluginRequest {
            name: name.to_string(),
        };
        self.client.plugins_rpc().delete_plugin(req.clone()).await?;
        for route in self.other_brokers().await? {
            match plugins_rpc(route.channel)
                .delete_plugin(req.clone())
                .await
                .map_err(Error::from)
            {
                Ok(_) | Err(Error::PluginNotFound(_)) => {}
                Err(e) => return Err(partly_done(&route.addr, "deleted", e)),
            }
        }
        Ok(())
    }
}

/// A cluster-wide plugin change that reached the bootstrap broker but not broker `addr`.
fn partly_done(addr: &str, what: &str, e: Error) -> Error {
    Error::Broker(format!(
        "the plugin was {what} on the bootstrap broker but not on broker {addr} ({e}); repeat the command once it is back (register with replace)"
    ))
}
