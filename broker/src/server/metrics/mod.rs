//! The `/metrics` endpoint's text: the process's counters ([`crate::metrics`]) and what is
//! read from the broker at each scrape (partition offsets, group lag, pipelines, RocksDB, the
//! process), encoded in the OpenMetrics text format.

mod http;

use std::fmt::Write as _;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use self::http::serve;
use crate::broker::Broker;
use crate::metrics::{Metrics, global};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    group: String,
    topic: String,
    partition: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabels {
    pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineStateLabels {
    pipeline: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CfLabels {
    cf: &'static str,
}

/// Everything, as one OpenMetrics text: the counters, then what is read from the broker now.
pub async fn render(broker: &Broker) -> String {
    let m = global();
    let mut scrape = Registry::default();
    partitions(broker, &mut scrape);
    groups(broker, &mut scrape).await;
    pipelines(broker, &mut scrape).await;
    rocksdb(broker, &mut scrape);
    process(m, &mut scrape);
    build_info(broker, &mut scrape);
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail; a label value that could not be encoded would be a
    // bug in this module.
    if let Err(e) = m
        .encode(&mut out)
        .and_then(|()| encode_registry(&mut out, &scrape))
        .and_then(|()| encode_eof(&mut out))
    {
        tracing::error!(error = %e, "cannot encode the metrics");
        let _ = writeln!(out, "# EOF");
    }
    out
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Each partition's offsets and size, for the copies this broker holds; in cluster mode also
/// whether it leads them and, where it leads, their replicas in sync.
fn partitions(broker: &Broker, r: &mut Registry) {
    let earliest = Family::<PartitionLabels, Gauge>::default();
    let high = Family::<PartitionLabels, Gauge>::default();
    let end = Family::<PartitionLabels, Gauge>::default();
    let size = Family::<PartitionLabels, Gauge>::default();
    let segments = Family::<PartitionLabels, Gauge>::default();
    let leader = Family::<PartitionLabels, Gauge>::default();
    let replicas = Family::<PartitionLabels, Gauge>::default();
    let in_sync = Family::<PartitionLabels, Gauge>::default();
    let me = broker.node_id();
    for t in broker.list_topics() {
        let placement = me.and_then(|_| broker.placement(&t.meta.name));
        for i in 0..t.meta.config.partitions {
            // Deleted since the listing: nothing to report.
            let Ok(b) = t.bounds(i) else {
                continue;
            };
            let labels = PartitionLabels {
                topic: t.meta.name.clone(),
                partition: i,
            };
            if let Some(me) = me {
                // Cluster mode: only the copies placed here hold records.
                let Some(state) = placement.as_ref().and_then(|ps| ps.get(i as usize)) else {
                    continue;
                };
                if !state.replicas.contains(&me) {
                    continue;
                }
                let leads = state.leader == Some(me);
                leader.get_or_create(&labels).set(i64::from(leads));
                if leads {
                    replicas
                        .get_or_create(&labels)
                        .set(gauge(state.replicas.len() as u64));
                    in_sync
                        .get_or_create(&labels)
                        .set(gauge(state.isr.len() as u64));
                }
            }
            earliest.get_or_create(&labels).set(gauge(b.earliest));
            high.get_or_create(&labels).set(gauge(b.latest));
            end.get_or_create(&labels).set(gauge(b.log_end));
            size.get_or_create(&labels).set(gauge(b.size_bytes));
            segments.get_or_create(&labels).set(i64::from(b.segments));
        }
    }
    r.register(
        "weir_partition_earliest_offset",
        "Offset of the oldest record the partition keeps",
        earliest,
    );
    r.register(
        "weir_partition_high_watermark",
        "Next offset consumers will see (records below it are readable)",
        high,
    );
    r.register(
        "weir_partition_log_end_offset",
        "Next offset to be written to this copy of the partition",
        end,
    );
    r.register(
        "weir_partition_size_bytes",
        "Bytes of record batches the partition keeps",
        size,
    );
    r.register(
        "weir_partition_segments",
        "Segments of the partition",
        segments,
    );
    if me.is_some() {
        r.register(
            "weir_partition_leader",
            "Cluster mode: 1 where this broker leads the partition, 0 where it follows",
            leader,
        );
        r.register(
            "weir_partition_replicas",
            "Cluster mode, partitions this broker leads: their replicas",
            replicas,
        );
        r.register(
            "weir_partition_in_sync_replicas",
            "Cluster mode, partitions this broker leads: their in-sync replicas (fewer than weir_partition_replicas: under-replicated)",
            in_sync,
        );
    }
}

/// Each group's members and, per partition, committed offset and lag.
async fn groups(broker: &Broker, r: &mut Registry) {
    let members = Family::<GroupLabels, Gauge>::default();
    let committed = Family::<GroupPartitionLabels, Gauge>::default();
    let lag = Family::<GroupPartitionLabels, Gauge>::default();
    for g in broker.list_groups() {
        // In cluster mode a group this broker does not coordinate is another broker's to report.
        let Ok(view) = broker.describe_group(&g.name).await else {
            continue;
        };
        members
            .get_or_create(&GroupLabels {
                group: g.name.clone(),
            })
            .set(gauge(g.members as u64));
        for p in view.partitions {
            let labels = GroupPartitionLabels {
                group: g.name.clone(),
                topic: p.topic,
                partition: p.partition,
            };
            if let Some(c) = p.committed {
                committed.get_or_create(&labels).set(gauge(c.offset));
            }
            if let Some(l) = p.lag {
                lag.get_or_create(&labels).set(gauge(l));
            }
        }
    }
    r.register(
        "weir_group_members",
        "Members of the consumer group",
        members,
    );
    r.register(
        "weir_group_committed_offset",
        "The group's committed offset on the partition",
        committed,
    );
    r.register(
        "weir_group_lag",
        "Records between the group's committed offset and the partition's high watermark",
        lag,
    );
}

/// Each pipeline's state, lag and records.
async fn pipelines(broker: &Broker, r: &mut Registry) {
    let state = Family::<PipelineStateLabels, Gauge>::default();
    let lag = Family::<PipelineLabels, Gauge>::default();
    let records_in = Family::<PipelineLabels, Counter>::default();
    let records_out = Family::<PipelineLabels, Counter>::default();
    for p in broker.list_pipelines().await {
        let failed = p.def.failure.is_some();
        for (name, on) in [("running", !failed), ("failed", failed)] {
            state
                .get_or_create(&PipelineStateLabels {
                    pipeline: p.def.name.clone(),
                    state: name,
                })
                .set(i64::from(on));
        }
        let labels = PipelineLabels {
            pipeline: p.def.name.clone(),
        };
        lag.get_or_create(&labels).set(gauge(p.lag));
        records_in.get_or_create(&labels).inc_by(p.records_in);
        records_out.get_or_create(&labels).inc_by(p.records_out);
    }
    r.register(
        "weir_pipeline_state",
        "1 for the pipeline's state (running, or failed until resumed), 0 for the other",
        state,
    );
    r.register(
        "weir_pipeline_lag",
        "Source records the pipeline has not processed yet",
        lag,
    );
    r.register(
        "weir_pipeline_records_in",
        "Source records the pipeline processed",
        records_in,
    );
    r.register(
        "weir_pipeline_records_out",
        "Records the pipeline wrote to its destination",
        records_out,
    );
}

/// RocksDB's sizes per column family, and its background work.
fn rocksdb(broker: &Broker, r: &mut Registry) {
    let stats = broker.store().stats();
    let sst = Family::<CfLabels, Gauge>::default();
    let blob = Family::<CfLabels, Gauge>::default();
    let live = Family::<CfLabels, Gauge>::default();
    let memtables = Family::<CfLabels, Gauge>::default();
    let pending = Family::<CfLabels, Gauge>::default();
    for s in &stats.column_families {
        let labels = CfLabels { cf: s.name };
        sst.get_or_create(&labels).set(gauge(s.sst_bytes));
        blob.get_or_create(&labels).set(gauge(s.blob_bytes));
        live.get_or_create(&labels).set(gauge(s.live_data_bytes));
        memtables
            .get_or_create(&labels)
            .set(gauge(s.memtable_bytes));
        pending
            .get_or_create(&labels)
            .set(gauge(s.pending_compaction_bytes));
    }
    r.register(
        "weir_rocksdb_sst_bytes",
        "Bytes of the column family's SST files",
        sst,
    );
    r.register(
        "weir_rocksdb_blob_bytes",
        "Bytes of the column family's blob files (where record batches are stored)",
        blob,
    );
    r.register(
        "weir_rocksdb_live_data_bytes",
        "RocksDB's estimate of the column family's live data",
        live,
    );
    r.register(
        "weir_rocksdb_memtable_bytes",
        "Bytes of the column family's memtables",
        memtables,
    );
    r.register(
        "weir_rocksdb_pending_compaction_bytes",
        "Bytes RocksDB estimates compaction still has to rewrite",
        pending,
    );
    let running = Gauge::<i64>::default();
    running.set(gauge(stats.running_compactions));
    r.register(
        "weir_rocksdb_running_compactions",
        "Compactions running now",
        running,
    );
    let stopped = Gauge::<i64>::default();
    stopped.set(i64::from(stats.write_stopped));
    r.register(
        "weir_rocksdb_write_stopped",
        "1 while RocksDB stops writes (too many memtables or L0 files)",
        stopped,
    );
    let syncs = Counter::<u64>::default();
    syncs.inc_by(stats.wal_syncs);
    r.register(
        "weir_rocksdb_wal_syncs",
        "Fsyncs of the write-ahead log (--fsync always: one per synced write group; interval: \
         one per tick)",
        syncs,
    );
}

/// The usual `process_*` metrics (Linux: read from /proc).
fn process(m: &Metrics, r: &mut Registry) {
    let start = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    start.set(m.started().as_secs_f64());
    r.register(
        "process_start_time_seconds",
        "When the process started, in seconds since the Unix epoch",
        start,
    );
    if let Some(kb) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| vm_rss_kb(&s))
    {
        let rss = Gauge::<i64>::default();
        rss.set(gauge(kb * 1024));
        r.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            rss,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let fds = Gauge::<i64>::default();
        fds.set(gauge(dir.count() as u64));
        r.register("process_open_fds", "Open file descriptors", fds);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// `weir_build_info{version, commit} 1`, as Prometheus' own `prometheus_build_info`: a
/// dashboard or an alert sees which members run what during a rolling upgrade.
fn build_info(broker: &Broker, r: &mut Registry) {
    let b = broker.build();
    let info = Family::<BuildLabels, Gauge>::default();
    info.get_or_create(&BuildLabels {
        version: b.version,
        commit: b.commit,
    })
    .set(1);
    r.register(
        "weir_build_info",
        "The release and git commit this broker was built from (always 1)",
        info,
    );
}

/// `VmRSS:   1234 kB` in /proc/self/status.
fn vm_rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_proc_status() {
        let s = "Name:\tweir\nVmPeak:\t  9 kB\nVmRSS:\t   52344 kB\nThreads: 3\n";
        assert_eq!(vm_rss_kb(s), Some(52344));
        assert_eq!(vm_rss_kb("Name: x\n"), None);
    }
}
