//! The broker's domain facade: what every gRPC service calls. Validates requests against the
//! limits, routes them to topics and partitions, and runs blocking work on the blocking pool.

use std::sync::Arc;

use bytes::Bytes;
use weir_common::TopicName;
use weir_common::batch;
use weir_common::limits::{
    DEFAULT_FETCH_MAX_BYTES, MAX_BATCH_BYTES, MAX_FETCH_MAX_BYTES, MAX_PARTITIONS,
    MIN_SEGMENT_BYTES, PRODUCER_ID_NODE_SHIFT,
};

use crate::cluster::Cluster;
use crate::cluster::state::{Command, Metadata, Outcome, PartitionState};
use crate::config::{Config, TopicDefaults};
use crate::error::BrokerError;
use crate::groups::{
    CommitArgs, CommittedView, GroupCoordinator, GroupSummary, GroupView, Heartbeat, HeartbeatArgs,
    ResetTo,
};
use crate::log::{Appended, Bounds, PendingBatch, ReadResult};
use crate::pipelines::{Deps, PipelineDef, PipelineManager, PipelineView, Start};
use crate::plugins::{Plugin, PluginInfo, PluginLimits, PluginRegistry};
use crate::storage::Store;
use crate::topics::{Topic, TopicRegistry};
use crate::types::TopicConfig;

/// Topic settings as a creator gives them; `None` takes the broker default.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    pub partitions: u32,
    /// -1: forever.
    pub retention_ms: Option<i64>,
    /// -1: no limit.
    pub retention_bytes: Option<i64>,
    pub segment_bytes: Option<u64>,
    pub segment_ms: Option<i64>,
    /// Copies of each partition (cluster mode; default 1).
    pub replication_factor: Option<u32>,
}

/// A topic's name and settings (what creating one answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    pub name: String,
    pub config: TopicConfig,
}

/// How long creating a topic in cluster mode waits for this broker's own copy.
const LOCAL_TOPIC_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
const LOCAL_TOPIC_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Where to look an offset up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    Earliest,
    Latest,
    /// First offset with a record timestamp `>=` this (unix ms).
    Timestamp(i64),
}

pub struct Broker {
    store: Store,
    /// Serialises producer-id allocation (read-increment-write of the high-water mark).
    producer_ids: std::sync::Mutex<()>,
    topics: TopicRegistry,
    groups: GroupCoordinator,
    plugins: PluginRegistry,
    pipelines: PipelineManager,
    max_record_bytes: usize,
    defaults: TopicDefaults,
    /// Set once at start-up in cluster mode.
    cluster: std::sync::OnceLock<Arc<Cluster>>,
}

async fn blocking<T, F>(f: F) -> Result<T, BrokerError>
where
    F: FnOnce() -> Result<T, BrokerError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Storage(format!("blocking task failed: {e}")))?
}

fn resolve_config(t: &NewTopic, d: &TopicDefaults) -> Result<TopicConfig, BrokerError> {
    let invalid = |m: String| Err(BrokerError::InvalidArgument(m));
    if t.partitions == 0 || t.partitions > MAX_PARTITIONS {
        return invalid(format!(
            "partitions must be between 1 and {MAX_PARTITIONS}, got {}",
            t.partitions
        ));
    }
    let retention_ms = match t.retention_ms {
        None => d.retention_ms,
        Some(-1) => None,
        Some(ms) if ms > 0 => Some(ms),
        Some(ms) => {
            return invalid(format!(
                "retention-ms must be -1 (forever) or positive, got {ms}"
            ));
        }
    };
    let retention_bytes = match t.retention_bytes {
        None => d.retention_bytes,
        Some(-1) => None,
        Some(b) if b > 0 => Some(b as u64),
        Some(b) => {
            return invalid(format!(
                "retention-bytes must be -1 (no limit) or positive, got {b}"
            ));
        }
    };
    let segment_bytes = t.segment_bytes.unwrap_or(d.segment_bytes);
    if segment_bytes < MIN_SEGMENT_BYTES {
        return invalid(format!(
            "segment-bytes must be at least {MIN_SEGMENT_BYTES}, got {segment_bytes}"
        ));
    }
    let segment_ms = t.segment_ms.unwrap_or(d.segment_ms);
    if segment_ms <= 0 {
        return invalid(format!("segment-ms must be positive, got {segment_ms}"));
    }
    Ok(TopicConfig {
        partitions: t.partitions,
        retention_ms,
        retention_bytes,
        segment_bytes,
        segment_ms,
    })
}

