//! The producer's guarantees against a real broker: broker-side deduplication of idempotent
//! batches (raw gRPC), exactly-once across `kill -9` with retries, per-partition order with
//! many batches in flight, backpressure, and compression.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tonic::Code;
use weir::{Compression, ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord};
use weir_common::batch::{self, BatchBuilder, TimestampType};
use weir_common::limits::MAX_IN_FLIGHT_BATCHES_PER_PARTITION;
use weir_e2e::Broker;
use weir_proto::v1 as pb;
use weir_proto::v1::log_client::LogClient;

fn idempotent_batch(producer_id: u64, seq: u32, values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(TimestampType::LogAppendTime);
    for v in values {
        b.push(0, None, v.as_bytes(), std::iter::empty());
    }
    let mut bytes = b.finish().to_vec();
    batch::set_producer(&mut bytes, producer_id, seq);
    Bytes::from(bytes)
}

async fn produce_raw(
    log: &mut LogClient<tonic::transport::Channel>,
    batch: Bytes,
) -> Result<pb::PartitionAppend, tonic::Status> {
    let resp = log
        .produce(pb::ProduceRequest {
            acks: pb::Acks::All as i32,
            topic: "t".into(),
            batches: vec![pb::PartitionBatch {
                partition: 0,
                batch,
            }],
        })
        .await?;
    Ok(resp.into_inner().appends[0])
}

