//! The topic registry: name → topic (settings + one log and appender per partition).
//! Creation, deletion and start-up recovery of topics live here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use weir_common::TopicName;
use weir_common::limits::MAX_PARTITIONS;

use crate::error::BrokerError;
use crate::log::PartitionLog;
use crate::log::appender::Appender;
use crate::storage::Store;
use crate::types::{PartitionKey, SegmentMeta, TopicConfig, TopicId, TopicMeta, now_ms};

/// One partition: its log (reads, bounds) and its single writer.
pub struct Partition {
    pub log: Arc<PartitionLog>,
    pub appender: Appender,
}

pub struct Topic {
    pub meta: TopicMeta,
    pub partitions: Vec<Partition>,
}

impl Topic {
    pub fn partition(&self, partition: u32) -> Result<&Partition, BrokerError> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| BrokerError::PartitionNotFound {
                topic: self.meta.name.clone(),
                partition,
                partitions: self.meta.config.partitions,
            })
    }
}

pub struct TopicRegistry {
    store: Store,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises create/delete (and guards the next topic id).
    admin: Mutex<u32>,
}

fn open_topic(
    store: &Store,
    meta: TopicMeta,
    mut segments: Vec<Vec<SegmentMeta>>,
) -> Result<Topic, BrokerError> {
    let partitions = (0..meta.config.partitions)
        .map(|p| {
            let key = PartitionKey {
                topic: meta.id,
                partition: p,
            };
            let segs = std::mem::take(&mut segments[p as usize]);
            let producers = store.load_producers(key)?;
            let epochs = store.load_epochs(key)?;
            let log = Arc::new(PartitionLog::new(
                store.clone(),
                key,
                meta.config.clone(),
                segs,
                producers,
                epochs,
            ));
            let appender = Appender::spawn(Arc::clone(&log));
            Ok(Partition { log, appender })
        })
        .collect::<Result<_, BrokerError>>()?;
    Ok(Topic { meta, partitions })
}

impl TopicRegistry {
    /// Loads every topic and its segments from the store. Must run inside the tokio runtime
    /// (it starts the appender tasks).
    pub fn recover(store: Store) -> Result<Self, BrokerError> {
        let next_id = store.next_topic_id()?;
        let mut topics = BTreeMap::new();
        for meta in store.load_topics()? {
            let mut segments: Vec<Vec<SegmentMeta>> =
                vec![Vec::new(); meta.config.partitions as usize];
            for (p, seg) in store.load_segments(meta.id)? {
                if let Some(v) = segments.get_mut(p as usize) {
                    v.push(seg);
                }
            }
            if let Some(p) = segments.iter().position(Vec::is_empty) {
                return Err(BrokerError::Storage(format!(
                    "topic {:?} partition {p} has no segment metadata",
                    meta.name
                )));
            }
            let latest: Vec<u64> = segments
                .iter()
                .map(|s| s.last().map_or(0, |s| s.next_offset))
                .collect();
            tracing::info!(topic = %meta.name, partitions = meta.config.partitions, ?latest, "recovered topic");
            topics.insert(
                meta.name.clone(),
                Arc::new(open_topic(&store, meta, segments)?),
            );
        }
        Ok(Self {
            store,
            topics: RwLock::new(topics),
            admin: Mutex::new(next_id),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        self.read()
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::TopicNotFound(name.to_string()))
    }

    pub fn list(&self) -> Vec<Arc<Topic>> {
        self.read().values().cloned().collect()
    }

    /// Creates a topic (blocking: one RocksDB write). Must run inside the tokio runtime.
    pub fn create(&self, name: TopicName, config: TopicConfig) -> Result<Arc<Topic>, BrokerError> {
        self.create_as(name, config, false)
    }

    /// Creates a topic, marked as a cluster topic's local copy when `replica`.
    pub fn create_as(
        &self,
        name: TopicName,
        config: TopicConfig,
        replica: bool,
    ) -> Result<Arc<Topic>, BrokerError> {
        debug_assert!((1..=MAX_PARTITIONS).contains(&config.partitions));
        let mut next_id = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        if self.read().contains_key(name.as_str()) {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        if *next_id == u32::MAX {
            return Err(BrokerError::InvalidArgument(
                "topic ids are exhausted".into(),
            ));
        }
        let now = now_ms();
        let meta = TopicMeta {
            id: *next_id,
            name: name.to_string(),
            config,
            created_ms: now,
            replica,
        };
        let first = SegmentMeta::empty_at(0, now, i64::MIN);
        self.store.create_topic(&meta, &first)?;
        *next_id += 1;
        let segments = vec![vec![first]; meta.config.partitions as usize];
        let topic = Arc::new(open_topic(&self.store, meta, segments)?);
        self.write().insert(name.to_string(), Arc::clone(&topic));
        tracing::info!(topic = %name, partitions = topic.meta.config.partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic and its data (blocking); returns its id. Subscriptions on it end.
    pub fn delete(&self, name: &str) -> Result<TopicId, BrokerError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self.get(name)?;
        // Close first: no append can land after the range delete below.
        for p in &topic.partitions {
            p.log.close();
        }
        self.store.delete_topic(&topic.meta)?;
        self.write().remove(name);
        tracing::info!(topic = %name, "deleted topic");
        Ok(topic.meta.id)
    }

    /// Applies retention to every partition of every topic (blocking).
    pub fn enforce_retention(&self) {
        let now = now_ms();
        for topic in self.list() {
            for p in &topic.partitions {
                if let Err(e) = p.log.enforce_retention(now) {
                    tracing::warn!(topic = %topic.meta.name, partition = p.log.key().partition, error = %e, "retention failed");
                }
            }
        }
    }
}
