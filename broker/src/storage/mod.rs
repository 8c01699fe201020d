//! RocksDB: column families, key encoding and atomic write batches.
//!
//! Architecture invariant: this is the only module that knows key bytes, value encodings and
//! column families. Callers speak [`PartitionKey`], offsets and [`SegmentMeta`]. Every mutation
//! is one `WriteBatch`: an append writes its record batches, the segment metadata and the time
//! index entries atomically, so a crash can never leave a segment that disagrees with its data.

pub mod keys;
pub mod raft;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use rocksdb::statistics::{StatsLevel, Ticker};
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Direction,
    IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, properties,
};

use crate::groups::Committed;
use crate::log::producers::ProducerState;
use crate::pipelines::{PipelineDef, PipelineProgress};
use crate::plugins::StoredPlugin;
use crate::types::{EpochStart, PartitionKey, SegmentMeta, TopicId, TopicMeta};
use keys::*;

const CF_RECORDS: &str = "records";
const CF_SEGMENTS: &str = "segments";
const CF_TIMEINDEX: &str = "timeindex";
const CF_PRODUCERS: &str = "producers";
const CF_META: &str = "meta";
const CF_OFFSETS: &str = "offsets";
const CF_PLUGINS: &str = "plugins";
const CF_PIPELINES: &str = "pipelines";
/// Cluster mode: the metadata quorum's raft log and state (`raft.rs`).
const CF_RAFT: &str = "raft";
/// Cluster mode: each partition's leader-epoch history (where each leader epoch starts).
const CF_EPOCHS: &str = "epochs";
const COLUMN_FAMILIES: [&str; 10] = [
    CF_RECORDS,
    CF_SEGMENTS,
    CF_TIMEINDEX,
    CF_PRODUCERS,
    CF_META,
    CF_OFFSETS,
    CF_PLUGINS,
    CF_PIPELINES,
    CF_RAFT,
    CF_EPOCHS,
];

/// Memtable size of the records column family: big enough that a burst of produce traffic
/// is absorbed without stalling on flushes.
const RECORDS_WRITE_BUFFER_BYTES: usize = 64 * 1024 * 1024;

/// Most bytes of write-ahead log kept on disk. The small column families (meta, offsets,
/// producers...) rarely fill a memtable, so without a cap their oldest WAL file, and every
/// later one, stays on disk until RocksDB's default cap (4x all memtables, ~4.6 GB here): a
/// broker could hold gigabytes that retention had already dropped. Past the cap RocksDB
/// flushes the column families that pin the oldest WAL file, and deletes it.
const MAX_TOTAL_WAL_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt metadata under key {key:?}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// How appends reach the disk (see `--fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Each write group is written to the WAL (survives a process crash) and fsynced.
    Always,
    /// Written to the WAL; fsynced by a background task every few hundred ms.
    Interval,
    /// Written to the WAL; the OS decides when it reaches the disk.
    Never,
}

/// One atomic append to a partition: record batches, touched segments, time-index entries,
/// the new state of the idempotent producers that wrote and, for a pipeline's output, the
/// pipeline's progress on its source partition.
#[derive(Debug, Default)]
pub struct AppendWrite<'a> {
    pub batches: Vec<(u64, Vec<u8>)>,
    pub segments: Vec<SegmentMeta>,
    pub time_entries: Vec<(i64, u64)>,
    pub producers: Vec<(u64, ProducerState)>,
    pub progress: Option<ProgressPut<'a>>,
}

/// A pipeline's progress on one source partition, to be written with its output.
#[derive(Debug, Clone, Copy)]
pub struct ProgressPut<'a> {
    pub pipeline: &'a str,
    pub partition: u32,
    pub progress: &'a PipelineProgress,
}

/// What cutting a partition's log at `offset` writes (see [`Store::truncate`]).
#[derive(Debug)]
pub struct Truncation<'a> {
    pub offset: u64,
    /// Base offsets of the segments that go whole.
    pub dropped: &'a [u64],
    /// The segment the log now ends in.
    pub last: &'a SegmentMeta,
    pub producers: &'a [(u64, Option<ProducerState>)],
    pub epochs: &'a [EpochStart],
}

