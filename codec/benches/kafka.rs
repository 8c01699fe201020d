//! What the Kafka listener's translation costs per record: a client's Kafka batch of 1000
//! records of 100 bytes (13-byte keys, as `bench/kafka_clients.py` sends them) into a Weir
//! batch (`to_weir`: CRC-32C check, decode, rebuild), uncompressed and lz4; and a stored Weir
//! batch out as a Kafka batch (`to_kafka`: decode, encode, CRC-32C). docs/kafka.md quotes it.
//!
//! `cargo bench -p weir-codec --bench kafka`

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::hint::black_box;
use weir_codec::kafka::{to_kafka, to_weir};
use weir_common::batch;

const RECORDS: usize = 1000;
const BASE_TS: i64 = 1_700_000_000_000;

fn kafka_records() -> Vec<Record> {
    (0..RECORDS)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 7,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: BASE_TS + i as i64,
            key: Some(Bytes::from(format!("user-{i:08}"))),
            value: Some(Bytes::from(vec![b'x'; 100])),
            headers: Default::default(),
        })
        .collect()
}

fn kafka_batch(compression: Compression) -> Bytes {
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut out, kafka_records().iter(), &options).expect("encode");
    out.freeze()
}

fn translate(c: &mut Criterion) {
    let mut g = c.benchmark_group("kafka");
    g.throughput(Throughput::Elements(RECORDS as u64));
    for (name, compression) in [("none", Compression::None), ("lz4", Compression::Lz4)] {
        let incoming = kafka_batch(compression);
        g.bench_function(format!("to_weir_{name}"), |b| {
            b.iter(|| black_box(to_weir(incoming.clone()).expect("translate")))
        });
    }
    let stored = {
        let weir = to_weir(kafka_batch(Compression::None)).expect("translate");
        let mut b = BytesMut::from(&weir[0].batch[..]);
        batch::set_base_offset(&mut b, 1000);
        b.freeze()
    };
    g.bench_function("to_kafka", |b| {
        b.iter(|| {
            let mut out = BytesMut::with_capacity(160 * RECORDS);
            to_kafka(std::slice::from_ref(&stored), &mut out).expect("translate");
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, translate);
criterion_main!(benches);
