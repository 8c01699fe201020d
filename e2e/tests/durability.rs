//! Acknowledged records survive `kill -9`; SIGTERM stops cleanly; restart serves everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use weir::{ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord};
use weir_e2e::Broker;

async fn read_all(client: &weir::Client, topic: &str, n: usize) -> Vec<weir::ConsumerRecord> {
    let mut c = client
        .consumer(topic, ConsumerConfig::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), c.next()).await {
            Ok(Some(r)) => out.push(r.unwrap()),
            _ => panic!("only {} of {n} records readable", out.len()),
        }
    }
    out
}

/// Produces in the background, kills the broker with SIGKILL mid-stream, restarts it, and
/// checks every record acknowledged before the kill is there with its value.
async fn read_until_idle(client: &weir::Client, topic: &str) -> Vec<weir::ConsumerRecord> {
    let mut c = client
        .consumer(topic, ConsumerConfig::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(2), c.next()).await {
        out.push(r.unwrap());
    }
    out
}

async fn sigkill_keeps_every_acknowledged_record(fsync: &str) {
    let mut broker = Broker::start_with(&["--fsync", fsync]);
    let client = broker.client_with_topic("ledger", 3).await;
    let acked: Arc<Mutex<Vec<(u32, u64, u32)>>> = Arc::default();
    let producer = client.producer(ProducerConfig {
        linger: Duration::from_millis(1),
        // What the aborted producer still holds is delivered after the restart: keep it small.
        buffer_bytes: 1024 * 1024,
        ..ProducerConfig::default()
    });
    let sink = Arc::clone(&acked);
    let writer = tokio::spawn(async move {
        for i in 0..1_000_000u32 {
            let rec =
                ProducerRecord::new("ledger", format!("entry-{i}")).key(format!("k{}", i % 11));
            let Ok(ack) = producer.enqueue(rec).await else {
                break;
            };
            let sink = Arc::clone(&sink);
            tokio::spawn(async move {
                if let Ok((p, o)) = ack.await {
                    sink.lock().unwrap().push((p, o, i));
                }
            });
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 5_000 {
        assert!(Instant::now() < deadline, "producing stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // What was acknowledged before the kill is in `acked` (an acknowledgement still on its
    // way to the list only makes the check below weaker, never wrong).
    broker.kill9();
    writer.abort();
    let acked: Vec<_> = acked.lock().unwrap().clone();
    drop(client);
    broker.restart();
    let client = broker.client().await;
    let desc = client.admin().describe_topic("ledger").await.unwrap();
    let total: u64 = desc.partitions.iter().map(|p| p.latest_offset).sum();
    assert!(
        total >= acked.len() as u64,
        "{total} records stored, {} acknowledged",
        acked.len()
    );
    // Read everything there is (the aborted producer may still deliver buffered records to
    // the restarted broker, so the count can grow while we read).
    let records = read_until_idle(&client, "ledger").await;
    assert!(records.len() as u64 >= total);
    let stored: HashMap<(u32, u64), &weir::ConsumerRecord> = records
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    for (p, o, i) in &acked {
        let r = stored
            .get(&(*p, *o))
            .expect("acknowledged record survives kill -9");
        assert_eq!(r.value, format!("entry-{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_default_fsync() {
    sigkill_keeps_every_acknowledged_record("interval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_fsync_never_still_survives_a_process_crash() {
    sigkill_keeps_every_acknowledged_record("never").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_before_kill_with_fsync_always() {
    let mut broker = Broker::start_with(&["--fsync", "always"]);
    let client = broker.client_with_topic("t", 1).await;
    let producer = client.producer(ProducerConfig::default());
    let mut offsets = Vec::new();
    for i in 0..50 {
        offsets.push(
            producer
                .send(ProducerRecord::new("t", format!("v{i}")))
                .await
                .unwrap()
                .1,
        );
    }
    assert_eq!(offsets, (0..50).collect::<Vec<_>>());
    broker.kill9();
    broker.restart();
    let client = broker.client().await;
    let records = read_all(&client, "t", 50).await;
    assert_eq!(records[49].value, "v49");
    // The log goes on where it stopped: new offsets continue, never reuse.
    let producer = client.producer(ProducerConfig::default());
    assert_eq!(
        producer
            .send(ProducerRecord::new("t", "after"))
            .await
            .unwrap(),
        (0, 50)
    );
}

/// Fsyncs of the broker's write-ahead log so far, from its metrics.
fn wal_syncs(metrics: &str) -> u64 {
    weir_e2e::metrics::scrape(metrics)
        .sum("weir_rocksdb_wal_syncs_total", &[])
        .expect("weir_rocksdb_wal_syncs_total") as u64
}

/// What `--fsync` promises, seen from outside: `always` fsyncs the WAL for every
/// acknowledged write (50 produce calls answered one after another: at least 50 fsyncs),
/// `interval` on a timer whether or not anything is written, `never` not at all while it
/// runs. (A SIGKILL keeps the page cache, so the kill tests above cannot tell them apart; the
/// storage unit tests show `always` syncs before an append returns.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fsync_mode_syncs_the_write_ahead_log_as_documented() {
    for mode in ["always", "interval", "never"] {
        let metrics = format!("127.0.0.1:{}", weir_e2e::free_port());
        let broker = Broker::start_with(&[
            "--fsync",
            mode,
            "--fsync-interval-ms",
            "50",
            "--metrics-listen",
            &metrics,
        ]);
        let client = broker.client_with_topic("t", 1).await;
        let producer = client.producer(ProducerConfig::default());
        // The first send also allocates the producer id (metadata, always synced).
        producer
            .send(ProducerRecord::new("t", "first"))
            .await
            .unwrap();
        let before = wal_syncs(&metrics);
        for i in 0..50 {
            producer
                .send(ProducerRecord::new("t", format!("v{i}")))
                .await
                .unwrap();
        }
        let after = wal_syncs(&metrics);
        match mode {
            "always" => assert!(after - before >= 50, "{mode}: {before} → {after}"),
            "never" => assert_eq!(after, before, "{mode}"),
            _ => {
                // Ticks go on while nothing is written.
                let deadline = Instant::now() + Duration::from_secs(30);
                while wal_syncs(&metrics) < after + 3 {
                    assert!(Instant::now() < deadline, "{mode}: no fsync on a timer");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_and_restart_serves_topics_and_records() {
    let mut broker = Broker::start();
    let client = broker.client().await;
    let admin = client.admin();
    admin.create_topic(NewTopic::new("a", 2)).await.unwrap();
    admin
        .create_topic(NewTopic::new("b", 1).retention_ms(-1).segment_bytes(4096))
        .await
        .unwrap();
    let producer = client.producer(ProducerConfig::default());
    for i in 0..100 {
        producer
            .enqueue(ProducerRecord::new("b", format!("{i}")))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    // A live subscription must not keep the broker from stopping.
    let _follower = client
        .consumer("b", ConsumerConfig::default())
        .await
        .unwrap();
    let status = broker.terminate();
    assert!(status.success(), "SIGTERM exit status {status:?}");
    broker.restart();
    let client = broker.client().await;
    let topics = client.admin().list_topics().await.unwrap();
    assert_eq!(
        topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    let b = &topics[1];
    assert_eq!((b.retention_ms, b.segment_bytes), (None, 4096));
    let records = read_all(&client, "b", 100).await;
    assert_eq!(records.last().unwrap().value, "99");
}

/// grpc.health.v1: a watcher sees SERVING, then NOT_SERVING as soon as SIGTERM starts the
/// shutdown (before the broker stops serving), so load balancers stop sending new calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_not_serving_once_shutdown_begins() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut broker = Broker::start();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", broker.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watches = Vec::new();
    for service in ["", "weir.v1.Log"] {
        let mut w = HealthClient::new(channel.clone())
            .watch(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = w.message().await.unwrap().expect("a status");
        assert_eq!(first.status(), ServingStatus::Serving, "{service:?}");
        watches.push((service, w));
    }
    let status = broker.terminate();
    assert!(status.success(), "{status:?}");
    for (service, mut w) in watches {
        let next = w.message().await;
        assert!(
            matches!(&next, Ok(Some(r)) if r.status() == ServingStatus::NotServing),
            "{service:?}: {next:?}"
        );
    }
}

async fn next(c: &mut weir::Consumer) -> weir::ConsumerRecord {
    let r = tokio::time::timeout(Duration::from_secs(30), c.next()).await;
    r.expect("record within 30 s")
        .expect("stream open")
        .expect("record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_resumes_across_broker_restarts_without_gaps_or_repeats() {
    let mut broker = Broker::start();
    let client = broker.client_with_topic("feed", 2).await;
    let produce = |client: weir::Client, from: u32, to: u32| async move {
        let producer = client.producer(ProducerConfig::default());
        for i in from..to {
            producer
                .enqueue(ProducerRecord::new("feed", format!("{i}")).key(format!("k{i}")))
                .await
                .unwrap();
        }
        producer.flush().await.unwrap();
    };
    produce(client.clone(), 0, 100).await;
    let mut consumer = client
        .consumer("feed", ConsumerConfig::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..60 {
        seen.push(next(&mut consumer).await);
    }
    // A crash, then a clean stop: the consumer rides through both.
    broker.kill9();
    broker.restart();
    produce(broker.client().await, 100, 150).await;
    for _ in 60..120 {
        seen.push(next(&mut consumer).await);
    }
    broker.terminate();
    broker.restart();
    produce(broker.client().await, 150, 200).await;
    for _ in 120..200 {
        seen.push(next(&mut consumer).await);
    }
    let mut values: Vec<u32> = seen
        .iter()
        .map(|r| std::str::from_utf8(&r.value).unwrap().parse().unwrap())
        .collect();
    values.sort_unstable();
    assert_eq!(
        values,
        (0..200).collect::<Vec<_>>(),
        "every record exactly once"
    );
    for p in [0, 1] {
        let offsets: Vec<u64> = seen
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        assert_eq!(
            offsets,
            (0..offsets.len() as u64).collect::<Vec<_>>(),
            "partition {p} in order"
        );
    }
    // seek: go back and read a partition again.
    consumer.seek(0, 0).unwrap();
    let again = next(&mut consumer).await;
    assert_eq!((again.partition, again.offset), (0, 0));
    assert!(consumer.seek(9, 0).is_err());
}