/// What [`Store::stats`] reads.
#[derive(Debug, Clone)]
pub struct StoreStats {
    pub column_families: Vec<CfStats>,
    pub running_compactions: u64,
    pub write_stopped: bool,
    /// Fsyncs of the write-ahead log since the store was opened (one per synced write group
    /// with `--fsync always`, one per tick with `interval`).
    pub wal_syncs: u64,
}

/// One column family's sizes.
#[derive(Debug, Clone)]
pub struct CfStats {
    pub name: &'static str,
    pub sst_bytes: u64,
    pub live_data_bytes: u64,
    pub memtable_bytes: u64,
    pub pending_compaction_bytes: u64,
}

/// The broker's database handle. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    sync: SyncMode,
    /// The options the database was opened with: they hold its statistics (tickers only).
    options: Arc<Options>,
}

impl Store {
    pub fn open(path: &Path, sync: SyncMode) -> Result<Self, StorageError> {
        Self::open_with_wal_cap(path, sync, MAX_TOTAL_WAL_BYTES)
    }

    fn open_with_wal_cap(path: &Path, sync: SyncMode, wal_cap: u64) -> Result<Self, StorageError> {
        let mut opts = Options::default();
        opts.set_max_total_wal_size(wal_cap);
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        // Counters only (no timers or histograms, which cost on the write path): how many WAL
        // fsyncs were made is what shows `--fsync` at work.
        opts.enable_statistics();
        opts.set_statistics_level(StatsLevel::ExceptHistogramOrTimers);
        let cfs = COLUMN_FAMILIES.iter().map(|name| {
            let mut cf = Options::default();
            if *name == CF_RECORDS {
                cf.set_write_buffer_size(RECORDS_WRITE_BUFFER_BYTES);
                cf.set_max_write_buffer_number(4);
                // LZ4 blocks although producers may compress batches themselves: LZ4 costs 4%
                // of the broker's CPU while producing, but without it flushes and compactions
                // wrote every byte uncompressed and produce fell from 2.7–3.1 to 1.7–2.3 M
                // rec/s (100-byte records; docs/benchmarks.md). On incompressible batches LZ4
                // gives up fast.
                cf.set_compression_type(DBCompressionType::Lz4);
                let mut block = BlockBasedOptions::default();
                // Values are whole batches, often larger than a block: bigger blocks keep the
                // index small.
                block.set_block_size(64 * 1024);
                cf.set_block_based_table_factory(&block);
            }
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Self {
            db: Arc::new(db),
            sync,
            options: Arc::new(opts),
        })
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created when the database is opened")
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync == SyncMode::Always);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    /// RocksDB's sizes per column family and its background work (for metrics). A property
    /// RocksDB cannot give reads as 0.
    pub fn stats(&self) -> StoreStats {
        let int = |v: Result<Option<u64>, rocksdb::Error>| v.ok().flatten().unwrap_or(0);
        let column_families = COLUMN_FAMILIES
            .iter()
            .map(|&name| {
                let cf = self.cf(name);
                let prop = |p| int(self.db.property_int_value_cf(cf, p));
                CfStats {
                    name,
                    sst_bytes: prop(properties::TOTAL_SST_FILES_SIZE),
                    live_data_bytes: prop(properties::ESTIMATE_LIVE_DATA_SIZE),
                    memtable_bytes: prop(properties::CUR_SIZE_ALL_MEM_TABLES),
                    pending_compaction_bytes: prop(properties::ESTIMATE_PENDING_COMPACTION_BYTES),
                }
            })
            .collect();
        StoreStats {
            column_families,
            running_compactions: int(self
                .db
                .property_int_value(properties::NUM_RUNNING_COMPACTIONS)),
            write_stopped: int(self.db.property_int_value(properties::IS_WRITE_STOPPED)) != 0,
            wal_syncs: self.wal_syncs(),
        }
    }

    /// Fsyncs of the write-ahead log since the store was opened.
    pub fn wal_syncs(&self) -> u64 {
        self.options.get_ticker_count(Ticker::WalFileSynced)
    }

    /// Fsyncs the WAL (for `--fsync interval` and at shutdown).
    pub fn sync_wal(&self) -> Result<(), StorageError> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    // ---- topics ---------------------------------------------------------------------------

    pub fn load_topics(&self) -> Result<Vec<TopicMeta>, StorageError> {
        let cf = self.cf(CF_META);
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            cf,
            IteratorMode::From(TOPIC_META_PREFIX, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(TOPIC_META_PREFIX) {
                break;
            }
            let meta: TopicMeta =
                serde_json::from_slice(&v).map_err(|e| StorageError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    reason: e.to_string(),
                })?;
            out.push(meta);
        }
        Ok(out)
    }

