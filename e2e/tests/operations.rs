//! Operating a broker: the gRPC health service and `weir status`.

use std::time::{Duration, Instant};

use weir::{Health, NewPipeline, PipelineStatus, ProducerConfig, ProducerRecord};
use weir_e2e::{Broker, hostile_plugin, register_examples};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_service_answers_for_the_broker_and_each_service() {
    let broker = Broker::start();
    let admin = broker.client().await.admin();
    assert_eq!(admin.health("").await.unwrap(), Health::Serving);
    for service in [
        "weir.v1.Log",
        "weir.v1.Topics",
        "weir.v1.Groups",
        "weir.v1.Plugins",
    ] {
        assert_eq!(
            admin.health(service).await.unwrap(),
            Health::Serving,
            "{service}"
        );
    }
    assert_eq!(
        admin.health("weir.v1.NoSuch").await.unwrap(),
        Health::UnknownService
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_status_sums_up_the_broker_and_fails_when_something_needs_attention() {
    let broker = Broker::start();
    let client = broker.client_with_topic("src", 3).await;
    let admin = client.admin();
    admin
        .create_topic(weir::NewTopic::new("dst", 1))
        .await
        .unwrap();
    let p = client.producer(ProducerConfig::default());
    for i in 0..10 {
        p.enqueue(ProducerRecord::new("src", format!("v{i}")))
            .await
            .unwrap();
    }
    p.flush().await.unwrap();
    register_examples(&admin).await;

    let out = broker.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("broker     {}  SERVING", broker.addr));
    assert_eq!(lines[1], "cluster    standalone");
    // The broker's release and commit: what `weir-broker --version` says after its name.
    let version = broker_version();
    assert_eq!(lines[2], format!("version    {version}"));
    assert!(
        lines[3].starts_with("topics     2 topics, 4 partitions, 10 records, "),
        "{text}"
    );
    assert_eq!(lines[6], "pipelines  0 running, 0 failed, lag 0");
    assert_eq!(lines.len(), 7, "nothing needs attention: {text}");

    // The totals a rate is sampled from (the console's chart): records appended, and
    // committed offsets summed over groups.
    let s = admin.status().await.unwrap();
    assert_eq!((s.produced, s.committed), (Some(10), Some(0)));
    let ends: Vec<(u32, u64)> = admin
        .describe_topic("src")
        .await
        .unwrap()
        .partitions
        .iter()
        .map(|p| (p.partition, p.latest_offset))
        .collect();
    admin.commit_offsets("readers", "src", &ends).await.unwrap();
    let s = admin.status().await.unwrap();
    assert_eq!((s.produced, s.committed), (Some(10), Some(10)));
    assert_eq!(s.group_lag, vec![("readers".to_string(), 0, 0)]);

    // A failed pipeline needs attention: listed, and exit code 1 with the reason.
    fail_a_pipeline(&admin, "src", "dst").await;
    let out = broker.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("pipelines  0 running, 1 failed"), "{text}");
    assert!(text.contains("! pipeline bad failed: "), "{text}");
    assert!(
        err.starts_with("error: 1 thing(s) need attention: pipeline bad failed"),
        "{err}"
    );
}

