//! Records through the Rust SDK against a real broker: round trip, partitioning, offsets,
//! timestamps.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use weir::{
    ConsumerConfig, OffsetSpec, ProducerConfig, ProducerRecord, StartFrom, partition_for_key,
};
use weir_e2e::Broker;

async fn collect(consumer: &mut weir::Consumer, n: usize) -> Vec<weir::ConsumerRecord> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records arrived", out.len()));
        out.push(next.expect("stream open").expect("record"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_keyed_records_round_trip_in_order() {
    let broker = Broker::start();
    let client = broker.client_with_topic("orders", 4).await;
    let producer = client.producer(ProducerConfig::default());
    let n = 5_000;
    let mut acks = Vec::new();
    for i in 0..n {
        let key = format!("customer-{}", i % 37);
        let value = format!("заказ #{i} — 注文 ✓ {}", "ü".repeat(i % 50));
        let rec = ProducerRecord::new("orders", value)
            .key(key)
            .header("seq", i.to_string());
        acks.push(producer.enqueue(rec).await.unwrap());
    }
    producer.flush().await.unwrap();
    let mut sent: HashMap<(u32, u64), usize> = HashMap::new();
    for (i, ack) in acks.into_iter().enumerate() {
        let (p, off) = ack.await.unwrap();
        let key = format!("customer-{}", i % 37);
        assert_eq!(
            p,
            partition_for_key(key.as_bytes(), 4),
            "same key → same partition"
        );
        assert!(sent.insert((p, off), i).is_none(), "offset given twice");
    }
    // Offsets are exactly 0..count-1 per partition.
    let desc = client.admin().describe_topic("orders").await.unwrap();
    let mut total = 0;
    for p in &desc.partitions {
        let count = sent.keys().filter(|(q, _)| *q == p.partition).count() as u64;
        assert_eq!((p.earliest_offset, p.latest_offset), (0, count));
        for o in 0..count {
            assert!(sent.contains_key(&(p.partition, o)));
        }
        total += count;
    }
    assert_eq!(total, n as u64);

    let mut consumer = client
        .consumer("orders", ConsumerConfig::default())
        .await
        .unwrap();
    let records = collect(&mut consumer, n).await;
    let mut last: HashMap<u32, u64> = HashMap::new();
    for r in &records {
        let i = sent[&(r.partition, r.offset)];
        assert_eq!(
            r.value,
            format!("заказ #{i} — 注文 ✓ {}", "ü".repeat(i % 50)).as_bytes()
        );
        assert_eq!(
            r.key.as_deref(),
            Some(format!("customer-{}", i % 37).as_bytes())
        );
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.headers[0].value, i.to_string().as_bytes());
        if let Some(prev) = last.insert(r.partition, r.offset) {
            assert_eq!(r.offset, prev + 1, "offsets in order within a partition");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_follows_new_records_and_starts_where_asked() {
    let broker = Broker::start();
    let client = broker.client_with_topic("live", 1).await;
    let producer = client.producer(ProducerConfig::default());
    for i in 0..10 {
        producer
            .send(ProducerRecord::new("live", format!("old-{i}")))
            .await
            .unwrap();
    }
    let mut from_latest = client
        .consumer("live", ConsumerConfig::default().start(StartFrom::Latest))
        .await
        .unwrap();
    let mut from_offset = client
        .consumer(
            "live",
            ConsumerConfig::default().start(StartFrom::Offset(7)),
        )
        .await
        .unwrap();
    for i in 0..5 {
        producer
            .send(ProducerRecord::new("live", format!("new-{i}")))
            .await
            .unwrap();
    }
    let got: Vec<_> = collect(&mut from_latest, 5)
        .await
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(got, (0..5).map(|i| format!("new-{i}")).collect::<Vec<_>>());
    let got = collect(&mut from_offset, 8).await;
    assert_eq!(got[0].offset, 7);
    assert_eq!(got[0].value, "old-7");
    assert_eq!(got[7].value, "new-4");
    assert_eq!(from_offset.position(0), Some(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_by_timestamp_finds_the_first_record_at_or_after() {
    let broker = Broker::start();
    let client = broker.client_with_topic("timed", 1).await;
    let producer = client.producer(ProducerConfig::default());
    // Producer-set timestamps, several batches, one out of order.
    let stamps = [1_000, 2_000, 2_000, 1_500, 3_000, 4_000, 5_000];
    for (i, ts) in stamps.iter().enumerate() {
        producer
            .send(ProducerRecord::new("timed", format!("r{i}")).timestamp(*ts))
            .await
            .unwrap();
    }
    let admin = client.admin();
    let at = |ts| admin.list_offset("timed", 0, OffsetSpec::Timestamp(ts));
    assert_eq!(at(0).await.unwrap(), 0);
    assert_eq!(at(1_000).await.unwrap(), 0);
    assert_eq!(at(1_001).await.unwrap(), 1);
    assert_eq!(at(2_500).await.unwrap(), 4);
    assert_eq!(at(5_000).await.unwrap(), 6);
    assert_eq!(
        at(5_001).await.unwrap(),
        7,
        "past every record: the log end"
    );
    let mut c = client
        .consumer(
            "timed",
            ConsumerConfig::default().start(StartFrom::Timestamp(3_000)),
        )
        .await
        .unwrap();
    let got = collect(&mut c, 3).await;
    assert_eq!(
        got.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
        vec![3_000, 4_000, 5_000]
    );

    // Broker-stamped records (no timestamp given) get the append time.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    producer
        .send(ProducerRecord::new("timed", "now"))
        .await
        .unwrap();
    let mut c = client
        .consumer(
            "timed",
            ConsumerConfig::default().start(StartFrom::Offset(7)),
        )
        .await
        .unwrap();
    let r = &collect(&mut c, 1).await[0];
    assert!(
        r.timestamp >= before && r.timestamp < before + 60_000,
        "{} vs {before}",
        r.timestamp
    );
    assert_eq!(
        admin
            .list_offset("timed", 0, OffsetSpec::Timestamp(before))
            .await
            .unwrap(),
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_spread_over_partitions() {
    let broker = Broker::start();
    let client = broker.client_with_topic("spread", 4).await;
    let producer = client.producer(ProducerConfig {
        batch_bytes: 2048,
        ..ProducerConfig::default()
    });
    let mut acks = Vec::new();
    for i in 0..4_000 {
        acks.push(
            producer
                .enqueue(ProducerRecord::new("spread", format!("v{i:06}")))
                .await
                .unwrap(),
        );
    }
    producer.flush().await.unwrap();
    let mut used = std::collections::HashSet::new();
    for a in acks {
        used.insert(a.await.unwrap().0);
    }
    assert_eq!(
        used.len(),
        4,
        "sticky partitioner moves on after each batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_carry_the_stored_timestamp_and_paused_partitions_wait() {
    let broker = Broker::start();
    let client = broker.client_with_topic("ctl", 2).await;
    let producer = client.producer(ProducerConfig::default());
    let mut deliveries = Vec::new();
    for i in 0..20u32 {
        let rec = ProducerRecord::new("ctl", format!("v{i}")).partition(i % 2);
        let rec = if i == 0 { rec.timestamp(42_000) } else { rec };
        deliveries.push(producer.enqueue(rec).await.unwrap());
    }
    producer.flush().await.unwrap();
    let first = deliveries[0].try_delivery().unwrap().unwrap();
    assert_eq!(
        (first.partition, first.offset, first.timestamp),
        (0, 0, 42_000)
    );
    // One batch per partition and timestamp type.
    assert!(deliveries[2].same_batch(&deliveries[4]));
    assert!(!deliveries[0].same_batch(&deliveries[2]));
    let stamped = deliveries[1].clone().delivery().await.unwrap();
    assert!(
        stamped.timestamp > 42_000,
        "a broker-stamped record has its append time"
    );

    let mut c = client
        .consumer("ctl", ConsumerConfig::default())
        .await
        .unwrap();
    c.pause(&[1]).unwrap();
    assert_eq!(c.paused(), vec![1]);
    let got = collect(&mut c, 10).await;
    assert!(got.iter().all(|r| r.partition == 0));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.next())
            .await
            .is_err(),
        "nothing from the paused partition"
    );
    assert_eq!(
        got[1].timestamp,
        deliveries[2].try_delivery().unwrap().unwrap().timestamp
    );
    c.resume(&[1]).unwrap();
    let got = collect(&mut c, 10).await;
    assert_eq!(
        got.iter()
            .map(|r| (r.partition, r.offset))
            .collect::<Vec<_>>(),
        (0..10).map(|o| (1, o)).collect::<Vec<_>>()
    );
    assert!(c.pause(&[5]).is_err());
    c.seek_to_time(0, 42_000).await.unwrap();
    assert_eq!(collect(&mut c, 1).await[0].value, "v0");

    let admin = client.admin();
    let found = admin
        .list_offsets(
            "ctl",
            &[
                (0, OffsetSpec::Timestamp(42_001)),
                (1, OffsetSpec::Earliest),
            ],
        )
        .await
        .unwrap();
    assert_eq!(found, vec![(0, 1), (1, 0)]);
}
