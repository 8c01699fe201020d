//! Limits under load: a flood of produce requests is shed (RESOURCE_EXHAUSTED) instead of
//! held, the broker's memory stays bounded, and nothing acknowledged is lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tonic::Code;
use weir::{ProducerConfig, ProducerRecord};
use weir_common::batch::{BatchBuilder, TimestampType};
use weir_e2e::Broker;
use weir_proto::v1 as pb;
use weir_proto::v1::log_client::LogClient;

/// Connections flooding at once, calls in flight on each, and calls each one makes.
const CONNECTIONS: usize = 16;
const CALLS_PER_CONNECTION: usize = 16;
const ROUNDS: usize = 6;
/// One flood request: a 1 MiB batch (64 records of 16 KiB).
const RECORDS_PER_BATCH: usize = 64;
const RECORD_BYTES: usize = 16 * 1024;
/// The broker's limits in this test.
const BUDGET_BYTES: &str = "16777216";
const MAX_IN_FLIGHT: &str = "32";
/// What the flood could make a broker hold without limits: 256 requests of 1 MiB at once.
/// The broker must stay well below its baseline plus that.
const PEAK_RSS_LIMIT: u64 = 400 * 1024 * 1024;

fn flood_batch() -> Bytes {
    let mut b = BatchBuilder::new(TimestampType::CreateTime);
    let value = vec![b'f'; RECORD_BYTES];
    for _ in 0..RECORDS_PER_BATCH {
        b.push(0, None, &value, std::iter::empty::<(&str, &[u8])>());
    }
    b.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_flood_is_shed_with_bounded_memory_and_no_lost_acknowledgement() {
    let broker = Broker::start_with(&[
        "--max-produce-bytes-in-flight",
        BUDGET_BYTES,
        "--max-in-flight-requests",
        MAX_IN_FLIGHT,
        "--fsync",
        "always",
    ]);
    let client = broker.client_with_topic("flood", 4).await;
    client
        .admin()
        .create_topic(weir::NewTopic::new("steady", 2))
        .await
        .unwrap();
    let batch = flood_batch();
    let acked = Arc::new(AtomicU64::new(0));
    let shed = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    for c in 0..CONNECTIONS {
        // A connection of its own per flooding client.
        let log = LogClient::connect(format!("http://{}", broker.addr))
            .await
            .unwrap()
            .max_encoding_message_size(usize::MAX);
        for k in 0..CALLS_PER_CONNECTION {
            let mut log = log.clone();
            let batch = batch.clone();
            let (acked, shed) = (Arc::clone(&acked), Arc::clone(&shed));
            flood.push(tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    let req = pb::ProduceRequest {
                        topic: "flood".into(),
                        batches: vec![pb::PartitionBatch {
                            partition: ((c + k) % 4) as u32,
                            batch: batch.clone(),
                        }],
                        acks: pb::Acks::All as i32,
                    };
                    match log.produce(req).await {
                        Ok(r) => {
                            let n: u32 =
                                r.into_inner().appends.iter().map(|a| a.record_count).sum();
                            acked.fetch_add(u64::from(n), Ordering::Relaxed);
                        }
                        Err(s) => {
                            assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                            assert!(s.message().starts_with("broker busy: "), "{}", s.message());
                            shed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    // Meanwhile, SDK producers (ordered produce streams, idempotent) write steadily; the
    // broker holds their streams back or they retry what is shed: every record lands once.
    let mut steady = Vec::new();
    for p in 0..2 {
        let client = client.clone();
        steady.push(tokio::spawn(async move {
            let producer = client.producer(ProducerConfig::default());
            for i in 0..2000 {
                producer
                    .enqueue(
                        ProducerRecord::new("steady", format!("{p}-{i}")).key(format!("{p}-{i}")),
                    )
                    .await
                    .unwrap();
            }
            producer.flush().await.unwrap();
        }));
    }
    for t in flood {
        t.await.unwrap();
    }
    for t in steady {
        t.await.unwrap();
    }

    let (acked, shed) = (acked.load(Ordering::Relaxed), shed.load(Ordering::Relaxed));
    let total = (CONNECTIONS * CALLS_PER_CONNECTION * ROUNDS) as u64;
    assert!(shed > 0, "nothing was shed");
    assert_eq!(acked / RECORDS_PER_BATCH as u64 + shed, total);
    // Every acknowledged record is there, and nothing that was refused.
    let admin = client.admin();
    let stored: u64 = admin
        .describe_topic("flood")
        .await
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.latest_offset)
        .sum();
    assert_eq!(stored, acked);
    let peak = broker.peak_rss_bytes();
    assert!(
        peak < PEAK_RSS_LIMIT,
        "peak RSS {} MiB with {} MiB of requests offered at once",
        peak >> 20,
        (CONNECTIONS * CALLS_PER_CONNECTION) as u64
    );
    eprintln!(
        "flood: {acked} records acknowledged, {shed} requests shed, peak RSS {} MiB",
        peak >> 20
    );
    let records = weir_e2e::read_all(&client, "steady", weir::ConsumerConfig::default()).await;
    let keys: HashSet<String> = records.iter().map(weir_e2e::text).collect();
    assert_eq!(records.len(), 4000);
    assert_eq!(keys.len(), 4000);
}

/// The `SETTINGS_MAX_CONCURRENT_STREAMS` a broker announces on a new HTTP/2 connection.
async fn announced_streams(addr: &str) -> usize {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (_send, conn) = h2::client::handshake(tcp).await.unwrap();
    let mut conn = Box::pin(conn);
    // Until the server's SETTINGS arrive, h2 assumes no limit (usize::MAX).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        tokio::select! {
            done = &mut conn => panic!("the connection ended: {done:?}"),
            () = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
        }
        if conn.max_concurrent_send_streams() != usize::MAX {
            return conn.max_concurrent_send_streams();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no SETTINGS from {addr}"
        );
    }
}

/// `--max-streams-per-connection` is what the broker announces to every HTTP/2 client (256
/// unless set), so clients queue calls past it instead of opening more; it is per
/// connection: another connection is served while one is at its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_is_limited_to_its_announced_streams() {
    let default = Broker::start();
    assert_eq!(announced_streams(&default.addr).await, 256);
    let broker = Broker::start_with(&["--max-streams-per-connection", "2"]);
    assert_eq!(announced_streams(&broker.addr).await, 2);

    // Two subscriptions that stay open fill one connection...
    let client = broker.client_with_topic("t", 1).await;
    let url = format!("http://{}", broker.addr);
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let stream = LogClient::new(channel.clone())
            .subscribe(pb::SubscribeRequest {
                topic: "t".into(),
                positions: vec![pb::FetchPosition {
                    partition: 0,
                    offset: 0,
                }],
                ..Default::default()
            })
            .await
            .unwrap();
        held.push(stream);
    }
    // ...and the broker still serves other connections.
    let producer = client.producer(ProducerConfig::default());
    producer
        .send(ProducerRecord::new("t", "while one connection is full"))
        .await
        .unwrap();
    // Both subscriptions are live: each gets the record.
    for stream in &mut held {
        loop {
            let got = stream.get_mut().message().await.unwrap().expect("open");
            if !got.partitions.is_empty() {
                break;
            }
        }
    }
    assert_eq!(
        broker.cli(&["topic", "list"]).status.code(),
        Some(0),
        "the CLI's own connection is served"
    );
    // Bad values are refused at start.
    let out = std::process::Command::new(weir_e2e::bin("weir-broker"))
        .args([
            "--max-streams-per-connection",
            "0",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--max-streams-per-connection"),
        "{out:?}"
    );
}
