//! RocksDB, generic: column families, keys and values as bytes, atomic write sets, reads by
//! key, range and cursor, and how a write reaches the disk.
//!
//! Architecture invariant: this module knows no domain. Each domain lays out its own keys and
//! encodes its own values next to its types (`log::layout`, `topics`, `groups::store`,
//! `plugins::store`, `pipelines::store`, `security`, `cluster::raft_log`); what must change
//! together goes into one [`WriteSet`], written atomically by [`Store::write`].

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use rocksdb::statistics::{StatsLevel, Ticker};
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, DBRawIterator,
    Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, properties,
};

use crate::error::BrokerError;

/// The column families (ARCHITECTURE.md, "Storage layout", says what each holds and whose
/// it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cf {
    /// Record batches, under partition + base offset.
    Records,
    /// Segment metadata, under partition + segment base offset.
    Segments,
    /// The time index, under partition + running-max timestamp + base offset.
    TimeIndex,
    /// Idempotent producers' state, under partition + producer id.
    Producers,
    /// Small singletons: topic metadata, id counters, the security document.
    Meta,
    /// Committed offsets of consumer groups.
    Offsets,
    /// WebAssembly plugin modules.
    Plugins,
    /// Pipeline definitions and progress.
    Pipelines,
    /// Cluster mode: the metadata quorum's raft log and state.
    Raft,
    /// Cluster mode: each partition's leader-epoch history.
    Epochs,
    /// Cluster mode: plugin modules by the SHA-256 of their bytes (the registry itself is in
    /// the replicated metadata).
    Modules,
}

impl Cf {
    pub const ALL: [Cf; 11] = [
        Cf::Records,
        Cf::Segments,
        Cf::TimeIndex,
        Cf::Producers,
        Cf::Meta,
        Cf::Offsets,
        Cf::Plugins,
        Cf::Pipelines,
        Cf::Raft,
        Cf::Epochs,
        Cf::Modules,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Records => "records",
            Cf::Segments => "segments",
            Cf::TimeIndex => "timeindex",
            Cf::Producers => "producers",
            Cf::Meta => "meta",
            Cf::Offsets => "offsets",
            Cf::Plugins => "plugins",
            Cf::Pipelines => "pipelines",
            Cf::Raft => "raft",
            Cf::Epochs => "epochs",
            Cf::Modules => "modules",
        }
    }
}

/// Memtable size of the records column family: big enough that a burst of produce traffic
/// is absorbed without stalling on flushes.
const RECORDS_WRITE_BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// Values of at least this size (every batch but the smallest) are stored in blob files.
const MIN_BLOB_BYTES: u64 = 1024;
/// Size at which a flush starts a new blob file; one memtable fills about one file.
const BLOB_FILE_BYTES: u64 = 64 * 1024 * 1024;

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

impl From<StorageError> for BrokerError {
    fn from(e: StorageError) -> Self {
        BrokerError::Storage(e.to_string())
    }
}

impl StorageError {
    /// A value (or key) under `cf` that its owner cannot decode.
    pub fn corrupt(cf: Cf, key: &[u8], reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            key: format!(
                "{}/{}",
                cf.name(),
                String::from_utf8_lossy(key).escape_debug()
            ),
            reason: reason.into(),
        }
    }
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

/// One key and its value, read by a scan (or the error that ended it).
pub type KeyValue = Result<(Box<[u8]>, Box<[u8]>), StorageError>;

/// How a write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// As `--fsync` says ([`SyncMode`]): record appends and what goes with them.
    Configured,
    /// Fsynced before the write returns, whatever `--fsync` says: what must never be lost
    /// once acknowledged (committed offsets, plugins, pipelines, users, the raft log).
    Synced,
}

/// Changes to apply together: all of them or none reach the store ([`Store::write`]).
pub struct WriteSet {
    db: Arc<DB>,
    batch: WriteBatch,
}

impl WriteSet {
    pub fn put(&mut self, cf: Cf, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.batch.put_cf(cf_handle(&self.db, cf), key, value);
    }

    pub fn delete(&mut self, cf: Cf, key: impl AsRef<[u8]>) {
        self.batch.delete_cf(cf_handle(&self.db, cf), key);
    }

    /// Deletes the keys in `[from, to)` (constant cost; space reclaimed by compaction).
    pub fn delete_range<K: AsRef<[u8]>>(&mut self, cf: Cf, from: K, to: K) {
        self.batch
            .delete_range_cf(cf_handle(&self.db, cf), from, to);
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

impl std::fmt::Debug for WriteSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteSet")
            .field("changes", &self.batch.len())
            .finish()
    }
}

