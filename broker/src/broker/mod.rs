//! The broker's domain facade: what every gRPC service calls. Validates requests against the
//! limits, routes them to topics and partitions, and runs blocking work on the blocking pool.
//!
//! One file per concern, each an `impl Broker`: `topics` (create, delete, describe,
//! reconcile local copies), `records` (producer ids, the one append path, reads, offset
//! look-ups), `leadership` (cluster mode: partitions led here, followers' progress, ISR),
//! `groups` and `coordination` (consumer groups standalone and in a cluster), `plugins`
//! (plugins, and pipelines standalone), `cluster_pipelines` (pipelines' workers in a
//! cluster), `views` (views of topics, and reads through their chains), `backup` (a
//! consistent copy of the data dir while serving). This file opens
//! the broker, joins a cluster and owns the background tasks, which stop at
//! [`Broker::stop_background`].

mod advertise;
mod backup;
mod cluster_pipelines;
mod coordination;
mod groups;
mod leadership;
mod plugins;
mod records;
#[cfg(test)]
mod tests;
mod topics;
mod views;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::blocking::blocking;
use crate::cluster::Cluster;
use crate::cluster::controller::handoffs;
use crate::cluster::isr::Leadership;
use crate::cluster::peers::NodeId;
use crate::cluster::state::{Command, Metadata, Outcome};
use crate::config::{BuildInfo, Config, TopicDefaults};
use crate::error::BrokerError;
use crate::groups::GroupCoordinator;
use crate::pipelines::{PipelineEnv, PipelineManager};
use crate::plugins::PluginRegistry;
use crate::security::{Proposed, Proposer, Security};
use crate::storage::Store;
use crate::topics::{Topic, TopicRegistry};

pub use advertise::{KafkaCluster, KafkaMember};
pub use backup::{BACKUP_MANIFEST, BackupReport, DB_DIR};
pub use records::{Acks, Admission, MAX_REPLICATION_WAIT};
pub use topics::{NewTopic, TopicView};

/// How long a controlled shutdown tries to move a member out of every partition before it
/// stops anyway (the controller then fails over what is left, after `--session-timeout-ms`).
pub const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a controlled shutdown waits for the metadata to change before looking again.
const HANDOFF_RECHECK: Duration = Duration::from_millis(200);
/// How long a stopping controller waits for the other members to hold its last changes.
const SHARE_COMMITS_TIMEOUT: Duration = Duration::from_secs(2);

/// The broker: its store, topics, groups, plugins and pipelines, users and ACLs, and (in a
/// cluster) its place in it. Shared as `Arc<Broker>` by the services and background tasks.
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
    replica_fetch_wait: Duration,
    session_timeout: Duration,
    leader_rebalance_interval: Option<Duration>,
    /// Bytes of client produce batches that may be held at once (see [`Broker::produce_queued`]).
    produce_budget: Arc<Semaphore>,
    produce_budget_bytes: u32,
    security: Arc<Security>,
    /// Set by a controlled shutdown: the replica fetchers stop.
    leaving: watch::Sender<bool>,
    /// Cluster mode: the pipeline workers running here.
    cluster_workers: std::sync::Mutex<cluster_pipelines::ClusterWorkers>,
    /// The data directory (`--data-dir`).
    data_dir: std::path::PathBuf,
    /// Set while [`Broker::backup`] runs: one at a time.
    backup_running: Arc<std::sync::atomic::AtomicBool>,
    /// The loops this broker runs for as long as it serves (cluster mode: metadata, ISR
    /// checks, offsets checkpoints, replication, the controller's duty).
    background: std::sync::Mutex<JoinSet<()>>,
}

