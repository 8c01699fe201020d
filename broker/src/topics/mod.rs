//! The topic registry: name → topic (settings + one log and appender per partition), and
//! the views over topics ([`views`]). Creation, deletion and start-up recovery of topics
//! live here, and so does their storage: `TopicMeta` JSON under `topic/NAME` and the next
//! topic id, in [`Cf::Meta`].

pub mod views;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;
use weir_codec::keys::{NEXT_TOPIC_ID_KEY, TOPIC_META_PREFIX, topic_meta_key};
use weir_common::TopicName;
use weir_common::limits::MAX_PARTITIONS;

use self::views::{View, ViewDef};
use crate::error::BrokerError;
use crate::log::appender::Appender;
use crate::log::{Bounds, PartitionLog, layout};
use crate::storage::{Cf, Durability, StorageError, Store};
use crate::types::{
    EpochStart, PartitionKey, SegmentMeta, TopicConfig, TopicId, TopicMeta, now_ms,
};

/// One partition: its log (reads, bounds) and its single writer.
pub struct Partition {
    pub log: Arc<PartitionLog>,
    pub appender: Appender,
}

pub struct Topic {
    /// A view's carries the view's name and id with its source's settings.
    pub meta: TopicMeta,
    /// A view's are empty: [`Topic::partition`] answers with its source's.
    pub partitions: Vec<Partition>,
    pub view: Option<ViewOf>,
}

/// What a view reads: its definition (and chains) and its source topic.
pub struct ViewOf {
    pub view: Arc<View>,
    pub source: Arc<Topic>,
}

impl Topic {
    /// A partition: a view's is its source's (read through the view's chain by the facade;
    /// never appended to).
    pub fn partition(&self, partition: u32) -> Result<&Partition, BrokerError> {
        let partitions = match &self.view {
            Some(v) => &v.source.partitions,
            None => &self.partitions,
        };
        partitions
            .get(partition as usize)
            .ok_or_else(|| BrokerError::PartitionNotFound {
                topic: self.meta.name.clone(),
                partition,
                partitions: self.meta.config.partitions,
            })
    }

    /// The topic whose log this one reads: its own name, or a view's source.
    pub fn source_name(&self) -> &str {
        match &self.view {
            Some(v) => &v.source.meta.name,
            None => &self.meta.name,
        }
    }

    pub fn is_view(&self) -> bool {
        self.view.is_some()
    }

    /// A partition's bounds now; [`BrokerError::TopicNotFound`] once the topic was deleted.
    pub fn bounds(&self, partition: u32) -> Result<Bounds, BrokerError> {
        let log = &self.partition(partition)?.log;
        if log.is_closed() {
            return Err(BrokerError::TopicNotFound(self.source_name().to_string()));
        }
        Ok(log.bounds())
    }

    /// The error for a read of `partition` at `offset` outside `bounds`.
    pub fn out_of_range(&self, partition: u32, offset: u64, bounds: Bounds) -> BrokerError {
        BrokerError::OffsetOutOfRange {
            topic: self.meta.name.clone(),
            partition,
            offset,
            earliest: bounds.earliest,
            latest: bounds.log_end,
        }
    }

    /// A partition's leader-epoch history, oldest first.
    pub fn epochs(&self, partition: u32) -> Result<Vec<EpochStart>, BrokerError> {
        Ok(self.partition(partition)?.log.epochs())
    }

    /// A partition's bounds as they change (it closes when the topic is deleted).
    pub fn watch(&self, partition: u32) -> Result<watch::Receiver<Bounds>, BrokerError> {
        Ok(self.partition(partition)?.log.watch())
    }
}

pub struct TopicRegistry {
    store: Store,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    views: RwLock<BTreeMap<String, Arc<View>>>,
    /// Serialises create/delete (and guards the next topic id).
    admin: Mutex<u32>,
    /// The high watermarks last checkpointed (a checkpoint that would change nothing is
    /// skipped).
    checkpointed: Mutex<Vec<(PartitionKey, u64)>>,
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
            let producers = layout::load_producers(store, key)?;
            let epochs = layout::load_epochs(store, key)?;
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
    Ok(Topic {
        meta,
        partitions,
        view: None,
    })
}

