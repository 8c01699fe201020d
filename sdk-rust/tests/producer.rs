//! The producer's state machine against a fake broker (tests/fake) that scripts faults per
//! request: batching by size and linger, the in-flight window (max_in_flight and the broker's
//! dedupe window), retries with backoff that never duplicate, a gap answered with a fresh
//! producer id and renumbered batches, the delivery timeout, non-retriable errors, and close.

mod fake;

use std::time::Duration;

use fake::{FakeBroker, Fault, TOPIC};
use tonic::Code;
use weir::{Error, ProducerConfig, ProducerRecord};

/// A config with short timers (the fake answers at once unless told otherwise).
fn quick() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(1),
        request_timeout: Duration::from_millis(500),
        delivery_timeout: Duration::from_secs(30),
        retry_backoff: Duration::from_millis(5),
        retry_backoff_max: Duration::from_millis(50),
        ..ProducerConfig::default()
    }
}

fn record(partition: u32, i: usize) -> ProducerRecord {
    ProducerRecord::new(TOPIC, format!("v{i:04}")).partition(partition)
}

/// Sends `n` records to `partition` (enqueued, then flushed); returns each one's offset.
async fn send_all(producer: &weir::Producer, partition: u32, n: usize) -> Vec<u64> {
    let mut acks = Vec::new();
    for i in 0..n {
        acks.push(producer.enqueue(record(partition, i)).await.unwrap());
    }
    producer.flush().await.unwrap();
    let mut offsets = Vec::new();
    for ack in acks {
        let (p, offset) = ack.await.unwrap();
        assert_eq!(p, partition);
        offsets.push(offset);
    }
    offsets
}

fn values(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("v{i:04}")).collect()
}

#[tokio::test]
async fn records_are_batched_by_size_and_sealed_by_linger_or_flush() {
    let broker = FakeBroker::start(2).await;
    let client = broker.client().await;
    // Small batches: 300 records of ~20 bytes do not fit in one.
    let small = client.producer(ProducerConfig {
        batch_bytes: 1024,
        ..quick()
    });
    assert_eq!(send_all(&small, 0, 300).await, (0..300).collect::<Vec<_>>());
    let seen = broker.with(|s| s.seen.clone());
    assert!(seen.len() > 1, "{} batches", seen.len());
    assert!(seen.iter().all(|b| b.bytes <= 1024 + 64), "{seen:?}");
    assert_eq!(seen.iter().map(|b| b.records).sum::<u32>(), 300);
    assert_eq!(broker.with(|s| s.values(0)), values(300));

    // A long linger: nothing is sent until flush seals the open batch, then one batch.
    let lingering = client.producer(ProducerConfig {
        linger: Duration::from_secs(3600),
        ..quick()
    });
    let before = broker.with(|s| s.seen.len());
    let acks: Vec<_> = futures::future::join_all((0..5).map(|i| lingering.enqueue(record(1, i))))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        broker.with(|s| s.seen.len()),
        before,
        "sent before the linger"
    );
    lingering.flush().await.unwrap();
    let seen = broker.with(|s| s.seen[before..].to_vec());
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].partition, seen[0].records), (1, 5));
    for (i, ack) in acks.into_iter().enumerate() {
        assert_eq!(ack.await.unwrap(), (1, i as u64));
    }
}

#[tokio::test]
async fn in_flight_requests_stay_within_max_in_flight_and_the_dedupe_window() {
    for (max_in_flight, window, want) in [(10, 3, 3), (2, 10, 2), (10, 10, 10)] {
        let broker = FakeBroker::start(1).await;
        broker.with(|s| {
            s.dedupe_window = window;
            // Answers come late, so requests pile up to the limit.
            s.answer_delay = Duration::from_millis(30);
        });
        let client = broker.client().await;
        let producer = client.producer(ProducerConfig {
            batch_bytes: 256,
            max_in_flight,
            ..quick()
        });
        send_all(&producer, 0, 400).await;
        let most = broker.with(|s| s.max_in_flight[0]);
        assert_eq!(most, want, "max_in_flight {max_in_flight}, window {window}");
        assert_eq!(broker.with(|s| s.values(0)), values(400));
    }
}

#[tokio::test]
async fn retries_after_refusals_lost_answers_and_closed_streams_write_each_record_once() {
    let broker = FakeBroker::start(1).await;
    broker.with(|s| {
        s.script.extend([
            Fault::Refuse(Code::Unavailable, ""),
            Fault::Refuse(Code::ResourceExhausted, "busy"),
            Fault::DropAck,
            Fault::CloseAfter,
            Fault::Refuse(Code::FailedPrecondition, "not_leader"),
        ]);
    });
    let client = broker.client().await;
    let producer = client.producer(ProducerConfig {
        batch_bytes: 512,
        ..quick()
    });
    let offsets = send_all(&producer, 0, 200).await;
    // Every record once, in order, at the offset it was acknowledged with.
    assert_eq!(offsets, (0..200).collect::<Vec<_>>());
    assert_eq!(broker.with(|s| s.values(0)), values(200));
    // The batch whose answer was lost went twice with the same producer id and sequence.
    let seen = broker.with(|s| s.seen.clone());
    let mut sent: Vec<(u64, u32)> = seen
        .iter()
        .map(|b| (b.producer_id, b.base_sequence))
        .collect();
    let attempts = sent.len();
    sent.sort_unstable();
    sent.dedup();
    assert!(attempts > sent.len(), "no batch was sent again: {seen:?}");
    assert_eq!(broker.with(|s| s.init_producer_calls), 1);
}