impl Broker {
    /// Opens the data directory and recovers every topic. Must run inside the tokio runtime.
    pub fn open(config: &Config) -> Result<Arc<Self>, BrokerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            BrokerError::Storage(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let store = Store::open(&config.data_dir.join(DB_DIR), config.fsync.sync_mode())?;
        let topics = Arc::new(TopicRegistry::recover(store.clone())?);
        let groups = GroupCoordinator::recover(store.clone(), &topics)?;
        let plugins = PluginRegistry::recover(store.clone(), config.cluster.is_some())?;
        let deps = PipelineEnv {
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
            replica_fetch_wait: config.replica_fetch_wait,
            session_timeout: config.session_timeout,
            leader_rebalance_interval: config.leader_rebalance_interval,
            produce_budget: Arc::new(Semaphore::new(budget as usize)),
            produce_budget_bytes: budget,
            security,
            leaving: watch::channel(false).0,
            cluster_workers: std::sync::Mutex::default(),
            data_dir: config.data_dir.clone(),
            backup_running: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            background: std::sync::Mutex::new(JoinSet::new()),
        }))
    }

    /// Runs `task` until [`Self::stop_background`].
    fn spawn_background(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.background.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the ones that ended on their own.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Cluster mode, before the broker stops (Kafka's controlled shutdown): stops fetching as
    /// a follower, then proposes that every partition it leads goes to another in-sync
    /// replica and that it leaves every ISR ([`handoffs`]), until the applied metadata shows
    /// it done or [`CONTROLLED_SHUTDOWN_TIMEOUT`] passes. Clients then meet a leader change
    /// (not leader: they refresh and go on) instead of waiting out a failover, and no acks=all
    /// write waits for this broker once it is gone. The broker keeps serving meanwhile. A
    /// controller then waits until the other members hold those changes and tells them they
    /// are committed, so their metadata shows the handover before the next election.
    pub async fn controlled_shutdown(&self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        self.leaving.send_replace(true);
        let me = cluster.node_id();
        let deadline = tokio::time::Instant::now() + CONTROLLED_SHUTDOWN_TIMEOUT;
        let mut metadata = cluster.metadata();
        loop {
            let m = Arc::clone(&metadata.borrow_and_update());
            let moves = handoffs(&m, me);
            if moves.is_empty() {
                tracing::info!(
                    "controlled shutdown: this broker leads no partition and is in no ISR"
                );
                let deadline = tokio::time::Instant::now() + SHARE_COMMITS_TIMEOUT;
                cluster.share_commits_before_leaving(deadline).await;
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    partitions = moves.len(),
                    "controlled shutdown: gave up moving out of these partitions; the controller fails them over"
                );
                return;
            }
            tracing::info!(
                partitions = moves.len(),
                "controlled shutdown: handing over"
            );
            let proposals = moves.into_iter().map(|cmd| cluster.propose(cmd));
            // Done or stale (another change came first): the next look at the metadata decides.
            if let Ok(results) =
                tokio::time::timeout_at(deadline, futures::future::join_all(proposals)).await
            {
                for e in results.into_iter().filter_map(Result::err) {
                    tracing::debug!(error = %e, "controlled shutdown: a change was not made");
                }
            }
            let _ = tokio::time::timeout(HANDOFF_RECHECK, metadata.changed()).await;
        }
    }

    /// Stops every background loop (at shutdown, once no request is served any more); the
    /// tasks drop what they held of the broker.
    pub fn stop_background(&self) {
        self.stop_cluster_workers();
        self.background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
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
        self.spawn_background(async move {
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
        self.follow_plugins(&cluster);
        self.spawn_pipeline_workers(&cluster);
        self.spawn_checkpoints();
        // The metadata once applied here: local copies exist for every topic it names, so
        // the replica fetchers that follow it find the partitions they are to fetch.
        let (applied, applied_rx) = watch::channel(Arc::new(Metadata::default()));
        self.spawn_background(crate::cluster::replica::supervise(
            Arc::clone(&self.topics),
            cluster.node_id(),
            self.replica_fetch_wait,
            applied_rx,
            self.leaving.subscribe(),
        ));
        self.spawn_isr_checks();
        self.spawn_high_watermark_checkpoints();
        self.spawn_background(crate::cluster::controller::run(
            Arc::clone(&cluster),
            self.session_timeout,
            self.leader_rebalance_interval,
        ));
        let this = Arc::clone(self);
        self.spawn_background(async move {
            loop {
                let m = Arc::clone(&metadata.borrow_and_update());
                let b = Arc::clone(&this);
                let done = Arc::clone(&m);
                if let Err(e) = blocking(move || {
                    b.reconcile(&m);
                    Ok(())
                })
                .await
                {
                    tracing::error!(error = %e, "applying cluster metadata failed");
                }
                applied.send_replace(done);
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
        self.topics.follow_views(&m.views);
        self.follow_leadership(m);
        self.follow_coordination(m);
    }

    /// Cluster mode: this broker's node id (`None` standalone).
    pub fn node_id(&self) -> Option<NodeId> {
        self.cluster().map(|c| c.node_id())
    }

    /// What this broker was built from.
    pub fn build(&self) -> BuildInfo {
        BuildInfo::CURRENT
    }

    /// The largest record accepted (`--max-record-bytes`).
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// One retention pass over every partition (blocking).
    pub fn enforce_retention(&self) {
        self.topics.enforce_retention();
    }
}
