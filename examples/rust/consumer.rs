//! Reads example-orders from the beginning and prints each record; stops after 2 s without
//! anything new. Run the producer example first.

use std::time::Duration;

use futures::StreamExt;
use weir::{Client, ConsumerConfig, StartFrom};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("WEIR_BROKER").unwrap_or_else(|_| weir::DEFAULT_BROKER.to_string());
    let client = Client::connect(&addr).await?;
    let config = ConsumerConfig::default().start(StartFrom::Earliest);
    let mut consumer = client.consumer("example-orders", config).await?;
    let mut count = 0;
    while let Ok(Some(record)) = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
    {
        let record = record?;
        let key = record.key.as_deref().map(String::from_utf8_lossy);
        println!(
            "p{} @{} key={:?} value={}",
            record.partition,
            record.offset,
            key,
            String::from_utf8_lossy(&record.value)
        );
        count += 1;
    }
    println!("read {count} records");
    Ok(())
}
