//! Weir as a buffer between a bursty producer and a slow downstream system: the producer
//! writes a burst of 200,000 records as fast as it can; the consumer works through them at its
//! own pace (a simulated 20,000 records/s sink) and reports its lag as it catches up. Nothing is
//! dropped and the producer never waits for the consumer.

use std::time::{Duration, Instant};

use futures::StreamExt;
use weir::{Client, ConsumerConfig, Error, NewTopic, ProducerConfig, ProducerRecord, StartFrom};

const TOPIC: &str = "example-burst";
const BURST: u64 = 200_000;
const SINK_RATE_PER_SEC: u64 = 20_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("WEIR_BROKER").unwrap_or_else(|_| weir::DEFAULT_BROKER.to_string());
    let client = Client::connect(&addr).await?;
    match client.admin().create_topic(NewTopic::new(TOPIC, 1)).await {
        Ok(_) | Err(Error::TopicExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let start_offset = client
        .admin()
        .list_offset(TOPIC, 0, weir::OffsetSpec::Latest)
        .await?;
    let mut consumer = client
        .consumer(
            TOPIC,
            ConsumerConfig::default().start(StartFrom::Offset(start_offset)),
        )
        .await?;

    let producer_client = client.clone();
    let burst = tokio::spawn(async move {
        let started = Instant::now();
        let producer = producer_client.producer(ProducerConfig::default());
        for i in 0..BURST {
            producer
                .enqueue(ProducerRecord::new(TOPIC, format!("event {i}")))
                .await?;
        }
        producer.flush().await?;
        println!(
            "producer: burst of {BURST} records written in {:.2?}",
            started.elapsed()
        );
        Ok::<_, Error>(())
    });

    let started = Instant::now();
    let per_record = Duration::from_secs(1) / SINK_RATE_PER_SEC as u32;
    let mut next_report = Instant::now();
    for n in 1..=BURST {
        let record = consumer
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("stream ended"))??;
        if n % 1_000 == 0 {
            // The "sink" handles 1,000 records per tick at its fixed rate.
            tokio::time::sleep(per_record * 1_000).await;
        }
        if Instant::now() >= next_report {
            let latest = client
                .admin()
                .list_offset(TOPIC, 0, weir::OffsetSpec::Latest)
                .await?;
            println!(
                "consumer: at offset {}, lag {} records",
                record.offset,
                latest - record.offset - 1
            );
            next_report = Instant::now() + Duration::from_secs(1);
        }
    }
    burst.await??;
    println!(
        "consumer: caught up on {BURST} records in {:.2?}",
        started.elapsed()
    );
    Ok(())
}
