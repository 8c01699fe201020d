//! The broker's domain facade: what every gRPC service calls. Validates requests against the
//! limits, routes them to topics and partitions, and runs blocking work on the blocking pool.

mod coordination;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use weir_common::TopicName;
use weir_common::batch;
use weir_common::limits::{
    DEFAULT_FETCH_MAX_BYTES, MAX_BATCH_BYTES, MAX_FETCH_MAX_BYTES, MAX_PARTITIONS,
    MIN_SEGMENT_BYTES, PRODUCER_ID_NODE_SHIFT,
};

use crate::blocking::blocking;
use crate::cluster::Cluster;
use crate::cluster::isr::Leadership;
use crate::cluster::peers::NodeId;
use crate::cluster::state::{Command, Metadata, Outcome, PartitionState};
use crate::config::{Config, TopicDefaults};
use crate::error::BrokerError;
use crate::groups::offsets::INTERNAL_PREFIX;
use crate::groups::{
    CommitArgs, CommittedView, GroupCoordinator, GroupSummary, GroupView, Heartbeat, HeartbeatArgs,
    ResetTo,
};
use crate::log::{Appended, Bounds, Diverging, PartitionLog, PendingBatch, ReadResult, ReadUpTo};
use crate::metrics;
use crate::pipelines::{Deps, PipelineDef, PipelineManager, PipelineView, Start};
use crate::plugins::{Plugin, PluginInfo, PluginLimits, PluginRegistry};
use crate::security::{Proposed, Proposer, Security};
use crate::storage::Store;
use crate::topics::{Topic, TopicRegistry};
use crate::types::{OffsetQuery, TopicConfig};

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

pub struct Broker {
    store: Store,
    /// Serialises producer-id allocation (read-increment-write of the high-water mark).
    producer_ids: std::sync::Mutex<()>,
    topics: Arc<TopicRegistry>,
    groups: GroupCoordinator,
    plugins: PluginRegistry,
    pipelines: PipelineManager,
    max_record_bytes: usize,
    defaults: TopicDefaults,
    /// Set once at start-up in cluster mode.
    cluster: std::sync::OnceLock<Arc<Cluster>>,
    /// Cluster mode: the followers of the partitions this broker leads.
    leadership: std::sync::Mutex<Leadership>,
    replica_lag_max: Duration,
    session_timeout: Duration,
    /// Bytes of client produce batches that may be held at once (see [`Broker::submit`]).
    produce_budget: Arc<Semaphore>,
    produce_budget_bytes: u32,
    security: Arc<Security>,
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

/// What a produce does when the produce budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Wait for room: an ordered produce stream, whose client HTTP/2 then holds back.
    Wait,
    /// Fail at once with [`BrokerError::Busy`] (a unary produce: the client retries).
    Refuse,
}

/// When a produce is acknowledged (see `weir.v1.Acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Once every in-sync replica has the batches.
    All,
    /// Once the leader has them.
    Leader,
}

/// Longest an `acks=all` produce waits for the in-sync replicas; then it fails as retriable
/// (`not_enough_replicas`), below the SDK's default 30 s request timeout. A dead follower
/// leaves the ISR within `--replica-lag-max-ms` (10 s), which lets the high watermark move.
pub const MAX_REPLICATION_WAIT: Duration = Duration::from_secs(25);

/// Waits until the high watermark of a partition this broker leads reaches `end`; fails when
/// the broker stops leading it (`not_leader`: the client retries at the new leader, and an
/// idempotent retry does not duplicate) or at `deadline`.
async fn await_replicated(
    cluster: &Cluster,
    topic: &str,
    partition: u32,
    log: &PartitionLog,
    end: u64,
    deadline: tokio::time::Instant,
) -> Result<(), BrokerError> {
    let mut bounds = log.watch();
    let mut metadata = cluster.metadata();
    let me = cluster.node_id();
    let epoch = leader_epoch_of(&metadata.borrow(), topic, partition, me);
    loop {
        if bounds.borrow_and_update().latest >= end {
            return Ok(());
        }
        if log.is_closed() {
            return Err(BrokerError::TopicNotFound(topic.to_string()));
        }
        let now = leader_epoch_of(&metadata.borrow_and_update(), topic, partition, me);
        if now.is_none() || now != epoch {
            return Err(BrokerError::NotLeader {
                topic: topic.to_string(),
                partition,
                leader: None,
            });
        }
        tokio::select! {
            r = bounds.changed() => if r.is_err() { return Err(BrokerError::ShuttingDown) },
            r = metadata.changed() => if r.is_err() { return Err(BrokerError::ShuttingDown) },
            _ = tokio::time::sleep_until(deadline) => {
                return Err(BrokerError::NotEnoughReplicas(format!(
                    "topic {topic:?} partition {partition}: the in-sync replicas did not all \
                     acknowledge offset {} within {} s; retry",
                    end - 1,
                    MAX_REPLICATION_WAIT.as_secs()
                )));
            }
        }
    }
}

