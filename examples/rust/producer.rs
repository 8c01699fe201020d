//! Produces keyed order events and prints where they landed.
//!
//! `cargo run -p weir-examples --bin example-producer` (broker address: `WEIR_BROKER`, else
//! 127.0.0.1:9292). Records with the same key always land in the same partition.

use weir::{Client, Error, NewTopic, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("WEIR_BROKER").unwrap_or_else(|_| weir::DEFAULT_BROKER.to_string());
    let client = Client::connect(&addr).await?;
    match client
        .admin()
        .create_topic(NewTopic::new("example-orders", 3))
        .await
    {
        Ok(_) | Err(Error::TopicExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let producer = client.producer(ProducerConfig::default());
    // enqueue() returns as soon as the record is buffered; await the futures for the offsets.
    let mut deliveries = Vec::new();
    for i in 0..1_000 {
        let customer = format!("customer-{}", i % 10);
        let record = ProducerRecord::new(
            "example-orders",
            format!("{{\"order\":{i},\"amount\":{}}}", i * 3 % 97),
        )
        .key(customer)
        .header("source", "example");
        deliveries.push(producer.enqueue(record).await?);
    }
    producer.flush().await?;
    for (i, d) in deliveries.into_iter().enumerate().step_by(250) {
        let (partition, offset) = d.await?;
        println!("order {i} → partition {partition}, offset {offset}");
    }
    println!("produced 1000 records to example-orders");
    Ok(())
}
