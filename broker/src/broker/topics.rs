//! Topics through the facade: create (through the quorum in a cluster, then waiting for the
//! local copy), delete, list, describe; `reconcile_topics` keeps local copies in line with the
//! cluster metadata.

use std::sync::Arc;

use weir_common::TopicName;
use weir_common::limits::{MAX_PARTITIONS, MIN_SEGMENT_BYTES};

use super::Broker;
use crate::blocking::blocking;
use crate::cluster::state::{Command, Metadata, Outcome, PartitionState};
use crate::config::TopicDefaults;
use crate::error::BrokerError;
use crate::groups::offsets::INTERNAL_PREFIX;
use crate::log::Bounds;
use crate::metrics;
use crate::topics::Topic;
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
    /// In-sync replicas an `acks=all` produce needs (default 1; at most the replication
    /// factor).
    pub min_insync_replicas: Option<u32>,
}

/// A topic's name and settings (what creating one answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    pub name: String,
    pub config: TopicConfig,
}

/// How long creating a topic in cluster mode waits for this broker's own copy.
pub(super) const LOCAL_TOPIC_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) const LOCAL_TOPIC_POLL: std::time::Duration = std::time::Duration::from_millis(5);

pub(super) fn resolve_config(t: &NewTopic, d: &TopicDefaults) -> Result<TopicConfig, BrokerError> {
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
    let rf = t.replication_factor.unwrap_or(1);
    let min_insync_replicas = t.min_insync_replicas.unwrap_or(1);
    if min_insync_replicas == 0 || min_insync_replicas > rf {
        return invalid(format!(
            "min-insync-replicas must be between 1 and the replication factor ({rf}), got {min_insync_replicas}"
        ));
    }
    Ok(TopicConfig {
        partitions: t.partitions,
        retention_ms,
        retention_bytes,
        segment_bytes,
        segment_ms,
        min_insync_replicas,
    })
}

/// Topics named `__...` are the broker's own (`__consumer_offsets`).
pub(super) fn check_not_internal(topic: &str, what: &str) -> Result<(), BrokerError> {
    if topic.starts_with(INTERNAL_PREFIX) {
        return Err(BrokerError::InvalidArgument(format!(
            "topic {topic:?} is internal to the broker (names starting with {INTERNAL_PREFIX:?} are reserved); it cannot be {what}"
        )));
    }
    Ok(())
}

impl Broker {
    pub(super) fn reconcile_topics(&self, m: &Metadata) {
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
    pub(super) fn delete_local(&self, name: &str) -> Result<(), BrokerError> {
        let id = self.topics.delete(name)?;
        metrics::global().forget_topic(name);
        self.groups.forget_topic(name, id)
    }

    /// What creating `name` with `new` would refuse, without creating it (Kafka's
    /// `validate_only`): the name, the settings against the defaults and limits, and on a
    /// standalone broker the replication factor. Whether the name is taken, and in a cluster
    /// whether there are enough brokers, is known only when it is proposed.
    pub fn check_new_topic(&self, name: &str, new: &NewTopic) -> Result<(), BrokerError> {
        let name = TopicName::new(name)?;
        check_not_internal(name.as_str(), "created by clients")?;
        resolve_config(new, &self.defaults)?;
        let rf = new.replication_factor.unwrap_or(1);
        if self.cluster().is_none() && rf != 1 {
            return Err(BrokerError::InvalidArgument(format!(
                "replication factor {rf} needs a cluster of at least {rf} brokers; this broker runs alone"
            )));
        }
        if self.topics.get(name.as_str()).is_ok() {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        Ok(())
    }

    /// The settings a topic gets when its creator leaves them out (`--default-*` flags).
    pub fn topic_defaults(&self) -> &TopicDefaults {
        &self.defaults
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
    pub(super) async fn await_metadata(&self, done: impl Fn(&Metadata, &Self) -> bool) {
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

    /// Every topic and every view (as a topic reading its source), sorted by name.
    pub fn list_topics_and_views(&self) -> Vec<Arc<Topic>> {
        let mut all = self.topics.list();
        all.extend(
            self.topics
                .views()
                .iter()
                .filter_map(|v| self.topics.get(&v.name).ok()),
        );
        all.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        all
    }

    /// Cluster mode: where each partition of `topic` lives, as this broker's metadata says
    /// (`None` standalone, or for a topic the metadata does not know).
    pub fn placement(&self, topic: &str) -> Option<Vec<PartitionState>> {
        let m = self.cluster()?.metadata();
        let m = m.borrow();
        m.topics.get(topic).map(|t| t.partitions.clone())
    }

    /// A topic and the bounds of each of its partitions.
    /// A topic (or view) and the bounds of each of its partitions (a view's: its source's).
    pub fn describe_topic(&self, name: &str) -> Result<(Arc<Topic>, Vec<Bounds>), BrokerError> {
        let topic = self.topics.get(name)?;
        let bounds = (0..topic.meta.config.partitions)
            .map(|p| Ok(topic.partition(p)?.log.bounds()))
            .collect::<Result<_, BrokerError>>()?;
        Ok((topic, bounds))
    }

    pub async fn delete_topic(self: &Arc<Self>, name: &str) -> Result<(), BrokerError> {
        check_not_internal(name, "deleted")?;
        if let Some(cluster) = self.cluster() {
            let cmd = Command::DeleteTopic {
                name: name.to_string(),
                at_ms: crate::types::now_ms(),
            };
            return match cluster.propose(cmd).await? {
                Outcome::Done => {
                    self.await_metadata(|m, b| {
                        !m.topics.contains_key(name) && b.topics.get(name).is_err()
                    })
                    .await;
                    Ok(())
                }
                Outcome::TopicNotFound => Err(self.topics.missing_topic(name)),
                Outcome::InUseByViews { views } => Err(BrokerError::TopicHasViews {
                    topic: name.to_string(),
                    views,
                }),
                other => Err(BrokerError::ClusterUnavailable(format!("{other:?}"))),
            };
        }
        let this = Arc::clone(self);
        let name = name.to_string();
        blocking(move || this.delete_local(&name)).await
    }
}