#[tokio::test]
async fn a_lost_answer_times_out_and_the_retry_gets_the_original_offset() {
    let broker = FakeBroker::start(1).await;
    let client = broker.client().await;
    let producer = client.producer(quick());
    assert_eq!(producer.send(record(0, 0)).await.unwrap(), (0, 0));
    // Appended, never answered: the request timeout (500 ms) abandons the stream and the
    // retry, a duplicate, is answered with the offset the first copy got.
    broker.with(|s| s.script.push_back(Fault::DropAck));
    assert_eq!(producer.send(record(0, 1)).await.unwrap(), (0, 1));
    let seen = broker.with(|s| s.seen.clone());
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[1], seen[2], "the same batch again");
    assert_eq!(broker.with(|s| s.values(0)), values(2));
}

#[tokio::test]
async fn a_gap_takes_a_fresh_producer_id_and_renumbers_from_zero() {
    let broker = FakeBroker::start(1).await;
    let client = broker.client().await;
    let producer = client.producer(quick());
    // A first record under producer id 1, sequence 0.
    assert_eq!(producer.send(record(0, 0)).await.unwrap(), (0, 0));
    // The broker then answers the head batch as out of order, as after a gap (an earlier
    // batch lost for good): it cannot have written anything after it.
    broker.with(|s| {
        s.script.push_back(Fault::Refuse(
            Code::FailedPrecondition,
            "out_of_order_sequence",
        ))
    });
    assert_eq!(producer.send(record(0, 1)).await.unwrap(), (0, 1));
    assert_eq!(producer.send(record(0, 2)).await.unwrap(), (0, 2));
    assert_eq!(broker.with(|s| s.init_producer_calls), 2);
    let seen = broker.with(|s| s.seen.clone());
    let ids: Vec<(u64, u32)> = seen
        .iter()
        .map(|b| (b.producer_id, b.base_sequence))
        .collect();
    // Refused under id 1 (sequence 1), then sent again under id 2 from sequence 0.
    assert_eq!(ids, vec![(1, 0), (1, 1), (2, 0), (2, 1)]);
    assert_eq!(broker.with(|s| s.values(0)), values(3));
}

#[tokio::test]
async fn records_that_cannot_be_delivered_in_time_fail_with_the_delivery_timeout() {
    let broker = FakeBroker::start(1).await;
    broker.with(|s| s.always = Some(Fault::Refuse(Code::Unavailable, "")));
    let client = broker.client().await;
    let timeout = Duration::from_millis(300);
    let producer = client.producer(ProducerConfig {
        delivery_timeout: timeout,
        ..quick()
    });
    let err = producer.send(record(0, 0)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(t) if t == timeout), "{err:?}");
    // Retried (with backoff) until then, and nothing written.
    assert!(broker.with(|s| s.seen.len()) > 1);
    assert!(broker.with(|s| s.values(0)).is_empty());
    // flush reports the failure once; the producer goes on once the broker is back.
    assert!(matches!(
        producer.flush().await,
        Ok(()) | Err(Error::Timeout(_))
    ));
    broker.with(|s| s.always = None);
    assert_eq!(producer.send(record(0, 1)).await.unwrap(), (0, 0));
}

#[tokio::test]
async fn a_refusal_that_is_not_retriable_fails_its_records_at_once() {
    let broker = FakeBroker::start(1).await;
    broker.with(|s| {
        s.script
            .push_back(Fault::Refuse(Code::InvalidArgument, "invalid_argument"))
    });
    let client = broker.client().await;
    let producer = client.producer(quick());
    let err = producer.send(record(0, 0)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert_eq!(broker.with(|s| s.seen.len()), 1, "retried");
    assert!(producer.flush().await.is_err(), "flush reports the failure");
    assert!(producer.flush().await.is_ok(), "and only once");
}

#[tokio::test]
async fn close_delivers_everything_buffered_and_then_refuses_records() {
    let broker = FakeBroker::start(2).await;
    let client = broker.client().await;
    let producer = client.producer(ProducerConfig {
        linger: Duration::from_secs(3600),
        ..quick()
    });
    let mut acks = Vec::new();
    for i in 0..1000 {
        acks.push(producer.enqueue(record((i % 2) as u32, i)).await.unwrap());
    }
    let clone = producer.clone();
    producer.close().await.unwrap();
    for ack in acks {
        ack.await.unwrap();
    }
    assert_eq!(broker.with(|s| s.logs[0].len() + s.logs[1].len()), 1000);
    // Closed on every clone.
    let refused = clone.enqueue(record(0, 0)).await;
    assert!(matches!(refused, Err(Error::ProducerClosed)), "closed");
    // Unknown topics and partitions are refused before anything is sent.
    let other = client.producer(quick());
    let err = other
        .send(ProducerRecord::new("nope", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TopicNotFound(_)), "{err:?}");
    let err = other.send(record(5, 0)).await.unwrap_err();
    assert!(matches!(err, Error::PartitionNotFound(_)), "{err:?}");
}
