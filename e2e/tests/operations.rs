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
    assert!(
        lines[2].starts_with("topics     2 topics, 4 partitions, 10 records, "),
        "{text}"
    );
    assert_eq!(lines[5], "pipelines  0 running, 0 failed, lag 0");
    assert_eq!(lines.len(), 6, "nothing needs attention: {text}");

    // A failed pipeline needs attention: listed, and exit code 1 with the reason.
    admin
        .register_plugin("fragile", hostile_plugin("unreachable"))
        .await
        .unwrap();
    admin
        .create_pipeline(NewPipeline::new("bad", "src", "dst").plugin("fragile", None))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin.describe_pipeline("bad").await.unwrap().status != PipelineStatus::Failed {
        assert!(Instant::now() < deadline, "the pipeline never failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// Runs `weir status` against `broker` until `done(exit ok, stdout)` (up to 30 s).
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
    c.brokers[2].kill9();
    let text = status_until(&c.brokers[0], "node 3 unreachable", |ok, t| {
        !ok && t.contains("! node 3 (")
    });
    assert!(text.contains("is unreachable"), "{text}");
}
