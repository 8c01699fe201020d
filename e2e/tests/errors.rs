//! Bad requests over raw gRPC get the right status code and a clear message, and never hurt
//! the broker or what it already stored.

use bytes::Bytes;
use tonic::Code;
use weir_common::batch::{BatchBuilder, TimestampType};
use weir_e2e::Broker;
use weir_proto::v1 as pb;
use weir_proto::v1::log_client::LogClient;
use weir_proto::v1::topics_client::TopicsClient;

fn batch(values: &[&[u8]]) -> Bytes {
    let mut b = BatchBuilder::new(TimestampType::CreateTime);
    for v in values {
        b.push(1_700_000_000_000, None, v, std::iter::empty());
    }
    b.finish()
}

/// The error of a call that must fail.
fn code<T>(r: Result<T, tonic::Status>) -> tonic::Status {
    match r {
        Ok(_) => panic!("request should have failed"),
        Err(e) => e,
    }
}

fn produce(topic: &str, partition: u32, batch: Bytes) -> pb::ProduceRequest {
    pb::ProduceRequest {
        acks: pb::Acks::All as i32,
        topic: topic.into(),
        batches: vec![pb::PartitionBatch { partition, batch }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_status() {
    let broker = Broker::start_with(&["--max-record-bytes", "1000"]);
    let url = format!("http://{}", broker.addr);
    let mut topics = TopicsClient::connect(url.clone()).await.unwrap();
    let mut log = LogClient::connect(url).await.unwrap();
    let create = |name: &str, partitions| pb::CreateTopicRequest {
        name: name.into(),
        config: Some(pb::TopicConfig {
            partitions,
            ..Default::default()
        }),
        ..Default::default()
    };
    topics.create_topic(create("t", 2)).await.unwrap();

    let e = code(topics.create_topic(create("t", 2)).await);
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = code(topics.create_topic(create("zero", 0)).await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("10000"), "{}", e.message());
    let e = code(topics.create_topic(create("", 1)).await);
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = code(topics.create_topic(create(&"x".repeat(250), 1)).await);
    assert!(e.message().contains("249"), "{}", e.message());
    let e = code(
        topics
            .describe_topic(pb::DescribeTopicRequest {
                name: "nope".into(),
            })
            .await,
    );
    assert_eq!(e.code(), Code::NotFound);

    let e = code(log.produce(produce("nope", 0, batch(&[b"x"]))).await);
    assert_eq!(e.code(), Code::NotFound);
    let e = code(log.produce(produce("t", 5, batch(&[b"x"]))).await);
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("no partition 5"), "{}", e.message());
    // Oversize record: the limit is in the message; the good records of the request are not
    // written either (a request is validated whole before anything is appended).
    let big = vec![7u8; 1001];
    let req = pb::ProduceRequest {
        acks: pb::Acks::All as i32,
        topic: "t".into(),
        batches: vec![
            pb::PartitionBatch {
                partition: 0,
                batch: batch(&[b"fine"]),
            },
            pb::PartitionBatch {
                partition: 1,
                batch: batch(&[b"ok", &big]),
            },
        ],
    };
    let e = code(log.produce(req).await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("1001 bytes; the limit is 1000"),
        "{}",
        e.message()
    );
    // Malformed batches.
    for junk in [
        Bytes::new(),
        Bytes::from_static(&[1u8; 47]),
        Bytes::from(vec![0xffu8; 200]),
    ] {
        let e = code(log.produce(produce("t", 0, junk)).await);
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    }
    let mut truncated = batch(&[b"hello", b"world"]).to_vec();
    truncated.truncate(truncated.len() - 3);
    let e = code(log.produce(produce("t", 0, Bytes::from(truncated))).await);
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = code(
        log.produce(pb::ProduceRequest {
            acks: pb::Acks::All as i32,
            topic: "t".into(),
            batches: vec![],
        })
        .await,
    );
    assert_eq!(e.code(), Code::InvalidArgument);

    // Offsets out of range name earliest and latest.
    let ok = log
        .produce(produce("t", 0, batch(&[b"a", b"b", b"c"])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ok.appends[0].base_offset, 0,
        "nothing from the rejected requests was written"
    );
    let fetch = |offset| pb::FetchRequest {
        topic: "t".into(),
        positions: vec![pb::FetchPosition {
            partition: 0,
            offset,
        }],
        max_bytes: 0,
    };
    let e = code(log.fetch(fetch(4)).await);
    assert_eq!(e.code(), Code::OutOfRange);
    assert!(
        e.message().contains("earliest 0, latest 3"),
        "{}",
        e.message()
    );
    let e = code(
        log.subscribe(pb::SubscribeRequest {
            topic: "t".into(),
            positions: fetch(9).positions,
            max_bytes: 0,
            member: None,
            plugins: Vec::new(),
        })
        .await,
    );
    assert_eq!(e.code(), Code::OutOfRange);
    let e = code(
        log.fetch(pb::FetchRequest {
            topic: "t".into(),
            positions: vec![],
            max_bytes: 0,
        })
        .await,
    );
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = code(
        log.list_offsets(pb::ListOffsetsRequest {
            topic: "t".into(),
            queries: vec![pb::OffsetQuery {
                partition: 0,
                spec: 99,
                timestamp: 0,
            }],
        })
        .await,
    );
    assert_eq!(e.code(), Code::InvalidArgument);

    // The broker is fine and the acknowledged records are intact.
    let got = log.fetch(fetch(0)).await.unwrap().into_inner();
    let (_, records) = weir_common::batch::decode(&got.partitions[0].batches[0]).unwrap();
    assert_eq!(
        records.iter().map(|r| r.value.clone()).collect::<Vec<_>>(),
        vec!["a", "b", "c"]
    );
    assert_eq!(got.partitions[0].latest_offset, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_returns_whole_batches_within_max_bytes() {
    let broker = Broker::start();
    let url = format!("http://{}", broker.addr);
    let mut topics = TopicsClient::connect(url.clone()).await.unwrap();
    let mut log = LogClient::connect(url).await.unwrap();
    topics
        .create_topic(pb::CreateTopicRequest {
            name: "f".into(),
            config: Some(pb::TopicConfig {
                partitions: 1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..10u8 {
        let v = vec![i; 1000];
        log.produce(produce("f", 0, batch(&[&v, &v])))
            .await
            .unwrap();
    }
    // From offset 5 (inside the third batch), at most ~3 KB: the batch holding 5 comes first.
    let got = log
        .fetch(pb::FetchRequest {
            topic: "f".into(),
            positions: vec![pb::FetchPosition {
                partition: 0,
                offset: 5,
            }],
            max_bytes: 3000,
        })
        .await
        .unwrap()
        .into_inner();
    let batches = &got.partitions[0].batches;
    assert!(
        (1..=2).contains(&batches.len()),
        "{} batches",
        batches.len()
    );
    let (h, _) = weir_common::batch::decode(&batches[0]).unwrap();
    assert_eq!(h.base_offset, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_batches_and_requests_are_refused_with_the_limit() {
    let broker = Broker::start();
    let url = format!("http://{}", broker.addr);
    let mut topics = TopicsClient::connect(url.clone()).await.unwrap();
    let mut log = LogClient::connect(url)
        .await
        .unwrap()
        .max_encoding_message_size(usize::MAX);
    topics
        .create_topic(pb::CreateTopicRequest {
            name: "big".into(),
            config: Some(pb::TopicConfig {
                partitions: 1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    // 17 records of 1 MiB: every record is within the record limit, the batch is not.
    let mb = vec![1u8; 1024 * 1024 - 16];
    let values: Vec<&[u8]> = (0..17).map(|_| &mb[..]).collect();
    let e = code(log.produce(produce("big", 0, batch(&values))).await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("the limit is 16777216 bytes"),
        "{}",
        e.message()
    );
    // A request over the 64 MiB message limit is refused by the transport, naming the limit.
    let req = pb::ProduceRequest {
        acks: pb::Acks::All as i32,
        topic: "big".into(),
        batches: (0..5)
            .map(|_| pb::PartitionBatch {
                partition: 0,
                batch: batch(&values),
            })
            .collect(),
    };
    let e = code(log.produce(req).await);
    assert!(
        e.message().contains("67108864"),
        "{:?}: {}",
        e.code(),
        e.message()
    );
    // Still serving.
    let ok = log
        .produce(produce("big", 0, batch(&[b"small"])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.appends[0].base_offset, 0);
}
