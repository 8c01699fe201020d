//! Retention by size and by time drops whole old segments and moves the earliest offset,
//! while the newest data stays readable.

use std::time::{Duration, Instant};

use futures::StreamExt;
use weir::{ConsumerConfig, NewTopic, OffsetSpec, ProducerConfig, ProducerRecord, StartFrom};
use weir_e2e::Broker;

async fn wait_for_earliest(client: &weir::Client, topic: &str, pred: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let e = client
            .admin()
            .list_offset(topic, 0, OffsetSpec::Earliest)
            .await
            .unwrap();
        if pred(e) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not act (earliest {e})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `n` records of ~100 bytes one batch each (so segments hold several batches).
async fn fill(client: &weir::Client, topic: &str, n: usize, ts: Option<i64>) {
    let producer = client.producer(ProducerConfig::default());
    for i in 0..n {
        let mut r = ProducerRecord::new(topic, format!("{i:0100}"));
        if let Some(ts) = ts {
            r = r.timestamp(ts);
        }
        producer.send(r).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_retention_keeps_the_newest_data() {
    let broker = Broker::start_with(&["--retention-check-ms", "100"]);
    let client = broker.client().await;
    client
        .admin()
        .create_topic(
            NewTopic::new("sized", 1)
                .segment_bytes(2048)
                .retention_bytes(4096),
        )
        .await
        .unwrap();
    fill(&client, "sized", 300, None).await;
    // Retention runs every 100 ms and the last batches were just written: wait until it has
    // brought the partition within its bound (at most one segment over it, the one being
    // written). It never drops below the bound: it only drops whole segments it can spare.
    let deadline = Instant::now() + Duration::from_secs(30);
    let p = loop {
        let p = client
            .admin()
            .describe_topic("sized")
            .await
            .unwrap()
            .partitions[0];
        assert!(p.size_bytes >= 4096, "dropped below the bound: {p:?}");
        if p.size_bytes < 4096 + 2 * 2048 {
            break p;
        }
        assert!(Instant::now() < deadline, "retention did not act: {p:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(p.latest_offset, 300);
    let earliest = p.earliest_offset;
    assert!(earliest > 200, "earliest {earliest}");
    // Everything from the earliest offset on reads back, ending with the newest record.
    let mut c = client
        .consumer("sized", ConsumerConfig::default())
        .await
        .unwrap();
    let first = c.next().await.unwrap().unwrap();
    assert!(first.offset >= earliest);
    let mut last = first;
    while last.offset < 299 {
        last = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    assert_eq!(last.value, format!("{:0100}", 299));
    // Reading below the earliest offset is out of range.
    let err = client
        .consumer(
            "sized",
            ConsumerConfig::default().start(StartFrom::Offset(0)),
        )
        .await
        .err()
        .expect("offset 0 was dropped");
    assert!(
        // Retention may have dropped another segment since `earliest` was read.
        matches!(err, weir::Error::OffsetOutOfRange { earliest: e, latest: 300, .. } if e >= earliest),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_retention_drops_old_segments_and_then_everything_expired() {
    let broker = Broker::start_with(&["--retention-check-ms", "100"]);
    let client = broker.client().await;
    client
        .admin()
        .create_topic(
            NewTopic::new("timed", 1)
                .segment_bytes(2048)
                .retention_ms(60_000),
        )
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Old records (an hour ago), then fresh ones in a new segment.
    fill(&client, "timed", 60, Some(now - 3_600_000)).await;
    fill(&client, "timed", 60, None).await;
    let earliest = wait_for_earliest(&client, "timed", |e| e > 0).await;
    assert!(earliest <= 60, "fresh records dropped: earliest {earliest}");
    // The old segments are gone; the fresh ones stay.
    let p = client
        .admin()
        .describe_topic("timed")
        .await
        .unwrap()
        .partitions[0];
    assert_eq!(p.latest_offset, 120);
    let mut c = client
        .consumer("timed", ConsumerConfig::default())
        .await
        .unwrap();
    let first = c.next().await.unwrap().unwrap();
    assert!(first.offset <= 60);

    // A topic whose records all expired keeps its log end: offsets continue.
    client
        .admin()
        .create_topic(
            NewTopic::new("expired", 1)
                .segment_bytes(2048)
                .retention_ms(1_000),
        )
        .await
        .unwrap();
    fill(&client, "expired", 30, Some(now - 3_600_000)).await;
    let e = wait_for_earliest(&client, "expired", |e| e == 30).await;
    assert_eq!(e, 30);
    let producer = client.producer(ProducerConfig::default());
    assert_eq!(
        producer
            .send(ProducerRecord::new("expired", "new"))
            .await
            .unwrap(),
        (0, 30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_survives_restart() {
    let mut broker = Broker::start_with(&["--retention-check-ms", "100"]);
    let client = broker.client().await;
    client
        .admin()
        .create_topic(
            NewTopic::new("r", 1)
                .segment_bytes(2048)
                .retention_bytes(2048),
        )
        .await
        .unwrap();
    fill(&client, "r", 200, None).await;
    let earliest = wait_for_earliest(&client, "r", |e| e > 0).await;
    drop(client);
    broker.kill9();
    broker.restart();
    let client = broker.client().await;
    let p = client.admin().describe_topic("r").await.unwrap().partitions[0];
    assert!(p.earliest_offset >= earliest);
    assert_eq!(p.latest_offset, 200);
}
