//! The cost of one plugin call per batch: `Stage::run` of the example plugins (built to wasm
//! by `scripts/build-plugins`) on batches of 1, 100 and 1000 records of 100 bytes. The
//! 1-record case is the fixed cost of a call (copy in, enter wasm, read the output); the others
//! show the per-record cost a batch amortises it over.
//!
//! `cargo bench -p weir-wasm --bench plugin_call`

use std::path::Path;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir_common::batch::{BatchBuilder, TimestampType};
use weir_wasm::{PluginLimits, Runtime};

const BATCH_SIZES: [usize; 3] = [1, 100, 1000];
const RECORD_BYTES: usize = 100;

fn wasm(name: &str) -> Vec<u8> {
    // WEIR_PLUGIN_DIR: modules built elsewhere (e.g. an older SDK's, for a before/after).
    let dir = std::env::var_os("WEIR_PLUGIN_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../plugins/target/wasm32-unknown-unknown/release")
        },
        Into::into,
    );
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the example plugins first (scripts/build-plugins)",
            path.display()
        )
    })
}

/// One stored batch of `n` keyed records.
fn batch(n: usize) -> Vec<Bytes> {
    let mut b = BatchBuilder::new(TimestampType::CreateTime);
    let value = vec![b'x'; RECORD_BYTES];
    for i in 0..n {
        let key = format!("key-{}", i % 16);
        b.push(
            1_700_000_000_000 + i as i64,
            Some(key.as_bytes()),
            &value,
            std::iter::empty(),
        );
    }
    vec![b.finish()]
}

fn plugin_call(c: &mut Criterion) {
    let runtime = Runtime::new().expect("wasm engine");
    let cases = [
        ("filter_contains", r#"{"substring":"x"}"#),
        ("filter_contains", r#"{"substring":"y"}"#),
        ("uppercase", ""),
        ("count_by_key", ""),
    ];
    for (name, params) in cases {
        let plugin = runtime
            .compile(name, &wasm(name), PluginLimits::default())
            .expect("compile");
        let mut stage = plugin.stage(params.as_bytes()).expect("init");
        let label = match params {
            r#"{"substring":"x"}"# => format!("{name}/keep_all"),
            r#"{"substring":"y"}"# => format!("{name}/keep_none"),
            _ => name.to_string(),
        };
        let mut group = c.benchmark_group(format!("plugin_call/{label}"));
        for n in BATCH_SIZES {
            let input = batch(n);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
                b.iter(|| stage.run(input.clone(), 0).expect("plugin call"))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, plugin_call);
criterion_main!(benches);