/// Topics named `__...` are the broker's own (`__consumer_offsets`).
fn check_not_internal(topic: &str, what: &str) -> Result<(), BrokerError> {
    if topic.starts_with(INTERNAL_PREFIX) {
        return Err(BrokerError::InvalidArgument(format!(
            "topic {topic:?} is internal to the broker (names starting with {INTERNAL_PREFIX:?} are reserved); it cannot be {what}"
        )));
    }
    Ok(())
}

/// The leader epoch of a partition while `me` leads it.
fn leader_epoch_of(m: &Metadata, topic: &str, partition: u32, me: NodeId) -> Option<u32> {
    m.partition(topic, partition)
        .filter(|p| p.leader == Some(me))
        .map(|p| p.leader_epoch)
}

impl Broker {
    /// Opens the data directory and recovers every topic. Must run inside the tokio runtime.
    pub fn open(config: &Config) -> Result<Arc<Self>, BrokerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            BrokerError::Storage(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let store = Store::open(&config.data_dir.join("db"), config.fsync.sync_mode())?;
        let topics = Arc::new(TopicRegistry::recover(store.clone())?);
        let groups = GroupCoordinator::recover(store.clone(), &topics)?;
        let plugins = PluginRegistry::recover(store.clone())?;
        let deps = Deps {
            topics: &topics,
            plugins: &plugins,
            max_record_bytes: config.max_record_bytes,
        };
        let pipelines = PipelineManager::recover(store.clone(), &deps)?;
        let security = Arc::new(Security::open(
            store.clone(),
            config.auth,
            &config.data_dir,
            config.cluster.is_some(),
        )?);
        let budget = u32::try_from(config.limits.produce_bytes_in_flight).unwrap_or(u32::MAX);
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
            leadership: std::sync::Mutex::new(Leadership::default()),
            replica_lag_max: config.replica_lag_max,
            session_timeout: config.session_timeout,
            produce_budget: Arc::new(Semaphore::new(budget as usize)),
            produce_budget_bytes: budget,
            security,
        }))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Users, credentials and ACLs.
    pub fn security(&self) -> &Arc<Security> {
        &self.security
    }

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        self.topics.get(name)
    }

    /// Cluster mode: users and ACLs follow the metadata's document (what this member applied
    /// so far is served before anything else runs), and changes are proposed to the quorum.
    fn replicate_security(&self, cluster: &Arc<Cluster>) {
        let security = Arc::clone(&self.security);
        let mut metadata = cluster.metadata();
        let follow =
            move |m: &Metadata| security.follow(m.security_version, Arc::clone(&m.security));
        follow(&metadata.borrow_and_update());
        tokio::spawn(async move {
            while metadata.changed().await.is_ok() {
                follow(&metadata.borrow_and_update());
            }
        });
        let proposer = Arc::clone(cluster);
        let propose: Proposer = Box::new(move |base, state| {
            let cluster = Arc::clone(&proposer);
            Box::pin(async move {
                match cluster
                    .propose(Command::SetSecurity { base, state })
                    .await?
                {
                    Outcome::Done => Ok(Proposed::Taken),
                    Outcome::StaleSecurity { current } => Ok(Proposed::Stale { current }),
                    other => Err(BrokerError::Storage(format!(
                        "the cluster did not take the users and ACLs: {other:?}"
                    ))),
                }
            })
        });
        let lowest = cluster.peers().keys().next().copied();
        self.security
            .replicate(propose, lowest == Some(cluster.node_id()));
    }

    /// Joins the cluster: from now on topics are created and deleted through its metadata,
    /// and this broker keeps a copy of each topic (`reconcile`).
    pub fn attach_cluster(self: &Arc<Self>, cluster: Arc<Cluster>) {
        let mut metadata = cluster.metadata();
        if self.cluster.set(Arc::clone(&cluster)).is_err() {
            return;
        }
        self.groups.replicate();
        self.replicate_security(&cluster);
        self.spawn_checkpoints();
        crate::cluster::replica::spawn(Arc::clone(&self.topics), Arc::clone(&cluster));
        self.spawn_isr_checks();
        crate::cluster::controller::spawn(Arc::clone(&cluster), self.session_timeout);
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

    /// Whether this broker is a cluster member.
    pub fn in_cluster(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// Makes the local topics follow the metadata: creates a copy of every topic it has (so
    /// any broker knows every topic's configuration; only the replicas' copies hold records,
    /// and only the leader's serves them), and deletes copies of topics the metadata no
    /// longer has. Topics that were here before the broker joined a cluster (not copies) are
    /// left alone.
    fn reconcile(self: &Arc<Self>, m: &Metadata) {
        self.reconcile_topics(m);
        self.follow_leadership(m);
        self.follow_coordination(m);
    }

    fn reconcile_topics(&self, m: &Metadata) {
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

    /// Makes each local partition's high watermark follow its role: a leader alone in the ISR
    /// sees all it has; a leader with in-sync followers moves it as they fetch (and at once
    /// when the ISR shrank); a follower takes its leader's.
    fn follow_leadership(&self, m: &Metadata) {
        let Some(me) = self.cluster().map(|c| c.node_id()) else {
            return;
        };
        let mut led = Vec::new();
        let mut sync = Vec::new();
        for (name, t) in &m.topics {
            let Ok(topic) = self.topics.get(name) else {
                continue;
            };
            for (i, p) in t.partitions.iter().enumerate() {
                let Ok(part) = topic.partition(i as u32) else {
                    continue;
                };
                let leads = p.leader == Some(me);
                part.log.set_hw_follows_end(leads && p.isr == [me]);
                if leads && let Err(e) = part.log.ensure_epoch(p.leader_epoch) {
                    tracing::error!(topic = %name, partition = i, error = %e, "cannot record the leader epoch");
                }
                if leads {
                    led.push((name.clone(), i as u32, p.leader_epoch));
                    if p.isr.len() > 1 {
                        sync.push((name, i as u32, p, Arc::clone(&part.log)));
                    }
                }
            }
        }
        let mut leadership = self.leadership();
        leadership.retain_led(&led, Instant::now());
        for (name, i, p, log) in sync {
            let b = log.bounds();
            log.raise_high_watermark(
                leadership.high_watermark(name, i, p, me, b.log_end, b.latest),
            );
        }
    }

    fn leadership(&self) -> std::sync::MutexGuard<'_, Leadership> {
        // Pure bookkeeping: a panic under the lock leaves nothing half-done that matters.
        self.leadership.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A follower fetched a partition this broker should lead from `fetch_offset` (its log
    /// end), believing in `leader_epoch`: moves the high watermark and lets the follower
    /// rejoin the ISR when it caught up (docs/cluster.md, "Replication").
    pub fn on_replica_fetch(
        self: &Arc<Self>,
        topic: &str,
        partition: u32,
        follower: NodeId,
        fetch_offset: u64,
        leader_epoch: u32,
        last_epoch: Option<u32>,
    ) -> Result<Option<Diverging>, BrokerError> {
        self.check_leader(topic, partition)?;
        let Some(c) = self.cluster() else {
            return Err(BrokerError::InvalidArgument(
                "this broker is not in a cluster".into(),
            ));
        };
        let m = Arc::clone(&c.metadata().borrow());
        let Some(state) = m.partition(topic, partition) else {
            return Err(BrokerError::TopicNotFound(topic.to_string()));
        };
        if state.leader_epoch != leader_epoch {
            return Err(BrokerError::StaleLeaderEpoch {
                topic: topic.to_string(),
                partition,
                current: state.leader_epoch,
                asked: leader_epoch,
            });
        }
        if !state.replicas.contains(&follower) {
            return Err(BrokerError::InvalidArgument(format!(
                "broker {follower} holds no replica of topic {topic:?} partition {partition}"
            )));
        }
        let log = Arc::clone(&self.topics.get(topic)?.partition(partition)?.log);
        let b = log.bounds();
        if let Some(d) = log.diverging(fetch_offset, last_epoch) {
            return Ok(Some(d));
        }
        let effect = self.leadership().on_fetch(
            topic,
            partition,
            state,
            c.node_id(),
            follower,
            fetch_offset,
            b.log_end,
            b.latest,
            Instant::now(),
        );
        if let Some(hw) = effect.high_watermark {
            log.raise_high_watermark(hw);
        }
        if let Some(cmd) = effect.propose {
            self.propose_isr(topic, partition, cmd);
        }
        Ok(None)
    }

    /// Sends an ISR change of a led partition to the controller, in the background.
    fn propose_isr(self: &Arc<Self>, topic: &str, partition: u32, cmd: Command) {
        let Some(c) = self.cluster().cloned() else {
            return;
        };
        let this = Arc::clone(self);
        let topic = topic.to_string();
        tokio::spawn(async move {
            tracing::info!(topic = %topic, partition, change = ?cmd, "proposing an ISR change");
            match c.propose(cmd).await {
                Ok(Outcome::Done) => {}
                Ok(other) => {
                    tracing::debug!(topic = %topic, partition, outcome = ?other, "ISR change refused")
                }
                Err(e) => {
                    tracing::warn!(topic = %topic, partition, error = %e, "ISR change failed")
                }
            }
            this.leadership().proposed(&topic, partition);
        });
    }

    /// Every half `--replica-lag-max-ms` (as Kafka), drops from the ISR of each partition
    /// led here the followers that have not caught up for that long.
    fn spawn_isr_checks(self: &Arc<Self>) {
        let Some(c) = self.cluster().cloned() else {
            return;
        };
        let this = Arc::clone(self);
        let lag_max = self.replica_lag_max;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lag_max / 2);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let m = Arc::clone(&c.metadata().borrow());
                let me = c.node_id();
                let now = Instant::now();
                let changes: Vec<(String, u32, Command)> = {
                    let mut leadership = this.leadership();
                    m.partitions()
                        .filter(|(_, _, p)| p.leader == Some(me) && p.isr.len() > 1)
                        .filter_map(|(name, i, p)| {
                            leadership
                                .shrink(name, i, p, me, lag_max, now)
                                .map(|cmd| (name.clone(), i, cmd))
                        })
                        .collect()
                };
                for (topic, partition, cmd) in changes {
                    this.propose_isr(&topic, partition, cmd);
                }
            }
        });
    }

    /// Deletes a topic's local data and what groups committed on it (blocking).
    fn delete_local(&self, name: &str) -> Result<(), BrokerError> {
        let id = self.topics.delete(name)?;
        metrics::global().forget_topic(name);
        self.groups.forget_topic(name, id)
    }

    pub async fn create_topic(
        self: &Arc<Self>,
        name: &str,
        new: NewTopic,
    ) -> Result<TopicView, BrokerError> {
        let name = TopicName::new(name)?;
        check_not_internal(name.as_str(), "created by clients")?;
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
    /// leaders only; followers fetch from them (docs/cluster.md). Returns the leader epoch
    /// (`None` standalone, or for a topic the metadata does not know).
    pub fn check_leader(&self, topic: &str, partition: u32) -> Result<Option<u32>, BrokerError> {
        let Some(c) = self.cluster() else {
            return Ok(None);
        };
        let m = c.metadata();
        let m = m.borrow();
        let Some(p) = m.partition(topic, partition) else {
            // Unknown here: the usual not-found errors follow from the local registry.
            return Ok(None);
        };
        if p.leader == Some(c.node_id()) {
            return Ok(Some(p.leader_epoch));
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

    /// Cluster mode: this broker's node id (`None` standalone).
    pub fn node_id(&self) -> Option<NodeId> {
        self.cluster().map(|c| c.node_id())
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
        check_not_internal(name, "deleted")?;
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
            let local = crate::log::layout::allocate_producer_id(&this.store)?;
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
    /// partitions). Nothing is written if any batch is invalid. Refused with
    /// [`BrokerError::Busy`] when the produce budget is spent.
    pub async fn produce(
        &self,
        topic: &str,
        batches: Vec<(u32, Bytes)>,
        acks: Acks,
    ) -> Result<Vec<(u32, Appended)>, BrokerError> {
        self.submit(topic, batches, acks, Admission::Refuse)
            .await?
            .await
    }

    /// Takes `bytes` of the produce budget, held until the returned permit is dropped. A
    /// request larger than the whole budget takes all of it.
    async fn admit(
        &self,
        bytes: usize,
        admission: Admission,
    ) -> Result<OwnedSemaphorePermit, BrokerError> {
        let want = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.produce_budget_bytes);
        let budget = Arc::clone(&self.produce_budget);
        match admission {
            Admission::Wait => budget
                .acquire_many_owned(want)
                .await
                .map_err(|_| BrokerError::ShuttingDown),
            Admission::Refuse => budget.try_acquire_many_owned(want).map_err(|e| match e {
                TryAcquireError::Closed => BrokerError::ShuttingDown,
                TryAcquireError::NoPermits => BrokerError::Busy(format!(
                    "{} bytes of produce requests are waiting to be written (--max-produce-bytes-in-flight)",
                    self.produce_budget_bytes
                )),
            }),
        }
    }

    /// Validates every batch and queues each on its partition's appender, in order; returns
    /// a future of where they landed. Requests submitted one after another are appended in
    /// that order (the pipelined produce stream relies on it).
    ///
    /// With [`Acks::All`] in cluster mode the future also waits until every in-sync replica
    /// has the batches (the high watermark passed them), for at most [`MAX_REPLICATION_WAIT`].
    ///
    /// The batches hold part of the produce budget (`--max-produce-bytes-in-flight`) until
    /// they are written; `admission` says what happens when it is spent.
    pub async fn submit(
        &self,
        topic: &str,
        batches: Vec<(u32, Bytes)>,
        acks: Acks,
        admission: Admission,
    ) -> Result<impl Future<Output = Result<Vec<(u32, Appended)>, BrokerError>> + use<>, BrokerError>
    {
        check_not_internal(topic, "written to by clients")?;
        let bytes: usize = batches.iter().map(|(_, b)| b.len()).sum();
        let permit = self.admit(bytes, admission).await?;
        let appended = self.submit_any(topic, batches, acks).await?;
        let topic = topic.to_string();
        Ok(async move {
            let appended = appended.await;
            // Written (or failed): the bytes are no longer held for the request.
            drop(permit);
            let appended = appended?;
            let records: u64 = appended
                .iter()
                .map(|(_, a)| u64::from(a.record_count))
                .sum();
            metrics::global().produced(&topic, records, bytes as u64);
            Ok(appended)
        })
    }

    /// Appends to any topic, the broker's own included (group offsets).
    async fn append(
        &self,
        topic: &str,
        batches: Vec<(u32, Bytes)>,
        acks: Acks,
    ) -> Result<Vec<(u32, Appended)>, BrokerError> {
        self.submit_any(topic, batches, acks).await?.await
    }

    async fn submit_any(
        &self,
        topic: &str,
        batches: Vec<(u32, Bytes)>,
        acks: Acks,
    ) -> Result<impl Future<Output = Result<Vec<(u32, Appended)>, BrokerError>> + use<>, BrokerError>
    {
        let t = self.topics.get(topic)?;
        for (partition, _) in &batches {
            if let Some(epoch) = self.check_leader(topic, *partition)? {
                // The first append of a new leader records where its epoch starts.
                let log = Arc::clone(&t.partition(*partition)?.log);
                if log.latest_epoch() < Some(epoch) {
                    let name = topic.to_string();
                    let p = *partition;
                    blocking(move || {
                        log.ensure_epoch(epoch)
                            .map_err(|e| e.in_partition(&name, p))
                    })
                    .await?;
                }
            }
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
                .map_err(|e| e.in_partition(topic, partition))?;
            queued.push((partition, reply));
        }
        let name = t.meta.name.clone();
        let replicated = match acks {
            Acks::All => self.cluster().cloned(),
            Acks::Leader => None,
        };
        Ok(async move {
            let mut out = Vec::with_capacity(queued.len());
            for (partition, reply) in queued {
                let a = reply.await.map_err(|e| e.in_partition(&name, partition))?;
                out.push((partition, a));
            }
            if let Some(cluster) = replicated {
                let deadline = tokio::time::Instant::now() + MAX_REPLICATION_WAIT;
                for (partition, a) in &out {
                    let end = a.base_offset + u64::from(a.record_count);
                    let log = &t.partition(*partition)?.log;
                    await_replicated(&cluster, &name, *partition, log, end, deadline).await?;
                }
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

    /// Reads batches from one partition at `offset`, up to `max_bytes`: below the high
    /// watermark for consumers, up to the log end for a follower.
    pub async fn read(
        &self,
        topic: &Arc<Topic>,
        partition: u32,
        offset: u64,
        max_bytes: usize,
        upto: ReadUpTo,
    ) -> Result<ReadResult, BrokerError> {
        self.check_leader(&topic.meta.name, partition)?;
        let log = Arc::clone(&topic.partition(partition)?.log);
        let name = topic.meta.name.clone();
        blocking(move || {
            log.read_from(offset, max_bytes, upto)
                .map_err(|e| e.in_partition(&name, partition))
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
                        .map_err(|e| e.in_partition(&name, partition))
                })
                .await?;
                Ok((off, bounds))
            }
        }
    }

    // ---- consumer groups ------------------------------------------------------------------

    /// Join, heartbeat or leave a group (in memory: no blocking work).
    pub fn group_heartbeat(&self, args: HeartbeatArgs) -> Result<Option<Heartbeat>, BrokerError> {
        self.check_coordinator(&args.group)?;
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
        if self.cluster().is_some() {
            return self
                .commit_replicated(&group, &member_id, member_epoch, offsets)
                .await;
        }
        let this = Arc::clone(self);
        blocking(move || {
            this.groups
                .commit(&group, &member_id, member_epoch, offsets, &this.topics)
        })
        .await
    }

    pub async fn fetch_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Vec<CommittedView>, BrokerError> {
        self.check_coordinator(group)?;
        let t = self.topics.get(topic)?;
        let all: Vec<u32> = match partitions.is_empty() {
            true => (0..t.meta.config.partitions).collect(),
            false => partitions.to_vec(),
        };
        // Unknown partitions are reported by the coordinator below.
        let known: Vec<u32> = all
            .iter()
            .copied()
            .filter(|&p| t.partition(p).is_ok())
            .collect();
        let bounds = self.partition_bounds(topic, &known).await?;
        self.groups
            .fetch_offsets(group, topic, &all, &self.topics, &|p| {
                Ok(bounds.get(&p).copied().unwrap_or((0, 0)))
            })
    }

    pub fn list_groups(&self) -> Vec<GroupSummary> {
        self.groups.list()
    }

    pub async fn describe_group(&self, group: &str) -> Result<GroupView, BrokerError> {
        self.check_coordinator(group)?;
        let mut ends: BTreeMap<(String, u32), u64> = BTreeMap::new();
        for name in self.groups.topics_of(group)? {
            let Ok(t) = self.topics.get(&name) else {
                continue;
            };
            let all: Vec<u32> = (0..t.meta.config.partitions).collect();
            for (p, (_, latest)) in self.partition_bounds(&name, &all).await? {
                ends.insert((name.clone(), p), latest);
            }
        }
        self.groups
            .describe(group, &self.topics, std::time::Instant::now(), &|t, p| {
                ends.get(&(t.to_string(), p)).copied()
            })
    }

    pub async fn reset_group(
        self: &Arc<Self>,
        group: String,
        topic: String,
        to: ResetTo,
    ) -> Result<Vec<(u32, u64)>, BrokerError> {
        if self.cluster().is_some() {
            return self.reset_replicated(&group, &topic, to).await;
        }
        let this = Arc::clone(self);
        blocking(move || this.groups.reset(&group, &topic, to, &this.topics)).await
    }

    pub async fn delete_group(self: &Arc<Self>, group: String) -> Result<(), BrokerError> {
        if self.cluster().is_some() {
            return self.delete_replicated(&group).await;
        }
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

    /// The largest record accepted (`--max-record-bytes`).
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
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
        self.check_pipelines_here()?;
        self.pipelines.create(&self.deps(), def, start).await
    }

    /// Pipelines append to their destination partitions directly, which only a standalone
    /// broker may do: in a cluster only a partition's leader appends, and a pipeline's
    /// source and destination partitions may be led by different brokers.
    fn check_pipelines_here(&self) -> Result<(), BrokerError> {
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

    /// One retention pass over every partition (blocking).
    pub fn enforce_retention(&self) {
        self.topics.enforce_retention();
    }
}
