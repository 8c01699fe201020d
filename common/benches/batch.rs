//! The record-batch codec on a batch of 1000 records of 100 bytes (the size `weir bench`
//! produces): building it (the producer's per-record cost), checking it (the broker's cost per
//! produced batch), reading it back (consumers, plugins, pipelines), compressing it, and the key
//! partitioner.
//!
//! `cargo bench -p weir-common --bench batch`

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use weir_common::Compression;
use weir_common::batch::{self, BatchBuilder, TimestampType};
use weir_common::limits::DEFAULT_MAX_RECORD_BYTES;
use weir_common::partitioner::partition_for_key;

const RECORDS: usize = 1000;
const RECORD_BYTES: usize = 100;
const BASE_TS: i64 = 1_700_000_000_000;

/// Values like the bench's: a digit, then `x`s.
fn values() -> Vec<Vec<u8>> {
    (0..10u8)
        .map(|d| {
            let mut v = vec![b'x'; RECORD_BYTES];
            v[0] = b'0' + d;
            v
        })
        .collect()
}

fn keys() -> Vec<String> {
    (0..RECORDS).map(|i| format!("user-{i:08}")).collect()
}

/// What each record of a built batch carries besides its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Keyless,
    /// A 13-byte key.
    Keyed,
    /// One 21-byte header, no key.
    WithHeader,
}

fn build(shape: Shape, values: &[Vec<u8>], keys: &[String]) -> BatchBuilder {
    let per_record = if shape == Shape::WithHeader { 130 } else { 110 };
    let mut b = BatchBuilder::with_capacity(TimestampType::CreateTime, RECORDS * per_record);
    let header: &[(&str, &[u8])] = match shape {
        Shape::WithHeader => &[("trace", b"0123456789abcdef")],
        Shape::Keyless | Shape::Keyed => &[],
    };
    for i in 0..RECORDS {
        let key = (shape == Shape::Keyed).then(|| keys[i].as_bytes());
        let ts = BASE_TS + i as i64;
        b.push(ts, key, &values[i % 10], header.iter().copied());
    }
    b
}

fn encode(c: &mut Criterion) {
    let (values, keys) = (values(), keys());
    let mut g = c.benchmark_group("batch/encode");
    g.throughput(Throughput::Elements(RECORDS as u64));
    for (name, shape) in [
        ("keyless", Shape::Keyless),
        ("keyed", Shape::Keyed),
        ("with_header", Shape::WithHeader),
    ] {
        g.bench_function(name, |b| b.iter(|| build(shape, &values, &keys).finish()));
    }
    for compression in [Compression::Lz4, Compression::Zstd] {
        g.bench_function(format!("keyless_{compression}"), |b| {
            b.iter(|| build(Shape::Keyless, &values, &keys).finish_compressed(compression))
        });
    }
    g.finish();
}

fn read(c: &mut Criterion) {
    let (values, keys) = (values(), keys());
    let plain = build(Shape::Keyed, &values, &keys).finish();
    let lz4 = build(Shape::Keyed, &values, &keys).finish_compressed(Compression::Lz4);
    let mut g = c.benchmark_group("batch/read");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("validate", |b| {
        b.iter(|| batch::validate(black_box(&plain), DEFAULT_MAX_RECORD_BYTES).expect("valid"))
    });
    g.bench_function("validate_lz4", |b| {
        b.iter(|| batch::validate(black_box(&lz4), DEFAULT_MAX_RECORD_BYTES).expect("valid"))
    });
    g.bench_function("record_refs", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for r in batch::record_refs(black_box(&plain)).expect("refs") {
                bytes += r.expect("record").value.len();
            }
            bytes
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| batch::decode(black_box(&plain)).expect("decode"))
    });
    // What a consumer does: records taken one at a time from a buffered batch.
    g.bench_function("cursor", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for r in batch::RecordCursor::new(black_box(&plain)).expect("cursor") {
                n += black_box(r.expect("record")).value.len();
            }
            n
        })
    });
    g.bench_function("decode_lz4", |b| {
        b.iter(|| batch::decode(black_box(&lz4)).expect("decode"))
    });
    g.finish();
}

fn partitioner(c: &mut Criterion) {
    let keys: Vec<Bytes> = keys().into_iter().map(Bytes::from).collect();
    let mut g = c.benchmark_group("partitioner");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("partition_for_key/13_byte_keys", |b| {
        b.iter(|| {
            keys.iter()
                .map(|k| partition_for_key(black_box(k), 12))
                .sum::<u32>()
        })
    });
    g.finish();
}

criterion_group!(benches, encode, read, partitioner);
criterion_main!(benches);