    pub fn next_topic_id(&self) -> Result<TopicId, StorageError> {
        let v = self.db.get_cf(self.cf(CF_META), NEXT_TOPIC_ID_KEY)?;
        match v {
            None => Ok(1),
            Some(v) => {
                let bytes: [u8; 4] =
                    v.as_slice().try_into().map_err(|_| StorageError::Corrupt {
                        key: "next_topic_id".into(),
                        reason: format!("{} bytes, want 4", v.len()),
                    })?;
                Ok(u32::from_be_bytes(bytes))
            }
        }
    }

    /// Persists a new topic and the first (empty) segment of each partition in one write.
    pub fn create_topic(&self, meta: &TopicMeta, first: &SegmentMeta) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        let json = serde_json::to_vec(meta).expect("TopicMeta always serialises");
        wb.put_cf(self.cf(CF_META), topic_meta_key(&meta.name), json);
        wb.put_cf(
            self.cf(CF_META),
            NEXT_TOPIC_ID_KEY,
            (meta.id + 1).to_be_bytes(),
        );
        let segments = self.cf(CF_SEGMENTS);
        for partition in 0..meta.config.partitions {
            let pk = PartitionKey {
                topic: meta.id,
                partition,
            };
            wb.put_cf(
                segments,
                offset_key(pk, first.base_offset),
                encode_segment(first),
            );
        }
        self.write(wb)
    }

    /// Removes a topic's metadata and every record, segment and index entry in one write
    /// (range deletes: constant cost, space reclaimed by compaction).
    pub fn delete_topic(&self, meta: &TopicMeta) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        wb.delete_cf(self.cf(CF_META), topic_meta_key(&meta.name));
        let (start, end) = topic_range(meta.id);
        for cf in [
            CF_RECORDS,
            CF_SEGMENTS,
            CF_TIMEINDEX,
            CF_PRODUCERS,
            CF_EPOCHS,
        ] {
            wb.delete_range_cf(self.cf(cf), start, end);
        }
        self.write(wb)
    }

    /// Every segment of every partition of a topic, in key order (partition, base offset).
    pub fn load_segments(&self, topic: TopicId) -> Result<Vec<(u32, SegmentMeta)>, StorageError> {
        let (start, end) = topic_range(topic);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(end.to_vec());
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_SEGMENTS),
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            let corrupt = |reason: &str| StorageError::Corrupt {
                key: format!("segments/{k:?}"),
                reason: reason.to_string(),
            };
            let (partition, _) = decode_partition(topic, &k).ok_or_else(|| corrupt("bad key"))?;
            let seg = decode_segment(&v).ok_or_else(|| corrupt("bad value"))?;
            out.push((partition, seg));
        }
        Ok(out)
    }

    // ---- partition logs -------------------------------------------------------------------

    /// Appends record batches with their segment and time-index updates atomically.
    pub fn append(&self, pk: PartitionKey, w: &AppendWrite) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        let records = self.cf(CF_RECORDS);
        for (base, batch) in &w.batches {
            wb.put_cf(records, offset_key(pk, *base), batch);
        }
        let segments = self.cf(CF_SEGMENTS);
        for s in &w.segments {
            wb.put_cf(segments, offset_key(pk, s.base_offset), encode_segment(s));
        }
        let index = self.cf(CF_TIMEINDEX);
        for (ts, base) in &w.time_entries {
            wb.put_cf(index, time_key(pk, *ts as u64, *base), []);
        }
        let producers = self.cf(CF_PRODUCERS);
        for (id, state) in &w.producers {
            wb.put_cf(producers, offset_key(pk, *id), encode_producer(state));
        }
        if let Some(p) = w.progress {
            put_progress(&mut wb, self.cf(CF_PIPELINES), p);
        }
        self.write(wb)
    }

    /// Every idempotent producer's state on a partition.
    pub fn load_producers(
        &self,
        pk: PartitionKey,
    ) -> Result<Vec<(u64, ProducerState)>, StorageError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(offset_key(pk, u64::MAX).to_vec());
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_PRODUCERS),
            ro,
            IteratorMode::From(&offset_key(pk, 0), Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            let corrupt = || StorageError::Corrupt {
                key: format!("producers/{k:?}"),
                reason: "bad producer state".into(),
            };
            let id = decode_offset_key(pk, &k).ok_or_else(corrupt)?;
            out.push((id, decode_producer(&v).ok_or_else(corrupt)?));
        }
        Ok(out)
    }

    /// Forgets expired producers of a partition.
    pub fn delete_producers(&self, pk: PartitionKey, ids: &[u64]) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        for id in ids {
            wb.delete_cf(self.cf(CF_PRODUCERS), offset_key(pk, *id));
        }
        self.write(wb)
    }

    /// Reserves the next producer id (never handed out twice, even across crashes: the new
    /// high-water mark is fsynced before the id is returned).
    pub fn allocate_producer_id(&self) -> Result<u64, StorageError> {
        let cf = self.cf(CF_META);
        let next = match self.db.get_cf(cf, NEXT_PRODUCER_ID_KEY)? {
            None => 1,
            Some(v) => {
                u64::from_be_bytes(v.as_slice().try_into().map_err(|_| StorageError::Corrupt {
                    key: "next_producer_id".into(),
                    reason: format!("{} bytes, want 8", v.len()),
                })?)
            }
        };
        let mut wb = WriteBatch::default();
        wb.put_cf(cf, NEXT_PRODUCER_ID_KEY, (next + 1).to_be_bytes());
        self.write_synced(wb)?;
        Ok(next)
    }

    // ---- consumer groups ------------------------------------------------------------------

    /// Every committed offset: (group, partition, offset).
    pub fn load_offsets(&self) -> Result<Vec<(String, PartitionKey, Committed)>, StorageError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_OFFSETS), IteratorMode::Start)
        {
            let (k, v) = item?;
            let corrupt = || StorageError::Corrupt {
                key: format!("offsets/{k:?}"),
                reason: "bad committed offset".into(),
            };
            let (group, pk) = decode_group_offset_key(&k).ok_or_else(corrupt)?;
            out.push((group, pk, decode_committed(&v).ok_or_else(corrupt)?));
        }
        Ok(out)
    }

    /// Writes a group's committed offsets (all or none) and fsyncs them whatever the fsync
    /// policy: a commit, once acknowledged, is never lost.
    pub fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(PartitionKey, Committed)],
    ) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        let cf = self.cf(CF_OFFSETS);
        for (pk, c) in offsets {
            wb.put_cf(cf, group_offset_key(group, *pk), encode_committed(c));
        }
        self.write_synced(wb)
    }

    /// Forgets committed offsets (group deleted, or its topic deleted).
    pub fn delete_offsets(&self, keys: &[(&str, PartitionKey)]) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        let cf = self.cf(CF_OFFSETS);
        for (group, pk) in keys {
            wb.delete_cf(cf, group_offset_key(group, *pk));
        }
        self.write_synced(wb)
    }

    // ---- plugins ----------------------------------------------------------------------------

    /// Every registered plugin module, by name.
    pub fn load_plugins(&self) -> Result<Vec<(String, StoredPlugin)>, StorageError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_PLUGINS), IteratorMode::Start)
        {
            let (k, v) = item?;
            let corrupt = || StorageError::Corrupt {
                key: format!("plugins/{}", String::from_utf8_lossy(&k)),
                reason: "bad plugin record".into(),
            };
            let name = String::from_utf8(k.to_vec()).map_err(|_| corrupt())?;
            out.push((name, decode_plugin(&v).ok_or_else(corrupt)?));
        }
        Ok(out)
    }

    pub fn put_plugin(&self, name: &str, p: &StoredPlugin) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_PLUGINS), name.as_bytes(), encode_plugin(p));
        self.write_synced(wb)
    }

    pub fn delete_plugin(&self, name: &str) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        wb.delete_cf(self.cf(CF_PLUGINS), name.as_bytes());
        self.write_synced(wb)
    }

    // ---- users and ACLs -------------------------------------------------------------------

    /// The security document (users and ACLs), if one was ever stored.
    pub fn load_security(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(CF_META), SECURITY_KEY)?)
    }

    /// Replaces the security document, synced (a removed user or revoked ACL stays so).
    pub fn put_security(&self, doc: &[u8]) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_META), SECURITY_KEY, doc);
        self.write_synced(wb)
    }

    // ---- pipelines --------------------------------------------------------------------------

    /// Every pipeline definition.
    pub fn load_pipelines(&self) -> Result<Vec<PipelineDef>, StorageError> {
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(CF_PIPELINES),
            IteratorMode::From(PIPELINE_DEF_PREFIX, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(PIPELINE_DEF_PREFIX) {
                break;
            }
            let def = serde_json::from_slice(&v).map_err(|e| StorageError::Corrupt {
                key: format!("pipelines/{}", String::from_utf8_lossy(&k)),
                reason: e.to_string(),
            })?;
            out.push(def);
        }
        Ok(out)
    }

    /// Updates a pipeline definition (its failure), fsynced.
    pub fn put_pipeline(&self, def: &PipelineDef) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        let json = serde_json::to_vec(def).expect("PipelineDef always serialises");
        wb.put_cf(self.cf(CF_PIPELINES), pipeline_def_key(&def.name), json);
        self.write_synced(wb)
    }

    /// Writes a new pipeline's definition and initial progress in one fsynced write.
    pub fn create_pipeline(
        &self,
        def: &PipelineDef,
        progress: &[(u32, PipelineProgress)],
    ) -> Result<(), StorageError> {
        let cf = self.cf(CF_PIPELINES);
        let mut wb = WriteBatch::default();
        let json = serde_json::to_vec(def).expect("PipelineDef always serialises");
        wb.put_cf(cf, pipeline_def_key(&def.name), json);
        for (partition, p) in progress {
            let put = ProgressPut {
                pipeline: &def.name,
                partition: *partition,
                progress: p,
            };
            put_progress(&mut wb, cf, put);
        }
        self.write_synced(wb)
    }

    /// Forgets a pipeline's definition and progress in one fsynced write.
    pub fn delete_pipeline(&self, name: &str) -> Result<(), StorageError> {
        let cf = self.cf(CF_PIPELINES);
        let mut wb = WriteBatch::default();
        wb.delete_cf(cf, pipeline_def_key(name));
        let (start, end) = pipeline_progress_range(name);
        wb.delete_range_cf(cf, start, end);
        self.write_synced(wb)
    }

    /// A pipeline's progress per source partition.
    pub fn load_progress(&self, name: &str) -> Result<Vec<(u32, PipelineProgress)>, StorageError> {
        let (start, end) = pipeline_progress_range(name);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(end);
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_PIPELINES),
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item?;
            let corrupt = || StorageError::Corrupt {
                key: format!("pipelines/{k:?}"),
                reason: "bad pipeline progress".into(),
            };
            let partition = decode_pipeline_progress_key(name, &k).ok_or_else(corrupt)?;
            out.push((partition, decode_progress(&v).ok_or_else(corrupt)?));
        }
        Ok(out)
    }

    /// Writes a pipeline's progress alone (a round whose records all were filtered out).
    pub fn put_progress(&self, p: ProgressPut<'_>) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        put_progress(&mut wb, self.cf(CF_PIPELINES), p);
        self.write(wb)
    }

    fn write_synced(&self, wb: WriteBatch) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo)?;
        Ok(())
    }

    /// Writes a new empty segment (a roll without data, before retention drops the old one).
    pub fn put_segment(&self, pk: PartitionKey, s: &SegmentMeta) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        wb.put_cf(
            self.cf(CF_SEGMENTS),
            offset_key(pk, s.base_offset),
            encode_segment(s),
        );
        self.write(wb)
    }

    /// Drops whole segments `[from_offset, to_offset)`: their records, their metadata and the
    /// time-index entries up to `index_upto_ts` (inclusive), in one write.
    pub fn drop_segments(
        &self,
        pk: PartitionKey,
        dropped: &[SegmentMeta],
        index_upto_ts: i64,
    ) -> Result<(), StorageError> {
        let (Some(first), Some(last)) = (dropped.first(), dropped.last()) else {
            return Ok(());
        };
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(
            self.cf(CF_RECORDS),
            offset_key(pk, first.base_offset),
            offset_key(pk, last.next_offset),
        );
        let segments = self.cf(CF_SEGMENTS);
        for s in dropped {
            wb.delete_cf(segments, offset_key(pk, s.base_offset));
        }
        if index_upto_ts >= 0 {
            wb.delete_range_cf(
                self.cf(CF_TIMEINDEX),
                time_key(pk, 0, 0),
                time_key(pk, index_upto_ts as u64 + 1, 0),
            );
        }
        self.write(wb)
    }

    /// Removes everything of a partition from `offset` on, in one write: its records, the
    /// segments starting at or after it (`dropped`), the time-index entries of those records;
    /// writes the segment it now ends in (`last`), the producers' trimmed states (`None`:
    /// forgotten) and the leader-epoch history.
    pub fn truncate(&self, pk: PartitionKey, t: &Truncation<'_>) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(
            self.cf(CF_RECORDS),
            offset_key(pk, t.offset),
            offset_key(pk, u64::MAX),
        );
        let segments = self.cf(CF_SEGMENTS);
        for base in t.dropped {
            wb.delete_cf(segments, offset_key(pk, *base));
        }
        wb.put_cf(
            segments,
            offset_key(pk, t.last.base_offset),
            encode_segment(t.last),
        );
        // Index entries increase in both timestamp and offset: the ones to go are at the end.
        let index = self.cf(CF_TIMEINDEX);
        let mut it = self.db.raw_iterator_cf(index);
        it.seek_for_prev(time_key(pk, u64::MAX, u64::MAX));
        while let Some((ts, base)) = it.key().and_then(|k| decode_time_key(pk, k)) {
            if base < t.offset {
                break;
            }
            wb.delete_cf(index, time_key(pk, ts, base));
            it.prev();
        }
        it.status()?;
        let producers = self.cf(CF_PRODUCERS);
        for (id, state) in t.producers {
            match state {
                Some(s) => wb.put_cf(producers, offset_key(pk, *id), encode_producer(s)),
                None => wb.delete_cf(producers, offset_key(pk, *id)),
            }
        }
        wb.put_cf(
            self.cf(CF_EPOCHS),
            partition_prefix(pk),
            encode_epochs(t.epochs),
        );
        self.write(wb)
    }

    /// A partition's leader-epoch history, oldest first (empty when it has none).
    pub fn load_epochs(&self, pk: PartitionKey) -> Result<Vec<EpochStart>, StorageError> {
        match self
            .db
            .get_pinned_cf(self.cf(CF_EPOCHS), partition_prefix(pk))?
        {
            None => Ok(Vec::new()),
            Some(v) => decode_epochs(&v).ok_or_else(|| StorageError::Corrupt {
                key: format!("epochs/{pk:?}"),
                reason: "bad leader-epoch history".into(),
            }),
        }
    }

    /// Replaces a partition's leader-epoch history.
    pub fn put_epochs(&self, pk: PartitionKey, epochs: &[EpochStart]) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        wb.put_cf(
            self.cf(CF_EPOCHS),
            partition_prefix(pk),
            encode_epochs(epochs),
        );
        self.write(wb)
    }

    /// Whole batches holding offsets `>= from` and `< end`, up to `max_bytes` (at least one
    /// batch when there is one). The first batch may start before `from`.
    pub fn read_batches(
        &self,
        pk: PartitionKey,
        from: u64,
        end: u64,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, StorageError> {
        let mut out = Vec::new();
        if from >= end {
            return Ok(out);
        }
        let start = offset_key(pk, from);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(offset_key(pk, end).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_RECORDS), ro);
        // The batch holding `from` is the last one whose base offset is <= from.
        it.seek_for_prev(start);
        let holds_from = match (it.key(), it.value()) {
            (Some(k), Some(v)) => {
                decode_offset_key(pk, k).is_some()
                    && weir_common::BatchHeader::parse(v).is_ok_and(|h| h.next_offset() > from)
            }
            _ => false,
        };
        if !holds_from {
            it.seek(start);
        }
        let mut total = 0usize;
        while let Some(v) = it.value() {
            total += v.len();
            out.push(Bytes::copy_from_slice(v));
            if total >= max_bytes {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// The stored batch whose base offset is exactly `base`.
    pub fn batch_at(&self, pk: PartitionKey, base: u64) -> Result<Option<Bytes>, StorageError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_RECORDS), offset_key(pk, base))?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    /// Base offset of the first batch whose running max timestamp is `>= ts`, if any.
    pub fn seek_time_index(&self, pk: PartitionKey, ts: i64) -> Result<Option<u64>, StorageError> {
        let mut it = self.db.raw_iterator_cf(self.cf(CF_TIMEINDEX));
        it.seek(time_key(pk, ts.max(0) as u64, 0));
        let found = it
            .key()
            .and_then(|k| decode_time_key(pk, k))
            .map(|(_, off)| off);
        it.status()?;
        Ok(found)
    }
}

