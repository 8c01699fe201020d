//! Storage hot paths: key encoding, and a partition's append and read in RocksDB (the work of
//! one group commit and one fetch, without the network), on batches of 1000 records of 100
//! bytes in a temporary data dir.
//!
//! Appends keep going across iterations, so the log is kept small by retention, applied
//! between measured rounds (as the broker's retention task does in the background).
//!
//! `cargo bench -p weir-broker --bench storage`

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir_broker::log::{PartitionLog, PendingBatch, ReadUpTo};
use weir_broker::storage::{Store, SyncMode};
use weir_broker::types::{PartitionKey, SegmentMeta, TopicConfig};
use weir_codec::keys::{decode_offset_key, offset_key, time_key};
use weir_common::batch::{self, BatchBuilder, TimestampType};
use weir_common::limits::{DEFAULT_FETCH_MAX_BYTES, DEFAULT_MAX_RECORD_BYTES};

const RECORDS: usize = 1000;
const RECORD_BYTES: usize = 100;
const PK: PartitionKey = PartitionKey {
    topic: 1,
    partition: 0,
};

fn keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("keys");
    g.throughput(Throughput::Elements(1));
    g.bench_function("offset_key", |b| {
        let mut o = 0u64;
        b.iter(|| {
            o += 1000;
            offset_key(black_box(PK), o)
        })
    });
    g.bench_function("offset_key_roundtrip", |b| {
        let mut o = 0u64;
        b.iter(|| {
            o += 1000;
            decode_offset_key(PK, &offset_key(black_box(PK), o))
        })
    });
    g.bench_function("time_key", |b| {
        let mut o = 0u64;
        b.iter(|| {
            o += 1000;
            time_key(black_box(PK), 1_700_000_000_000 + o, o)
        })
    });
    g.finish();
}

fn pending_batch() -> PendingBatch {
    let mut b = BatchBuilder::with_capacity(TimestampType::CreateTime, RECORDS * 110);
    let value = vec![b'x'; RECORD_BYTES];
    let now = weir_common::record::now_ms();
    for i in 0..RECORDS {
        b.push(now + i as i64, None, &value, std::iter::empty());
    }
    let bytes: Bytes = b.finish();
    let valid = batch::validate(&bytes, DEFAULT_MAX_RECORD_BYTES).expect("valid batch");
    PendingBatch { bytes, valid }
}

/// A fresh store holding one partition, with retention small enough to keep the bench's
/// data dir to a few hundred MB.
fn partition(dir: &std::path::Path) -> PartitionLog {
    let store = Store::open(dir, SyncMode::Interval).expect("open store");
    let config = TopicConfig {
        partitions: 1,
        retention_ms: None,
        retention_bytes: Some(128 * 1024 * 1024),
        segment_bytes: 32 * 1024 * 1024,
        segment_ms: i64::MAX,
        min_insync_replicas: 1,
    };
    let first = SegmentMeta::empty_at(0, weir_common::record::now_ms(), i64::MIN);
    PartitionLog::new(store, PK, config, vec![first], Vec::new(), Vec::new())
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = partition(dir.path());
    let one = pending_batch();
    let mut g = c.benchmark_group("partition_append");
    g.measurement_time(Duration::from_secs(5));
    // Group commit: 1 batch per write (a lone producer) and 5 (a producer's in-flight window).
    for group_size in [1usize, 5] {
        let group = vec![one.clone(); group_size];
        g.throughput(Throughput::Elements((RECORDS * group_size) as u64));
        g.bench_with_input(
            BenchmarkId::new("batches_per_write", group_size),
            &group,
            |b, group| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let now = weir_common::record::now_ms();
                        log.append_group(group, now).expect("append");
                    }
                    let elapsed = start.elapsed();
                    log.enforce_retention(weir_common::record::now_ms())
                        .expect("retention");
                    elapsed
                })
            },
        );
    }
    g.finish();
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = partition(dir.path());
    let one = vec![pending_batch()];
    // 100 MB of batches: the memtable holds the newest, SST files the rest.
    let total = 1000u64;
    for _ in 0..total {
        log.append_group(&one, weir_common::record::now_ms())
            .expect("append");
    }
    let bounds = log.bounds();
    let mut g = c.benchmark_group("partition_read");
    // One fetch's worth (the SDK asks for 4 MiB), from a random-ish place in the log (at least
    // a fetch before its end, so every read is as long).
    let span = bounds.latest - bounds.earliest - 100 * RECORDS as u64;
    let max_bytes = DEFAULT_FETCH_MAX_BYTES as usize;
    let fetched = log
        .read_from(bounds.earliest, max_bytes, ReadUpTo::HighWatermark)
        .expect("read");
    let bytes: usize = fetched.batches.iter().map(|b| b.len()).sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("one_fetch", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919 * RECORDS as u64) % span;
            let offset = bounds.earliest + i / RECORDS as u64 * RECORDS as u64;
            log.read_from(offset, max_bytes, ReadUpTo::HighWatermark)
                .expect("read")
        })
    });
    g.finish();
}

criterion_group!(benches, keys, append, read);
criterion_main!(benches);