/// Creates pipeline `bad` from `from` to `to` through plugin `fragile`, which traps, and waits
/// until it failed.
async fn fail_a_pipeline(admin: &weir::Admin, from: &str, to: &str) {
    admin
        .register_plugin("fragile", hostile_plugin("unreachable"))
        .await
        .unwrap();
    admin
        .create_pipeline(NewPipeline::new("bad", from, to).plugin("fragile", None))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin.describe_pipeline("bad").await.unwrap().status != PipelineStatus::Failed {
        assert!(Instant::now() < deadline, "the pipeline never failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `weir status` against `broker` until `done(exit ok, stdout)` (up to 30 s).
/// `VERSION (COMMIT)` of the broker binary under test, from `weir-broker --version`.
fn broker_version() -> String {
    let out = std::process::Command::new(weir_e2e::bin("weir-broker"))
        .arg("--version")
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    line.trim()
        .strip_prefix("weir-broker ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string()
}

#[test]
fn the_alert_rules_load_and_fire_as_their_unit_tests_say() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/prometheus");
    for args in [
        &["check", "rules", "weir-alerts.yml"][..],
        &["test", "rules", "weir-alerts.test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian's prometheus package; scripts/setup installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn both_binaries_print_their_version_and_commit() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    for name in ["weir-broker", "weir"] {
        let out = std::process::Command::new(weir_e2e::bin(name))
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.status.success());
        let line = String::from_utf8(out.stdout).unwrap();
        // `NAME VERSION (COMMIT)` (SPEC.md), the version being the workspace's.
        let rest = line
            .trim()
            .strip_prefix(&format!("{name} {} (", env!("CARGO_PKG_VERSION")))
            .unwrap_or_else(|| panic!("{line:?}"));
        let built = rest.strip_suffix(')').unwrap();
        // Built from this checkout (unless the build was told another commit).
        match (&commit, std::env::var_os("WEIR_GIT_COMMIT")) {
            (Some(head), None) => assert_eq!(built, head, "{line:?}"),
            _ => assert!(!built.is_empty(), "{line:?}"),
        }
    }
    assert_eq!(
        broker_version().split_once(' ').unwrap().0,
        env!("CARGO_PKG_VERSION")
    );
}

fn status_until(broker: &Broker, what: &str, done: impl Fn(bool, &str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = broker.cli(&["status"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if done(out.status.success(), &text) {
            return text;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_status_shows_the_cluster_and_an_unreachable_member() {
    let mut c = weir_e2e::TestCluster::start(3);
    let text = status_until(&c.brokers[0], "a controller", |ok, _| ok);
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with("cluster    3 nodes, controller node "),
        "{text}"
    );
    // Every member runs this build: one version.
    assert_eq!(
        text.lines().nth(2).unwrap(),
        format!("version    {}", broker_version()),
        "{text}"
    );
    c.brokers[2].kill9();
    let text = status_until(&c.brokers[0], "node 3 unreachable", |ok, t| {
        !ok && t.contains("! node 3 (")
    });
    assert!(text.contains("is unreachable"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_after_traffic_and_add_up() {
    let metrics_addr = format!("127.0.0.1:{}", weir_e2e::free_port());
    let broker = Broker::start_with(&["--metrics-listen", &metrics_addr]);
    let client = broker.client_with_topic("orders", 3).await;
    let admin = client.admin();
    admin
        .create_topic(weir::NewTopic::new("upper", 1))
        .await
        .unwrap();
    let err = admin
        .create_topic(weir::NewTopic::new("orders", 1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    register_examples(&admin).await;

    // 1000 records produced, read by a group that commits them all, then 100 more: lag 100.
    let lines: String = (0..1000).map(|i| format!("k{i}:order {i}\n")).collect();
    broker.cli_with_stdin(
        &["produce", "orders", "--key-separator", ":"],
        lines.as_bytes(),
    );
    let read = broker.cli_ok(&[
        "consume",
        "orders",
        "--group",
        "billing",
        "--max",
        "1000",
        "--idle-timeout",
        "3000",
    ]);
    assert_eq!(read.lines().count(), 1000);
    let more: String = (0..100).map(|i| format!("late {i}\n")).collect();
    broker.cli_with_stdin(&["produce", "orders"], more.as_bytes());
    // A consume-time plugin, and a pipeline whose plugin traps.
    let upper = broker.cli_ok(&[
        "consume",
        "orders",
        "--plugin",
        "uppercase",
        "--max",
        "10",
        "--idle-timeout",
        "3000",
    ]);
    assert!(upper.starts_with("ORDER"), "{upper}");
    fail_a_pipeline(&admin, "orders", "upper").await;

    let m = weir_e2e::metrics::scrape(&metrics_addr);
    let orders = [("topic", "orders")];
    // gRPC calls by service, method and code; each finished call is timed.
    let topics_ok = [
        ("grpc_service", "weir.v1.Topics"),
        ("grpc_method", "CreateTopic"),
    ];
    assert_eq!(m.types["grpc_server_handled"], "counter");
    assert_eq!(m.types["grpc_server_handling_seconds"], "histogram");
    let code = |c| {
        let mut l = topics_ok.to_vec();
        l.push(("grpc_code", c));
        m.sum("grpc_server_handled_total", &l)
    };
    assert_eq!(code("OK"), Some(2.0));
    assert_eq!(code("AlreadyExists"), Some(1.0));
    assert_eq!(m.sum("grpc_server_started_total", &topics_ok), Some(3.0));
    assert_eq!(
        m.sum("grpc_server_handling_seconds_count", &topics_ok),
        Some(3.0)
    );
    let mut inf = topics_ok.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        m.sum("grpc_server_handling_seconds_bucket", &inf),
        Some(3.0)
    );
    assert!(
        m.sum(
            "grpc_server_handled_total",
            &[
                ("grpc_service", "weir.v1.Groups"),
                ("grpc_method", "Heartbeat")
            ]
        )
        .unwrap()
            >= 1.0
    );
    // Records and bytes in and out per topic.
    assert_eq!(m.sum("weir_topic_records_in_total", &orders), Some(1100.0));
    assert!(m.sum("weir_topic_bytes_in_total", &orders).unwrap() > 11_000.0);
    assert!(m.sum("weir_topic_records_out_total", &orders).unwrap() >= 1010.0);
    assert!(m.sum("weir_topic_bytes_out_total", &orders).unwrap() > 10_000.0);
    // Partition offsets, and the group's lag on them.
    assert_eq!(
        m.sum("weir_partition_high_watermark", &orders),
        Some(1100.0)
    );
    assert_eq!(
        m.sum("weir_partition_log_end_offset", &orders),
        Some(1100.0)
    );
    assert_eq!(
        m.matching("weir_partition_high_watermark", &orders).count(),
        3
    );
    let billing = [("group", "billing"), ("topic", "orders")];
    assert_eq!(m.sum("weir_group_lag", &billing), Some(100.0));
    assert_eq!(m.sum("weir_group_committed_offset", &billing), Some(1000.0));
    assert_eq!(
        m.sum("weir_group_members", &[("group", "billing")]),
        Some(0.0)
    );
    // Plugins: calls timed, failures counted; the pipeline's state and lag.
    assert!(
        m.sum("weir_plugin_calls_total", &[("plugin", "uppercase")])
            .unwrap()
            >= 1.0
    );
    assert_eq!(
        m.sum("weir_plugin_failures_total", &[("plugin", "uppercase")]),
        None
    );
    assert!(
        m.sum("weir_plugin_failures_total", &[("plugin", "fragile")])
            .unwrap()
            >= 1.0
    );
    assert!(
        m.sum("weir_plugin_call_seconds_count", &[("plugin", "fragile")])
            .unwrap()
            >= 1.0
    );
    let bad = |state| {
        m.sum(
            "weir_pipeline_state",
            &[("pipeline", "bad"), ("state", state)],
        )
    };
    assert_eq!((bad("failed"), bad("running")), (Some(1.0), Some(0.0)));
    assert_eq!(
        m.sum("weir_pipeline_lag", &[("pipeline", "bad")]),
        Some(1100.0)
    );
    // RocksDB and the process.
    let records_cf = [("cf", "records")];
    assert!(m.sum("weir_rocksdb_memtable_bytes", &records_cf).unwrap() > 0.0);
    assert!(m.sum("weir_rocksdb_sst_bytes", &records_cf).is_some());
    assert!(m.sum("weir_rocksdb_blob_bytes", &records_cf).is_some());
    assert!(
        m.sum("weir_rocksdb_pending_compaction_bytes", &records_cf)
            .is_some()
    );
    assert!(m.sum("process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(m.sum("process_open_fds", &[]).unwrap() > 3.0);
    let (version, commit) = broker_version()
        .split_once(" (")
        .map(|(v, c)| (v.to_string(), c.trim_end_matches(')').to_string()))
        .unwrap();
    assert_eq!(
        m.sum(
            "weir_build_info",
            &[("version", version.as_str()), ("commit", commit.as_str())]
        ),
        Some(1.0)
    );

    // A deleted topic's series go; other paths and methods are refused.
    admin.delete_pipeline("bad").await.unwrap();
    admin.delete_topic("upper").await.unwrap();
    let m = weir_e2e::metrics::scrape(&metrics_addr);
    assert_eq!(
        m.matching("weir_partition_high_watermark", &[("topic", "upper")])
            .count(),
        0
    );
    assert_eq!(m.sum("weir_pipeline_lag", &[("pipeline", "bad")]), None);
    let (status, _, _) = weir_e2e::metrics::http_get(&metrics_addr, "/");
    assert_eq!(status, 404);
}
