//! Prometheus metrics (`--metrics-listen`, docs/operations.md): what the broker counts as it
//! works (the process-wide [`Metrics`], updated where the work happens: the gRPC edge,
//! produce, consumer reads, plugin calls). What is read at each scrape (partition offsets,
//! group lag, pipelines, RocksDB, the process) is the edge's, `server::metrics`, which
//! encodes both in the OpenMetrics text format, which Prometheus scrapes.
//!
//! Label values are bounded by what exists: topics, groups, pipelines and plugins (their
//! series are removed when they are deleted), and the gRPC methods the broker serves (a call
//! to an unknown method is counted under `unknown`).

use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    grpc_service: String,
    grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcCodeLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KafkaLabels {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KafkaErrorLabels {
    api: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

/// A stage of a produce's trip through replication (docs/cluster.md, "A batch's trip").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Leader: a produce's batches queued on their appenders until written.
    LeaderAppend,
    /// Leader, `acks=all`: written until the high watermark passed them.
    AwaitIsr,
    /// Leader: a follower's fetch waiting for records to arrive (the long poll).
    FetchWait,
    /// Follower: one replica fetch, from sending it to its answer.
    FetchRoundTrip,
    /// Follower: writing what one fetch brought.
    FollowerAppend,
}

impl Stage {
    /// The `stage` label's value.
    pub fn name(self) -> &'static str {
        match self {
            Stage::LeaderAppend => "leader_append",
            Stage::AwaitIsr => "await_isr",
            Stage::FetchWait => "fetch_wait",
            Stage::FetchRoundTrip => "fetch_round_trip",
            Stage::FollowerAppend => "follower_append",
        }
    }
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// gRPC handling time: 100 µs to ~26 s (a unary call; a stream's whole life beyond that lands
/// in `+Inf`).
fn rpc_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// One plugin call (a whole batch group): 10 µs to ~5 s (the largest CPU deadline).
fn plugin_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 2.0, 20))
}

/// A replication stage: 10 µs to ~21 s.
fn stage_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 2.0, 22))
}