fn put_progress(wb: &mut WriteBatch, cf: &ColumnFamily, p: ProgressPut<'_>) {
    wb.put_cf(
        cf,
        pipeline_progress_key(p.pipeline, p.partition),
        encode_progress(p.progress),
    );
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn wal_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum()
    }

    fn append_one(store: &Store, base: u64) {
        let pk = PartitionKey {
            topic: 1,
            partition: 0,
        };
        let w = AppendWrite {
            batches: vec![(base, vec![1u8; 64])],
            ..AppendWrite::default()
        };
        store.append(pk, &w).unwrap();
    }

    /// `--fsync always`: every append has fsynced the WAL by the time it returns (and so
    /// before the broker acknowledges it); `interval` and `never` leave that to later, and
    /// `sync_wal` (the interval's tick, and shutdown) does it.
    #[test]
    fn always_fsyncs_the_wal_before_an_append_returns_and_the_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let always = Store::open(&dir.path().join("always"), SyncMode::Always).unwrap();
        let before = always.wal_syncs();
        for i in 0..10 {
            append_one(&always, i);
            assert_eq!(always.wal_syncs(), before + i + 1, "append {i}");
        }
        for mode in [SyncMode::Interval, SyncMode::Never] {
            let store = Store::open(&dir.path().join(format!("{mode:?}")), mode).unwrap();
            let before = store.wal_syncs();
            for i in 0..10 {
                append_one(&store, i);
            }
            assert_eq!(store.wal_syncs(), before, "{mode:?}");
            store.sync_wal().unwrap();
            assert_eq!(store.wal_syncs(), before + 1, "{mode:?}");
            assert_eq!(store.stats().wal_syncs, before + 1, "{mode:?}");
        }
    }

    #[test]
    fn the_write_ahead_log_stays_bounded_while_small_column_families_are_idle() {
        const CAP: u64 = 4 << 20;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with_wal_cap(dir.path(), SyncMode::Never, CAP).unwrap();
        // One small write pins the first WAL file for as long as `meta` is not flushed.
        store.db.put_cf(store.cf(CF_META), b"pin", b"1").unwrap();
        let value = vec![7u8; 1 << 20];
        for i in 0u32..48 {
            store
                .db
                .put_cf(store.cf(CF_RECORDS), i.to_be_bytes(), &value)
                .unwrap();
        }
        // 48 MiB written, less than one records memtable: only the cap flushes anything.
        // RocksDB checks the cap on each write and deletes old WAL files once the flush it
        // started finishes, so keep writing a little (as a live broker does) while waiting.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut i = 1000u32;
        while wal_bytes(dir.path()) > 2 * CAP {
            assert!(
                Instant::now() < deadline,
                "{} bytes of WAL kept with a cap of {CAP}",
                wal_bytes(dir.path())
            );
            std::thread::sleep(Duration::from_millis(20));
            store
                .db
                .put_cf(store.cf(CF_RECORDS), i.to_be_bytes(), b"tick")
                .unwrap();
            i += 1;
        }
        assert_eq!(
            store.db.get_cf(store.cf(CF_META), b"pin").unwrap().unwrap(),
            b"1"
        );
    }
}