impl Broker {
    /// Opens the data directory and recovers every topic. Must run inside the tokio runtime.
    pub fn open(config: &Config) -> Result<Arc<Self>, BrokerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            BrokerError::Storage(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let store = Store::open(&config.data_dir.join("db"), config.fsync.sync_mode())?;
        let topics = TopicRegistry::recover(store.clone())?;
        let groups = GroupCoordinator::recover(store.clone(), &topics)?;
        let plugins = PluginRegistry::recover(store.clone())?;
        let deps = Deps {
            topics: &topics,
            plugins: &plugins,
            max_record_bytes: config.max_record_bytes,
        };
        let pipelines = PipelineManager::recover(store.clone(), &deps)?;
        Ok(Arc::new(Self {
            store,
            producer_ids: std::sync::Mutex::new(()),
            topics,
            groups,
            plugins,
            pipelines,
            max_record_bytes: config.max_record_bytes,
            defaults: config.topic_defaults.clone(),
            cluster: std::sync::OnceLock::new(),
        }))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        self.topics.get(name)
    }

    /// Joins the cluster: from now on topics are created and deleted through its metadata,
    /// and this broker keeps a copy of each topic (`reconcile`).
    pub fn attach_cluster(self: &Arc<Self>, cluster: Arc<Cluster>) {
        let mut metadata = cluster.metadata();
        if self.cluster.set(Arc::clone(&cluster)).is_err() {
            return;
        }
        crate::cluster::replica::spawn(Arc::clone(self), Arc::clone(&cluster));
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let m = Arc::clone(&metadata.borrow_and_update());
                let b = Arc::clone(&this);
                if let Err(e) = blocking(move || {
                    b.reconcile(&m);
                    Ok(())
                })
                .await
                {
                    tracing::error!(error = %e, "applying cluster metadata failed");
                }
                if metadata.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Makes the local topics follow the metadata: creates a copy of every topic it has (so
    /// any broker knows every topic's configuration; only the replicas' copies hold records,
    /// and only the leader's serves them), and deletes copies of topics the metadata no
    /// longer has. Topics that were here before the broker joined a cluster (not copies) are
    /// left alone.
    fn reconcile(&self, m: &Metadata) {
        for (name, t) in &m.topics {
            if self.topics.get(name).is_ok() {
                continue;
            }
            let created = TopicName::new(name)
                .map_err(BrokerError::from)
                .and_then(|n| self.topics.create_as(n, t.config.clone(), true));
            if let Err(e) = created {
                tracing::error!(topic = %name, error = %e, "cannot create the local copy");
            }
        }
        let gone: Vec<String> = self
            .topics
            .list()
            .iter()
            .filter(|t| t.meta.replica && !m.topics.contains_key(&t.meta.name))
            .map(|t| t.meta.name.clone())
            .collect();
        for name in gone {
            match self.delete_local(&name) {
                Ok(()) | Err(BrokerError::TopicNotFound(_)) => {}
                Err(e) => {
                    tracing::error!(topic = %name, error = %e, "cannot delete the local copy")
                }
            }
        }
    }

    /// Deletes a topic's local data and what groups committed on it (blocking).
    fn delete_local(&self, name: &str) -> Result<(), BrokerError> {
        let id = self.topics.delete(name)?;
        self.groups.forget_topic(name, id)
    }

    pub async fn create_topic(
        self: &Arc<Self>,
        name: &str,
        new: NewTopic,
    ) -> Result<TopicView, BrokerError> {
        let name = TopicName::new(name)?;
        let config = resolve_config(&new, &self.defaults)?;
        let rf = new.replication_factor.unwrap_or(1);
        let Some(cluster) = self.cluster() else {
            if rf != 1 {
                return Err(BrokerError::InvalidArgument(format!(
                    "replication factor {rf} needs a cluster of at least {rf} brokers; this broker runs alone"
                )));
            }
            let this = Arc::clone(self);
            let t = blocking(move || this.topics.create(name, config)).await?;
            return Ok(TopicView {
                name: t.meta.name.clone(),
                config: t.meta.config.clone(),
            });
        };
        let cmd = Command::CreateTopic {
            name: name.to_string(),
            config: config.clone(),
            replication_factor: rf,
        };
        match cluster.propose(cmd).await? {
            Outcome::Done => {}
            Outcome::TopicExists => return Err(BrokerError::TopicExists(name.to_string())),
            Outcome::NotEnoughBrokers { wanted, brokers } => {
                return Err(BrokerError::InvalidArgument(format!(
                    "replication factor {wanted} needs at least {wanted} brokers; the cluster has {brokers}"
                )));
            }
            other => return Err(BrokerError::ClusterUnavailable(format!("{other:?}"))),
        }
        self.await_metadata(|m, b| {
            m.topics.contains_key(name.as_str()) && b.topics.get(name.as_str()).is_ok()
        })
        .await;
        Ok(TopicView {
            name: name.to_string(),
            config,
        })
    }

    /// Waits (up to [`LOCAL_TOPIC_WAIT`]) until `done` holds for this broker's metadata and
    /// local topics, so a client that created or deleted a topic can rely on it at once. The
    /// local copies follow the metadata within moments (`reconcile`): between metadata
    /// changes `done` is polled.
    async fn await_metadata(&self, done: impl Fn(&Metadata, &Self) -> bool) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let mut m = cluster.metadata();
        let deadline = tokio::time::Instant::now() + LOCAL_TOPIC_WAIT;
        loop {
            let snapshot = Arc::clone(&m.borrow_and_update());
            if done(&snapshot, self) {
                return;
            }
            if let Ok(Err(_)) = tokio::time::timeout(LOCAL_TOPIC_POLL, m.changed()).await {
                return; // The metadata is gone: the broker is shutting down.
            }
            if tokio::time::Instant::now() >= deadline {
                return;
            }
        }
    }

    pub fn list_topics(&self) -> Vec<Arc<Topic>> {
        self.topics.list()
    }

    /// Cluster mode: fails with [`BrokerError::NotLeader`] unless this broker leads the
    /// partition (a standalone broker leads everything). Producers and consumers are served by
    /// leaders only; followers will fetch from them (docs/cluster.md).
    pub fn check_leader(&self, topic: &str, partition: u32) -> Result<(), BrokerError> {
        let Some(c) = self.cluster() else {
            return Ok(());
        };
        let m = c.metadata();
        let m = m.borrow();
        let Some(p) = m
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize))
        else {
            // Unknown here: the usual not-found errors follow from the local registry.
            return Ok(());
        };
        if p.leader == Some(c.node_id()) {
            return Ok(());
        }
        Err(BrokerError::NotLeader {
            topic: topic.to_string(),
            partition,
            leader: p
                .leader
                .and_then(|l| m.brokers.get(&l))
                .map(|b| b.addr.clone()),
        })
    }

    /// Cluster mode: where each partition of `topic` lives, as this broker's metadata says
    /// (`None` standalone, or for a topic the metadata does not know).
    pub fn placement(&self, topic: &str) -> Option<Vec<PartitionState>> {
        let m = self.cluster()?.metadata();
        let m = m.borrow();
        m.topics.get(topic).map(|t| t.partitions.clone())
    }

    /// A topic and the bounds of each of its partitions.
    pub fn describe_topic(&self, name: &str) -> Result<(Arc<Topic>, Vec<Bounds>), BrokerError> {
        let topic = self.topics.get(name)?;
        let bounds = topic.partitions.iter().map(|p| p.log.bounds()).collect();
        Ok((topic, bounds))
    }

    pub async fn delete_topic(self: &Arc<Self>, name: &str) -> Result<(), BrokerError> {
        if let Some(cluster) = self.cluster() {
            let cmd = Command::DeleteTopic {
                name: name.to_string(),
            };
            return match cluster.propose(cmd).await? {
                Outcome::Done => {
                    self.await_metadata(|m, b| {
                        !m.topics.contains_key(name) && b.topics.get(name).is_err()
                    })
                    .await;
                    Ok(())
                }
                Outcome::TopicNotFound => Err(BrokerError::TopicNotFound(name.to_string())),
                other => Err(BrokerError::ClusterUnavailable(format!("{other:?}"))),
            };
        }
        let this = Arc::clone(self);
        let name = name.to_string();
        blocking(move || this.delete_local(&name)).await
    }

    /// Hands out a producer id that was never given before (for idempotent producers).
    pub async fn init_producer(self: &Arc<Self>) -> Result<u64, BrokerError> {
        let this = Arc::clone(self);
        blocking(move || {
            let _guard = this.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
            let local = this.store.allocate_producer_id()?;
            // A cluster member's ids carry its node id, so a producer's id is unique across
            // the brokers that lead its partitions (Kafka hands out id blocks from the
            // controller instead; a fixed prefix needs no round trip).
            Ok(match this.cluster() {
                Some(c) => (c.node_id() << PRODUCER_ID_NODE_SHIFT) | local,
                None => local,
            })
        })
        .await
    }

    /// Validates every batch, then appends each to its partition (concurrently across
    /// partitions). Nothing is written if any batch is invalid.
    pub async fn produce(
        &self,
        topic: &str,
        batches: Vec<(u32, Bytes)>,
    ) -> Result<Vec<(u32, Appended)>, BrokerError> {
        self.submit(topic, batches).await?.await
    }

    /// Validates every batch and queues each on its partition's appender, in order; returns
    /// a future of where they landed. Requests submitted one after another are appended in
    /// that order (the pipelined produce stream relies on it).
    pub async fn submit(
        &self,
        topic: &str,
        batches: Vec<(u32, Bytes)>,
    ) -> Result<impl Future<Output = Result<Vec<(u32, Appended)>, BrokerError>> + use<>, BrokerError>
    {
        let t = self.topics.get(topic)?;
        for (partition, _) in &batches {
            self.check_leader(topic, *partition)?;
        }
        if batches.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "produce request carries no batch".into(),
            ));
        }
        let mut pending = Vec::with_capacity(batches.len());
        for (partition, bytes) in batches {
            t.partition(partition)?;
            if bytes.len() > MAX_BATCH_BYTES {
                return Err(BrokerError::InvalidArgument(format!(
                    "batch for partition {partition} is {} bytes; the limit is {MAX_BATCH_BYTES} bytes",
                    bytes.len()
                )));
            }
            let valid = batch::validate(&bytes, self.max_record_bytes)
                .map_err(|source| BrokerError::InvalidBatch { partition, source })?;
            pending.push((partition, PendingBatch { bytes, valid }));
        }
        let mut queued = Vec::with_capacity(pending.len());
        for (partition, batch) in pending {
            let appender = &t.partition(partition)?.appender;
            let reply = appender
                .submit(batch)
                .await
                .map_err(|e| BrokerError::from_append(e, topic, partition))?;
            queued.push((partition, reply));
        }
        let name = t.meta.name.clone();
        Ok(async move {
            let mut out = Vec::with_capacity(queued.len());
            for (partition, reply) in queued {
                let a = reply
                    .await
                    .map_err(|e| BrokerError::from_append(e, &name, partition))?;
                out.push((partition, a));
            }
            Ok(out)
        })
    }

    /// Clamps a client's `max_bytes` (0 = default) to the broker's limits.
    pub fn fetch_budget(max_bytes: u32) -> usize {
        match max_bytes {
            0 => DEFAULT_FETCH_MAX_BYTES as usize,
            n => n.min(MAX_FETCH_MAX_BYTES) as usize,
        }
    }

    /// Reads batches from one partition at `offset`, up to `max_bytes`.
    pub async fn read(
        &self,
        topic: &Arc<Topic>,
        partition: u32,
        offset: u64,
        max_bytes: usize,
    ) -> Result<ReadResult, BrokerError> {
        self.check_leader(&topic.meta.name, partition)?;
        let log = Arc::clone(&topic.partition(partition)?.log);
        let name = topic.meta.name.clone();
        blocking(move || {
            log.read_from(offset, max_bytes)
                .map_err(|e| BrokerError::from_log(e, &name, partition))
        })
        .await
    }

    /// Cluster mode, a follower: appends batches fetched from the partition's leader
    /// unchanged (`PartitionLog::append_replica`). Returns this copy's new log end offset.
    pub async fn append_replica(
        &self,
        topic: &str,
        partition: u32,
        batches: Vec<Bytes>,
    ) -> Result<u64, BrokerError> {
        let log = Arc::clone(&self.topics.get(topic)?.partition(partition)?.log);
        let name = topic.to_string();
        blocking(move || {
            let mut group = Vec::with_capacity(batches.len());
            for bytes in batches {
                // The leader checked the records against its own limits; here only the
                // framing matters, so the largest record a batch can hold passes.
                let valid = batch::validate(&bytes, MAX_BATCH_BYTES)
                    .map_err(|source| BrokerError::InvalidBatch { partition, source })?;
                group.push(PendingBatch { bytes, valid });
            }
            log.append_replica(&group, weir_common::record::now_ms())
                .map_err(|e| BrokerError::from_log(e, &name, partition))?;
            Ok(log.bounds().latest)
        })
        .await
    }

    /// Resolves an offset query on one partition.
    pub async fn list_offset(
        &self,
        topic: &Arc<Topic>,
        partition: u32,
        query: OffsetQuery,
    ) -> Result<(u64, Bounds), BrokerError> {
        self.check_leader(&topic.meta.name, partition)?;
        let log = Arc::clone(&topic.partition(partition)?.log);
        let bounds = log.bounds();
        match query {
            OffsetQuery::Earliest => Ok((bounds.earliest, bounds)),
            OffsetQuery::Latest => Ok((bounds.latest, bounds)),
            OffsetQuery::Timestamp(ts) => {
                let name = topic.meta.name.clone();
                let off = blocking(move || {
                    log.offset_for_timestamp(ts)
                        .map_err(|e| BrokerError::from_log(e, &name, partition))
                })
                .await?;
                Ok((off, bounds))
            }
        }
    }

    // ---- consumer groups ------------------------------------------------------------------

    /// Join, heartbeat or leave a group (in memory: no blocking work).
    pub fn group_heartbeat(&self, args: HeartbeatArgs) -> Result<Option<Heartbeat>, BrokerError> {
        self.groups
            .heartbeat(args, &self.topics, std::time::Instant::now())
    }

    /// Removes group members whose session or rebalance timeout passed.
    pub fn expire_group_members(&self) {
        self.groups.expire(&self.topics, std::time::Instant::now());
    }

    /// The coordinator (for subscriptions that check ownership).
    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    pub async fn commit_offsets(
        self: &Arc<Self>,
        group: String,
        member_id: String,
        member_epoch: i64,
        offsets: Vec<CommitArgs>,
    ) -> Result<(), BrokerError> {
        let this = Arc::clone(self);
        blocking(move || {
            this.groups
                .commit(&group, &member_id, member_epoch, offsets, &this.topics)
        })
        .await
    }

    pub fn fetch_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Vec<CommittedView>, BrokerError> {
        self.groups
            .fetch_offsets(group, topic, partitions, &self.topics)
    }

    pub fn list_groups(&self) -> Vec<GroupSummary> {
        self.groups.list()
    }

    pub fn describe_group(&self, group: &str) -> Result<GroupView, BrokerError> {
        self.groups
            .describe(group, &self.topics, std::time::Instant::now())
    }

    pub async fn reset_group(
        self: &Arc<Self>,
        group: String,
        topic: String,
        to: ResetTo,
    ) -> Result<Vec<(u32, u64)>, BrokerError> {
        let this = Arc::clone(self);
        blocking(move || this.groups.reset(&group, &topic, to, &this.topics)).await
    }

    pub async fn delete_group(self: &Arc<Self>, group: String) -> Result<(), BrokerError> {
        let this = Arc::clone(self);
        blocking(move || this.groups.delete(&group, &this.topics)).await
    }

    // ---- plugins ----------------------------------------------------------------------------

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
            .await
    }

    // ---- pipelines --------------------------------------------------------------------------

    fn deps(&self) -> Deps<'_> {
        Deps {
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
        self.pipelines.create(&self.deps(), def, start).await
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
        self.pipelines.resume(name, &self.deps()).await
    }

    /// One retention pass over every partition (blocking).
    pub fn enforce_retention(&self) {
        self.topics.enforce_retention();
    }
}