/// What the broker counts as it works. One per process ([`global`]): a process is one broker.
pub struct Metrics {
    registry: Registry,
    rpc_started: Family<RpcLabels, Counter>,
    rpc_handled: Family<RpcCodeLabels, Counter>,
    rpc_seconds: Histograms<RpcLabels>,
    rpc_in_flight: Gauge,
    kafka_requests: Family<KafkaErrorLabels, Counter>,
    kafka_seconds: Histograms<KafkaLabels>,
    records_in: Family<TopicLabels, Counter>,
    bytes_in: Family<TopicLabels, Counter>,
    records_out: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    plugin_calls: Family<PluginLabels, Counter>,
    plugin_failures: Family<PluginLabels, Counter>,
    plugin_seconds: Histograms<PluginLabels>,
    stage_seconds: Histograms<StageLabels>,
    /// When the process started (`process_start_time_seconds`).
    started: Duration,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let rpc_started = Family::<RpcLabels, Counter>::default();
        let rpc_handled = Family::<RpcCodeLabels, Counter>::default();
        let rpc_seconds: Histograms<RpcLabels> = Family::new_with_constructor(rpc_histogram);
        let rpc_in_flight = Gauge::default();
        // The go-grpc-prometheus names, so dashboards made for gRPC servers work unchanged.
        registry.register(
            "grpc_server_started",
            "gRPC calls started, by service and method (counted once the method answers)",
            rpc_started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "gRPC calls finished, by service, method and status code (Canceled: the client went away)",
            rpc_handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time from a gRPC call's arrival to the end of its response (a stream's whole life)",
            rpc_seconds.clone(),
        );
        registry.register(
            "weir_rpc_in_flight",
            "gRPC calls being handled now (open streams included)",
            rpc_in_flight.clone(),
        );
        let kafka_requests = Family::<KafkaErrorLabels, Counter>::default();
        let kafka_seconds: Histograms<KafkaLabels> = Family::new_with_constructor(rpc_histogram);
        registry.register(
            "weir_kafka_requests",
            "Kafka-protocol requests answered (--kafka-listen), by API and by the Kafka error \
             code of the request (its first partition's error; NONE)",
            kafka_requests.clone(),
        );
        registry.register(
            "weir_kafka_request_seconds",
            "Time from a Kafka-protocol request's arrival to its response being ready (a \
             Fetch's long poll included)",
            kafka_seconds.clone(),
        );
        let records_in = Family::<TopicLabels, Counter>::default();
        let bytes_in = Family::<TopicLabels, Counter>::default();
        let records_out = Family::<TopicLabels, Counter>::default();
        let bytes_out = Family::<TopicLabels, Counter>::default();
        registry.register(
            "weir_topic_records_in",
            "Records produced to the topic by clients and acknowledged",
            records_in.clone(),
        );
        registry.register(
            "weir_topic_bytes_in",
            "Bytes of record batches produced to the topic by clients and acknowledged",
            bytes_in.clone(),
        );
        registry.register(
            "weir_topic_records_out",
            "Records read from the topic by consumers (fetch and subscribe)",
            records_out.clone(),
        );
        registry.register(
            "weir_topic_bytes_out",
            "Bytes of stored record batches read from the topic by consumers",
            bytes_out.clone(),
        );
        let plugin_calls = Family::<PluginLabels, Counter>::default();
        let plugin_failures = Family::<PluginLabels, Counter>::default();
        let plugin_seconds: Histograms<PluginLabels> =
            Family::new_with_constructor(plugin_histogram);
        registry.register(
            "weir_plugin_calls",
            "Plugin calls (one per batch group, consume time and pipelines)",
            plugin_calls.clone(),
        );
        registry.register(
            "weir_plugin_failures",
            "Plugin calls that failed: trap, CPU deadline, memory cap, malformed output, error",
            plugin_failures.clone(),
        );
        registry.register(
            "weir_plugin_call_seconds",
            "Time of one plugin call",
            plugin_seconds.clone(),
        );
        let stage_seconds: Histograms<StageLabels> = Family::new_with_constructor(stage_histogram);
        registry.register(
            "weir_replication_stage_seconds",
            "Time of each stage of a produce's trip through replication (cluster mode): \
             leader_append, await_isr (acks=all), fetch_wait (leader), fetch_round_trip and \
             follower_append (follower)",
            stage_seconds.clone(),
        );
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            registry,
            rpc_started,
            rpc_handled,
            rpc_seconds,
            rpc_in_flight,
            kafka_requests,
            kafka_seconds,
            records_in,
            bytes_in,
            records_out,
            bytes_out,
            plugin_calls,
            plugin_failures,
            plugin_seconds,
            stage_seconds,
            started,
        }
    }

    /// A gRPC call began; the returned [`RpcCall`] records its end when dropped.
    pub fn rpc_started(&self, service: &str, method: &str) -> RpcCall {
        let labels = RpcLabels {
            grpc_service: service.to_string(),
            grpc_method: method.to_string(),
        };
        self.rpc_in_flight.inc();
        RpcCall {
            labels,
            start: Instant::now(),
            code: None,
            counted: false,
        }
    }

    /// A Kafka-protocol request to `api` that arrived at `started` was answered with `error`
    /// (a Kafka error code's name, `NONE`).
    pub fn kafka_request(&self, api: &'static str, error: &'static str, started: Instant) {
        self.kafka_requests
            .get_or_create(&KafkaErrorLabels { api, error })
            .inc();
        self.kafka_seconds
            .get_or_create(&KafkaLabels { api })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Batches of `records` records, `bytes` long, were produced to `topic` and acknowledged.
    pub fn produced(&self, topic: &str, records: u64, bytes: u64) {
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.records_in.get_or_create(&labels).inc_by(records);
        self.bytes_in.get_or_create(&labels).inc_by(bytes);
    }

    /// Stored batches holding `records` records, `bytes` long, were read from `topic`.
    pub fn consumed(&self, topic: &str, records: u64, bytes: u64) {
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.records_out.get_or_create(&labels).inc_by(records);
        self.bytes_out.get_or_create(&labels).inc_by(bytes);
    }

    /// One call of `plugin` took `took` and succeeded or failed.
    pub fn plugin_called(&self, plugin: &str, took: Duration, ok: bool) {
        let labels = PluginLabels {
            plugin: plugin.to_string(),
        };
        self.plugin_calls.get_or_create(&labels).inc();
        if !ok {
            self.plugin_failures.get_or_create(&labels).inc();
        }
        self.plugin_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// One pass through a replication stage took `took`.
    pub fn stage(&self, stage: Stage, took: Duration) {
        self.stage_seconds
            .get_or_create(&StageLabels {
                stage: stage.name(),
            })
            .observe(took.as_secs_f64());
    }

    /// A topic was deleted: its series go (a topic created again under the name starts at 0).
    pub fn forget_topic(&self, topic: &str) {
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        for family in [
            &self.records_in,
            &self.bytes_in,
            &self.records_out,
            &self.bytes_out,
        ] {
            family.remove(&labels);
        }
    }

    /// A plugin was deleted: its series go.
    pub fn forget_plugin(&self, plugin: &str) {
        let labels = PluginLabels {
            plugin: plugin.to_string(),
        };
        self.plugin_calls.remove(&labels);
        self.plugin_failures.remove(&labels);
        self.plugin_seconds.remove(&labels);
    }
}

/// A gRPC call being handled: counted as handled, with its code and time, when dropped.
///
/// It is counted as started once its method is known to exist ([`RpcCall::confirm`], when
/// the response headers come back: a stream as it opens, a unary call as it ends), so a
/// client cannot make up label values with calls to methods that do not exist.
pub struct RpcCall {
    labels: RpcLabels,
    start: Instant,
    code: Option<&'static str>,
    counted: bool,
}

impl RpcCall {
    /// Counts the call as started (once).
    pub fn confirm(&mut self) {
        if !self.counted {
            self.counted = true;
            global().rpc_started.get_or_create(&self.labels).inc();
        }
    }

    /// The call's status code, by its canonical name (`OK`, `NotFound`, ...).
    pub fn set_code(&mut self, code: &'static str) {
        self.code = Some(code);
    }

    /// The call turned out to name a method the broker does not serve: count it under
    /// `unknown` (a client must not be able to make up label values).
    pub fn set_unknown_method(&mut self) {
        self.labels.grpc_service = "unknown".into();
        self.labels.grpc_method = "unknown".into();
    }
}

impl Drop for RpcCall {
    fn drop(&mut self) {
        self.confirm();
        let m = global();
        m.rpc_in_flight.dec();
        let labels = RpcCodeLabels {
            grpc_service: std::mem::take(&mut self.labels.grpc_service),
            grpc_method: std::mem::take(&mut self.labels.grpc_method),
            // No status seen: the response never finished (the client went away).
            grpc_code: self.code.unwrap_or("Canceled").to_string(),
        };
        m.rpc_handled.get_or_create(&labels).inc();
        let labels = RpcLabels {
            grpc_service: labels.grpc_service,
            grpc_method: labels.grpc_method,
        };
        m.rpc_seconds
            .get_or_create(&labels)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// Appends the counters, in the OpenMetrics text format (without the final `# EOF`).
    pub fn encode(&self, out: &mut String) -> std::fmt::Result {
        encode_registry(out, &self.registry)
    }

    /// When the process started, since the Unix epoch.
    pub fn started(&self) -> Duration {
        self.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_call_is_counted_with_its_code_and_an_unfinished_one_as_canceled() {
        let m = global();
        let mut call = m.rpc_started("weir.v1.Test", "Ok");
        call.set_code("OK");
        drop(call);
        drop(m.rpc_started("weir.v1.Test", "Gone"));
        let mut call = m.rpc_started("weir.v1.Test", "Made-up");
        call.set_code("Unimplemented");
        call.set_unknown_method();
        drop(call);
        let mut text = String::new();
        encode_registry(&mut text, &m.registry).unwrap();
        for line in [
            r#"grpc_server_handled_total{grpc_service="weir.v1.Test",grpc_method="Ok",grpc_code="OK"} 1"#,
            r#"grpc_server_handled_total{grpc_service="weir.v1.Test",grpc_method="Gone",grpc_code="Canceled"} 1"#,
            r#"grpc_server_handled_total{grpc_service="unknown",grpc_method="unknown",grpc_code="Unimplemented"} 1"#,
            r#"grpc_server_handling_seconds_count{grpc_service="weir.v1.Test",grpc_method="Ok"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("Made-up"));
    }

    #[test]
    fn each_replication_stage_is_a_series_of_its_own() {
        let m = global();
        m.stage(Stage::AwaitIsr, Duration::from_micros(700));
        m.stage(Stage::FollowerAppend, Duration::from_millis(3));
        let mut text = String::new();
        encode_registry(&mut text, &m.registry).unwrap();
        // 700 µs falls in the 1.28 ms bucket, not the 0.64 ms one; 3 ms in the 5.12 ms one.
        for (stage, le, below) in [
            ("await_isr", "0.00128", "0.00064"),
            ("follower_append", "0.00512", "0.00256"),
        ] {
            let count = |le: &str| -> u64 {
                let prefix = format!(
                    "weir_replication_stage_seconds_bucket{{le=\"{le}\",stage=\"{stage}\"}} "
                );
                let line = text
                    .lines()
                    .find(|l| l.starts_with(&prefix))
                    .unwrap_or_else(|| panic!("{prefix} missing from\n{text}"));
                line[prefix.len()..].parse().unwrap()
            };
            assert!(count(le) > count(below), "{stage}: {text}");
        }
    }
}