async fn read_values(client: &weir::Client, topic: &str) -> Vec<(u32, u64, String)> {
    let mut c = client
        .consumer(topic, ConsumerConfig::default())
        .await
        .unwrap();
    let desc = client.admin().describe_topic(topic).await.unwrap();
    let total: u64 = desc.partitions.iter().map(|p| p.latest_offset).sum();
    let mut out = Vec::new();
    while (out.len() as u64) < total {
        let r = tokio::time::timeout(Duration::from_secs(20), c.next())
            .await
            .expect("records keep coming")
            .expect("stream open")
            .expect("record");
        out.push((
            r.partition,
            r.offset,
            String::from_utf8(r.value.to_vec()).unwrap(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_announces_its_dedupe_window_and_honours_all_of_it() {
    let broker = Broker::start();
    broker.client_with_topic("t", 1).await;
    let mut log = LogClient::connect(format!("http://{}", broker.addr))
        .await
        .unwrap();
    let resp = log
        .init_producer(pb::InitProducerRequest {})
        .await
        .unwrap()
        .into_inner();
    let window = resp.dedupe_window;
    assert_eq!(window as usize, MAX_IN_FLIGHT_BATCHES_PER_PARTITION);
    let id = resp.producer_id;
    // One batch more than the window: the first falls out of it.
    let mut placed = Vec::new();
    for seq in 0..=window {
        let v = format!("r{seq}");
        placed.push(
            produce_raw(&mut log, idempotent_batch(id, seq, &[v.as_str()]))
                .await
                .unwrap(),
        );
    }
    // The oldest batch still remembered: a retry, answered with its offsets.
    let retry = produce_raw(&mut log, idempotent_batch(id, 1, &["r1"]))
        .await
        .unwrap();
    assert_eq!(retry, placed[1]);
    // The forgotten one is refused, never appended twice.
    let err = produce_raw(&mut log, idempotent_batch(id, 0, &["r0"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_drops_retried_batches_and_refuses_gaps_even_after_restart() {
    let mut broker = Broker::start();
    broker.client_with_topic("t", 1).await;
    let url = format!("http://{}", broker.addr);
    let mut log = LogClient::connect(url.clone()).await.unwrap();
    let a = log
        .init_producer(pb::InitProducerRequest {})
        .await
        .unwrap()
        .into_inner()
        .producer_id;
    let b = log
        .init_producer(pb::InitProducerRequest {})
        .await
        .unwrap()
        .into_inner()
        .producer_id;
    assert!(a != 0 && b != 0 && a != b);

    let first = produce_raw(&mut log, idempotent_batch(a, 0, &["a0", "a1"]))
        .await
        .unwrap();
    assert_eq!((first.base_offset, first.record_count), (0, 2));
    // A retry of the same batch: same answer, nothing written.
    let again = produce_raw(&mut log, idempotent_batch(a, 0, &["a0", "a1"]))
        .await
        .unwrap();
    assert_eq!(again, first);
    // Another producer has its own sequence.
    let other = produce_raw(&mut log, idempotent_batch(b, 0, &["b0"]))
        .await
        .unwrap();
    assert_eq!(other.base_offset, 2);
    // A gap is refused with the kind the SDK retries on.
    let e = produce_raw(&mut log, idempotent_batch(a, 5, &["a5"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        e.metadata().get("weir-error-kind").unwrap(),
        "out_of_order_sequence"
    );
    assert!(e.message().contains("expected is 2"), "{}", e.message());
    // A new producer must start at 0.
    let e = produce_raw(&mut log, idempotent_batch(b + 1000, 3, &["x"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // The dedupe state is durable: after a crash the retry is still recognised.
    broker.kill9();
    broker.restart();
    let mut log = LogClient::connect(url).await.unwrap();
    let again = produce_raw(&mut log, idempotent_batch(a, 0, &["a0", "a1"]))
        .await
        .unwrap();
    assert_eq!(again.base_offset, 0);
    let next = produce_raw(&mut log, idempotent_batch(a, 2, &["a2"]))
        .await
        .unwrap();
    assert_eq!(next.base_offset, 3);
    // Producer ids are never handed out twice, even across a crash.
    let c = log
        .init_producer(pb::InitProducerRequest {})
        .await
        .unwrap()
        .into_inner()
        .producer_id;
    assert!(c > b, "{c} after {b}");

    let client = broker.client().await;
    let values: Vec<String> = read_values(&client, "t")
        .await
        .into_iter()
        .map(|v| v.2)
        .collect();
    assert_eq!(values, ["a0", "a1", "b0", "a2"]);
}

/// Produces a bounded stream, kills the broker with SIGKILL in the middle, restarts it while
/// the producer keeps going, and checks that every record is stored exactly once, in order
/// per key, and that every acknowledgement points at its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_produce_then_retries_store_every_record_exactly_once() {
    const N: u32 = 150_000;
    let mut broker = Broker::start();
    let client = broker.client_with_topic("ledger", 3).await;
    let producer = client.producer(ProducerConfig {
        linger: Duration::from_millis(2),
        batch_bytes: 16 * 1024,
        ..ProducerConfig::default()
    });
    let acked: Arc<Mutex<Vec<(u32, u64, u32)>>> = Arc::default();
    let sink = Arc::clone(&acked);
    let writer = tokio::spawn(async move {
        let mut pending = Vec::new();
        for i in 0..N {
            let rec =
                ProducerRecord::new("ledger", format!("entry-{i}")).key(format!("k{}", i % 11));
            pending.push((i, producer.enqueue(rec).await.expect("buffered")));
        }
        producer.flush().await.expect("every record delivered");
        for (i, ack) in pending {
            let (p, o) = ack.await.expect("acknowledged");
            sink.lock().unwrap().push((p, o, i));
        }
    });
    // Kill once records are flowing: some batches are acknowledged, some in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let desc = client.admin().describe_topic("ledger").await.unwrap();
        let stored: u64 = desc.partitions.iter().map(|p| p.latest_offset).sum();
        if stored >= 20_000 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "producing stalled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    broker.kill9();
    // An outage, not a wait for some state: the producer's sends fail for half a second and
    // it retries them (with backoff) until the broker is back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.restart();
    tokio::time::timeout(Duration::from_secs(120), writer)
        .await
        .expect("the producer finishes after the restart")
        .unwrap();

    let client = broker.client().await;
    let stored = read_values(&client, "ledger").await;
    assert_eq!(stored.len(), N as usize, "every record exactly once");
    let mut by_pos = HashMap::new();
    let mut last_per_key: HashMap<u32, u32> = HashMap::new();
    let mut seen = vec![false; N as usize];
    for (p, o, v) in &stored {
        let i: u32 = v.strip_prefix("entry-").unwrap().parse().unwrap();
        assert!(!seen[i as usize], "entry-{i} stored twice");
        seen[i as usize] = true;
        if let Some(prev) = last_per_key.insert(i % 11, i) {
            assert!(prev < i, "key k{} out of order: {prev} then {i}", i % 11);
        }
        by_pos.insert((*p, *o), i);
    }
    for (p, o, i) in acked.lock().unwrap().iter() {
        assert_eq!(by_pos.get(&(*p, *o)), Some(i), "ack of entry-{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_batches_in_flight_keep_partition_order() {
    let broker = Broker::start();
    let client = broker.client_with_topic("ordered", 2).await;
    // Tiny batches: thousands of requests, ten in flight per partition.
    let producer = client.producer(ProducerConfig {
        batch_bytes: 200,
        linger: Duration::from_millis(50),
        ..ProducerConfig::default()
    });
    let mut acks = Vec::new();
    for i in 0..20_000u32 {
        let rec = ProducerRecord::new("ordered", format!("{i}")).partition(i % 2);
        acks.push(producer.enqueue(rec).await.unwrap());
    }
    producer.flush().await.unwrap();
    let mut next = [0u64; 2];
    for (i, ack) in acks.into_iter().enumerate() {
        let (p, o) = ack.await.unwrap();
        assert_eq!(p, i as u32 % 2);
        assert_eq!(o, next[p as usize], "record {i}");
        next[p as usize] += 1;
    }
    for (p, o, v) in read_values(&client, "ordered").await {
        assert_eq!(v.parse::<u64>().unwrap(), o * 2 + u64::from(p));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_makes_send_wait_and_nothing_is_lost() {
    let mut broker = Broker::start();
    let client = broker.client_with_topic("bp", 1).await;
    let producer = client.producer(ProducerConfig {
        buffer_bytes: 4096,
        ..ProducerConfig::default()
    });
    producer
        .send(ProducerRecord::new("bp", "warm-up"))
        .await
        .unwrap();
    // With the broker gone nothing is acknowledged, so the buffer fills and enqueue waits.
    broker.kill9();
    let mut sent = 1u32;
    let blocked = loop {
        let rec = ProducerRecord::new("bp", format!("{sent:0100}"));
        match tokio::time::timeout(Duration::from_millis(500), producer.enqueue(rec)).await {
            Ok(r) => {
                r.unwrap();
                sent += 1;
                assert!(sent < 1000, "4 KiB of buffer took {sent} records");
            }
            Err(_) => break sent,
        }
    };
    assert!(blocked > 10, "buffer filled after only {blocked} records");
    // The record whose enqueue timed out was never buffered; send it again after restart.
    broker.restart();
    producer
        .send(ProducerRecord::new("bp", format!("{blocked:0100}")))
        .await
        .unwrap();
    producer.flush().await.unwrap();
    let values = read_values(&broker.client().await, "bp").await;
    assert_eq!(values.len() as u32, blocked + 1);
    for (i, (_, o, v)) in values.iter().enumerate().skip(1) {
        assert_eq!(*o, i as u64);
        assert_eq!(v.parse::<usize>().unwrap(), i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_send_gives_its_buffer_bytes_back() {
    let mut broker = Broker::start();
    let client = broker.client().await;
    let producer = client.producer(ProducerConfig {
        buffer_bytes: 4096,
        ..ProducerConfig::default()
    });
    // The first send to a topic waits for its partition count, retrying while the broker is
    // down; abandoning it (as Ctrl-C does in Python) must not keep its reservation.
    broker.kill9();
    for _ in 0..3 {
        let rec = ProducerRecord::new("later", vec![b'x'; 3000]);
        let abandoned =
            tokio::time::timeout(Duration::from_millis(300), producer.enqueue(rec)).await;
        assert!(abandoned.is_err(), "enqueue finished with the broker down");
    }
    broker.restart();
    broker
        .client()
        .await
        .admin()
        .create_topic(NewTopic::new("later", 1))
        .await
        .unwrap();
    // 3 x 3000 bytes leaked would leave no room for this one: it would wait forever.
    let rec = ProducerRecord::new("later", vec![b'y'; 3000]);
    let sent = tokio::time::timeout(Duration::from_secs(20), producer.send(rec)).await;
    assert_eq!(
        sent.expect("the buffer kept abandoned bytes").unwrap(),
        (0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_and_uncompressed_batches_read_back_identically() {
    let broker = Broker::start();
    let client = broker.client().await;
    let mut read = Vec::new();
    let mut sizes = Vec::new();
    for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let topic = format!("c-{c}");
        client
            .admin()
            .create_topic(NewTopic::new(&topic, 1))
            .await
            .unwrap();
        let producer = client.producer(ProducerConfig {
            compression: c,
            ..ProducerConfig::default()
        });
        for i in 0..5_000i64 {
            let rec = ProducerRecord::new(&topic, format!("{{\"order\":{i},\"status\":\"paid\"}}"))
                .key(format!("customer-{}", i % 17))
                .header("source", "e2e")
                .timestamp(1_700_000_000_000 + i);
            producer.enqueue(rec).await.unwrap();
        }
        producer.close().await.unwrap();
        let desc = client.admin().describe_topic(&topic).await.unwrap();
        sizes.push(desc.partitions[0].size_bytes);
        let mut consumer = client
            .consumer(&topic, ConsumerConfig::default())
            .await
            .unwrap();
        let mut records = Vec::new();
        while records.len() < 5_000 {
            let r = consumer.next().await.unwrap().unwrap();
            records.push((r.offset, r.timestamp, r.key, r.value, r.headers));
        }
        read.push(records);
    }
    assert_eq!(read[0], read[1], "lz4 reads back like uncompressed");
    assert_eq!(read[0], read[2], "zstd reads back like uncompressed");
    assert!(
        sizes[1] * 2 < sizes[0] && sizes[2] * 2 < sizes[0],
        "stored bytes none/lz4/zstd: {sizes:?}"
    );
}