impl TopicRegistry {
    /// Loads every topic and its segments from the store. Must run inside the tokio runtime
    /// (it starts the appender tasks).
    pub fn recover(store: Store) -> Result<Self, BrokerError> {
        let next_id = next_topic_id(&store)?;
        let high_watermarks = layout::load_high_watermarks(&store)?;
        let mut topics = BTreeMap::new();
        for meta in load_topics(&store)? {
            let mut segments: Vec<Vec<SegmentMeta>> =
                vec![Vec::new(); meta.config.partitions as usize];
            for (p, seg) in layout::load_segments(&store, meta.id)? {
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
            let replica = meta.replica;
            let topic = open_topic(&store, meta, segments)?;
            if replica {
                for p in &topic.partitions {
                    let (key, _) = p.log.high_watermark();
                    p.log
                        .recover_high_watermark(high_watermarks.get(&key).copied());
                }
            }
            topics.insert(topic.meta.name.clone(), Arc::new(topic));
        }
        let views = views::load_views(&store)?
            .into_iter()
            .map(|def| (def.name.clone(), Arc::new(View::new(def))))
            .collect();
        Ok(Self {
            store,
            topics: RwLock::new(topics),
            views: RwLock::new(views),
            admin: Mutex::new(next_id),
            checkpointed: Mutex::new(Vec::new()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read_views(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<View>>> {
        self.views.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_views(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<View>>> {
        self.views.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A topic, or a view (reading its source; a view whose source has no copy here is not
    /// found).
    pub fn get(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        if let Some(t) = self.read().get(name) {
            return Ok(Arc::clone(t));
        }
        let view = self
            .read_views()
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::TopicNotFound(name.to_string()))?;
        let source = self
            .read()
            .get(&view.def.source)
            .cloned()
            .ok_or_else(|| BrokerError::TopicNotFound(name.to_string()))?;
        Ok(Arc::new(Topic {
            meta: TopicMeta {
                id: view.def.id,
                name: view.def.name.clone(),
                config: source.meta.config.clone(),
                created_ms: view.def.created_ms,
                replica: source.meta.replica,
            },
            partitions: Vec::new(),
            view: Some(ViewOf { view, source }),
        }))
    }

    /// The error for deleting `name`, which is no topic: it may be a view.
    pub fn missing_topic(&self, name: &str) -> BrokerError {
        if self.read_views().contains_key(name) {
            return BrokerError::InvalidArgument(format!(
                "{name:?} is a view, not a topic: delete it with `weir view delete {name}`"
            ));
        }
        BrokerError::TopicNotFound(name.to_string())
    }

    /// A topic, never a view (`why` says what needs a topic).
    pub fn get_topic(&self, name: &str, why: &str) -> Result<Arc<Topic>, BrokerError> {
        if let Some(t) = self.read().get(name) {
            return Ok(Arc::clone(t));
        }
        if self.read_views().contains_key(name) {
            return Err(views::not_a_topic(name, why));
        }
        Err(BrokerError::TopicNotFound(name.to_string()))
    }

    /// Every topic (views are not topics: see [`TopicRegistry::views`]).
    pub fn list(&self) -> Vec<Arc<Topic>> {
        self.read().values().cloned().collect()
    }

    /// Every view's definition, by name.
    pub fn views(&self) -> Vec<ViewDef> {
        self.read_views().values().map(|v| v.def.clone()).collect()
    }

    /// Whether a topic or a view has this name.
    pub fn name_taken(&self, name: &str) -> bool {
        self.read().contains_key(name) || self.read_views().contains_key(name)
    }

    /// The views reading `topic`.
    pub fn views_of(&self, topic: &str) -> Vec<String> {
        self.read_views()
            .values()
            .filter(|v| v.def.source == topic)
            .map(|v| v.def.name.clone())
            .collect()
    }

    /// Standalone: creates a view (blocking: one fsynced write); it takes the next topic id.
    /// The name must be free and the source a topic.
    pub fn create_view(&self, mut def: ViewDef) -> Result<ViewDef, BrokerError> {
        let mut next_id = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        if self.name_taken(&def.name) {
            return Err(BrokerError::TopicExists(def.name));
        }
        if !self.read().contains_key(&def.source) {
            return Err(source_missing(
                &def.source,
                self.read_views().contains_key(&def.source),
            ));
        }
        if *next_id == u32::MAX {
            return Err(BrokerError::InvalidArgument(
                "topic ids are exhausted".into(),
            ));
        }
        def.id = *next_id;
        views::put_view(&self.store, &def, NEXT_TOPIC_ID_KEY)?;
        *next_id += 1;
        self.write_views()
            .insert(def.name.clone(), Arc::new(View::new(def.clone())));
        tracing::info!(view = %def.name, source = %def.source, "created view");
        Ok(def)
    }

    /// Standalone: deletes a view (blocking); returns its id. Its readers end at their next
    /// read.
    pub fn delete_view(&self, name: &str) -> Result<TopicId, BrokerError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let id = self
            .read_views()
            .get(name)
            .map(|v| v.def.id)
            .ok_or_else(|| BrokerError::ViewNotFound(name.to_string()))?;
        views::delete_view(&self.store, name)?;
        self.write_views().remove(name);
        tracing::info!(view = %name, "deleted view");
        Ok(id)
    }

    /// Cluster mode: the views are the metadata's (a view whose definition did not change
    /// keeps its id and chains).
    pub fn follow_views(&self, defs: &BTreeMap<String, ViewDef>) {
        let mut next_id = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let mut views = self.write_views();
        views.retain(|name, v| defs.get(name).is_some_and(|d| same_view(d, &v.def)));
        for (name, def) in defs {
            if views.contains_key(name) || *next_id == u32::MAX {
                continue;
            }
            let mut def = def.clone();
            def.id = *next_id;
            *next_id += 1;
            views.insert(name.clone(), Arc::new(View::new(def)));
        }
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
        if self.name_taken(name.as_str()) {
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
        create_topic(&self.store, &meta, &first)?;
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
        let topic = self.read().get(name).cloned();
        let Some(topic) = topic else {
            return Err(self.missing_topic(name));
        };
        let views = self.views_of(name);
        if !views.is_empty() && !topic.meta.replica {
            return Err(BrokerError::TopicHasViews {
                topic: name.to_string(),
                views,
            });
        }
        // Close first: no append can land after the range delete below.
        for p in &topic.partitions {
            p.log.close();
        }
        delete_topic(&self.store, &topic.meta)?;
        self.write().remove(name);
        tracing::info!(topic = %name, "deleted topic");
        Ok(topic.meta.id)
    }

    /// Cluster mode: writes the high watermark of every local copy of a cluster topic
    /// (blocking), unless nothing moved since the last checkpoint. Recovery starts each
    /// copy's high watermark there ([`PartitionLog::recover_high_watermark`]).
    pub fn checkpoint_high_watermarks(&self) -> Result<(), BrokerError> {
        let entries: Vec<(PartitionKey, u64)> = self
            .list()
            .iter()
            .filter(|t| t.meta.replica)
            .flat_map(|t| t.partitions.iter().map(|p| p.log.high_watermark()))
            .collect();
        let mut last = self.checkpointed.lock().unwrap_or_else(|p| p.into_inner());
        if *last == entries {
            return Ok(());
        }
        layout::put_high_watermarks(&self.store, &entries)?;
        *last = entries;
        Ok(())
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

/// Two definitions of one view that read the same (ids are each member's own).
fn same_view(a: &ViewDef, b: &ViewDef) -> bool {
    a.source == b.source && a.plugins == b.plugins && a.created_ms == b.created_ms
}

/// Why a view cannot read `source`.
fn source_missing(source: &str, is_view: bool) -> BrokerError {
    if is_view {
        BrokerError::InvalidArgument(format!(
            "{source:?} is a view; a view reads a topic (give it the other view's plugins too)"
        ))
    } else {
        BrokerError::TopicNotFound(source.to_string())
    }
}

fn load_topics(store: &Store) -> Result<Vec<TopicMeta>, StorageError> {
    let mut out = Vec::new();
    for item in store.scan_prefix(Cf::Meta, TOPIC_META_PREFIX) {
        let (k, v) = item?;
        let meta: TopicMeta = serde_json::from_slice(&v)
            .map_err(|e| StorageError::corrupt(Cf::Meta, &k, e.to_string()))?;
        out.push(meta);
    }
    Ok(out)
}

fn next_topic_id(store: &Store) -> Result<TopicId, StorageError> {
    match store.get(Cf::Meta, NEXT_TOPIC_ID_KEY)? {
        None => Ok(1),
        Some(v) => {
            let bytes: [u8; 4] = v.as_slice().try_into().map_err(|_| {
                StorageError::corrupt(
                    Cf::Meta,
                    NEXT_TOPIC_ID_KEY,
                    format!("{} bytes, want 4", v.len()),
                )
            })?;
            Ok(u32::from_be_bytes(bytes))
        }
    }
}

/// Persists a new topic and the first (empty) segment of each partition in one write.
fn create_topic(store: &Store, meta: &TopicMeta, first: &SegmentMeta) -> Result<(), StorageError> {
    let mut set = store.write_set();
    let json = serde_json::to_vec(meta).expect("TopicMeta always serialises");
    set.put(Cf::Meta, topic_meta_key(&meta.name), json);
    set.put(Cf::Meta, NEXT_TOPIC_ID_KEY, (meta.id + 1).to_be_bytes());
    layout::put_new_partitions(&mut set, meta.id, meta.config.partitions, first);
    store.write(set, Durability::Configured)
}

/// Removes a topic's metadata and every record, segment and index entry in one write.
fn delete_topic(store: &Store, meta: &TopicMeta) -> Result<(), StorageError> {
    let mut set = store.write_set();
    set.delete(Cf::Meta, topic_meta_key(&meta.name));
    layout::delete_partitions(&mut set, meta.id);
    store.write(set, Durability::Configured)
}

/// Waits until any of these partition bounds watches changes (never, for none: a wait with
/// nothing to watch ends by its own timeout or shutdown).
pub async fn any_changed(watches: &mut [watch::Receiver<Bounds>]) {
    if watches.is_empty() {
        return std::future::pending().await;
    }
    let changed = watches.iter_mut().map(|w| Box::pin(w.changed()));
    let _ = futures::future::select_all(changed).await;
}