fn cf_handle(db: &DB, cf: Cf) -> &ColumnFamily {
    db.cf_handle(cf.name())
        .expect("column families are created when the database is opened")
}

/// A position in a column family, moved by seeks and steps (RocksDB's raw iterator).
pub struct Cursor<'a> {
    it: DBRawIterator<'a>,
}

impl Cursor<'_> {
    /// To the first key `>= key`.
    pub fn seek(&mut self, key: impl AsRef<[u8]>) {
        self.it.seek(key);
    }

    /// To the last key `<= key`.
    pub fn seek_for_prev(&mut self, key: impl AsRef<[u8]>) {
        self.it.seek_for_prev(key);
    }

    pub fn next(&mut self) {
        self.it.next();
    }

    pub fn prev(&mut self) {
        self.it.prev();
    }

    /// The key here; `None` past either end (or on an error: see [`Self::status`]).
    pub fn key(&self) -> Option<&[u8]> {
        self.it.key()
    }

    pub fn value(&self) -> Option<&[u8]> {
        self.it.value()
    }

    /// Whether the walk ended on an error rather than at an end.
    pub fn status(&self) -> Result<(), StorageError> {
        Ok(self.it.status()?)
    }
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
    /// Bytes of the column family's blob files (record batches live there, see `open`).
    pub blob_bytes: u64,
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
        let cfs = Cf::ALL.iter().map(|name| {
            let mut cf = Options::default();
            if *name == Cf::Records {
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
                // Batches go to blob files when a memtable is flushed (RocksDB's integrated
                // BlobDB): the SST files then hold only keys and blob references, so
                // compaction no longer rewrites every byte of the log, which cost 11–13% of
                // the CPU of a broker under load (docs/benchmarks.md, issue 32). A blob file
                // goes once compaction has seen every batch in it deleted (retention's
                // range deletes); blob GC rewrites what is still live in the oldest quarter
                // of the files, so one long-lived topic cannot pin the files it shares with
                // short-lived ones.
                cf.set_enable_blob_files(true);
                cf.set_min_blob_size(MIN_BLOB_BYTES);
                cf.set_blob_file_size(BLOB_FILE_BYTES);
                cf.set_blob_compression_type(DBCompressionType::Lz4);
                cf.set_enable_blob_gc(true);
            }
            ColumnFamilyDescriptor::new(name.name(), cf)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Self {
            db: Arc::new(db),
            sync,
            options: Arc::new(opts),
        })
    }

    fn cf(&self, cf: Cf) -> &ColumnFamily {
        cf_handle(&self.db, cf)
    }

    /// An empty set of changes for [`Self::write`].
    pub fn write_set(&self) -> WriteSet {
        self.write_set_with_capacity(0)
    }

    /// An empty set of changes with room for about `bytes` of keys and values, so that
    /// adding them does not grow (and copy) RocksDB's buffer along the way.
    pub fn write_set_with_capacity(&self, bytes: usize) -> WriteSet {
        WriteSet {
            db: Arc::clone(&self.db),
            batch: WriteBatch::with_capacity_bytes(bytes),
        }
    }

    /// Applies `set` atomically.
    pub fn write(&self, set: WriteSet, durability: Durability) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(match durability {
            Durability::Configured => self.sync == SyncMode::Always,
            Durability::Synced => true,
        });
        self.db.write_opt(set.batch, &wo)?;
        Ok(())
    }

    pub fn get(&self, cf: Cf, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    /// The value under `key`, copied once into `Bytes`.
    pub fn get_bytes(&self, cf: Cf, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, StorageError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(cf), key)?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    /// The entries with keys in `[from, to)` (`to` = `None`: to the end), in key order.
    pub fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> impl Iterator<Item = KeyValue> + '_ {
        let mut ro = ReadOptions::default();
        if let Some(to) = to {
            ro.set_iterate_upper_bound(to.to_vec());
        }
        self.db
            .iterator_cf_opt(
                self.cf(cf),
                ro,
                IteratorMode::From(from, Direction::Forward),
            )
            .map(|item| item.map_err(StorageError::from))
    }

    /// The entries whose keys start with `prefix`, in key order.
    pub fn scan_prefix<'a>(
        &'a self,
        cf: Cf,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = KeyValue> + 'a {
        self.scan(cf, prefix, None)
            .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
    }

    /// A cursor over `cf`, bounded above by `to` (exclusive) when given.
    pub fn cursor(&self, cf: Cf, to: Option<Vec<u8>>) -> Cursor<'_> {
        let mut ro = ReadOptions::default();
        if let Some(to) = to {
            ro.set_iterate_upper_bound(to);
        }
        Cursor {
            it: self.db.raw_iterator_cf_opt(self.cf(cf), ro),
        }
    }

    /// RocksDB's sizes per column family and its background work (for metrics). A property
    /// RocksDB cannot give reads as 0.
    pub fn stats(&self) -> StoreStats {
        let int = |v: Result<Option<u64>, rocksdb::Error>| v.ok().flatten().unwrap_or(0);
        let column_families = Cf::ALL
            .iter()
            .map(|&cf| {
                let name = cf.name();
                let cf = self.cf(cf);
                let prop = |p| int(self.db.property_int_value_cf(cf, p));
                CfStats {
                    name,
                    sst_bytes: prop(properties::TOTAL_SST_FILES_SIZE),
                    blob_bytes: int(self
                        .db
                        .property_int_value_cf(cf, "rocksdb.total-blob-file-size")),
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

    /// Writes a consistent copy of the whole database, every column family at one sequence
    /// number, into `dir`, which must not exist yet (RocksDB's checkpoint: memtables flushed
    /// first, table files hard-linked when `dir` is on the same filesystem and copied
    /// otherwise). Writes go on meanwhile; the copy holds every write made before the call.
    /// `Store::open` on `dir` opens the copy.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StorageError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_checkpoint_holds_every_write_before_it_and_none_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), SyncMode::Never).unwrap();
        let mut before = store.write_set();
        before.put(Cf::Records, b"a", b"1");
        before.put(Cf::Meta, b"m", b"2");
        // A batch-sized value: stored in a blob file, which the checkpoint must carry too.
        let batch: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
        before.put(Cf::Records, b"big", &batch);
        store.write(before, Durability::Configured).unwrap();
        let copy = dir.path().join("copy");
        store.checkpoint(&copy).unwrap();
        let mut after = store.write_set();
        after.put(Cf::Records, b"b", b"3");
        store.write(after, Durability::Configured).unwrap();
        // A second checkpoint into the same place is refused, not merged.
        assert!(store.checkpoint(&copy).is_err());
        drop(store);
        let restored = Store::open(&copy, SyncMode::Never).unwrap();
        assert_eq!(
            restored.get(Cf::Records, b"a").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(
            restored.get(Cf::Meta, b"m").unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(
            restored.get(Cf::Records, b"big").unwrap().as_deref(),
            Some(&batch[..])
        );
        assert!(
            std::fs::read_dir(&copy).unwrap().any(|e| e
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "blob")),
            "the checkpoint holds the blob file"
        );
        assert_eq!(restored.get(Cf::Records, b"b").unwrap(), None);
    }

    fn wal_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum()
    }

    fn append_one(store: &Store, base: u64) {
        let mut w = store.write_set();
        w.put(Cf::Records, base.to_be_bytes(), [1u8; 64]);
        store.write(w, Durability::Configured).unwrap();
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

    /// `Synced` writes fsync whatever `--fsync` says; `Configured` ones follow it.
    #[test]
    fn synced_writes_fsync_under_every_policy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Never).unwrap();
        let before = store.wal_syncs();
        let mut set = store.write_set();
        set.put(Cf::Offsets, b"k", b"v");
        store.write(set, Durability::Synced).unwrap();
        assert_eq!(store.wal_syncs(), before + 1);
        append_one(&store, 1);
        assert_eq!(store.wal_syncs(), before + 1);
    }

    /// Scans stop at their bound or prefix, cursors walk both ways, and a write set applies
    /// its puts and deletes together.
    #[test]
    fn scans_cursors_and_write_sets_see_keys_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Never).unwrap();
        let mut set = store.write_set();
        for k in ["a1", "a2", "a3", "b1", "b2"] {
            set.put(Cf::Meta, k, k.to_uppercase());
        }
        set.delete(Cf::Meta, "a2");
        assert!(!set.is_empty());
        store.write(set, Durability::Configured).unwrap();
        let keys = |it: &mut dyn Iterator<Item = KeyValue>| {
            it.map(|r| String::from_utf8(r.unwrap().0.into_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&mut store.scan_prefix(Cf::Meta, b"a")), ["a1", "a3"]);
        assert_eq!(
            keys(&mut store.scan(Cf::Meta, b"a3", Some(b"b2"))),
            ["a3", "b1"]
        );
        assert_eq!(keys(&mut store.scan(Cf::Meta, b"b", None)), ["b1", "b2"]);
        assert!(store.scan(Cf::Offsets, b"", None).next().is_none());

        let mut c = store.cursor(Cf::Meta, Some(b"b2".to_vec()));
        c.seek_for_prev(b"a2");
        assert_eq!(c.key(), Some(&b"a1"[..]));
        c.next();
        assert_eq!((c.key(), c.value()), (Some(&b"a3"[..]), Some(&b"A3"[..])));
        c.seek(b"b");
        c.next();
        assert_eq!(c.key(), None, "b2 is past the bound");
        c.status().unwrap();

        let mut set = store.write_set();
        set.delete_range(Cf::Meta, "a", "b");
        store.write(set, Durability::Configured).unwrap();
        assert_eq!(keys(&mut store.scan(Cf::Meta, b"", None)), ["b1", "b2"]);
        assert_eq!(store.get(Cf::Meta, "b1").unwrap().unwrap(), b"B1");
        assert_eq!(store.get_bytes(Cf::Meta, "a1").unwrap(), None);
    }

    #[test]
    fn the_write_ahead_log_stays_bounded_while_small_column_families_are_idle() {
        const CAP: u64 = 4 << 20;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with_wal_cap(dir.path(), SyncMode::Never, CAP).unwrap();
        // One small write pins the first WAL file for as long as `meta` is not flushed.
        store.db.put_cf(store.cf(Cf::Meta), b"pin", b"1").unwrap();
        let value = vec![7u8; 1 << 20];
        for i in 0u32..48 {
            store
                .db
                .put_cf(store.cf(Cf::Records), i.to_be_bytes(), &value)
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
                .put_cf(store.cf(Cf::Records), i.to_be_bytes(), b"tick")
                .unwrap();
            i += 1;
        }
        assert_eq!(
            store
                .db
                .get_cf(store.cf(Cf::Meta), b"pin")
                .unwrap()
                .unwrap(),
            b"1"
        );
    }

    /// Values that are not tiny (record batches) go to blob files at flush, which compaction
    /// does not rewrite; deleting their keys (retention drops segments with a range delete)
    /// frees the blob files once compaction has seen the deletion.
    #[test]
    fn batches_live_in_blob_files_that_retention_frees() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Never).unwrap();
        // Incompressible values, so LZ4 does not hide the sizes.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut value = || -> Vec<u8> {
            (0..256 * 1024)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        let records = |s: &StoreStats| {
            s.column_families
                .iter()
                .find(|c| c.name == Cf::Records.name())
                .cloned()
                .unwrap()
        };
        let mut kept = Vec::new();
        for prefix in [b'a', b'b'] {
            let mut set = store.write_set();
            for i in 0u8..16 {
                let v = value();
                set.put(Cf::Records, [prefix, i], &v);
                if prefix == b'b' {
                    kept.push(v);
                }
            }
            store.write(set, Durability::Configured).unwrap();
            store.db.flush_cf(store.cf(Cf::Records)).unwrap();
        }
        let full = records(&store.stats());
        assert!(full.blob_bytes >= 8 << 20, "{full:?}");
        assert!(full.sst_bytes < 1 << 20, "keys only in SST files: {full:?}");

        let mut set = store.write_set();
        set.delete_range(Cf::Records, [b'a'], [b'b']);
        store.write(set, Durability::Configured).unwrap();
        store.db.flush_cf(store.cf(Cf::Records)).unwrap();
        store
            .db
            .compact_range_cf(store.cf(Cf::Records), None::<&[u8]>, None::<&[u8]>);
        let after = records(&store.stats());
        assert!(
            after.blob_bytes <= full.blob_bytes / 2 + (64 << 10),
            "{full:?} -> {after:?}"
        );
        drop(store);
        // What is kept reads back whole after a restart.
        let store = Store::open(dir.path(), SyncMode::Never).unwrap();
        assert_eq!(store.get(Cf::Records, [b'a', 0]).unwrap(), None);
        for (i, v) in kept.iter().enumerate() {
            let got = store
                .get_bytes(Cf::Records, [b'b', i as u8])
                .unwrap()
                .unwrap();
            assert_eq!(&got[..], &v[..]);
        }
    }
}
